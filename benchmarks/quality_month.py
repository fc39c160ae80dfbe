"""Quality on a simulated district month, judged by what beneficiaries get.

Run from the repository root (about 10 minutes on 2 cores for 30 days):

    .venv/bin/python benchmarks/quality_month.py --markdown benchmarks/out/quality.md

One seeded event stream (`simulate_month`) is fed, event by event, to three policies:

- the engine: a fresh SQLite file through `MatchingEngine.ingest`, its own batches
  (`match_shard`) on the dirty shards every `--every` events and at the end of each day;
- the same engine with the nightly rebalance of the district at 02:00 (production
  settings: change penalty, move cap), on a second file (`--no-nightly` leaves it out);
- with `--reserve-share S`, the engine keeping capacity for urgent cases expected soon at
  share S (0: nothing kept) instead of its default, on a third file;
- first-come-first-served greedy and urgency-first greedy from `plain.py`, which read the
  same events with their own plain eligibility code and keep their own ledgers, so neither
  shares the engine's candidates, frames or score.

Each policy's allocations (for the engine: the proposals still holding at the end) are then
judged by `plain.judge`, code that is not the engine's: priority-weighted fulfilment by the
deadline, urgent items served in full, goods left to expire, travel, grid fairness,
continuity of recurring visits, and every allocation that breaks a rule or a capacity. The
hindsight LP bound knows the whole month in advance. A synthetic coordinator approves every
engine proposal an hour after it was made (a pending proposal holds capacity as an approved
one does; until approved, the engine may still re-plan it). The baselines commit at once.
Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import plain
from sqlalchemy import Engine, event

from matcher.domain.allocation import build_problem, place_volunteer_visits
from matcher.domain.candidates import Candidates, generate
from matcher.domain.errors import DomainError
from matcher.domain.forecast import Reserve
from matcher.domain.frames import (
    SOLVER_SCALE,
    Demand,
    Kind,
    Supply,
    Vocabulary,
    build_demand,
    build_supply,
)
from matcher.domain.reach import ReachDefaults
from matcher.domain.scoring import ScoringContext, Weights
from matcher.services.engine import MatchingEngine
from matcher.services.matching import MatchingConfig
from matcher.services.rebalance_inputs import RebalanceConfig
from matcher.services.rebalancing import RunOptions, rebalance
from matcher.simulator import build_district, registry_events, simulate_month
from matcher.simulator.day import Event
from matcher.solver import Problem, relaxation_bound
from matcher.solver.cpsat import solve_cp_sat
from matcher.storage.database import migrate, open_engine
from matcher.storage.store import HOLDING, unit_of_work
from matcher.storage.tables import proposals
from schemas import OfferPublished
from schemas.matches import ProposalStatus
from schemas.topics import Topics

START = date(2025, 3, 3)
# The simulator's weekday baseline of a district day, scaled by --scale.
DAY_COUNTS = {"cases": 600, "volunteer_offers": 400, "goods_offers": 150, "service_offers": 80}
HOLDING_STATUSES = [status.value for status in HOLDING]
DISTRICT_ZONE = ZoneInfo("Asia/Shanghai")
NIGHTLY_AT = clock_time(2, 0)  # the service's default rebalance_at
# Coordinators approve each proposal this long after it is made (the baselines commit at once).
APPROVE_AFTER = timedelta(hours=1)


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def priority(urgency: Any, vulnerability: Any) -> Any:
    """How much serving an item matters: urgency (1..5) x vulnerability (1..5), 1..25."""
    return urgency * vulnerability


# --------------------------------------------------------------------------- the month


@dataclass
class EngineSide:
    """The engine, fed the stream through its own ingest and matching its dirty shards; with
    `nightly`, the district is also rebalanced every night at 02:00 (production settings)."""

    engine: MatchingEngine
    name: str = "engine"
    nightly: RunOptions | None = None
    approve_after: timedelta = APPROVE_AFTER
    batches: int = 0
    seconds: float = 0.0
    objective: float = 0.0
    solver_bound: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)

    def apply(self, incoming: Event) -> bool:
        """Apply one event; False when the engine refuses it."""
        try:
            self.engine.ingest(incoming, topic="bench.simulated")
        except DomainError:
            return False
        return True

    def approve(self, now: datetime) -> None:
        """The coordinators: every proposal is approved `approve_after` after it was made."""
        cutoff = now - self.approve_after
        with self.engine.writing() as store:
            for p in store.proposals_where(
                    proposals.c.status == ProposalStatus.PROPOSED.value,
                    proposals.c.created_at <= cutoff):
                store.set_proposal_status(p.proposal_id, ProposalStatus.APPROVED, at=now,
                                          by="bench-coordinator")

    def batch(self, now: datetime) -> None:
        """Approvals due, then one batch per dirty shard, as continuous matching runs them."""
        started = time.perf_counter()
        self.approve(now)
        for shard in self.engine.due_shards(0):
            report = self.engine.match_shard(shard)
            self.batches += 1
            self.statuses[report.status] = self.statuses.get(report.status, 0) + 1
            if math.isfinite(report.objective) and math.isfinite(report.bound):
                self.objective += report.objective
                self.solver_bound += report.bound
        self.seconds += time.perf_counter() - started

    def night(self, clock: Clock, day: date) -> None:
        """The nightly rebalance before the day's events, when this side runs one."""
        if self.nightly is None:
            return
        clock.now = max(clock.now, datetime.combine(day, NIGHTLY_AT, tzinfo=DISTRICT_ZONE))
        started = time.perf_counter()
        rebalance(self.engine, self.nightly)
        self.seconds += time.perf_counter() - started

    def allocations(self) -> list[plain.Given]:
        """The proposals still holding capacity, as allocations."""
        with unit_of_work(self.engine.db) as store:
            rows = store.proposals_where(proposals.c.status.in_(HOLDING_STATUSES))
        return [plain.as_given(row) for row in rows]


@dataclass
class GreedySide:
    """A plain greedy policy over its own reading of the stream."""

    greedy: plain.Greedy
    batches: int = 0
    seconds: float = 0.0
    dirty: bool = False

    @property
    def name(self) -> str:
        return self.greedy.name

    def on_change(self, changed: str | None, incoming: Event) -> None:
        """Let the policy drop what the change makes impossible."""
        if changed is not None:
            self.greedy.on_event(changed, incoming, incoming.occurred_at)
            self.dirty = True

    def batch(self, now: datetime) -> None:
        """One pass over the open items, when something changed since the last."""
        if not self.dirty:
            return
        started = time.perf_counter()
        self.greedy.batch(now)
        self.batches += 1
        self.dirty = False
        self.seconds += time.perf_counter() - started

    def allocations(self) -> list[plain.Given]:
        return list(self.greedy.ledger.given)


def open_database(path: Path) -> Engine:
    """A fresh migrated SQLite file; commits skip fsync (durability is not what is measured)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = open_engine(f"sqlite:///{path}")

    def no_sync(connection: Any, _record: Any) -> None:
        connection.execute("PRAGMA synchronous=OFF")

    event.listen(db, "connect", no_sync)
    migrate(db)
    return db


@dataclass
class Clock:
    """Simulated time: the moment of the event applied last."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Month:
    """What the run leaves behind: the world as the events said, and every policy."""

    world: plain.World
    engines: list[EngineSide]
    greedy: list[GreedySide]
    published: dict[str, datetime]
    events: int
    refused: int
    start: datetime
    end: datetime

    @property
    def engine(self) -> EngineSide:
        """The engine with continuous matching alone."""
        return self.engines[0]

    @property
    def sides(self) -> list[EngineSide | GreedySide]:
        return [*self.engines, *self.greedy]


def run_month(folder: Path, *, days: int, scale: float, every: int, seed: int,
              weights: Weights | None = None, nightly: bool = True,
              reach_mix: bool = False, reserve: Reserve | None = None) -> Month:
    """Feed a simulated month to every policy, each matching as continuous matching would;
    with `reach_mix`, partners state how their offers reach people (delivery, district...);
    with `reserve`, one more engine keeps capacity back for urgent cases expected soon as
    `reserve` says (share 0: nothing), beside the engine's default."""
    district = build_district(seed=seed, reach_mix=reach_mix)
    start = datetime(START.year, START.month, START.day, tzinfo=UTC)
    clock = Clock(start - timedelta(days=1))
    topics = Topics("bench")
    config = MatchingConfig(topics=topics, weights=weights or Weights())
    variants: list[tuple[str, str, RunOptions | None, MatchingConfig]] = [
        ("engine", "engine", None, config)]
    if nightly:
        variants.append(("nightly", "engine + nightly rebalance", RunOptions(
            trigger="nightly", requested_by="bench", config=RebalanceConfig(matching=config)),
            config))
    if reserve is not None:
        label = (f"engine, reserve share {reserve.share:g} (urgency >= {reserve.min_urgency})"
                 if reserve.active else "engine keeping nothing back for expected cases")
        variants.append(("reserve", label, None, dataclasses.replace(config, reserve=reserve)))
    engines = [EngineSide(MatchingEngine(db=open_database(folder / f"{name}.db"),
                                         topics=topics, matching=matching, clock=clock),
                          name=label, nightly=options)
               for name, label, options, matching in variants]
    world = plain.World()
    greedy = [GreedySide(plain.Greedy("greedy (FCFS)", world, plain.fcfs_order)),
              GreedySide(plain.Greedy("greedy (urgency first)", world, plain.urgency_order))]
    for registration in registry_events(district, clock.now):
        for side in engines:
            side.engine.ingest(registration, topic=topics.registry)
        world.apply(registration)
    counts = {name: max(1, round(value * scale)) for name, value in DAY_COUNTS.items()}
    published: dict[str, datetime] = {}
    applied = refused = 0
    started = time.perf_counter()
    sides: list[EngineSide | GreedySide] = [*engines, *greedy]
    for number, day_events in enumerate(simulate_month(district, START, days=days, seed=seed,
                                                       **counts), start=1):
        for side in engines:
            side.night(clock, START + timedelta(days=number - 1))
        for incoming in day_events:
            clock.now = max(clock.now, incoming.occurred_at)
            if isinstance(incoming, OfferPublished):
                published.setdefault(incoming.payload.offer_id, incoming.occurred_at)
            if not all([side.apply(incoming) for side in engines]):
                refused += 1
                continue
            changed = world.apply(incoming)
            for side in greedy:
                side.on_change(changed, incoming)
            applied += 1
            if applied % every == 0:
                for side in sides:
                    side.batch(clock.now)
        for side in sides:
            side.batch(clock.now)
        log(f"day {number}/{days}: {applied} events, "
            + ", ".join(f"{s.name} {s.batches} batches {s.seconds:.0f}s" for s in sides)
            + f" ({time.perf_counter() - started:.0f}s)")
    return Month(world, engines, greedy, published, applied, refused, start, clock.now)


def state_at_end(db: Engine, until: datetime) -> dict[str, Any]:
    """The items due by `until` (those the judge counts), live offers and nodes of the
    engine's database: what the hindsight bound is computed over."""
    with unit_of_work(db) as store:
        return {
            "items": [item for item in store.open_items()
                      if min(item["window_end"], item["deadline"]) <= until],
            "offers": store.active_offers(),
            "nodes": {node.node_id: node for node in store.all_nodes()},
            "reach": ReachDefaults(partners=store.partner_reaches()),
        }


# --------------------------------------------------------------------------- the bound


@dataclass(frozen=True)
class Bound:
    """The hindsight LP bound on priority-weighted fulfilment, and the size of its LP."""

    fulfilment: float
    by_kind: dict[str, float]
    needs: int
    offers: int
    arcs: int
    seconds: float


@dataclass(frozen=True)
class Hindsight:
    """The whole month as one problem, and the frames it was built from."""

    problem: Problem
    weight: np.ndarray  # each need's priority
    kinds: list[str]  # each need's kind
    demand: Demand
    supply: Supply
    cands: Candidates
    vocab: Vocabulary
    kept: np.ndarray  # the candidate arcs the problem keeps, in its arc order


def hindsight(state: dict[str, Any], published: dict[str, datetime],
              start: datetime) -> Hindsight:
    """The whole month as one problem, known in advance: every live item, every live offer at
    full capacity, every pair the hard rules allow (from the month's start, so no deadline
    has passed) between an offer and an item it coexisted with (published before the item's
    deadline), a volunteer's hours per ISO week shared by all their offers as the engine
    counts them. Utility is priority per whole item, so the optimum is priority-weighted
    fulfilment.
    """
    vocab = Vocabulary()
    demand = build_demand(state["items"], {}, state["nodes"], vocab)
    supply = build_supply([{"offer_id": o.offer_id, "payload": o.payload}
                           for o in state["offers"]], {}, state["nodes"], vocab,
                          reach=state["reach"])
    cands = generate(demand, supply, now=start.timestamp(), weights=Weights(),
                     context=ScoringContext(), k=len(supply) + 1)
    p = cands.pairs
    opened = np.asarray([published.get(o, start).timestamp() for o in supply.offer_id])
    keep = opened[p.s] < demand.end[p.d]
    d = p.d[keep]
    units = np.maximum(np.rint(demand.total_qty * SOLVER_SCALE[demand.kind]), 1
                       ).astype(np.int64)
    weight = priority(demand.urgency, demand.vulnerability).astype(np.float64)
    # The engine's own problem at full capacity (so a volunteer's hours count per person and
    # week across their offers, as the engine must count them), on the kept arcs, with
    # priority per whole item as utility.
    full = build_problem(demand, supply, cands, time_limit_s=600.0, workers=2)
    problem = dataclasses.replace(
        full, arc_need=full.arc_need[keep], arc_offer=full.arc_offer[keep],
        arc_utility=weight[d] / units[d], arc_use=np.ones(len(d), dtype=np.int64),
        arc_capacity=None if full.arc_capacity is None else full.arc_capacity[keep])
    kinds = [("volunteer", "goods", "service")[k] for k in demand.kind.tolist()]
    return Hindsight(problem, weight, kinds, demand, supply, cands, vocab,
                     np.flatnonzero(keep))


def hindsight_bound(state: dict[str, Any], published: dict[str, datetime],
                    start: datetime, month: Hindsight | None = None) -> Bound:
    """`relaxation_bound` of the hindsight problem, as a share of all priority."""
    started = time.perf_counter()
    month = month or hindsight(state, published, start)
    problem, weight, kinds = month.problem, month.weight, month.kinds
    value = relaxation_bound(problem)
    # Per kind: the kinds never share an offer, so the bound splits into one LP per kind.
    by_kind: dict[str, float] = {}
    kind_of = np.asarray(kinds)
    for kind in sorted(set(kinds)):
        rows = kind_of == kind
        arcs = rows[problem.arc_need]
        part = _restricted(problem, arcs)
        by_kind[kind] = relaxation_bound(part) / float(weight[rows].sum())
    return Bound(value / float(weight.sum()), by_kind, problem.num_needs, problem.num_offers,
                 problem.num_arcs, time.perf_counter() - started)


@dataclass
class HindsightPlan:
    """A plan made with the whole month known: the hindsight problem solved in whole units
    by CP-SAT, its visits placed in the volunteers' diaries as the engine places its own.
    Judged like any policy, it is what knowing the future is worth, rule by rule."""

    name: str
    given: list[plain.Given]
    seconds: float

    def allocations(self) -> list[plain.Given]:
        """The plan's allocations."""
        return self.given


def hindsight_plan(month: Hindsight, world: plain.World, time_limit_s: float) -> HindsightPlan:
    """Solve the hindsight problem in whole units and place its visits.

    The problem is built from the last versions of cases and offers, so each allocation is
    made once both last versions are in force; one that would have to be made after its visit
    or slot began, or after its goods were due, is left out (nobody could have known in time).
    """
    started = time.perf_counter()
    solution = solve_cp_sat(dataclasses.replace(month.problem, time_limit_s=time_limit_s))
    amount = np.zeros(len(month.cands), dtype=np.int64)
    if solution.has_solution:
        amount[month.kept] = solution.amount
    placed = place_volunteer_visits(month.cands, dataclasses.replace(solution, amount=amount),
                                    month.demand, month.supply, {})
    demand, supply, p = month.demand, month.supply, month.cands.pairs
    volunteers = {code: name for name, code in month.vocab.volunteers.items()}
    given = []
    for a in placed:
        d, s = int(p.d[a.arc]), int(p.s[a.arc])
        offer_id, case_id = supply.offer_id[s], demand.case_id[d]
        made = max(world.cases[case_id].at[-1], world.offers[offer_id].at[-1])
        start = None if a.start is None else datetime.fromtimestamp(a.start, UTC)
        end = None if a.end is None else datetime.fromtimestamp(a.end, UTC)
        kind = Kind(int(supply.kind[s]))
        if kind == Kind.GOODS and start is not None:
            start = max(start, made)
        if start is not None and (made > start or (end is not None and start > end)):
            continue
        given.append(plain.Given(
            case_id=case_id, item_id=demand.item_id[d], offer_id=offer_id,
            kind=kind.name.lower(), amount=float(a.amount), made_at=made,
            slot=int(supply.slot[s]) if kind == Kind.SERVICE else None, start=start, end=end,
            volunteer_id=volunteers.get(int(supply.volunteer[s])) if kind == Kind.VOLUNTEER
            else None))
    return HindsightPlan(f"hindsight plan ({solution.status.value})", given,
                         time.perf_counter() - started)


def _restricted(problem: Problem, arcs: np.ndarray) -> Problem:
    """The problem with only some arcs (needs and offers kept, so indices stay valid)."""
    assert problem.arc_capacity is not None
    return Problem(
        need_ids=problem.need_ids, demand=problem.demand, splittable=problem.splittable,
        required=problem.required, offer_ids=problem.offer_ids, capacity=problem.capacity,
        arc_need=problem.arc_need[arcs], arc_offer=problem.arc_offer[arcs],
        arc_utility=problem.arc_utility[arcs], arc_use=problem.arc_use[arcs],
        arc_capacity=problem.arc_capacity[arcs], time_limit_s=problem.time_limit_s,
        offer_group=problem.offer_group, group_capacity=problem.group_capacity,
    )


# --------------------------------------------------------------------------- report


def judged(month: Month) -> list[plain.Outcome]:
    """Every policy's allocations judged by the plain judge, over the same world."""
    return [plain.judge(side.name, month.world, side.allocations(), month.end)
            for side in month.sides]


def table(outcomes: Sequence[plain.Outcome], bound: Bound,
          sides: Sequence[EngineSide | GreedySide | HindsightPlan]) -> str:
    """The comparison as a Markdown table, and the violations each policy made."""
    kinds = sorted({kind for outcome in outcomes for kind in outcome.by_kind})
    lines = [
        "| | priority-weighted fulfilment | " + " | ".join(kinds)
        + " | urgent in full by deadline | items in full | allocations | mean km "
        "| expiring goods unused | grids < 50 % | grid Gini | continuity | violations "
        "| seconds matching |",
        "|---|---:|" + "---:|" * len(kinds) + "---:|" * 10,
    ]
    for outcome, side in zip(outcomes, sides, strict=True):
        violations = sum(outcome.violations.values())
        lines.append(
            f"| {outcome.name} | {outcome.fulfilment:.1%} | "
            + " | ".join(f"{outcome.by_kind.get(kind, 0):.1%}" for kind in kinds)
            + f" | {outcome.urgent_in_full:.1%} | {outcome.items_in_full:.1%} "
            f"| {outcome.allocations} | {outcome.mean_km:.2f} "
            f"| {outcome.expiring_goods_unused:.1%} | {outcome.grids_left_behind:.1%} "
            f"| {outcome.grid_gini:.3f} | {outcome.continuity:.1%} | {violations} "
            f"| {side.seconds:.0f} |")
    lines.append(
        f"| hindsight LP bound | {bound.fulfilment:.1%} | "
        + " | ".join(f"{bound.by_kind.get(kind, 0):.1%}" for kind in kinds)
        + " |" + " |" * 10)
    broken = [f"{o.name}: " + ", ".join(f"{k} {v}" for k, v in o.violations.items())
              for o in outcomes if o.violations]
    return "\n".join(lines) + "\n" + ("\nViolations: " + "; ".join(broken) + "\n"
                                      if broken else "\nViolations: none.\n")


def summary(month: Month, bound: Bound) -> str:
    """A few lines on the run, the bound and the engine's own per-batch gap."""
    engine = month.engine
    gap = ((engine.solver_bound - engine.objective) / engine.solver_bound
           if engine.solver_bound else 0.0)
    statuses = ", ".join(f"{status} {n}" for status, n in sorted(engine.statuses.items()))
    return (
        f"{month.events} events applied ({month.refused} refused by the engine and skipped); "
        f"{engine.batches} engine batches ({statuses}); summed over batches the engine's plan "
        f"is within {gap:.2%} of its solver's proven bound. Hindsight LP: {bound.needs} items, "
        f"{bound.offers} supply units, {bound.arcs:,} arcs, {bound.seconds:.0f} s.\n"
    )


def main(argv: Iterable[str] | None = None) -> None:
    """Parse arguments, run the month, print (and optionally write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--scale", type=float, default=0.4,
                        help="share of the simulator's default day (600 cases, 630 offers)")
    parser.add_argument("--every", type=int, default=50,
                        help="match after this many applied events")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--folder", type=Path, default=Path("benchmarks/out/quality"))
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--no-nightly", action="store_true",
                        help="leave out the engine with the nightly rebalance")
    parser.add_argument("--plan-seconds", type=float, default=120.0,
                        help="CP-SAT time for the hindsight plan (0 leaves it out)")
    parser.add_argument("--reach-mix", action="store_true",
                        help="partners state their reach (the simulator's realistic mix)")
    parser.add_argument("--reserve-share", type=float, default=None,
                        help="also run an engine keeping capacity for urgent cases expected "
                             "soon at this share of a real case's value (0: nothing kept)")
    parser.add_argument("--reserve-urgency", type=int, default=Reserve.min_urgency,
                        help="with --reserve-share: how urgent an expected case is (1-5)")
    parser.add_argument("--reserve-lookahead-h", type=float, default=Reserve.lookahead_h,
                        help="with --reserve-share: cases expected within this many hours")
    parser.add_argument("--reserve-days-back", type=int, default=Reserve.days_back,
                        help="with --reserve-share: the forecast repeats this many days ago")
    args = parser.parse_args(None if argv is None else list(argv))
    reserve = Reserve(share=args.reserve_share, min_urgency=args.reserve_urgency,
                      lookahead_h=args.reserve_lookahead_h, days_back=args.reserve_days_back
                      ) if args.reserve_share is not None else None

    args.folder.mkdir(parents=True, exist_ok=True)
    month = run_month(args.folder, days=args.days, scale=args.scale, every=args.every,
                      seed=args.seed, nightly=not args.no_nightly, reach_mix=args.reach_mix,
                      reserve=reserve)
    log("judging every policy")
    outcomes = judged(month)
    log("computing the hindsight LP bound")
    known = hindsight(state_at_end(month.engine.engine.db, month.end), month.published,
                      month.start)
    bound = hindsight_bound({}, month.published, month.start, known)
    sides: list[EngineSide | GreedySide | HindsightPlan] = [*month.sides]
    if args.plan_seconds > 0:
        log(f"solving the hindsight plan (CP-SAT, {args.plan_seconds:.0f} s)")
        plan = hindsight_plan(known, month.world, args.plan_seconds)
        outcomes.append(plain.judge(plan.name, month.world, plan.given, month.end))
        sides.append(plan)
    text = table(outcomes, bound, sides) + "\n" + summary(month, bound)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
