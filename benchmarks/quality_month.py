"""Quality on a simulated district month: the engine against first-come-first-served greedy.

Run from the repository root (about 5 minutes on 2 cores):

    .venv/bin/python benchmarks/quality_month.py --markdown benchmarks/out/quality.md

One event stream (`simulate_month`, seeded) is applied to two fresh SQLite files through
`MatchingEngine.ingest`, event by event, side by side. Every `--every` applied events (and
at the end of each day) each side matches its dirty shards: one with the engine's batch
(`match_shard`), one with the greedy baseline (`baselines.greedy_batch`) on the same state,
rules and scores. Proposals stay pending: a pending proposal already holds the offer's
capacity and serves the item, exactly as an approved one would, and every revocation
(offer updated or withdrawn, case updated or closed) hits both sides alike. Progress goes to
stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from baselines import greedy_batch
from sqlalchemy import Engine, event

from matcher.domain.allocation import build_problem
from matcher.domain.candidates import generate
from matcher.domain.errors import DomainError
from matcher.domain.frames import SOLVER_SCALE, Vocabulary, build_demand, build_supply
from matcher.domain.pairs import haversine_km
from matcher.domain.scoring import ScoringContext, Weights
from matcher.services.engine import MatchingEngine
from matcher.services.matching import MatchingConfig
from matcher.simulator import build_district, registry_events, simulate_month
from matcher.simulator.day import Event
from matcher.solver import Problem, relaxation_bound
from matcher.storage.database import migrate, open_engine
from matcher.storage.store import HOLDING, unit_of_work
from matcher.storage.tables import proposals
from schemas import OfferPublished
from schemas.topics import Topics

START = date(2025, 3, 3)
# The simulator's weekday baseline of a district day, scaled by --scale.
DAY_COUNTS = {"cases": 600, "volunteer_offers": 400, "goods_offers": 150, "service_offers": 80}
# A grid counts as left behind below this priority-weighted fulfilment.
LEFT_BEHIND = 0.5
HOLDING_STATUSES = [status.value for status in HOLDING]


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def priority(urgency: Any, vulnerability: Any) -> Any:
    """How much serving an item matters: urgency (1..5) x vulnerability (1..5), 1..25."""
    return urgency * vulnerability


# --------------------------------------------------------------------------- the month


@dataclass
class Side:
    """One way of matching, fed the same events as the others."""

    name: str
    engine: MatchingEngine
    match: Callable[[MatchingEngine, str, datetime], Any]
    batches: int = 0
    seconds: list[float] = field(default_factory=list)
    proposals: int = 0
    objective: float = 0.0
    solver_bound: float = 0.0
    statuses: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def engine_match(engine: MatchingEngine, shard: str, now: datetime) -> Any:
    """The engine's own batch."""
    return engine.match_shard(shard)


def greedy_match(engine: MatchingEngine, shard: str, now: datetime) -> Any:
    """The baseline's batch, in the engine's write transaction, with the engine's weights."""
    assert engine.matching is not None
    with engine.writing() as store:
        return greedy_batch(store, shard, now, weights=engine.matching.weights,
                            k=engine.matching.candidates_per_item)


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
    """What the run leaves behind: each side's database and counters, and offer publication."""

    sides: list[Side]
    published: dict[str, datetime]
    events: int
    refused: int
    start: datetime


def run_month(folder: Path, *, days: int, scale: float, every: int, seed: int,
              weights: Weights | None = None) -> Month:
    """Feed a simulated month to every side, matching as continuous matching would."""
    district = build_district(seed=seed)
    start = datetime(START.year, START.month, START.day, tzinfo=UTC)
    clock = Clock(start - timedelta(days=1))
    topics = Topics("bench")
    config = MatchingConfig(topics=topics, weights=weights or Weights())
    sides = [
        Side("engine", MatchingEngine(db=open_database(folder / "engine.db"), topics=topics,
                                      matching=config, clock=clock), engine_match),
        Side("greedy (FCFS)", MatchingEngine(db=open_database(folder / "greedy.db"),
                                             topics=topics, matching=config, clock=clock),
             greedy_match),
    ]
    for registration in registry_events(district, clock.now):
        for side in sides:
            side.engine.ingest(registration, topic=topics.registry)
    counts = {name: max(1, round(value * scale)) for name, value in DAY_COUNTS.items()}
    published: dict[str, datetime] = {}
    applied = refused = 0
    started = time.perf_counter()
    for number, day_events in enumerate(simulate_month(district, START, days=days, seed=seed,
                                                       **counts), start=1):
        for incoming in day_events:
            clock.now = incoming.occurred_at
            if isinstance(incoming, OfferPublished):
                published.setdefault(incoming.payload.offer_id, incoming.occurred_at)
            refused += sum(not _apply(side, incoming) for side in sides)
            applied += 1
            if applied % every == 0:
                _match_due(sides, clock.now)
        _match_due(sides, clock.now)
        log(f"day {number}/{days}: {applied} events, "
            + ", ".join(f"{s.name} {s.batches} batches {sum(s.seconds):.0f}s" for s in sides)
            + f" ({time.perf_counter() - started:.0f}s)")
    return Month(sides, published, applied, refused, start)


def _apply(side: Side, incoming: Event) -> bool:
    """Apply one event to one side; False when refused (the same event is refused by all)."""
    try:
        side.engine.ingest(incoming, topic="bench.simulated")
    except DomainError:
        return False
    return True


def _match_due(sides: Sequence[Side], now: datetime) -> None:
    """Run a batch for every dirty shard of every side, timing each."""
    for side in sides:
        for shard in side.engine.due_shards(0):
            started = time.perf_counter()
            report = side.match(side.engine, shard, now)
            side.seconds.append(time.perf_counter() - started)
            side.batches += 1
            if isinstance(report, int):
                side.proposals += report
            else:
                side.proposals += report.proposals
                side.statuses[report.status] += 1
                if math.isfinite(report.objective) and math.isfinite(report.bound):
                    side.objective += report.objective
                    side.solver_bound += report.bound


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Quality:
    """The month's outcome for one side."""

    name: str
    fulfilment: float  # sum(priority x share served) / sum(priority)
    items_served: float  # share of items served in full
    proposals: int
    mean_km: float
    total_km: float
    grids_left_behind: float  # share of grids below LEFT_BEHIND
    gini: float
    min_over_mean: float
    by_kind: dict[str, float]


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: all equal)."""
    if len(values) == 0 or values.sum() == 0:
        return 0.0
    ordered = np.sort(values)
    n = len(ordered)
    return float((2 * np.arange(1, n + 1) - n - 1) @ ordered / (n * ordered.sum()))


def state_at_end(db: Engine) -> dict[str, Any]:
    """Live items, what holding proposals serve, holding proposals, offers and nodes."""
    with unit_of_work(db) as store:
        return {
            "items": store.open_items(),
            "served": store.served_by_item(),
            "proposals": store.proposals_where(proposals.c.status.in_(HOLDING_STATUSES)),
            "offers": store.active_offers(),
            "nodes": {node.node_id: node for node in store.all_nodes()},
        }


def measure(name: str, state: dict[str, Any]) -> Quality:
    """Priority-weighted fulfilment, travel and fairness across grids, from the end state."""
    items, served = state["items"], state["served"]
    weight = np.asarray([priority(i["urgency"], i["beneficiary"]["vulnerability"])
                         for i in items], dtype=np.float64)
    share = np.asarray([min(1.0, served.get((i["case_id"], i["item_id"]), 0.0) / i["quantity"])
                        for i in items], dtype=np.float64)
    by_grid: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    by_kind: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for item, w, s in zip(items, weight.tolist(), share.tolist(), strict=True):
        for table, key in ((by_grid, item["grid_id"]), (by_kind, item["kind"])):
            table[key][0] += w * s
            table[key][1] += w
    grid = np.asarray([done / total for done, total in by_grid.values()])
    km = travel_km(state)
    return Quality(
        name=name, fulfilment=float(weight @ share / weight.sum()),
        items_served=float(np.mean(share >= 1.0 - 1e-9)), proposals=len(state["proposals"]),
        mean_km=float(km.mean()) if len(km) else math.nan, total_km=float(km.sum()),
        grids_left_behind=float(np.mean(grid < LEFT_BEHIND)), gini=gini(grid),
        min_over_mean=float(grid.min() / grid.mean()) if grid.mean() > 0 else 0.0,
        by_kind={kind: done / total for kind, (done, total) in sorted(by_kind.items())},
    )


def travel_km(state: dict[str, Any]) -> np.ndarray:
    """Distance between beneficiary and offer of each holding proposal where both are known."""
    vocab = Vocabulary()
    demand = build_demand(state["items"], {}, state["nodes"], vocab)
    supply = build_supply([{"offer_id": o.offer_id, "payload": o.payload}
                           for o in state["offers"]], {}, state["nodes"], vocab)
    row_of_offer: dict[str, int] = {}
    for row, offer_id in enumerate(supply.offer_id):
        row_of_offer.setdefault(offer_id, row)
    pairs = [(demand.row_of_item[(p.case_id, p.item_id)], row_of_offer[p.offer_id])
             for p in state["proposals"]
             if (p.case_id, p.item_id) in demand.row_of_item and p.offer_id in row_of_offer]
    if not pairs:
        return np.zeros(0)
    d, s = (np.asarray(column, dtype=np.int64) for column in zip(*pairs, strict=True))
    km = haversine_km(demand.lat[d], demand.lon[d], supply.lat[s], supply.lon[s])
    return km[np.isfinite(km)]


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


def hindsight_problem(state: dict[str, Any], published: dict[str, datetime],
                      start: datetime) -> tuple[Problem, np.ndarray, list[str]]:
    """The whole month as one problem, known in advance: every live item, every live offer at
    full capacity, every pair the hard rules allow (from the month's start, so no deadline
    has passed) between an offer and an item it coexisted with (published before the item's
    deadline), a volunteer's hours per ISO week shared by all their offers as the engine
    counts them. Utility is priority per whole item, so the optimum is priority-weighted
    fulfilment. Returns the problem, each need's priority and each need's kind.
    """
    vocab = Vocabulary()
    demand = build_demand(state["items"], {}, state["nodes"], vocab)
    supply = build_supply([{"offer_id": o.offer_id, "payload": o.payload}
                           for o in state["offers"]], {}, state["nodes"], vocab)
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
    return problem, weight, kinds


def hindsight_bound(state: dict[str, Any], published: dict[str, datetime],
                    start: datetime) -> Bound:
    """`relaxation_bound` of the hindsight problem, as a share of all priority."""
    started = time.perf_counter()
    problem, weight, kinds = hindsight_problem(state, published, start)
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


def table(results: Sequence[Quality], bound: Bound, sides: Sequence[Side]) -> str:
    """The comparison as a Markdown table."""
    kinds = sorted({kind for q in results for kind in q.by_kind})
    lines = [
        "| | priority-weighted fulfilment | " + " | ".join(kinds)
        + " | items served in full | proposals | mean km | total km | grids < 50 % "
        "| grid Gini | grid min / mean | batch s (mean / max) |",
        "|---|---:|" + "---:|" * len(kinds) + "---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for quality, side in zip(results, sides, strict=True):
        lines.append(
            f"| {quality.name} | {quality.fulfilment:.1%} | "
            + " | ".join(f"{quality.by_kind.get(kind, 0):.1%}" for kind in kinds)
            + f" | {quality.items_served:.1%} | {quality.proposals} | {quality.mean_km:.2f} "
            f"| {quality.total_km:,.0f} | {quality.grids_left_behind:.1%} | {quality.gini:.3f} "
            f"| {quality.min_over_mean:.2f} "
            f"| {np.mean(side.seconds):.2f} / {np.max(side.seconds):.2f} |")
    lines.append(
        f"| hindsight LP bound | {bound.fulfilment:.1%} | "
        + " | ".join(f"{bound.by_kind.get(kind, 0):.1%}" for kind in kinds)
        + " | | | | | | | | |")
    return "\n".join(lines) + "\n"


def summary(month: Month, bound: Bound) -> str:
    """A few lines on the run, the bound and the engine's own per-batch gap."""
    engine = month.sides[0]
    gap = ((engine.solver_bound - engine.objective) / engine.solver_bound
           if engine.solver_bound else 0.0)
    statuses = ", ".join(f"{status} {n}" for status, n in sorted(engine.statuses.items()))
    return (
        f"{month.events} events applied to each side ({month.refused} refusals in all); "
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
                        help="match dirty shards after this many applied events")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--folder", type=Path, default=Path("benchmarks/out/quality"))
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(None if argv is None else list(argv))

    args.folder.mkdir(parents=True, exist_ok=True)
    month = run_month(args.folder, days=args.days, scale=args.scale, every=args.every,
                      seed=args.seed)
    states = [state_at_end(side.engine.db) for side in month.sides]
    results = [measure(side.name, state) for side, state in zip(month.sides, states,
                                                                strict=True)]
    log("computing the hindsight LP bound")
    bound = hindsight_bound(states[0], month.published, month.start)
    text = table(results, bound, month.sides) + "\n" + summary(month, bound)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
