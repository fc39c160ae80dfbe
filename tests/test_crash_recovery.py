"""Killing the engine process mid-stream loses no event and double-counts none."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from events.app import consumer_groups
from events.lag import consumer_lag, end_offsets
from matcher.localkafka import ensure_topics_async
from matcher.settings import Settings
from matcher.storage.database import open_engine
from matcher.storage.store import HOLDING, unit_of_work
from matcher.storage.tables import offers, proposals
from schemas.topics import REGISTRY_KEY, Topics
from tests import factories as f
from tests.kafka_helpers import client, engine_settings, produce, read_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

OFFERS = 120
CASES = 120


def start_engine(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """The engine as its own process, configured only through the environment."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MATCHER_TOPIC_PREFIX": settings.topic_prefix,
        "MATCHER_CONSUMER_GROUP": settings.consumer_group,
        "MATCHER_DATABASE_URL": settings.database_url,
        "MATCHER_HTTP_PORT": str(settings.http_port),
        "MATCHER_BATCH_WINDOW_S": "0.2",
    }
    return subprocess.Popen([sys.executable, "-m", "matcher.cli", "run"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stream() -> tuple[list[tuple[str, bytes, bytes]], int]:
    """Registry, then many offers and cases, as (topic kind, key, value)."""
    records: list[tuple[str, bytes, bytes]] = []
    for event in [*f.hierarchy(), f.partner("p1"), f.partner("p2")]:
        records.append(("registry", REGISTRY_KEY.encode(), f.encode(event)))
    for n in range(OFFERS):
        event = f.goods_offer(f"g{n}", "p1" if n % 2 else "p2", quantity=3)
        records.append(("offers", f"g{n}".encode(), f.encode(event)))
    for n in range(CASES):
        event = f.case(f"c{n}", grid=f.GRID if n % 2 else f.GRID2,
                       items=[f.item(kind="goods", need="rice", quantity=2, unit="kg")])
        records.append(("needs", f"c{n}".encode(), f.encode(event)))
    return records, len(records)


def applied(settings: Settings) -> int:
    engine = open_engine(settings.database_url)
    try:
        with unit_of_work(engine) as store:
            return store.count("audit_log")
    except Exception:
        return 0
    finally:
        engine.dispose()


async def wait_healthy(settings: Settings, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            assert process.poll() is None, "engine exited during start-up"
            try:
                response = await client.get(f"http://127.0.0.1:{settings.http_port}/health")
                if response.status_code == 200 and response.json() == {"status": "ok"}:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError("engine never became healthy")


async def test_kill_mid_stream_then_restart_loses_nothing_and_counts_once(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = engine_settings(kafka_bootstrap, tmp_path)
    topics = Topics(settings.topic_prefix)
    await ensure_topics_async(client(kafka_bootstrap), topics.all, 3)
    records, total = stream()

    async def publish(kind: str) -> None:
        await produce(kafka_bootstrap, getattr(topics, kind),
                      [(key, value) for k, key, value in records if k == kind])

    # Partners join before they publish: the registry is applied first, then the stream.
    await publish("registry")
    log = tmp_path / "engine.log"
    first = start_engine(settings, log)
    try:
        while applied(settings) < 10:
            assert first.poll() is None, log.read_text()[-3000:]
            await asyncio.sleep(0.05)
        await publish("offers")
        await publish("needs")
        while applied(settings) < 60:
            assert first.poll() is None, log.read_text()[-3000:]
            await asyncio.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    killed_at = applied(settings)
    assert killed_at < total, "the engine was killed mid-stream"

    second = start_engine(settings, log)
    try:
        await wait_healthy(settings, second)
        for _ in range(600):
            lag = await consumer_lag(client(kafka_bootstrap),
                                     consumer_groups(settings.consumer_group, topics))
            if lag == 0 and applied(settings) == total:
                break
            await asyncio.sleep(0.2)
        db = open_engine(settings.database_url)
        expected = min(OFFERS * 3, CASES * 2)
        for _ in range(600):  # until matching has caught up and the outbox is sent
            with unit_of_work(db) as store:
                held = store.conn.execute(
                    select(func.coalesce(func.sum(proposals.c.amount), 0.0))
                    .where(proposals.c.status.in_([s.value for s in HOLDING]))).scalar_one()
                if held >= expected - 1e-9 and not store.unpublished(1):
                    break
            await asyncio.sleep(0.2)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)

    with unit_of_work(db) as store:
        assert store.count("audit_log") == total, "every event applied exactly once"
        assert store.count("offers") == OFFERS
        assert store.count("cases") == CASES
        holding = store.conn.execute(
            select(proposals.c.offer_id, proposals.c.case_id, proposals.c.amount,
                   proposals.c.proposal_id)
            .where(proposals.c.status.in_([s.value for s in HOLDING]))).all()
        capacity = dict(store.conn.execute(select(offers.c.offer_id, offers.c.capacity)).all())
    per_offer: dict[str, float] = defaultdict(float)
    per_case: dict[str, float] = defaultdict(float)
    for offer_id, case_id, amount, _ in holding:
        per_offer[offer_id] += amount
        per_case[case_id] += amount
    assert all(per_offer[o] <= capacity[o] + 1e-9 for o in per_offer), "capacity never exceeded"
    assert all(v <= 2 + 1e-9 for v in per_case.values()), "demand never exceeded"
    assert sum(per_case.values()) == pytest.approx(expected)
    dead = await end_offsets(client(kafka_bootstrap), [topics.dead_letter])
    assert sum(dead.values()) == 0, "nothing was dead-lettered"
    published = await read_until(
        kafka_bootstrap, topics.proposals,
        lambda rs: {_proposal_id(r) for r in rs} >= {p for *_, p in holding})
    assert published


def _proposal_id(record: Any) -> str:
    import json

    return str(json.loads(record.value)["payload"].get("proposal_id"))
