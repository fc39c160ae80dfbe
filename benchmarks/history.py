"""Per-batch time against the days of history behind it: a batch reads live state, not history.

Run from the repository root (about 3 minutes on 2 cores):

    .venv/bin/python benchmarks/history.py --days 15 --markdown benchmarks/out/history.md

A seeded simulated month is applied day by day to one engine (SQLite, `ingest_batch` in
polls of 500, a matching batch after each poll, on the simulated clock). A synthetic
coordinator approves 70 % of each day's proposals at the end of the day and reports the
approved ones fulfilled once their window is over, so approved and fulfilled matches, closed
and lapsed items and expired offers pile up as they would in a district. At the end of days
1, 5, 10 and 15 (of those run) one probe batch is timed (best of 3), read and planned but
rolled back:

- **live**: the engine's own batch (`read_live_inputs` + `plan_batch`);
- **all history**: the same pipeline fed by the reads a batch made before it read live state
  only (every open item, every active offer, every holding proposal, every promised visit),
  to show what the live reads avoid.

Progress goes to stderr, the table to stdout (and to `--markdown`).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

from sqlalchemy import select, update

from matcher.services.engine import Incoming, MatchingEngine
from matcher.services.matching import LiveInputs, plan_batch, read_live_inputs
from matcher.simulator import build_district, simulate_month
from matcher.simulator.day import registry_events
from matcher.simulator.publish import route
from matcher.storage.database import migrate, open_engine
from matcher.storage.store import Store, snapshot
from matcher.storage.tables import proposals
from schemas.matches import ProposalStatus
from schemas.topics import Topics

SHARD = "centre"
POLL = 500
APPROVE_SHARE = 0.7
PROBE_DAYS = (1, 5, 10, 15)
BEIJING = timedelta(hours=8)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Probe:
    """One timed probe batch at the end of a day."""

    day: int
    history_proposals: int
    live_items: int
    live_offers: int
    all_items: int
    all_offers: int
    arcs: int
    live_read_s: float
    live_total_s: float
    live_solve_s: float
    history_read_s: float
    history_total_s: float


def history_inputs(store: Store, shard: str, now: datetime) -> LiveInputs:
    """The inputs as a batch read them before live state: everything, whatever its age."""
    return LiveInputs(
        shard=shard, now=now, nodes={n.node_id: n for n in store.all_nodes()},
        items=store.open_items(shard), offers=store.active_offers(shard),
        served=store.served_by_item(shard), held=store.held_by_offer(shard),
        busy=store.promised_visits(), history=store.volunteer_history(),
        excluded=store.excluded_pairs(shard))


def timed_probe(engine: MatchingEngine, day: int, now: datetime, repeats: int = 3) -> Probe:
    """Read and plan one batch both ways, recording nothing; each the best of `repeats`."""
    assert engine.matching is not None
    config = engine.matching
    live_runs: list[tuple[float, float, float]] = []
    old_runs: list[tuple[float, float, float]] = []
    with snapshot(engine.db) as store:
        for _ in range(repeats):
            for read, runs in ((lambda: read_live_inputs(store, SHARD, now), live_runs),
                               (lambda: history_inputs(store, SHARD, now), old_runs)):
                started = time.perf_counter()
                inputs = read()
                read_s = time.perf_counter() - started
                plan = plan_batch(inputs, config)
                runs.append((read_s, time.perf_counter() - started, plan.solution.solve_s))
        live = read_live_inputs(store, SHARD, now)
        old = history_inputs(store, SHARD, now)
        arcs = len(plan_batch(live, config).cands)
        held = store.conn.execute(select(proposals.c.proposal_id)).all()
    return Probe(day=day, history_proposals=len(held), live_items=len(live.items),
                 live_offers=len(live.offers), all_items=len(old.items),
                 all_offers=len(old.offers), arcs=arcs,
                 live_read_s=min(r for r, _, _ in live_runs),
                 live_total_s=min(t for _, t, _ in live_runs),
                 live_solve_s=min(s for _, _, s in live_runs),
                 history_read_s=min(r for r, _, _ in old_runs),
                 history_total_s=min(t for _, t, _ in old_runs))


def end_of_day(engine: MatchingEngine, now: datetime, rng: random.Random) -> None:
    """The synthetic coordinator: approve a share of the pending, fulfil what is over."""
    with engine.writing() as store:
        pending = store.conn.execute(select(proposals.c.proposal_id).where(
            proposals.c.status == ProposalStatus.PROPOSED.value)).scalars().all()
        chosen = [p for p in pending if rng.random() < APPROVE_SHARE]
        for chunk in range(0, len(chosen), 500):
            store.conn.execute(update(proposals).where(
                proposals.c.proposal_id.in_(chosen[chunk:chunk + 500])).values(
                status=ProposalStatus.APPROVED.value, decided_at=now, decided_by="bench"))
        store.conn.execute(update(proposals).where(
            proposals.c.status == ProposalStatus.APPROVED.value,
            proposals.c.window_end.is_not(None), proposals.c.window_end < now).values(
            status=ProposalStatus.FULFILLED.value, delivered=proposals.c.amount))


def run(days: int, seed: int, folder: Path) -> list[Probe]:
    """Apply `days` simulated days and probe at the end of the probe days."""
    district = build_district(seed=seed)
    start = date(2026, 12, 7)  # a Monday
    db = open_engine(f"sqlite:///{folder / 'history.db'}")
    migrate(db)
    clock = {"now": datetime.combine(start, clock_time(0), tzinfo=UTC)}
    engine = MatchingEngine(db=db, topics=Topics("history"), clock=lambda: clock["now"])
    engine.ingest_batch([Incoming(e, "registry") for e in
                         registry_events(district, clock["now"] - timedelta(days=1))])
    rng = random.Random(seed)
    probes: list[Probe] = []
    for day, events in enumerate(simulate_month(district, start, days=days, seed=seed), 1):
        began = time.perf_counter()
        for first in range(0, len(events), POLL):
            poll = events[first:first + POLL]
            clock["now"] = max(clock["now"], poll[-1].occurred_at.astimezone(UTC))
            engine.ingest_batch([Incoming(e, route(e).topic) for e in poll])
            if day in PROBE_DAYS and first + POLL >= len(events):
                # The day's last poll is in, not yet matched: a batch with real work to do.
                probe = timed_probe(engine, day, clock["now"])
                probes.append(probe)
                log(f"  probe: {probe.live_items} live items ({probe.all_items} open in all), "
                    f"{probe.arcs} arcs, batch {probe.live_total_s:.2f} s live vs "
                    f"{probe.history_total_s:.2f} s on all history")
            engine.match_shard(SHARD)
        clock["now"] = datetime.combine(start + timedelta(days=day), clock_time(0),
                                        tzinfo=UTC) - BEIJING
        end_of_day(engine, clock["now"], rng)
        log(f"day {day}: {len(events)} events applied and matched in "
            f"{time.perf_counter() - began:.1f} s")
    return probes


def table(probes: list[Probe], load: tuple[float, float, float], when: datetime) -> str:
    """The results as a markdown table."""
    lines = [
        "| day | proposals ever | live items / offers | all open items / active offers | "
        "arcs | live: read / solve / batch (s) | all history: read / batch (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *(f"| {p.day} | {p.history_proposals:,} | {p.live_items:,} / {p.live_offers:,} | "
          f"{p.all_items:,} / {p.all_offers:,} | {p.arcs:,} | {p.live_read_s:.3f} / "
          f"{p.live_solve_s:.3f} / {p.live_total_s:.3f} | {p.history_read_s:.3f} / "
          f"{p.history_total_s:.3f} |" for p in probes),
    ]
    if len(probes) > 1:
        first, last = probes[0], probes[-1]
        lines.append("")
        lines.append(f"Day {last.day} against day {first.day}: live batch "
                     f"{last.live_total_s / first.live_total_s:.2f}x, all-history batch "
                     f"{last.history_total_s / first.history_total_s:.2f}x.")
    lines.append(f"Measured {when:%Y-%m-%d %H:%M} UTC, load average "
                 f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}.")
    return "\n".join(lines) + "\n"


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(list(argv) if argv is not None else None)
    with tempfile.TemporaryDirectory() as folder:
        probes = run(args.days, args.seed, Path(folder))
    text = table(probes, os.getloadavg(), datetime.now(UTC))
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()

