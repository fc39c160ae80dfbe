"""Per-batch time against the days of history behind it: a batch reads live state, not history.

Run from the repository root (about a minute on 2 cores):

    .venv/bin/python benchmarks/history.py --days 15 --markdown benchmarks/out/history.md

A seeded simulated month is applied day by day to one engine (SQLite, `ingest_batch` in
polls of 500, a matching batch after each poll, on the simulated clock). A synthetic
coordinator approves 70 % of each day's proposals at the end of the day and reports the
approved ones fulfilled once their window is over, so approved and fulfilled matches, closed
and lapsed items and expired offers pile up as they would in a district. At the end of days
1, 5, 10 and 15 (of those run) one probe batch is timed (best of 5), read and planned but
rolled back:

- **live**: the engine's own batch (`read_live_inputs` + `plan_batch`);
- **live, warm**: the same, with the row cache the engine keeps between batches (rows whose
  version has not changed are not decoded again): what a running engine pays;
- **archived**: the live batch on a copy of the database from which everything the live
  reads do not need was deleted (closed and lapsed items, expired and withdrawn offers,
  proposals that no longer hold anything live, the audit log and the relayed outbox), after
  checking that the batch reads exactly the same inputs from it: the same state without
  its history, so the live batch's own growth can be told apart from history's;
- **all history**: the same pipeline fed by the reads a batch made before it read live state
  only (every open item, every active offer, every holding proposal, every promised visit),
  to show what the live reads avoid;
- **keeping capacity**: the live batch with the urgent cases expected soon planned beside the
  real ones (last week's, so from day 8 on), as the engine's batches do by default; the other
  probes leave them out, so they compare as they did before.

Progress goes to stderr, the table to stdout (and to `--markdown`).
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

from sqlalchemy import Engine, and_, delete, not_, or_, select, tuple_, update

from matcher.domain.weeks import week_of, week_start
from matcher.services.engine import Incoming, MatchingEngine
from matcher.services.matching import LiveInputs, MatchingConfig, plan_batch, read_live_inputs
from matcher.simulator import build_district, simulate_month
from matcher.simulator.day import registry_events
from matcher.simulator.publish import route
from matcher.storage.database import migrate, open_engine
from matcher.storage.store import HOLDING, LiveRows, Store, snapshot
from matcher.storage.tables import audit_log, cases, need_items, offers, outbox, proposals
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
    warm_total_s: float
    archived_total_s: float
    history_read_s: float
    history_total_s: float
    expected: int = 0  # urgent cases expected soon (a week's history needed)
    reserve_total_s: float = 0.0  # the live batch keeping capacity for them


def history_inputs(store: Store, shard: str, now: datetime) -> LiveInputs:
    """The inputs as a batch read them before live state: everything, whatever its age."""
    return LiveInputs(
        shard=shard, now=now, nodes={n.node_id: n for n in store.all_nodes()},
        items=store.open_items(shard), offers=store.active_offers(shard),
        served=store.served_by_item(shard), held=store.held_by_offer(shard),
        busy=store.promised_visits(), history=store.volunteer_history(),
        excluded=store.excluded_pairs(shard))


def best_of(repeats: int, read: Callable[[], LiveInputs], config: MatchingConfig
            ) -> tuple[float, float, float]:
    """(read, batch, solve) seconds of reading and planning one batch, each the best run."""
    reads, totals, solves = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        inputs = read()
        reads.append(time.perf_counter() - started)
        plan = plan_batch(inputs, config)
        totals.append(time.perf_counter() - started)
        solves.append(plan.solution.solve_s)
    return min(reads), min(totals), min(solves)


def timed_probe(engine: MatchingEngine, day: int, now: datetime, folder: Path,
                cache: LiveRows, repeats: int = 5) -> Probe:
    """Read and plan one batch each way, recording nothing."""
    assert engine.matching is not None
    config = engine.matching
    with snapshot(engine.db) as store:
        live_read, live_total, live_solve = best_of(
            repeats, lambda: read_live_inputs(store, SHARD, now), config)
        caches = [copy.deepcopy(cache) for _ in range(repeats)]
        _, warm_total, _ = best_of(repeats, lambda: read_live_inputs(
            store, SHARD, now, cache=caches.pop()), config)
        history_read, history_total, _ = best_of(
            repeats, lambda: history_inputs(store, SHARD, now), config)
        _, reserve_total, _ = best_of(repeats, lambda: read_live_inputs(
            store, SHARD, now, reserve=config.reserve), config)
        expected = len(read_live_inputs(store, SHARD, now, reserve=config.reserve).expected)
        live = read_live_inputs(store, SHARD, now)
        old = history_inputs(store, SHARD, now)
        arcs = len(plan_batch(live, config).cands)
        held = store.conn.execute(select(proposals.c.proposal_id)).all()
    archived = archived_copy(folder / "history.db", folder / f"archived-{day}.db", now)
    with snapshot(archived) as store:
        if read_live_inputs(store, SHARD, now) != live:
            raise SystemExit(f"day {day}: the archived copy does not read the same inputs")
        _, archived_total, _ = best_of(
            repeats, lambda: read_live_inputs(store, SHARD, now), config)
    archived.dispose()
    return Probe(day=day, history_proposals=len(held), live_items=len(live.items),
                 live_offers=len(live.offers), all_items=len(old.items),
                 all_offers=len(old.offers), arcs=arcs, live_read_s=live_read,
                 live_total_s=live_total, live_solve_s=live_solve, warm_total_s=warm_total,
                 archived_total_s=archived_total, history_read_s=history_read,
                 history_total_s=history_total, expected=expected,
                 reserve_total_s=reserve_total)


def archived_copy(source: Path, target: Path, now: datetime) -> Engine:
    """A copy of the database keeping only what a live batch at `now` reads."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    holding = [status.value for status in HOLDING]
    promised = [ProposalStatus.PROPOSED.value, ProposalStatus.APPROVED.value]
    met = [ProposalStatus.APPROVED.value, ProposalStatus.FULFILLED.value]
    this_week = week_start(week_of(now))
    live_items = select(need_items.c.case_id, need_items.c.item_id).where(
        need_items.c.status == "open", need_items.c.deadline > now)
    live_offers = select(offers.c.offer_id).where(
        offers.c.status == "active",
        or_(offers.c.live_until.is_(None), offers.c.live_until > now))
    live_people = select(cases.c.pseudonym).join(
        need_items, need_items.c.case_id == cases.c.case_id).where(
        cases.c.status == "open", need_items.c.status == "open", need_items.c.deadline > now)
    volunteer = proposals.c.kind == "volunteer"
    this_weeks_hours = and_(volunteer, proposals.c.status.in_(holding),
                            proposals.c.window_end > this_week)
    still_read = or_(
        and_(proposals.c.status.in_(holding), proposals.c.offer_id.in_(live_offers)),
        and_(proposals.c.status.in_([*holding, ProposalStatus.REJECTED.value]),
             tuple_(proposals.c.case_id, proposals.c.item_id).in_(live_items)),
        and_(volunteer, proposals.c.status.in_(promised), proposals.c.window_end > now),
        this_weeks_hours,
        and_(volunteer, proposals.c.status.in_(met), proposals.c.beneficiary.in_(live_people)))
    db = open_engine(f"sqlite:///{target}")
    with db.begin() as conn:
        conn.execute(delete(proposals).where(not_(still_read)))
        # Offers the kept proposals refer to stay, as an archive would keep them.
        conn.execute(delete(offers).where(
            offers.c.offer_id.not_in(live_offers),
            offers.c.offer_id.not_in(select(proposals.c.offer_id))))
        conn.execute(delete(need_items).where(
            tuple_(need_items.c.case_id, need_items.c.item_id).not_in(live_items)))
        conn.execute(delete(cases).where(cases.c.case_id.not_in(select(need_items.c.case_id))))
        conn.execute(delete(audit_log))
        conn.execute(delete(outbox).where(outbox.c.published_at.is_not(None)))
    db.dispose()
    with closing(sqlite3.connect(target, isolation_level=None)) as compact:
        compact.execute("VACUUM")
    return open_engine(f"sqlite:///{target}")


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
            probing = day in PROBE_DAYS and first + POLL >= len(events)
            if probing:
                # The row cache as the engine's last batch left it, before the day's last poll.
                cache = LiveRows()
                with snapshot(engine.db) as store:
                    read_live_inputs(store, SHARD, clock["now"], cache=cache)
            clock["now"] = max(clock["now"], poll[-1].occurred_at.astimezone(UTC))
            engine.ingest_batch([Incoming(e, route(e).topic) for e in poll])
            if probing:
                # The day's last poll is in, not yet matched: a batch with real work to do.
                probe = timed_probe(engine, day, clock["now"], folder, cache)
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
        "arcs | live: read / solve / batch (s) | live, warm cache (s) | archived copy (s) | "
        "all history: read / batch (s) | expected cases | live, keeping capacity for them (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(f"| {p.day} | {p.history_proposals:,} | {p.live_items:,} / {p.live_offers:,} | "
          f"{p.all_items:,} / {p.all_offers:,} | {p.arcs:,} | {p.live_read_s:.3f} / "
          f"{p.live_solve_s:.3f} / {p.live_total_s:.3f} | {p.warm_total_s:.3f} | "
          f"{p.archived_total_s:.3f} | {p.history_read_s:.3f} / {p.history_total_s:.3f} | "
          f"{p.expected:,} | {p.reserve_total_s:.3f} |"
          for p in probes),
    ]
    if len(probes) > 1:
        first, last = probes[0], probes[-1]
        lines.append("")
        lines.append(
            f"Day {last.day} against day {first.day}: live batch "
            f"{last.live_total_s / first.live_total_s:.2f}x (warm cache "
            f"{last.warm_total_s / first.warm_total_s:.2f}x), all-history batch "
            f"{last.history_total_s / first.history_total_s:.2f}x. History's own share at "
            f"day {last.day}: the live batch against the archived copy, "
            f"{last.live_total_s / last.archived_total_s:.2f}x.")
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

