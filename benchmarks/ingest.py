"""Ingest throughput and publish-to-outcome latency of the engine, against a real Kafka broker.

Run from the repository root with a broker on loopback (`.venv/bin/matcher kafka up`):

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python benchmarks/ingest.py \
        --events 20000 --timeout 240 --out benchmarks/out/ingest.json
    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python benchmarks/ingest.py \
        --latency 50,200,1000 --duration 30 --out benchmarks/out/latency.json

The engine is driven only from outside, as a separate `matcher run` process configured through
its MATCHER_* environment: events go in through its input topics, and what it did is read back
from its output topics, its consumer groups' committed offsets and read-only counts of its
database (`audit_log`). So the same command measures whatever engine the worktree holds.

Throughput (default): a seeded simulator stream (the registry, then days of offers and cases)
is pre-loaded into fresh topics, then read three ways: a bare aiokafka consumer (`getmany` +
`json.loads`), the same plus the engine's pydantic event unions, and the engine itself. The
engine consumes the registry first in a run of its own (offers name partners and grids, so the
registry must be applied before them, as `matcher demo` waits for), is stopped, and is started
again on the same database and consumer group once the offers and needs are all in the topics;
that second run is timed until every event is applied or dead-lettered and the committed
offsets have caught up.

Latency (`--latency R1,R2,...`): with the registry and some offers applied, new cases and
offers are published at each rate for `--duration` seconds (paced on a monotonic clock), and
each case's time from publish to its first `match.proposed` or `need.unmatched` is measured by
a consumer in this process; cases with neither after `--grace` seconds are lost.

Progress goes to stderr, the markdown table to stdout, every figure to `--out` (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from matcher.kafka_access import KafkaAccess, kafka_access, write_properties
from matcher.kafka_principals import ADMIN
from matcher.localkafka import delete_topics_async, ensure_topics_async
from matcher.settings import Settings
from matcher.simulator import District, build_district, registry_events, simulate_month
from matcher.simulator.day import Event
from matcher.simulator.publish import headers_of, publish_events, topic_and_key
from schemas import CaseOpened, OfferPublished
from schemas.needs import NeedEvent
from schemas.offers import OfferEvent
from schemas.registry import RegistryEvent
from schemas.topics import Topics

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
DEFAULT_PG_URL = "postgresql+psycopg://matcher@127.0.0.1:55435/postgres"
# How often the engine's progress is sampled: often enough for a rate, rarely enough that the
# harness's own reads do not compete with the engine for the two cores.
POLL_S = 1.0
PROGRESS_EVERY_S = 10.0
# Consecutive polls with nothing left to consume before a phase counts as finished: a group
# commits its offsets just after the effect, so one quiet poll can be a race.
SETTLED_POLLS = 2
ENGINE_START_TIMEOUT_S = 120.0
ENGINE_STOP_TIMEOUT_S = 30.0
RAW_TIMEOUT_S = 120.0
LOG_TAIL_LINES = 20


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded (the machine is shared)."""
    return [round(value, 2) for value in os.getloadavg()]


def loopback_only(bootstrap: str) -> str:
    """The bootstrap string, refused when any server is not on this machine."""
    for server in bootstrap.split(","):
        host = urlsplit(f"//{server.strip()}").hostname
        if host not in LOOPBACK:
            raise SystemExit(f"refusing a non-loopback Kafka server: {server!r}")
    return bootstrap


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DistrictShape:
    """Size of the simulated district (the default is the simulator's own, 421 registry
    events; the test uses a tiny one so the registry does not dominate a 300-event run)."""

    workstations: int = 8
    studios_per_ws: int = 4
    grids_per_studio: int = 5
    partners: int = 220

    def build(self, seed: int) -> District:
        return build_district(seed=seed, workstations=self.workstations,
                              studios_per_ws=self.studios_per_ws,
                              grids_per_studio=self.grids_per_studio, partners=self.partners)


@dataclass
class RunConfig:
    """Where a run talks to the broker and the engine, and what it names things."""

    bootstrap: str
    prefix: str
    workdir: Path
    http_port: int
    db: str = "sqlite"
    pg_url: str = DEFAULT_PG_URL
    partitions: int = 3
    seed: int = 7
    district: DistrictShape = field(default_factory=DistrictShape)
    engine_env: dict[str, str] = field(default_factory=dict)
    matcher_cmd: list[str] = field(default_factory=lambda: [matcher_executable(), "run"])

    @cached_property
    def access(self) -> KafkaAccess:
        """The benchmark acts as the broker's admin: it creates topics and plays every sender,
        and its engines use the same principal on the run's own topic prefix."""
        return kafka_access(Settings(kafka_bootstrap_servers=self.bootstrap), role=ADMIN)

    def client_config(self) -> Path:
        """The access as a client properties file, for the engine subprocesses."""
        path = self.workdir / "client-admin.properties"
        write_properties(path, self.access.properties(), "the ingest benchmark's client")
        return path

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    @property
    def consumer_group(self) -> str:
        return f"{self.prefix}-engine"


def matcher_executable() -> str:
    """The `matcher` command of the interpreter's virtualenv (the engine under test)."""
    candidate = Path(sys.executable).with_name("matcher")
    if candidate.exists():
        return str(candidate)
    return str(ROOT / ".venv" / "bin" / "matcher")


# --------------------------------------------------------------------------- the event stream


@dataclass
class Stream:
    """Registry events first, then offers and needs in the order they happened."""

    registry: list[Event]
    day: list[Event]

    @property
    def all(self) -> list[Event]:
        return [*self.registry, *self.day]


def simulated_stream(config: RunConfig, events: int, start: date) -> Stream:
    """The registry and the first `events` offer and need events of a simulated month.

    Days follow one another from `start` until enough events exist; the last day is cut,
    which only drops its latest changes (each entity's versions stay in order)."""
    district = config.district.build(config.seed)
    registry: list[Event] = list(registry_events(district, datetime.now(UTC)
                                                 - timedelta(hours=1)))
    day: list[Event] = []
    for events_of_day in simulate_month(district, start, days=366, seed=config.seed):
        day.extend(events_of_day)
        if len(day) >= events:
            break
    return Stream(registry=registry, day=day[:events])


def count_by_topic(events: Iterable[Event], topics: Topics) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        topic, _ = topic_and_key(event, topics)
        counts[topic] = counts.get(topic, 0) + 1
    return counts


async def preload(config: RunConfig, events: Sequence[Event], what: str) -> float:
    """Publish events in order (acknowledged by all replicas); the seconds it took."""
    started = time.monotonic()
    last = [started]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last[0] >= 5.0 or done == total:
            last[0] = time.monotonic()
            log(f"  publishing {what}: {done:,}/{total:,}")

    await publish_events(config.access, config.topics, events, progress=progress)
    return time.monotonic() - started


# --------------------------------------------------------------------------- broker reads


class Broker:
    """Long-lived admin and consumer clients for the harness's reads of offsets and groups."""

    def __init__(self, access: KafkaAccess) -> None:
        self.admin = AIOKafkaAdminClient(**access.aiokafka())
        self.consumer = AIOKafkaConsumer(**access.aiokafka(), enable_auto_commit=False)
        self._partitions: dict[str, list[TopicPartition]] = {}

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def partitions(self, topics: Sequence[str]) -> list[TopicPartition]:
        """Every partition of the topics (created up front, so they do not change)."""
        missing = [topic for topic in topics if topic not in self._partitions]
        if missing:
            for described in await self.admin.describe_topics(missing):
                if not described.get("error_code"):
                    self._partitions[described["topic"]] = [
                        TopicPartition(described["topic"], p["partition"])
                        for p in described["partitions"]]
        return [tp for topic in topics for tp in self._partitions.get(topic, [])]

    async def wait_for_leaders(self, topics: Sequence[str], timeout_s: float = 30.0) -> None:
        """Until every partition of freshly created topics has a leader (publishing earlier
        only earns retries and NotLeaderForPartition noise)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            described = await self.admin.describe_topics(list(topics))
            if all(not topic.get("error_code") and topic["partitions"]
                   and all(p["leader"] >= 0 for p in topic["partitions"])
                   for topic in described):
                return
            await asyncio.sleep(0.2)
        log(f"  some partitions of {len(topics)} topics still have no leader; going on")

    async def end_offsets(self, topics: Sequence[str]) -> dict[TopicPartition, int]:
        """Next offset to be written, per partition of the topics."""
        partitions = await self.partitions(topics)
        return dict(await self.consumer.end_offsets(partitions)) if partitions else {}

    async def records_in(self, topic: str) -> int:
        """Records written to a fresh topic (its end offsets add up to them)."""
        return sum((await self.end_offsets([topic])).values())

    async def group_lag(self, group_prefix: str, topics: Sequence[str]) -> int:
        """Records of the topics not yet committed by any consumer group named `group_prefix*`.

        Groups are found by name rather than by the engine's own naming, so the count stays
        right however the engine splits its consumers into groups."""
        ends = await self.end_offsets(topics)
        committed: dict[TopicPartition, int] = {}
        for listed in await self.admin.list_consumer_groups():
            group = str(listed[0])
            if not group.startswith(group_prefix):
                continue
            for tp, meta in (await self.admin.list_consumer_group_offsets(group)).items():
                if tp in ends and meta.offset >= 0:
                    committed[tp] = max(committed.get(tp, 0), meta.offset)
        return sum(end - committed.get(tp, 0) for tp, end in ends.items())


@contextlib.asynccontextmanager
async def broker_reader(access: KafkaAccess) -> AsyncIterator[Broker]:
    broker = Broker(access)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


# --------------------------------------------------------------------------- raw consumers

def adapters(topics: Topics) -> dict[str, TypeAdapter[Any]]:
    """The unions the engine's subscribers are annotated with, per input topic."""
    return {topics.registry: TypeAdapter(RegistryEvent), topics.offers: TypeAdapter(OfferEvent),
            topics.needs: TypeAdapter(NeedEvent)}


@dataclass
class RawResult:
    name: str
    events: int
    seconds: float
    rate: float
    invalid: int
    by_topic: dict[str, int]
    load_before: list[float]
    load_after: list[float]


async def raw_consume(config: RunConfig, expected: dict[str, int], *, validate: bool,
                      timeout_s: float = RAW_TIMEOUT_S) -> RawResult:
    """Read the topics from the beginning with a bare consumer until `expected` are read."""
    name = "raw + pydantic validation" if validate else "raw aiokafka (getmany + json.loads)"
    check = adapters(config.topics)
    topics = sorted(expected)
    total = sum(expected.values())
    consumer = AIOKafkaConsumer(*topics, **config.access.aiokafka(), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    counts = dict.fromkeys(topics, 0)
    invalid = 0
    load_before = load_average()
    started = time.monotonic()
    try:
        while sum(counts.values()) < total:
            if time.monotonic() - started > timeout_s:
                log(f"  {name}: timed out after {timeout_s:.0f} s")
                break
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                counts[tp.topic] += len(records)
                for record in records:
                    value = json.loads(record.value) if record.value is not None else None
                    if validate:
                        try:
                            check[tp.topic].validate_python(value)
                        except ValidationError:
                            invalid += 1
        seconds = time.monotonic() - started
    finally:
        await consumer.stop()
    read = sum(counts.values())
    result = RawResult(name=name, events=read, seconds=round(seconds, 3),
                       rate=round(read / seconds, 1) if seconds else 0.0, invalid=invalid,
                       by_topic=counts, load_before=load_before, load_after=load_average())
    log(f"  {name}: {read:,} events in {seconds:.2f} s = {result.rate:,.0f}/s"
        f"{f', {invalid} invalid' if invalid else ''}")
    return result


# --------------------------------------------------------------------------- the engine process


class Database:
    """The engine's database, read-only from here: how many events it applied."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.created_pg: str | None = None
        self.last_count = 0
        if config.db == "sqlite":
            self.path = config.workdir / "engine.db"
            for suffix in ("", "-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            self.url = f"sqlite:///{self.path}"
        elif config.db == "postgres":
            admin_url = make_url(config.pg_url)
            if admin_url.host not in LOOPBACK:
                raise SystemExit(f"refusing a non-loopback PostgreSQL server: {admin_url.host}")
            name = f"bench_{config.prefix}".replace("-", "_").lower()
            admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
            self.created_pg = name
            self.url = admin_url.set(database=name).render_as_string(hide_password=False)
        else:
            raise SystemExit(f"unknown --db {config.db!r}")

    def applied(self) -> int:
        """Rows in audit_log (0 before the engine has created it; the last count read when a
        read fails, e.g. on a busy file, so that a sample never goes backwards)."""
        self.last_count = max(self.last_count, self._count())
        return self.last_count

    def _count(self) -> int:
        try:
            if self.config.db == "sqlite":
                if not self.path.exists():
                    return 0
                with contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                                        timeout=5)) as conn:
                    return int(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])
            engine = create_engine(self.url, poolclass=NullPool)
            try:
                with engine.connect() as conn:
                    return int(conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one())
            finally:
                engine.dispose()
        except Exception as error:  # a table not yet migrated, a busy file: no new count
            if "audit_log" not in str(error) and "locked" not in str(error):
                log(f"  (audit_log count failed: {type(error).__name__}: {error})")
            return 0

    def drop(self) -> None:
        """Drop the PostgreSQL database this run created (SQLite files are kept)."""
        if self.created_pg is None:
            return
        admin = create_engine(self.config.pg_url, isolation_level="AUTOCOMMIT",
                              poolclass=NullPool)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.created_pg}" WITH (FORCE)'))
        admin.dispose()


class EngineProcess:
    """One `matcher run` subprocess with this run's topics, group, database and port."""

    def __init__(self, config: RunConfig, database: Database, name: str) -> None:
        self.config = config
        self.log_path = config.workdir / f"engine-{name}.log"
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": config.bootstrap,
            "MATCHER_KAFKA_CLIENT_CONFIG": str(config.client_config()),
            "MATCHER_TOPIC_PREFIX": config.prefix,
            "MATCHER_TOPIC_PARTITIONS": str(config.partitions),
            "MATCHER_CONSUMER_GROUP": config.consumer_group,
            "MATCHER_DATABASE_URL": database.url,
            "MATCHER_HTTP_HOST": "127.0.0.1",
            "MATCHER_HTTP_PORT": str(config.http_port),
            # The nightly run must not start in the middle of a measurement.
            "MATCHER_REBALANCE_ENABLED": "false",
            "MATCHER_REBALANCE_REPORT_DIR": str(config.workdir / "rebalance"),
            # Its log goes to a file: unbuffered, so the file is whole however it stops.
            "PYTHONUNBUFFERED": "1",
            **config.engine_env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0
        self.ready_at = 0.0

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self) -> str:
        if not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def get(self, path: str, timeout_s: float = 2.0) -> bytes | None:
        """GET a path of the engine's HTTP server (None when it does not answer)."""
        url = f"http://127.0.0.1:{self.config.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                # /health answers 204 No Content when the broker connection is up.
                return bytes(response.read()) if 200 <= response.status < 300 else None
        except (urllib.error.URLError, OSError):
            return None

    async def start(self) -> None:
        """Spawn and wait until /health answers (the broker connection is up)."""
        self.config.workdir.mkdir(parents=True, exist_ok=True)
        # Another process answering on the port would pass for this engine's /health.
        with socket.socket() as probe:
            # As uvicorn binds: a previous engine's connections in TIME_WAIT do not count.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", self.config.http_port))
            except OSError as error:
                raise RuntimeError(f"port {self.config.http_port} is taken; pass --http-port"
                                   ) from error
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(self.config.matcher_cmd, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, cwd=ROOT)
        self.spawned_at = time.monotonic()
        log(f"  engine started (pid {self.process.pid}), log {self.log_path}")
        while await asyncio.to_thread(self.get, "/health") is None:
            if not self.alive():
                raise RuntimeError(f"the engine exited during start-up:\n{self.log_tail()}")
            if time.monotonic() - self.spawned_at > ENGINE_START_TIMEOUT_S:
                raise TimeoutError(f"the engine did not answer /health within "
                                   f"{ENGINE_START_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.25)
        self.ready_at = time.monotonic()
        log(f"  engine ready after {self.ready_at - self.spawned_at:.1f} s")

    async def stop(self) -> None:
        """SIGTERM (uvicorn's clean shutdown), then SIGKILL if it hangs: this pid only.

        Not SIGINT: once a matching batch has run, SIGINT ends the engine at once, without
        its shutdown (seen at commit 92f1f33), and a clean stop is what the next run starts from."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, ENGINE_STOP_TIMEOUT_S), (signal.SIGKILL, 10.0)):
            process.send_signal(sig)
            try:
                await asyncio.to_thread(process.wait, wait_s)
                break
            except subprocess.TimeoutExpired:
                log(f"  engine (pid {process.pid}) still running after {sig.name}")
        log(f"  engine stopped (exit {process.returncode})")

    def duplicates(self) -> float | None:
        """Repeated events the engine ignored, from /metrics (None if it does not say)."""
        body = self.get("/metrics")
        if body is None:
            return None
        total = 0.0
        for line in body.decode(errors="replace").splitlines():
            if line.startswith("matcher_events_duplicate_total"):
                total += float(line.rsplit(" ", 1)[-1])
        return total


@contextlib.asynccontextmanager
async def engine_running(config: RunConfig, database: Database,
                         name: str) -> AsyncIterator[EngineProcess]:
    engine = EngineProcess(config, database, name)
    try:
        await engine.start()
        yield engine
    finally:
        await engine.stop()


@dataclass
class EngineResult:
    """How far the engine got with `expected` events, and how fast."""

    name: str
    expected: int
    applied: int
    dead_letters: int
    duplicates: float | None
    lag: int
    seconds: float
    rate: float
    startup_s: float
    complete: bool
    load_before: list[float]
    load_after: list[float]
    samples: list[tuple[float, int]] = field(default_factory=list)
    rate_by_minute: list[float] = field(default_factory=list)

    @property
    def accounted(self) -> int:
        return self.applied + self.dead_letters + round(self.duplicates or 0)


async def watch_engine(broker: Broker, config: RunConfig, database: Database,
                       engine: EngineProcess, *, name: str, expected: int,
                       topics: Sequence[str], timeout_s: float, applied_before: int = 0,
                       dead_before: int = 0, duplicates_before: float = 0.0) -> EngineResult:
    """Poll until the engine has applied or refused `expected` events of `topics` and its
    groups have committed them, or `timeout_s` after it answered /health.

    Events are accounted for as rows of audit_log, records of the dead-letter topic and the
    duplicates /metrics reports, counted from the `*_before` baselines. The rate is
    taken from the first poll, so what the engine did while starting is not in it."""
    load_before = load_average()
    samples: list[tuple[float, int]] = []
    settled = quiet = 0
    started = last_report = time.monotonic()
    done_at_start: int | None = None
    applied = dead = done = 0
    lag = expected
    duplicates: float | None = None
    while True:
        now = time.monotonic()
        applied = await asyncio.to_thread(database.applied) - applied_before
        dead = await broker.records_in(config.topics.dead_letter) - dead_before
        lag = await broker.group_lag(config.consumer_group, topics)
        reported = await asyncio.to_thread(engine.duplicates)
        duplicates = None if reported is None else reported - duplicates_before
        done = applied + dead + round(duplicates or 0)
        if done_at_start is None:
            done_at_start, started = done, now
        samples.append((round(now - started, 2), done))
        settled = settled + 1 if lag == 0 and done >= expected else 0
        # Everything committed but some events left no trace: say so rather than wait out
        # the timeout.
        quiet = quiet + 1 if lag == 0 and done < expected else 0
        if settled >= SETTLED_POLLS:
            break
        if quiet >= 5 * SETTLED_POLLS:
            log(f"  {name}: offsets committed but {expected - done:,} events unaccounted")
            break
        if not engine.alive():
            log(f"  {name}: the engine exited:\n{engine.log_tail()}")
            break
        if now - started > timeout_s:
            log(f"  {name}: timeout after {timeout_s:.0f} s; partial figures")
            break
        if now - last_report >= PROGRESS_EVERY_S:
            last_report = now
            rate = (done - done_at_start) / (now - started) if now > started else 0.0
            log(f"  {name}: {done:,}/{expected:,} accounted for (applied {applied:,}, dead "
                f"letters {dead:,}), lag {lag:,}, {rate:,.1f} events/s, load {load_average()}")
        await asyncio.sleep(POLL_S)
    # Up to the poll that first saw the final count: the settling polls after it are the
    # harness making sure, not the engine working.
    seconds = min(at for at, count in samples if count >= done)
    rate = (done - (done_at_start or 0)) / seconds if seconds > 0 else 0.0
    result = EngineResult(
        name=name, expected=expected, applied=applied, dead_letters=dead, duplicates=duplicates,
        lag=lag, seconds=round(seconds, 2), rate=round(rate, 1),
        startup_s=round(engine.ready_at - engine.spawned_at, 2),
        complete=lag == 0 and done >= expected, load_before=load_before,
        load_after=load_average(), samples=samples, rate_by_minute=rate_by_minute(samples))
    log(f"  {name}: {done:,}/{expected:,} in {seconds:.1f} s = {rate:,.1f} events/s"
        f"{'' if result.complete else ' (partial)'}")
    return result


def rate_by_minute(samples: Sequence[tuple[float, int]]) -> list[float]:
    """Events/s in each whole minute of the samples (shows an engine slowing down)."""
    rates = []
    for minute in range(int(samples[-1][0] // 60) if samples else 0):
        inside = [done for at, done in samples if minute * 60 <= at <= (minute + 1) * 60]
        if len(inside) >= 2:
            rates.append(round((inside[-1] - inside[0]) / 60, 1))
    return rates


# --------------------------------------------------------------------------- throughput


@dataclass
class ThroughputResult:
    events: int
    registry_events: int
    published_s: float
    raw: RawResult
    validated: RawResult
    registry: EngineResult
    engine: EngineResult
    ratio: float


async def throughput(config: RunConfig, events: int, timeout_s: float,
                     start: date | None = None) -> ThroughputResult:
    """The three consumers side by side on one pre-loaded stream (see the module docstring)."""
    topics = config.topics
    first_day = start or (datetime.now(UTC) + timedelta(days=1)).date()
    log(f"throughput: simulating {events:,} offer and need events from {first_day}")
    stream = simulated_stream(config, events, first_day)
    expected = count_by_topic(stream.all, topics)
    log(f"  {len(stream.registry):,} registry + {len(stream.day):,} offer/need events; "
        f"topics {config.prefix}.*")
    await ensure_topics_async(config.access, topics.all, config.partitions)
    database = Database(config)
    try:
        async with broker_reader(config.access) as broker:
            await broker.wait_for_leaders(topics.all)
            return await _throughput(broker, config, database, stream, expected, timeout_s)
    finally:
        database.drop()


async def _throughput(broker: Broker, config: RunConfig, database: Database, stream: Stream,
                      expected: dict[str, int], timeout_s: float) -> ThroughputResult:
    topics = config.topics
    log("throughput: the engine applies the registry first")
    await preload(config, stream.registry, "registry")
    async with engine_running(config, database, "registry") as engine:
        registry = await watch_engine(broker, config, database, engine,
                                      name="engine: registry",
                                      expected=len(stream.registry),
                                      topics=[topics.registry],
                                      timeout_s=max(timeout_s, 60.0))
    if not registry.complete:
        log("  the registry was not applied in full; offers may be refused")
    log("throughput: pre-loading the offers and needs (engine stopped)")
    published_s = await preload(config, stream.day, "offers and needs")
    log("throughput: raw consumers over every pre-loaded topic")
    raw = await raw_consume(config, expected, validate=False)
    validated = await raw_consume(config, expected, validate=True)
    log(f"throughput: the engine ({config.db}) on the offers and needs")
    applied_before = database.applied()
    dead_before = await broker.records_in(topics.dead_letter)
    async with engine_running(config, database, "stream") as engine:
        result = await watch_engine(broker, config, database, engine,
                                    name="engine: offers/needs",
                                    expected=len(stream.day),
                                    topics=[topics.offers, topics.needs],
                                    timeout_s=timeout_s, applied_before=applied_before,
                                    dead_before=dead_before)
    return ThroughputResult(events=len(stream.all), registry_events=len(stream.registry),
                            published_s=round(published_s, 2), raw=raw, validated=validated,
                            registry=registry, engine=result,
                            ratio=round(result.rate / raw.rate, 5) if raw.rate else 0.0)


# --------------------------------------------------------------------------- latency


@dataclass
class LatencyResult:
    target_rate: float
    achieved_rate: float
    duration_s: float
    published: int
    cases: int
    proposed: int
    unmatched: int
    lost: int
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    max_s: float | None
    waited_s: float
    load_before: list[float]
    load_after: list[float]
    malformed_outcomes: int = 0  # output records the reader could not parse, so far


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class Outcomes:
    """First match.proposed / need.unmatched per case, timed on arrival at this consumer."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.first: dict[str, tuple[float, str]] = {}
        self.malformed = 0
        self.consumer = AIOKafkaConsumer(
            config.topics.proposals, config.topics.unmatched, **config.access.aiokafka(),
            group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.task = asyncio.create_task(self._read(), name="outcomes")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.consumer.stop()

    async def _read(self) -> None:
        wanted = {"match.proposed", "need.unmatched"}
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            arrived = time.monotonic()
            for records in batch.values():
                for record in records:
                    # One odd record must not end the reader: every case would look lost.
                    try:
                        body = json.loads(record.value) if record.value else {}
                        kind = body.get("event_type", "")
                        if kind in wanted:
                            self.first.setdefault(str(body["payload"]["case_id"]),
                                                  (arrived, kind))
                    except (ValueError, KeyError, TypeError, AttributeError):
                        self.malformed += 1


def latency_events(district: District, seed: int, start: date) -> Iterator[Event]:
    """New cases and offers, day after day, evenly interleaved.

    No updates or closures, which could end a case before the engine has had a chance to say
    anything about it. A simulated day publishes most offers in the morning and most cases
    later, so each day's two lists are spread evenly over each other: every slice of the
    stream, however short a rate's run, has the day's mix of cases and offers."""
    for day in simulate_month(district, start, days=366, seed=seed):
        cases = [event for event in day if isinstance(event, CaseOpened)]
        offers = [event for event in day if isinstance(event, OfferPublished)]
        spread: list[tuple[float, Event]] = [((i + 0.5) / len(cases), event)
                                             for i, event in enumerate(cases)]
        spread += [((i + 0.5) / len(offers), event) for i, event in enumerate(offers)]
        spread.sort(key=lambda pair: pair[0])
        yield from (event for _, event in spread)


def warm_up_offers(district: District, seed: int, day: date, count: int) -> list[Event]:
    """Offers of the day before the latency stream, so its cases find some supply."""
    offers: list[Event] = [event for event in next(simulate_month(district, day, days=1,
                                                                  seed=seed))
                           if isinstance(event, OfferPublished)]
    return offers[:count]


@dataclass(frozen=True)
class WireRecord:
    """An event ready to send: serialised before the clock starts, so that pacing at high
    rates is not held back by pydantic in the same event loop as the outcome consumer."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    case_id: str | None


def wire_records(events: Iterable[Event], topics: Topics) -> list[WireRecord]:
    records = []
    for event in events:
        topic, key = topic_and_key(event, topics)
        records.append(WireRecord(
            topic=topic, key=key, value=event.model_dump_json().encode(),
            headers=headers_of(event, topics),
            case_id=event.payload.case_id if isinstance(event, CaseOpened) else None))
    return records


async def paced_publish(config: RunConfig, records: Sequence[WireRecord], rate: float,
                        duration_s: float, sent_at: dict[str, float]) -> tuple[int, float]:
    """Publish at `rate` events/s for `duration_s`; records each case's send time.

    Record i is due at start + i / rate; when the loop falls behind, due records go out at
    once (no sleep) until it has caught up, so the achieved rate shows whether it kept up."""
    producer = AIOKafkaProducer(**config.access.aiokafka(), acks="all",
                                enable_idempotence=True)
    await producer.start()
    futures: list[asyncio.Future[Any]] = []
    published = 0
    started = time.monotonic()
    last_report = started
    try:
        for record in records:
            due = started + published / rate
            if due - started >= duration_s:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if record.case_id is not None:
                sent_at[record.case_id] = time.monotonic()
            futures.append(await producer.send(record.topic, value=record.value, key=record.key,
                                               headers=record.headers))
            published += 1
            if time.monotonic() - last_report >= PROGRESS_EVERY_S:
                last_report = time.monotonic()
                log(f"  {rate:g}/s: {published:,} published in {last_report - started:.0f} s")
        elapsed = time.monotonic() - started
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return published, elapsed


async def publish_and_wait(broker: Broker, config: RunConfig, database: Database,
                           engine: EngineProcess, events: Sequence[Event], topic: str,
                           what: str, timeout_s: float) -> None:
    """Publish to the running engine and wait until it has applied or refused all of it.

    The baselines are read before publishing: the engine starts applying at once."""
    applied_before = await asyncio.to_thread(database.applied)
    dead_before = await broker.records_in(config.topics.dead_letter)
    duplicates_before = await asyncio.to_thread(engine.duplicates) or 0.0
    await preload(config, events, what)
    result = await watch_engine(broker, config, database, engine, name=f"engine: {what}",
                                expected=len(events), topics=[topic], timeout_s=timeout_s,
                                applied_before=applied_before, dead_before=dead_before,
                                duplicates_before=duplicates_before)
    if not result.complete:
        log(f"  {what}: not complete ({result.accounted}/{len(events)}); measuring anyway")


async def latency(config: RunConfig, rates: Sequence[float], duration_s: float, grace_s: float,
                  warm_offers: int = 300, start: date | None = None) -> list[LatencyResult]:
    """Publish-to-first-outcome latency of cases at each rate, one engine for all rates."""
    topics = config.topics
    first_day = start or (datetime.now(UTC) + timedelta(days=1)).date()
    district = config.district.build(config.seed)
    registry = list(registry_events(district, datetime.now(UTC) - timedelta(hours=1)))
    warm = warm_up_offers(district, config.seed, first_day, warm_offers)
    stream = latency_events(district, config.seed, first_day + timedelta(days=1))
    await ensure_topics_async(config.access, topics.all, config.partitions)
    database = Database(config)
    results: list[LatencyResult] = []
    outcomes = Outcomes(config)
    try:
        async with (broker_reader(config.access) as broker,
                    engine_running(config, database, "latency") as engine):
            await broker.wait_for_leaders(topics.all)
            log(f"latency: registry ({len(registry)}) and {len(warm)} offers first")
            await publish_and_wait(broker, config, database, engine, registry,
                                   topics.registry, "registry", timeout_s=max(120.0, grace_s))
            await publish_and_wait(broker, config, database, engine, warm, topics.offers,
                                   "warm-up offers", timeout_s=max(120.0, grace_s))
            await outcomes.start()
            for rate in rates:
                log(f"latency: {rate:g} events/s for {duration_s:g} s")
                planned = wire_records(itertools.islice(stream, math.ceil(rate * duration_s)),
                                       topics)
                sent_at: dict[str, float] = {}
                load_before = load_average()
                published, elapsed = await paced_publish(config, planned, rate, duration_s,
                                                         sent_at)
                waiting = time.monotonic()
                last_report = waiting
                while time.monotonic() - waiting < grace_s:
                    missing = [case for case in sent_at if case not in outcomes.first]
                    if not missing:
                        break
                    if not engine.alive():
                        log(f"  the engine exited:\n{engine.log_tail()}")
                        break
                    if time.monotonic() - last_report >= PROGRESS_EVERY_S:
                        last_report = time.monotonic()
                        log(f"  {rate:g}/s: {len(sent_at) - len(missing):,}/{len(sent_at):,} "
                            f"cases have an outcome, load {load_average()}")
                    await asyncio.sleep(0.5)
                waited = time.monotonic() - waiting
                seen = {case: outcomes.first[case] for case in sent_at if case in outcomes.first}
                delays = [seen[case][0] - sent for case, sent in sent_at.items() if case in seen]
                result = LatencyResult(
                    target_rate=rate, achieved_rate=round(published / elapsed, 1) if elapsed else 0,
                    duration_s=round(elapsed, 2), published=published, cases=len(sent_at),
                    proposed=sum(kind == "match.proposed" for _, kind in seen.values()),
                    unmatched=sum(kind == "need.unmatched" for _, kind in seen.values()),
                    lost=len(sent_at) - len(seen),
                    p50_s=_round(percentile(delays, 0.50)), p95_s=_round(percentile(delays, 0.95)),
                    p99_s=_round(percentile(delays, 0.99)), max_s=_round(max(delays, default=None)),
                    waited_s=round(waited, 1), load_before=load_before, load_after=load_average(),
                    malformed_outcomes=outcomes.malformed)
                log(f"  {rate:g}/s: {len(seen):,}/{len(sent_at):,} cases, p50 {result.p50_s} s, "
                    f"p99 {result.p99_s} s, lost {result.lost}")
                results.append(result)
                if rate != rates[-1]:
                    await drain(broker, config, [topics.offers, topics.needs], grace_s)
    finally:
        await outcomes.stop()
        database.drop()
    return results


async def drain(broker: Broker, config: RunConfig, topics: Sequence[str],
                timeout_s: float) -> None:
    """Until the engine has consumed what a rate left behind (or `timeout_s`), so that the
    next rate does not start behind a backlog that is not its own."""
    started = last_report = time.monotonic()
    while (lag := await broker.group_lag(config.consumer_group, topics)) > 0:
        if time.monotonic() - started > timeout_s:
            log(f"  next rate starts with {lag:,} events still to consume")
            return
        if time.monotonic() - last_report >= PROGRESS_EVERY_S:
            last_report = time.monotonic()
            log(f"  waiting for the engine to consume {lag:,} events left by the last rate")
        await asyncio.sleep(POLL_S)
    log(f"  backlog consumed after {time.monotonic() - started:.0f} s")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# --------------------------------------------------------------------------- report


def _load(values: Sequence[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def throughput_table(result: ThroughputResult, db: str) -> str:
    engine, registry = result.engine, result.registry
    rows = [
        "| consumer | events | seconds | events/s | load avg before → after (1/5/15 min) |",
        "|---|---:|---:|---:|---|",
    ]
    for raw in (result.raw, result.validated):
        rows.append(f"| {raw.name} | {raw.events:,} | {raw.seconds:.2f} | {raw.rate:,.0f} | "
                    f"{_load(raw.load_before)} → {_load(raw.load_after)} |")
    for run, label in ((registry, "registry, run apart"), (engine, "offers and needs")):
        partial = "" if run.complete else " (partial: timeout)"
        rows.append(
            f"| engine `matcher run` ({db}): {label}{partial} | {run.accounted:,} of "
            f"{run.expected:,} | {run.seconds:.1f} | {run.rate:,.1f} | "
            f"{_load(run.load_before)} → {_load(run.load_after)} |")
    rows.append(f"| **engine / raw** | | | **{result.ratio:.4f}** | |")
    notes = (f"\n{result.events:,} events ({result.registry_events:,} registry); engine "
             f"start-up {engine.startup_s:.1f} s (not in its rate); applied {engine.applied:,}, "
             f"dead letters {engine.dead_letters:,}, duplicates {engine.duplicates or 0:g}, "
             f"lag left {engine.lag:,}. Engine events/s minute by minute: "
             f"{', '.join(f'{r:g}' for r in engine.rate_by_minute) or '-'}.")
    return "\n".join(rows) + "\n" + notes + "\n"


def latency_table(results: Sequence[LatencyResult]) -> str:
    rows = [
        "| rate (target / achieved, events/s) | cases | proposed / unmatched | p50 s | p95 s "
        "| p99 s | max s | lost | load avg before → after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]

    def fmt(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    for r in results:
        rows.append(
            f"| {r.target_rate:g} / {r.achieved_rate:g} | {r.cases:,} | {r.proposed:,} / "
            f"{r.unmatched:,} | {fmt(r.p50_s)} | {fmt(r.p95_s)} | {fmt(r.p99_s)} | "
            f"{fmt(r.max_s)} | {r.lost:,} | {_load(r.load_before)} → {_load(r.load_after)} |")
    return "\n".join(rows) + "\n"


ENGINE_PATHS = ("events", "matcher", "schemas")


def git_commit(*paths: str) -> str:
    """HEAD, or the last commit that touched `paths` (the engine measured, not this file);
    `+dirty` when those files have uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("log", "-1", "--format=%h", "HEAD", "--", *paths)
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", *paths)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit or "unknown") + ("+dirty" if dirty else "")


def parse_rates(value: str) -> list[float]:
    rates = [float(part) for part in value.split(",") if part.strip()]
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates must be positive, e.g. 50,200,1000")
    return rates


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS",
                                                              "127.0.0.1:19092"),
                        help="Kafka on loopback (default: $KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--events", type=int, default=20_000,
                        help="offer and need events to pre-load (the registry comes on top)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("MATCHER_TEST_POSTGRES_URL",
                                                           DEFAULT_PG_URL),
                        help="PostgreSQL server for --db postgres; a fresh database is made "
                        "on it per run and dropped after")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds the engine gets for the stream; partial figures after")
    parser.add_argument("--latency", type=parse_rates,
                        help="measure latency at these rates (events/s), e.g. 50,200,1000, "
                        "instead of throughput")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per rate")
    parser.add_argument("--grace", type=float, default=120.0,
                        help="seconds after publishing before a case without outcome is lost")
    parser.add_argument("--warm-offers", type=int, default=300,
                        help="offers applied before the latency rates start")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--http-port", type=int,
                        default=int(os.environ.get("MATCHER_HTTP_PORT", "18083")))
    parser.add_argument("--prefix", help="topic prefix (default: bench<UTC timestamp>)")
    parser.add_argument("--keep-topics", action="store_true",
                        help="leave the run's topics on the broker (deleted by default)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out" / "ingest",
                        help="engine databases and logs go under here")
    parser.add_argument("--out", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args(None if argv is None else list(argv))

    started_utc = datetime.now(UTC)
    prefix = args.prefix or f"bench{started_utc:%Y%m%d%H%M%S}"
    config = RunConfig(bootstrap=loopback_only(args.bootstrap), prefix=prefix,
                       workdir=args.workdir / prefix, http_port=args.http_port, db=args.db,
                       pg_url=args.pg_url, partitions=args.partitions, seed=args.seed)
    report: dict[str, Any] = {
        "command": shlex.join([sys.executable, *sys.argv] if argv is None
                              else ["benchmarks/ingest.py", *argv]),
        "date_utc": started_utc.isoformat(timespec="seconds"),
        "date_shanghai": started_utc.astimezone(ZoneInfo("Asia/Shanghai")).isoformat(
            timespec="seconds"),
        "git_commit": git_commit(), "engine_commit": git_commit(*ENGINE_PATHS),
        "load_average_start": load_average(),
        "cpus": os.cpu_count(), "prefix": prefix, "db": args.db,
        # What the caller's environment changes in the engine's settings, secrets left out.
        "matcher_environment": {key: value for key, value in sorted(os.environ.items())
                                if key.startswith("MATCHER_") and "SECRET" not in key},
    }
    log(f"{report['date_utc']} commit {report['git_commit']} (engine "
        f"{report['engine_commit']}) load {load_average()} "
        f"prefix {prefix} db {args.db}")
    try:
        if args.latency:
            results = asyncio.run(latency(config, args.latency, args.duration, args.grace,
                                          warm_offers=args.warm_offers))
            report["latency"] = [asdict(r) for r in results]
            table = latency_table(results)
        else:
            result = asyncio.run(throughput(config, args.events, args.timeout))
            report["throughput"] = asdict(result)
            table = throughput_table(result, args.db)
    finally:
        if not args.keep_topics:
            deleted = asyncio.run(delete_topics_async(
                config.access, lambda topic: topic.startswith(f"{prefix}.")))
            log(f"deleted the run's {len(deleted)} topics ({prefix}.*)")
    report["load_average_end"] = load_average()
    print(table, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        log(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
