"""Volunteers' weekly hour limits on a simulated district: how many volunteer-weeks go over.

Run from the repository root (about a minute on 2 cores at the default size):

    .venv/bin/python benchmarks/volunteer_weeks.py --days 14 --markdown benchmarks/out/weeks.md

One seeded event stream (`simulate_month`) is applied through `MatchingEngine.ingest` to a
fresh SQLite file; every `--every` events (and at the end of each day) the dirty shards are
matched; each evening a share of the day's pending proposals is approved and each night the
district is rebalanced, as coordinators and the scheduler would. Then every allocation that
holds (pending, approved or fulfilled) is counted per volunteer and ISO week on the district's
clock (Asia/Shanghai) against the lowest weekly hour limit that volunteer's offers state.

The script reads only the tables and the public service layer, so it also measures an older
version of the engine: `PYTHONPATH=/path/to/old/checkout .venv/bin/python benchmarks/...`.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from matcher.domain.errors import DomainError
from matcher.services import rebalancing
from matcher.services.engine import MatchingEngine
from matcher.services.matching import MatchingConfig
from matcher.services.rebalance_inputs import RebalanceConfig
from matcher.simulator import build_district, registry_events, simulate_month
from matcher.storage.database import migrate, open_engine
from matcher.storage.store import unit_of_work
from matcher.storage.tables import offers, proposals
from schemas.topics import Topics

START = date(2025, 3, 3)  # a Monday
ZONE = ZoneInfo("Asia/Shanghai")
DAY_COUNTS = {"cases": 600, "volunteer_offers": 400, "goods_offers": 150, "service_offers": 80}
HOLDING = ("proposed", "approved", "fulfilled")


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Clock:
    """Simulated time: the moment of the event applied last."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Weeks:
    """Volunteer-weeks against their limits."""

    volunteer_weeks: int
    over: int
    hours: float
    hours_beyond: float
    worst: tuple[str, str, float, float]  # volunteer, week, hours, limit
    overlaps: int  # pairs of one volunteer's visits that overlap in time
    visits: int
    # Against the lowest limit stated by the offers that serve the week (not by offers
    # published later for other weeks): what the engine knew when it booked the hours.
    over_own: int = 0
    hours_beyond_own: float = 0.0


def run(path: Path, *, days: int, scale: float, every: int, seed: int,
        approve_share: float) -> tuple[Engine, int, float]:
    """Feed the simulated days, matching, approving and rebalancing as the service would."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = open_engine(f"sqlite:///{path}")
    migrate(db)
    district = build_district(seed=seed)
    clock = Clock(datetime(START.year, START.month, START.day, tzinfo=UTC) - timedelta(days=1))
    topics = Topics("bench")
    config = MatchingConfig(topics=topics)
    engine = MatchingEngine(db=db, topics=topics, matching=config, clock=clock)
    for registration in registry_events(district, clock.now):
        engine.ingest(registration, topic=topics.registry)
    counts = {name: max(1, round(value * scale)) for name, value in DAY_COUNTS.items()}
    rng = random.Random(seed)
    applied = 0
    started = time.perf_counter()
    options = rebalancing.RunOptions(trigger="cli", requested_by="bench",
                                     config=RebalanceConfig(matching=config))
    for number, day_events in enumerate(simulate_month(district, START, days=days, seed=seed,
                                                       **counts), start=1):
        for incoming in day_events:
            clock.now = incoming.occurred_at
            with suppress(DomainError):  # refused events are refused alike on every version
                engine.ingest(incoming, topic="bench.simulated")
            applied += 1
            if applied % every == 0:
                for shard in engine.due_shards(0):
                    engine.match_shard(shard)
        for shard in engine.due_shards(0):
            engine.match_shard(shard)
        _approve(db, rng, approve_share, clock.now)
        night = datetime.combine(START + timedelta(days=number), datetime.min.time(), ZONE) \
            + timedelta(hours=2)
        clock.now = max(clock.now, night.astimezone(UTC))
        rebalancing.rebalance(engine, options)
        log(f"day {number}/{days}: {applied} events ({time.perf_counter() - started:.0f} s)")
    return db, applied, time.perf_counter() - started


def _approve(db: Engine, rng: random.Random, share: float, now: datetime) -> None:
    """Coordinators approve a share of what is pending (directly: who decides is not measured)."""
    with unit_of_work(db) as store:
        pending = store.conn.execute(select(proposals.c.proposal_id).where(
            proposals.c.status == "proposed")).scalars().all()
        chosen = [p for p in pending if rng.random() < share]
        if chosen:
            store.conn.execute(proposals.update().where(proposals.c.proposal_id.in_(chosen))
                               .values(status="approved", decided_at=now, decided_by="bench"))


def measure(db: Engine) -> Weeks:
    """Hours per volunteer and week against the lowest limit their offers state."""
    with unit_of_work(db) as store:
        stated = store.conn.execute(select(offers.c.offer_id, offers.c.payload).where(
            offers.c.kind == "volunteer")).all()
        rows = store.conn.execute(select(
            proposals.c.volunteer_id, proposals.c.window_start, proposals.c.window_end,
            proposals.c.amount, proposals.c.offer_id).where(
                proposals.c.kind == "volunteer", proposals.c.status.in_(HOLDING))).all()
    limits: dict[str, float] = {}
    offer_limit: dict[str, float] = {}
    for offer_id, payload in stated:
        volunteer = payload["volunteer_id"]
        offer_limit[offer_id] = float(payload["weekly_hour_limit"])
        limits[volunteer] = min(offer_limit[offer_id], limits.get(volunteer, 1e9))
    hours: dict[tuple[str, str], float] = defaultdict(float)
    own: dict[tuple[str, str], float] = defaultdict(lambda: 1e9)
    visits: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for volunteer, start, end, amount, offer_id in rows:
        if start is None:
            continue
        year, week, _ = start.astimezone(ZONE).isocalendar()
        key = (volunteer, f"{year}-W{week:02d}")
        hours[key] += float(amount)
        own[key] = min(own[key], offer_limit[offer_id])
        visits[volunteer].append((start, end))
    over = {k: h - limits[k[0]] for k, h in hours.items() if h > limits[k[0]] + 1e-6}
    over_own = {k: h - own[k] for k, h in hours.items() if h > own[k] + 1e-6}
    worst_key = max(over, key=lambda k: over[k], default=("-", "-"))
    overlaps = 0
    for seen in visits.values():
        seen.sort()
        overlaps += sum(1 for (_, a_end), (b_start, _) in pairwise(seen) if b_start < a_end)
    return Weeks(
        volunteer_weeks=len(hours), over=len(over), hours=sum(hours.values()),
        hours_beyond=sum(over.values()),
        worst=(worst_key[0], worst_key[1], hours.get(worst_key, 0.0),
               limits.get(worst_key[0], 0.0)),
        overlaps=overlaps, visits=len(rows), over_own=len(over_own),
        hours_beyond_own=sum(over_own.values()))


def table(label: str, weeks: Weeks) -> str:
    """One Markdown row."""
    _, _, worst_hours, limit = weeks.worst
    share = weeks.hours_beyond / weeks.hours if weeks.hours else 0.0
    worst = f"{worst_hours:g} h against {limit:g} h" if weeks.over else "–"
    own = weeks.hours_beyond_own / weeks.hours if weeks.hours else 0.0
    return (f"| {label} | {weeks.volunteer_weeks} | {weeks.over} | {weeks.hours:,.1f} | "
            f"{weeks.hours_beyond:,.1f} ({share:.1%}) | {worst} | {weeks.over_own} | "
            f"{weeks.hours_beyond_own:,.1f} ({own:.1%}) | {weeks.overlaps} |")


HEADER = ("| engine | volunteer-weeks | over the lowest limit stated | hours held | hours "
          "beyond it | worst | over the limit of the week's own offers | hours beyond it | "
          "overlapping visits |\n|---|---:|---:|---:|---:|---|---:|---:|---:|")


def main(argv: Iterable[str] | None = None) -> None:
    """Parse arguments, run, print (and optionally write) the row."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--scale", type=float, default=0.4)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--approve-share", type=float, default=0.6)
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--folder", type=Path, default=Path("benchmarks/out/weeks"))
    parser.add_argument("--markdown", type=Path, help="also append the row to this file")
    args = parser.parse_args(None if argv is None else list(argv))
    args.folder.mkdir(parents=True, exist_ok=True)
    db, events, seconds = run(args.folder / "weeks.db", days=args.days, scale=args.scale,
                              every=args.every, seed=args.seed,
                              approve_share=args.approve_share)
    weeks = measure(db)
    text = (f"{HEADER}\n{table(args.label, weeks)}\n\n{events} events, {weeks.visits} visits "
            f"held, {seconds:.0f} s.\n")
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        with args.markdown.open("a", encoding="utf-8") as out:
            out.write(text)


if __name__ == "__main__":
    main()
