"""The Kafka edge on FastStream's in-memory TestKafkaBroker: fast checks of the subscribers.

Real-broker tests (test_e2e_kafka, test_crash_recovery) remain the proof; these run in a
second and pin the handlers' behaviour: a poll applied as one batch, a refused record
dead-lettered with its reason while the rest apply, a repeated event changing nothing. Polls
are written in the background while the next is read, so each test waits for the writing
(`polls.drain()`) before it looks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker

from events.app import EngineApp, build_app
from matcher.settings import Settings
from matcher.storage.database import migrate
from matcher.storage.store import unit_of_work
from schemas.topics import REGISTRY_KEY
from tests import factories as f


class RecordedDeadLetters:
    """A hand-written stand-in for the dead-letter producer: it keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str, str]] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, record: Any, code: str, reason: str) -> None:
        self.sent.append((record.value, code, reason))


@pytest.fixture
def app(tmp_path: Path) -> EngineApp:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'edge.db'}",
                        topic_prefix="edge", rebalance_enabled=False)
    built = build_app(settings)
    migrate(built.services.db)
    built.services.dead_letters = RecordedDeadLetters()  # type: ignore[assignment]
    return built


def audit(app: EngineApp) -> list[str]:
    with unit_of_work(app.services.db) as store:
        rows = store.conn.exec_driver_sql("SELECT event_type FROM audit_log ORDER BY seq")
        return [row[0] for row in rows]


async def register(broker: Any, app: EngineApp) -> None:
    for event in [*f.hierarchy(), f.partner("p1")]:
        await broker.publish(f.encode(event), app.topics.registry, key=REGISTRY_KEY.encode())


async def test_a_poll_is_applied_and_the_shard_is_marked_for_matching(app: EngineApp) -> None:
    async with TestKafkaBroker(app.broker) as broker:
        await register(broker, app)
        await broker.publish(f.encode(f.goods_offer("g1", "p1")), app.topics.offers,
                             key=b"g1")
        await app.services.polls.drain()
    assert audit(app).count("offer.published") == 1
    assert app.engine.pending_shards() == 1


async def test_a_refused_record_is_dead_lettered_and_the_next_one_applied(
        app: EngineApp) -> None:
    sink: RecordedDeadLetters = app.services.dead_letters  # type: ignore[assignment]
    async with TestKafkaBroker(app.broker) as broker:
        await register(broker, app)
        await broker.publish(b"{not json", app.topics.offers, key=b"g1")
        await broker.publish(f.encode(f.goods_offer("g2", "someone-else")), app.topics.offers,
                             key=b"g2")
        await broker.publish(f.encode(f.goods_offer("g3", "p1")), app.topics.offers, key=b"g3")
        await app.services.polls.drain()
    codes = [code for _, code, _ in sink.sent]
    assert codes == ["not_json", "unknown_partner"]
    assert all(reason for _, _, reason in sink.sent)
    assert audit(app).count("offer.published") == 1


async def test_a_repeated_event_changes_nothing(app: EngineApp) -> None:
    offer = f.encode(f.goods_offer("g1", "p1"))
    async with TestKafkaBroker(app.broker) as broker:
        await register(broker, app)
        await broker.publish(offer, app.topics.offers, key=b"g1")
        await broker.publish(offer, app.topics.offers, key=b"g1")
        await app.services.polls.drain()
    assert audit(app).count("offer.published") == 1
    with unit_of_work(app.services.db) as store:
        assert store.count("offers") == 1
        assert json.loads(store.unpublished(10)[0].value)["event_type"] == "shard.changed"
