"""Nightly rebalancing on a simulated district month: gain over continuous matching, churn,
run time; side by side with a rebalance that ignores stability (penalty 0, no move cap).

The month is fed event by event to an engine (no broker: the service layer directly) with
continuous matching every few hundred events and coordinators approving part of each day's
proposals. Every night at 02:00 the district is rebalanced with the production settings
(change penalty, move cap) and the month goes on from there; on a copy of the same database
the stability-blind rebalance is run for comparison. `--scale` instead times one rebalance
of a single large simulated day.

Run from the repository root:

    .venv/bin/python benchmarks/rebalance_month.py --days 7 --markdown benchmarks/out/rebalance.md
    .venv/bin/python benchmarks/rebalance_month.py --scale 20000
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from matcher.domain.errors import DomainError
from matcher.services.engine import MatchingEngine
from matcher.services.matching import MatchingConfig
from matcher.services.rebalance_inputs import RebalanceConfig, read_snapshot
from matcher.services.rebalance_plan import plan_shard
from matcher.services.rebalancing import RunOptions, rebalance
from matcher.simulator import (
    Event,
    build_district,
    registry_events,
    simulate_day,
    simulate_month,
)
from matcher.storage.database import migrate, open_engine
from matcher.storage.store import unit_of_work
from matcher.storage.tables import proposals
from schemas.common import Level
from schemas.matches import ProposalStatus
from schemas.topics import Topics

ZONE = ZoneInfo("Asia/Shanghai")
TOPICS = Topics("bench")
MATCH_EVERY = 300  # events between continuous matching batches (about a batch window's worth)
APPROVE_SHARE = 0.6  # of a day's pending proposals, approved by coordinators by the evening


class Clock:
    """The simulated wall clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Night:
    """One night's rebalance under one policy."""

    day: date
    pending: int
    new: int
    moved: int
    revoked: int  # revoked so the capacity serves others (not: became impossible)
    impossible: int  # pending proposals revoked and approved ones released as impossible
    gain: float
    before: float
    seconds: float

    @property
    def churn(self) -> float:
        """Share of pending proposals moved or revoked."""
        return (self.moved + self.revoked) / self.pending if self.pending else 0.0


def open_db(path: Path) -> Engine:
    """A migrated SQLite database at path."""
    db = open_engine(f"sqlite:///{path}")
    migrate(db)
    return db


def engine_on(db: Engine, clock: Clock, time_limit_s: float) -> MatchingEngine:
    """An engine matching the whole district as one shard."""
    return MatchingEngine(db=db, topics=TOPICS, shard_level=Level.CENTRE, clock=clock,
                          matching=MatchingConfig(topics=TOPICS, time_limit_s=time_limit_s))


def options(penalty: float, max_moves: int | None, time_limit_s: float) -> RunOptions:
    """Run options of one policy."""
    return RunOptions(trigger="bench", requested_by="bench", config=RebalanceConfig(
        matching=MatchingConfig(topics=TOPICS, time_limit_s=time_limit_s),
        change_penalty=penalty, max_moves=max_moves))


def feed_day(engine: MatchingEngine, clock: Clock, events: list[Event], rng: random.Random,
             match_every: int = MATCH_EVERY) -> None:
    """Apply a day's events in time order, matching every `match_every` events, then approve."""
    for number, event in enumerate(events, start=1):
        clock.now = max(clock.now, event.occurred_at.astimezone(UTC))
        with contextlib.suppress(DomainError):  # the simulator sends some refusable events
            engine.ingest(event, topic="bench")
        if number % match_every == 0:
            for shard in engine.due_shards(0.0):
                engine.match_shard(shard)
    for shard in engine.due_shards(0.0):
        engine.match_shard(shard)
    approve_some(engine, rng)


def approve_some(engine: MatchingEngine, rng: random.Random) -> None:
    """Coordinators approve part of what is pending (the rest waits for tomorrow)."""
    now = engine.clock()
    with unit_of_work(engine.db) as store:
        pending = store.proposals_where(proposals.c.status == ProposalStatus.PROPOSED.value)
        # Proposal ids are random: the draws go by what a proposal is, so runs repeat.
        for p in sorted(pending, key=lambda p: (p.created_at, p.case_id, p.item_id, p.offer_id,
                                                -1 if p.slot is None else p.slot)):
            if rng.random() < APPROVE_SHARE:
                store.set_proposal_status(p.proposal_id, ProposalStatus.APPROVED, at=now, by="c")


def pending_count(db: Engine) -> int:
    """Pending proposals."""
    with unit_of_work(db) as store:
        return store.count_proposals(ProposalStatus.PROPOSED)


def night(engine: MatchingEngine, opts: RunOptions, day: date) -> Night:
    """Rebalance once and measure it."""
    pending = pending_count(engine.db)
    started = time.perf_counter()
    s = rebalance(engine, opts)
    displaced = sum(1 for c in s.changes if c.reason_code == "capacity_reallocated")
    return Night(day, pending, s.new, s.moved, displaced, s.revoked - displaced + s.released,
                 s.objective_after - s.objective_before, s.objective_before,
                 time.perf_counter() - started)


def run_month(days: int, cases: int, seed: int, penalty: float, max_moves: int | None,
              time_limit_s: float) -> tuple[list[Night], list[Night]]:
    """The month with nightly stable rebalancing, and the stability-blind one beside it."""
    district = build_district(seed=seed)
    start = date(2030, 6, 3)
    folder = Path(tempfile.mkdtemp(prefix="rebalance-bench-"))
    try:
        clock = Clock(datetime(2030, 6, 2, tzinfo=UTC))
        db = open_db(folder / "month.db")
        engine = engine_on(db, clock, time_limit_s)
        for event in registry_events(district, clock.now):
            engine.ingest(event, topic="bench")
        rng = random.Random(seed)
        stable: list[Night] = []
        blind: list[Night] = []
        scale = cases / 600
        for offset, events in enumerate(simulate_month(
                district, start, days=days, seed=seed, cases=cases,
                volunteer_offers=round(400 * scale), goods_offers=round(150 * scale),
                service_offers=round(80 * scale))):
            day = start + timedelta(days=offset)
            feed_day(engine, clock, events, rng)
            clock.now = datetime.combine(day + timedelta(days=1), clock_time(2, 0),
                                         ZONE).astimezone(UTC)
            copy = folder / "blind.db"
            db.dispose()
            shutil.copy(folder / "month.db", copy)
            blind_engine = engine_on(open_engine(f"sqlite:///{copy}"), clock, time_limit_s)
            blind.append(night(blind_engine, options(0.0, None, time_limit_s), day))
            blind_engine.db.dispose()
            stable.append(night(engine, options(penalty, max_moves, time_limit_s), day))
            print(f"{day}: stable {stable[-1]}\n{'':12}blind  {blind[-1]}", file=sys.stderr)
        return stable, blind
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_scale(cases: int, offers: int, seed: int, time_limit_s: float) -> str:
    """Time one rebalance plan of one large simulated day (matched continuously first)."""
    district = build_district(seed=seed)
    day = date(2030, 6, 3)
    folder = Path(tempfile.mkdtemp(prefix="rebalance-scale-"))
    try:
        clock = Clock(datetime(2030, 6, 2, tzinfo=UTC))
        engine = engine_on(open_db(folder / "scale.db"), clock, time_limit_s)
        for event in registry_events(district, clock.now):
            engine.ingest(event, topic="bench")
        began = time.perf_counter()
        events = simulate_day(district, day, seed=seed, cases=cases,
                              volunteer_offers=offers * 400 // 630,
                              goods_offers=offers * 150 // 630, service_offers=offers * 80 // 630)
        # One continuous batch at the end of the day: at this size the day's batches are
        # not what is measured.
        feed_day(engine, clock, events, random.Random(seed), match_every=len(events) + 1)
        fed = time.perf_counter() - began
        clock.now = datetime.combine(day + timedelta(days=1), clock_time(2, 0), ZONE
                                     ).astimezone(UTC)
        with unit_of_work(engine.db) as store:
            t0 = time.perf_counter()
            snapshot = read_snapshot(store, "centre", clock.now)
            read_s = time.perf_counter() - t0
        lines = []
        for name, opts in (("stable", options(10.0, 200, time_limit_s)),
                           ("blind", options(0.0, None, time_limit_s))):
            t0 = time.perf_counter()
            plan = plan_shard(snapshot, opts.config, clock.now, opts.config.max_moves)
            lines.append(f"{name}: {len(plan.demand)} open items x {len(plan.supply)} supply "
                         f"units, {len(plan.cands)} arcs, {plan.solution.method} "
                         f"{plan.solution.status}, plan {time.perf_counter() - t0:.1f} s "
                         f"(snapshot read {read_s:.1f} s), {plan.moves} moves, "
                         f"{len(plan.new)} new")
        return (f"day of {cases} cases / {offers} offers fed and matched in {fed:.0f} s\n"
                + "\n".join(lines))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def table(stable: list[Night], blind: list[Night]) -> str:
    """Markdown: per night and in total, both policies side by side."""
    rows = ["| night | pending | impossible | stable: gain | moved+revoked | churn | s | "
            "blind: gain | moved+revoked | churn | s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for a, b in zip(stable, blind, strict=True):
        rows.append(f"| {a.day} | {a.pending} | {a.impossible} | {a.gain:+.1f} | "
                    f"{a.moved + a.revoked} | "
                    f"{a.churn:.1%} | {a.seconds:.1f} | {b.gain:+.1f} | {b.moved + b.revoked} | "
                    f"{b.churn:.1%} | {b.seconds:.1f} |")

    def total(nights: list[Night]) -> tuple[float, float, float, float]:
        gain = sum(n.gain for n in nights)
        base = sum(n.before for n in nights)
        churn = sum(n.moved + n.revoked for n in nights) / max(1, sum(n.pending for n in nights))
        return gain, gain / base if base else 0.0, churn, statistics.mean(n.seconds
                                                                            for n in nights)

    sg, sr, sc, ss = total(stable)
    bg, br, bc, bs = total(blind)
    rows.append(f"| **month** | | | {sg:+.1f} ({sr:+.1%}) | | {sc:.1%} | {ss:.1f} | "
                f"{bg:+.1f} ({br:+.1%}) | | {bc:.1%} | {bs:.1f} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    """Parse arguments, run, print (and optionally write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--cases", type=int, default=300, help="cases per weekday")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--penalty", type=float, default=10.0)
    parser.add_argument("--max-moves", type=int, default=200)
    parser.add_argument("--time-limit", type=float, default=20.0)
    parser.add_argument("--scale", type=int, default=0,
                        help="instead: time one rebalance of a day with this many cases")
    parser.add_argument("--offers", type=int, default=0, help="offers of the --scale day")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    if args.scale:
        print(run_scale(args.scale, args.offers or args.scale // 2, args.seed, args.time_limit))
        return
    stable, blind = run_month(args.days, args.cases, args.seed, args.penalty, args.max_moves,
                              args.time_limit)
    text = table(stable, blind)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
