"""The Quick start's main job: a simulated day of a whole district through the real engine."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from events.app import build_app, consumer_groups
from events.lag import consumer_lag
from matcher.kafka_access import kafka_access
from matcher.kafka_principals import ADMIN, apply_grants, district_grants
from matcher.localkafka import LocalKafka
from matcher.runner import running
from matcher.services.coordinators import seed_demo_coordinators
from matcher.services.engine import MatchingEngine
from matcher.services.summary import Summary, summarize
from matcher.settings import Settings
from matcher.simulator.day import registry_events, simulate_day
from matcher.simulator.district import build_district
from matcher.simulator.publish import publish_events
from schemas.topics import Topics

SETTLE_CHECKS = 3


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


async def ensure_broker(settings: Settings, console: Console) -> str:
    """The configured broker; the project's local one is started when it is the default."""
    local = LocalKafka(settings)
    if settings.kafka_bootstrap_servers != local.bootstrap:
        return settings.kafka_bootstrap_servers
    with console.status("Starting the local Kafka broker (first run downloads it)..."):
        return await asyncio.to_thread(local.up)


async def grant_demo_topics(settings: Settings, topics: Topics) -> None:
    """Let the engine, the coordinator app and the case system use the demo's own topics.

    The demo plays the district's own systems (registry, grids, partners' integration) as the
    admin principal, and runs the engine as the engine principal, held to its ACLs.
    """
    admin = kafka_access(settings, role=ADMIN)
    if admin.uses_sasl:
        await asyncio.to_thread(apply_grants, admin,
                                district_grants(topics, settings.consumer_group))


async def wait_until_consumed(settings: Settings, topics: Topics, engine: MatchingEngine,
                              console: Console, what: str, timeout_s: float = 600) -> None:
    """Until the engine's group has committed every input record and no batch is pending."""
    deadline = time.monotonic() + timeout_s
    settled = 0
    with console.status(f"Waiting for the engine to {what}...") as status:
        while settled < SETTLE_CHECKS:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the engine did not {what} within {timeout_s:.0f} s")
            lag = await consumer_lag(kafka_access(settings),
                                     consumer_groups(settings.consumer_group, topics))
            backlog = len(await asyncio.to_thread(engine.unpublished, 1))
            busy = lag or engine.pending_shards() or backlog
            status.update(f"Waiting for the engine to {what}: {lag} events to consume, "
                          f"{engine.pending_shards()} shards to match")
            settled = 0 if busy else settled + 1
            await asyncio.sleep(0.5)


def print_summary(summary: Summary, published: int, seconds: float, console: Console,
                  prefix: str, database: Path) -> None:
    """The table a new user sees at the end of the Quick start."""
    table = Table(title="What the engine proposed for the simulated day")
    for column in ("kind", "items", "requested", "proposed", "share of qty", "items served",
                   "proposals"):
        table.add_column(column, justify="right" if column != "kind" else "left")
    for kind, row in summary.by_kind.items():
        share = row.proposed / row.requested if row.requested else 0.0
        table.add_row(kind, str(row.items), f"{row.requested:,.1f}", f"{row.proposed:,.1f}",
                      f"{share:.0%}", f"{row.items_served} ({row.share_served:.0%})",
                      str(row.proposals))
    console.print(table)
    console.print(f"Events published: {published}; applied: {summary.events_applied}; "
                  f"partners registered: {summary.partners}; took {seconds:.1f} s.")
    if summary.unmatched_reasons:
        reasons = ", ".join(f"{code}: {n}" for code, n in summary.unmatched_reasons.items())
        console.print(f"Items left (partly) unmatched, by reason: {reasons}")
    console.print(f"Topics: {prefix}.*  Database: {database}")


async def run_demo(settings: Settings, console: Console, *, day: date | None, seed: int,
                   cases: int) -> Summary:
    """Run the whole demo and return its summary."""
    started = time.monotonic()
    database = settings.demo_db
    bootstrap = await ensure_broker(settings, console)
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    prefix = f"demo-{stamp}"
    database.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    demo_settings = settings.model_copy(update={
        "kafka_bootstrap_servers": bootstrap, "topic_prefix": prefix,
        "consumer_group": f"{prefix}-engine", "database_url": f"sqlite:///{database}",
    })
    topics = Topics(prefix)
    await grant_demo_topics(demo_settings, topics)
    publisher = kafka_access(demo_settings, role=ADMIN)
    district = build_district(seed=seed, reach_mix=True)
    when = day or (datetime.now(UTC) + timedelta(days=1)).date()
    console.print(f"District: {len(district.nodes)} nodes, {len(district.partners)} partners. "
                  f"Simulated day: {when}.")
    app = build_app(demo_settings)
    async with running(app):
        registry = registry_events(district, datetime.now(UTC) - timedelta(hours=1))
        day_events = simulate_day(district, when, seed=seed, cases=cases)
        with _progress(console) as progress:
            task = progress.add_task("Registering hierarchy and partners", total=len(registry))
            await publish_events(publisher, topics, registry,
                                 progress=lambda done, total: progress.update(task,
                                                                              completed=done))
        await wait_until_consumed(demo_settings, topics, app.engine, console,
                                  "register everyone")
        with _progress(console) as progress:
            task = progress.add_task("Publishing the day's offers and needs",
                                     total=len(day_events))
            await publish_events(publisher, topics, day_events,
                                 progress=lambda done, total: progress.update(task,
                                                                              completed=done))
        await wait_until_consumed(demo_settings, topics, app.engine, console,
                                  "apply and match the day")
        coordinators = seed_demo_coordinators(app.engine.db)
    summary = summarize(app.engine.db)
    print_summary(summary, len(registry) + len(day_events), time.monotonic() - started, console,
                  prefix, database)
    print_console_hint(coordinators, demo_settings, database, console)
    return summary


def print_console_hint(coordinators: list[tuple[str, str, str]], settings: Settings,
                       database: Path, console: Console) -> None:
    """How to look at the result as a coordinator would."""
    table = Table(title="Demo coordinators (console sign-in)")
    for column in ("username", "password", "jurisdiction"):
        table.add_column(column)
    for username, password, node in coordinators:
        table.add_row(username, password, node)
    console.print(table)
    console.print(
        "Open the console on this day's state:\n"
        f"  MATCHER_DATABASE_URL=sqlite:///{database} "
        f"MATCHER_TOPIC_PREFIX={settings.topic_prefix} "
        ".venv/bin/matcher run\n"
        f"  then http://{settings.http_host}:{settings.http_port}/console/")
