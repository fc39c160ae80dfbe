"""Speed of matching: one continuous batch (~50k arcs) and a district-wide batch (100k x 50k).

Run from the repository root (about 3 minutes on 2 cores):

    .venv/bin/python benchmarks/speed.py --markdown benchmarks/out/speed.md

The state is the simulator's: a district of 21 workstations, and a week of its offers and
cases (final versions, withdrawn offers and closed cases left out), bulk-inserted into a fresh
SQLite file with SQLAlchemy Core executemany. Progress goes to stderr, tables to stdout.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import resource
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from ortools.graph.python import min_cost_flow
from sqlalchemy import Engine, insert

from matcher.domain.allocation import build_problem
from matcher.domain.candidates import generate
from matcher.domain.capacity import item_unit, offer_capacity
from matcher.domain.explain import explanations
from matcher.domain.frames import Demand, Supply, Vocabulary, build_demand, build_supply
from matcher.domain.hierarchy import shard_of
from matcher.domain.scoring import ScoringContext, weight_vector
from matcher.services import matching
from matcher.services.matching import MatchingConfig, run_batch
from matcher.simulator import District, build_district, simulate_day
from matcher.solver import Problem, Solution, solve
from matcher.solver.repair import flow_relaxation
from matcher.storage.database import migrate, open_engine
from matcher.storage.store import Store
from matcher.storage.tables import cases, need_items, nodes, offers, partners
from schemas import (
    Case,
    CaseClosed,
    CaseOpened,
    CaseUpdated,
    Level,
    OfferPublished,
    OfferUpdated,
    OfferWithdrawn,
)
from schemas.topics import Topics

# A district the size of Qijiang's: all 21 streets and towns, 840 grids.
DISTRICT_SHAPE = {"workstations": 21, "studios_per_ws": 5, "grids_per_studio": 8,
                  "partners": 400}
START = date(2025, 3, 3)
# The simulator's weekday mix of offers (volunteer : goods : service) and items per case.
OFFER_MIX = (400, 150, 80)
ITEMS_PER_CASE = 1.83
SHARD = "centre"

AnyOffer = Any  # VolunteerOffer | GoodsOffer | ServiceOffer


def log(message: str) -> None:
    """Progress on stderr, with the process's peak memory so far."""
    print(f"{message} [peak RSS {peak_rss_mb():,.0f} MB]", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """The most memory this process has held so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- synthetic state


@dataclass
class State:
    """Open demand and live supply of a district at one moment, as the wire objects."""

    district: District
    offers: list[AnyOffer]
    cases: list[Case]
    opened_at: dict[str, datetime]
    now: datetime

    @property
    def items(self) -> int:
        return sum(len(case.items) for case in self.cases)


def synthetic_state(*, items: int, offers: int, days: int, seed: int = 7,
                    district: District | None = None) -> State:
    """`days` simulated days of a district holding about `items` open items and `offers` offers.

    Each day is the simulator's day at the counts that reach the targets; the state keeps the
    last version of every offer and case, without withdrawn offers and closed cases. Matching
    runs at 05:00 of the first day, so every window lies ahead; cases count as opened a week
    before their simulated opening, so they have all waited a little.
    """
    district = district or build_district(seed=seed, **DISTRICT_SHAPE)
    per_day_cases = max(1, round(items / ITEMS_PER_CASE / days))
    mix = np.asarray(OFFER_MIX, dtype=np.float64) / sum(OFFER_MIX)
    volunteer, goods, service = (max(1, round(offers * share / days)) for share in mix)
    live_offers: dict[str, AnyOffer] = {}
    live_cases: dict[str, Case] = {}
    opened_at: dict[str, datetime] = {}
    for offset in range(days):
        events = simulate_day(district, START + timedelta(days=offset), seed=seed,
                              cases=per_day_cases, volunteer_offers=volunteer,
                              goods_offers=goods, service_offers=service)
        for event in events:
            if isinstance(event, OfferPublished | OfferUpdated):
                live_offers[event.payload.offer_id] = event.payload
            elif isinstance(event, OfferWithdrawn):
                live_offers.pop(event.payload.offer_id, None)
            elif isinstance(event, CaseOpened | CaseUpdated):
                live_cases[event.payload.case_id] = event.payload
                opened_at.setdefault(event.payload.case_id,
                                     event.occurred_at - timedelta(days=7))
            elif isinstance(event, CaseClosed):
                live_cases.pop(event.payload.case_id, None)
    now = datetime(START.year, START.month, START.day, 5, tzinfo=UTC)
    return State(district, list(live_offers.values()), list(live_cases.values()), opened_at,
                 now)


def node_paths(district: District) -> dict[str, str]:
    """Materialised path of every node ('/centre/ws/studio/grid/')."""
    paths: dict[str, str] = {}
    for node in district.nodes:  # parents come before their children
        parent = paths[node.parent_id] if node.parent_id else "/"
        paths[node.node_id] = f"{parent}{node.node_id}/"
    return paths


def state_rows(state: State) -> dict[str, list[dict[str, Any]]]:
    """Rows of every table, as the ingest handlers would have written them."""
    paths = node_paths(state.district)
    at = state.now - timedelta(days=8)
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for node in state.district.nodes:
        location = node.location
        rows["nodes"].append({
            "node_id": node.node_id, "level": node.level.value, "parent_id": node.parent_id,
            "name": node.name, "path": paths[node.node_id],
            "lat": location.lat if location else None, "lon": location.lon if location else None,
        })
    for partner in state.district.partners:
        rows["partners"].append({
            "partner_id": partner.partner_id, "name": partner.name, "kind": partner.kind.value,
            "home_node_id": partner.home_node_id, "registered_at": at,
        })
    for offer in state.offers:
        capacity, unit = offer_capacity(offer)
        rows["offers"].append({
            "offer_id": offer.offer_id, "partner_id": offer.partner_id, "kind": offer.kind,
            "version": offer.version, "status": "active", "node_id": offer.node_id,
            "shard": shard_of(paths[offer.node_id], Level.CENTRE), "capacity": capacity,
            "unit": unit, "expires_at": getattr(offer, "expires_at", None),
            "payload": offer.model_dump(mode="json"), "updated_at": at,
        })
    for case in state.cases:
        opened = state.opened_at[case.case_id]
        rows["cases"].append({
            "case_id": case.case_id, "grid_id": case.grid_id,
            "shard": shard_of(paths[case.grid_id], Level.CENTRE), "version": case.version,
            "status": "open", "beneficiary": case.beneficiary.model_dump(mode="json"),
            "opened_at": opened, "updated_at": opened,
        })
        for item in case.items:
            rows["need_items"].append({
                "case_id": case.case_id, "item_id": item.item_id, "kind": item.kind.value,
                "need": item.need, "quantity": item.quantity,
                "unit": item_unit(item.kind, item.unit), "window_start": item.window.start,
                "window_end": item.window.end, "deadline": item.deadline,
                "urgency": item.urgency,
                "splittable": item.splittable and item.kind.value != "service",
                "preferences": item.preferences.model_dump(mode="json"), "status": "open",
                "unmatched_code": None, "unmatched_reason": None,
            })
    return rows


def bulk_load(db: Engine, state: State) -> float:
    """Insert the state with one executemany per table; returns the seconds it took."""
    started = time.perf_counter()
    rows = state_rows(state)
    with db.begin() as conn:
        for table in (nodes, partners, offers, cases, need_items):
            if rows[table.name]:
                conn.execute(insert(table), rows[table.name])
    return time.perf_counter() - started


def fresh_database(path: Path) -> Engine:
    """A migrated SQLite file at `path` (replaced if it exists)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = open_engine(f"sqlite:///{path}")
    migrate(db)
    return db


# --------------------------------------------------------------------------- timing


@dataclass
class Phases:
    """Seconds per named phase, in the order they ran: wall clock, and the process's CPU (on
    a machine shared with other jobs, CPU seconds move less with their load)."""

    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    @property
    def total_cpu(self) -> float:
        return sum(self.cpu.values())


@dataclass
class BatchRun:
    """What one timed batch did."""

    items: int
    supply_units: int
    arcs: int
    proposals: int
    unmatched: int
    status: str
    method: str
    solver_build_s: float
    solver_solve_s: float
    objective: float
    bound: float
    phases: Phases
    bare_flow_s: float | None = None  # bare SimpleMinCostFlow of the same arcs, build + solve
    bare_flow_cpu_s: float | None = None


def phased_batch(store: Store, shard: str, config: MatchingConfig, now: datetime,
                 solver: Callable[[Problem], Solution] = solve,
                 compare_bare_flow: bool = False) -> BatchRun:
    """The engine's batch step by step with a timer per phase (the pipeline's own public
    steps, in its order; `solver` may differ)."""
    t = Phases()
    with t.phase("load from store"):
        inputs = matching.read_live_inputs(store, shard, now)
    with t.phase("frames"):
        frames = matching.build_frames(inputs)
    with t.phase("candidates"):
        cands = matching.find_candidates(frames, inputs, config)
    with t.phase("build problem"):
        problem = matching.problem_of(frames, cands, config)
    with t.phase("solve"):
        solution = solver(problem)
    with t.phase("place visits"):
        chosen = matching.place(frames, cands, solution)
    with t.phase("explain"):
        explained = explanations(cands, chosen, frames.supply, weight_vector(config.weights),
                                 solution.status.value,
                                 matching.unplaced_arcs(cands, solution, chosen))
    with t.phase("record proposals"):
        proposals = matching.record_proposals(
            store, shard=shard, allocations=chosen, explained=explained, cands=cands,
            demand=frames.demand, supply=frames.supply, vocab=frames.vocab, config=config,
            now=now)
    with t.phase("record unmatched"):
        unmatched = matching.record_unmatched(store, inputs.items, chosen, cands, frames.demand,
                                              frames.vocab, config, now)
    run = BatchRun(items=len(frames.demand), supply_units=len(frames.supply), arcs=len(cands),
                   proposals=proposals, unmatched=unmatched, status=solution.status.value,
                   method=solution.method, solver_build_s=solution.build_s,
                   solver_solve_s=solution.solve_s, objective=solution.objective,
                   bound=solution.bound, phases=t)
    if compare_bare_flow:
        # The yardstick, timed apart from the phases, once the batch's own data is let go:
        # the batch's peak memory is then the batch's, not the batch's plus the yardstick's.
        relaxation = flow_relaxation(problem)
        del inputs, frames, cands, problem, solution, chosen, explained
        gc.collect()
        cpu = time.process_time()
        build_s, solve_s, _ = raw_min_cost_flow(relaxation)
        run.bare_flow_s, run.bare_flow_cpu_s = build_s + solve_s, time.process_time() - cpu
    return run


# --------------------------------------------------------------------------- solving


@dataclass(frozen=True)
class FlowTimes:
    """A min-cost flow solved twice on the same arrays: the engine's and a bare reference."""

    engine_build_s: float
    engine_solve_s: float
    engine_objective: float
    raw_build_s: float
    raw_solve_s: float
    raw_objective: float


def raw_min_cost_flow(problem: Problem) -> tuple[float, float, float]:
    """Reference: SimpleMinCostFlow built by hand from the same arrays (needs all splittable).

    Network source -> need -> offer -> (volunteer-week group ->) sink plus a free source ->
    sink bypass; costs are -utility x 1000 rounded. Returns (build seconds, solve seconds,
    objective in utility).
    """
    started = time.perf_counter()
    n, m = problem.num_needs, problem.num_offers
    group = (np.full(m, -1, dtype=np.int64) if problem.offer_group is None
             else problem.offer_group.astype(np.int64))
    group_cap = (np.zeros(0, dtype=np.int64) if problem.group_capacity is None
                 else problem.group_capacity.astype(np.int64))
    g = len(group_cap)
    useful = np.flatnonzero(problem.arc_utility > 0)
    need, offer = problem.arc_need[useful], problem.arc_offer[useful]
    cap = (problem.demand[need] if problem.arc_capacity is None
           else np.minimum(problem.arc_capacity[useful], problem.demand[need]))
    total = int(problem.demand.sum())
    source, sink = n + m + g, n + m + g + 1
    flow = min_cost_flow.SimpleMinCostFlow()
    arcs = flow.add_arcs_with_capacity_and_unit_cost(
        np.concatenate([np.full(n, source), need, n + np.arange(m), n + m + np.arange(g),
                        [source]]).astype(np.int32),
        np.concatenate([np.arange(n), n + offer, np.where(group >= 0, n + m + group, sink),
                        np.full(g, sink), [sink]]).astype(np.int32),
        np.concatenate([problem.demand, cap, problem.capacity, group_cap,
                        [total]]).astype(np.int64),
        np.concatenate([np.zeros(n), -np.rint(problem.arc_utility[useful] * 1000),
                        np.zeros(m + g + 1)]).astype(np.int64))
    flow.set_nodes_supplies(np.array([source, sink], dtype=np.int32),
                            np.array([total, -total], dtype=np.int64))
    built = time.perf_counter()
    status = flow.solve()
    solved = time.perf_counter()
    assert status == flow.OPTIMAL, status
    amount = np.asarray(flow.flows(arcs[n:n + len(useful)]), dtype=np.float64)
    objective = float(problem.arc_utility[useful] @ amount)
    return built - started, solved - built, objective


def compare_flow(problem: Problem) -> FlowTimes:
    """The engine's min-cost flow and the bare reference on one flow problem."""
    engine = solve(problem, method="min_cost_flow")
    raw_build, raw_solve, raw_objective = raw_min_cost_flow(problem)
    return FlowTimes(engine.build_s, engine.solve_s, engine.objective, raw_build, raw_solve,
                     raw_objective)


# --------------------------------------------------------------------------- (a) one batch


@dataclass(frozen=True)
class NodePlace:
    """What frames need of a node."""

    path: str
    lat: float | None
    lon: float | None


def frames_of(state: State) -> tuple[Demand, Supply]:
    """Demand and supply frames straight from the state (the store's rows, no database)."""
    rows = state_rows(state)
    places = {r["node_id"]: NodePlace(r["path"], r["lat"], r["lon"]) for r in rows["nodes"]}
    case_of = {c["case_id"]: c for c in rows["cases"]}
    items = [{**item, "grid_id": case_of[item["case_id"]]["grid_id"],
              "beneficiary": case_of[item["case_id"]]["beneficiary"],
              "opened_at": case_of[item["case_id"]]["opened_at"]} for item in rows["need_items"]]
    vocab = Vocabulary()
    demand = build_demand(items, {}, places, vocab)
    supply = build_supply([{"offer_id": o["offer_id"], "payload": o["payload"]}
                           for o in rows["offers"]], {}, places, vocab)
    return demand, supply


@dataclass(frozen=True)
class OneBatch:
    """Timings (medians of repeats) of one batch solved from frames."""

    items: int
    supply_units: int
    arcs: int
    whole_needs: int
    candidates_s: float
    build_problem_s: float
    engine_s: float
    engine_status: str
    engine_method: str
    engine_gap: float
    flow: FlowTimes
    cp_sat_s: float
    cp_sat_gap: float


def _median(runs: Sequence[float]) -> float:
    return float(statistics.median(runs))


def one_batch(state: State, repeats: int = 3) -> OneBatch:
    """Candidates, build + solve as the engine does, its flow relaxation against a bare
    SimpleMinCostFlow, and CP-SAT on the same problem, each `repeats` times."""
    demand, supply = frames_of(state)
    config = MatchingConfig(topics=Topics("bench"))
    now = state.now.timestamp()
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeats):
        started = time.perf_counter()
        cands = generate(demand, supply, now=now, weights=config.weights,
                         context=ScoringContext(), k=config.candidates_per_item)
        times["candidates"].append(time.perf_counter() - started)
    for _ in range(repeats):
        started = time.perf_counter()
        problem = build_problem(demand, supply, cands, time_limit_s=config.time_limit_s,
                                workers=config.workers)
        times["build"].append(time.perf_counter() - started)
        engine = solve(problem)
        times["engine"].append(time.perf_counter() - started)
    flows = [compare_flow(flow_relaxation(problem)) for _ in range(repeats)]
    flow = FlowTimes(*(_median([getattr(f, name) for f in flows])
                       for name in FlowTimes.__dataclass_fields__))
    for _ in range(repeats):
        started = time.perf_counter()
        repaired = solve(problem, method="cp_sat")
        times["cp_sat"].append(time.perf_counter() - started)
    whole = int(np.count_nonzero(~problem.splittable
                                 & (np.bincount(problem.arc_need, minlength=problem.num_needs)
                                    > 0)))
    return OneBatch(
        items=len(demand), supply_units=len(supply), arcs=len(cands), whole_needs=whole,
        candidates_s=_median(times["candidates"]), build_problem_s=_median(times["build"]),
        engine_s=_median(times["engine"]), engine_status=engine.status.value,
        engine_method=engine.method, engine_gap=_gap(engine.objective, flow.engine_objective),
        flow=flow, cp_sat_s=_median(times["cp_sat"]),
        cp_sat_gap=_gap(repaired.objective, flow.engine_objective),
    )


def _gap(objective: float, bound: float) -> float:
    """Relative distance below the bound; inf without a plan."""
    if not (math.isfinite(objective) and math.isfinite(bound)) or bound <= 0:
        return math.inf
    return max(0.0, bound - objective) / bound


def one_batch_table(result: OneBatch) -> str:
    """(a) as Markdown."""
    f = result.flow
    rows = [
        ("candidate generation (join, rules, scores, top 30)", result.candidates_s, ""),
        ("`build_problem`", result.build_problem_s, ""),
        ("`build_problem` + `solve` (engine as is)", result.engine_s,
         f"{result.engine_method}, {result.engine_status}, "
         f"{_pct(result.engine_gap)} below the LP bound"),
        ("`solve(method='min_cost_flow')` of the flow relaxation: build", f.engine_build_s, ""),
        ("… solve", f.engine_solve_s, "objective = the LP bound"),
        ("bare `SimpleMinCostFlow`, same arrays: build", f.raw_build_s, ""),
        ("… solve", f.raw_solve_s,
         "same objective" if abs(f.raw_objective - f.engine_objective)
         <= 1e-6 * max(1.0, abs(f.engine_objective)) else f"objective {f.raw_objective:.1f}"),
        ("CP-SAT on the same problem (the engine's method before flow-then-repair)",
         result.cp_sat_s,
         f"{_pct(result.cp_sat_gap)} below the LP bound"),
    ]
    lines = [f"{result.items:,} items, {result.supply_units:,} supply units, "
             f"{result.arcs:,} candidate arcs, {result.whole_needs:,} whole (unsplittable) items "
             "with arcs.\n", "| step | seconds | note |", "|---|---:|---|"]
    lines += [f"| {step} | {seconds:.3f} | {note} |" for step, seconds, note in rows]
    return "\n".join(lines) + "\n"


def _pct(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.2%}"


# --------------------------------------------------------------------------- (b) district


PHASES = ("load from store", "frames", "candidates", "build problem", "solve", "place visits",
          "explain", "record proposals", "record unmatched")


def timed_in_rollback(db: Engine, work: Callable[[Store], BatchRun]) -> BatchRun:
    """Run a batch in a transaction that is rolled back, so the next run sees the same state."""
    with db.connect() as connection:
        transaction = connection.begin()
        try:
            return work(Store(connection))
        finally:
            transaction.rollback()


def run_batch_total(db: Engine, config: MatchingConfig, now: datetime) -> tuple[float, Any]:
    """The engine's own `run_batch`, end to end, rolled back afterwards."""
    with db.connect() as connection:
        transaction = connection.begin()
        try:
            started = time.perf_counter()
            report = run_batch(Store(connection), SHARD, config, now)
            return time.perf_counter() - started, report
        finally:
            transaction.rollback()


def district_table(rows: Sequence[tuple[str, BatchRun]], load_s: float,
                   run_batch_s: float | None, run_batch_status: str) -> str:
    """(b) as Markdown: one column per way of solving."""
    head = "| phase: wall s (CPU s) | " + " | ".join(name for name, _ in rows) + " |"
    lines = [head, "|---|" + "---:|" * len(rows)]
    for phase in PHASES:
        lines.append(f"| {phase} | " + " | ".join(
            f"{run.phases.seconds.get(phase, 0.0):.2f} ({run.phases.cpu.get(phase, 0.0):.2f})"
            for _, run in rows) + " |")
    lines.append("| **total (state to proposals)** | " + " | ".join(
        f"**{run.phases.total:.2f}** ({run.phases.total_cpu:.2f})" for _, run in rows) + " |")
    for label, value in (
        ("solver's own build / solve",
         lambda r: f"{r.solver_build_s:.2f} / {r.solver_solve_s:.2f}"),
        ("status", lambda r: r.status),
        ("items / supply units", lambda r: f"{r.items:,} / {r.supply_units:,}"),
        ("candidate arcs", lambda r: f"{r.arcs:,}"),
        ("proposals / items left open", lambda r: f"{r.proposals:,} / {r.unmatched:,}"),
        ("below the solver's bound", lambda r: _pct(_gap(r.objective, r.bound))),
    ):
        lines.append(f"| {label} | " + " | ".join(value(run) for _, run in rows) + " |")
    text = "\n".join(lines) + "\n"
    for name, run in rows:
        if run.bare_flow_s and run.bare_flow_cpu_s:
            text += (f"\nA bare `SimpleMinCostFlow` of the same arcs (the flow relaxation, "
                     f"built by hand from the same arrays), timed in the same run: "
                     f"{run.bare_flow_s:.1f} s ({run.bare_flow_cpu_s:.1f} s CPU); {name} end "
                     f"to end is {run.phases.total / run.bare_flow_s:.1f}x that "
                     f"({run.phases.total_cpu / run.bare_flow_cpu_s:.1f}x in CPU).")
    text += f"\nBulk load of the state into SQLite (not part of the batch): {load_s:.1f} s."
    if run_batch_s is not None:
        text += (f" The engine's own `run_batch` on the same state, end to end: "
                 f"{run_batch_s:.1f} s ({run_batch_status}).")
    return text + "\n"


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    """Run (a) and (b), print the tables, optionally write them as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-items", type=int, default=5000,
                        help="(a) items of the continuous batch")
    parser.add_argument("--batch-offers", type=int, default=2500)
    parser.add_argument("--items", type=int, default=100_000, help="(b) district-wide items")
    parser.add_argument("--offers", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=7, help="days of supply and demand in (b)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-district", action="store_true")
    parser.add_argument("--skip-cp-sat", action="store_true",
                        help="do not also time the batch with CP-SAT instead in (b)")
    parser.add_argument("--skip-run-batch", action="store_true",
                        help="do not also time the engine's own run_batch in (b)")
    parser.add_argument("--folder", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(None if argv is None else list(argv))

    log("(a) one continuous batch: simulating its state")
    small = synthetic_state(items=args.batch_items, offers=args.batch_offers, days=2,
                            seed=args.seed, district=build_district(seed=args.seed))
    log(f"(a) {small.items} items, {len(small.offers)} offers: timing")
    text = "### (a) One continuous batch\n\n" + one_batch_table(one_batch(small, args.repeats))
    print(text, flush=True)
    if not args.skip_district:
        text += "\n### (b) District-wide batch\n\n" + district(args)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")


def district_database(path: Path, *, items: int, offers: int, days: int, seed: int
                      ) -> tuple[float, datetime]:
    """Simulate the district's state and bulk-load it into a fresh SQLite file at `path`;
    returns the load's seconds and the moment the batch runs at."""
    state = synthetic_state(items=items, offers=offers, days=days, seed=seed)
    log(f"(b) {state.items} items, {len(state.offers)} offers: bulk-loading SQLite")
    return bulk_load(fresh_database(path), state), state.now


def district(args: argparse.Namespace) -> str:
    """(b): simulate, bulk-load, then time the batch phase by phase, each way."""
    log(f"(b) simulating {args.days} days of a 21-workstation district (in a child process, "
        "so the memory figures are the batch's)")
    args.folder.mkdir(parents=True, exist_ok=True)
    path = args.folder / "speed-district.db"
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        load_s, now = pool.submit(district_database, path, items=args.items,
                                  offers=args.offers, days=args.days, seed=args.seed).result()
    db = open_engine(f"sqlite:///{path}")
    config = MatchingConfig(topics=Topics("bench"))
    rows: list[tuple[str, BatchRun]] = []
    ways = [("engine (flow then repair)", solve, True),
            ("CP-SAT instead", partial(solve, method="cp_sat"), False)]
    for name, solver, bare in ways[:1] if args.skip_cp_sat else ways:
        log(f"(b) timing the batch phase by phase: {name}")
        run = timed_in_rollback(db, partial(phased_batch, shard=SHARD, config=config, now=now,
                                            solver=solver, compare_bare_flow=bare))
        log(f"(b) {name}: {run.phases.total:.1f}s, {run.status}, {run.proposals} proposals")
        rows.append((name, run))
    run_batch_s: float | None = None
    status = ""
    if not args.skip_run_batch:
        log("(b) the engine's own run_batch, end to end")
        run_batch_s, report = run_batch_total(db, config, now)
        status = f"{report.status}, {report.proposals:,} proposals"
    text = district_table(rows, load_s, run_batch_s, status)
    load = os.getloadavg()
    text += (f"\nPeak RSS of the benchmark process: {peak_rss_mb():,.0f} MB; load average "
             f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at the end.\n")
    print(text, flush=True)
    db.dispose()
    return text


if __name__ == "__main__":
    main()
