"""Overlapping polls: the next poll is read while the last is written, and nothing is committed
before it is durable, out of order, or at all when its writing fails."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from faststream.kafka import TestKafkaBroker

from events.app import EngineApp, build_app
from events.polls import Polls, offsets_after
from matcher.settings import Settings
from matcher.storage.database import migrate
from tests import factories as f
from tests.test_edge_fast import RecordedDeadLetters, audit, register

TP = TopicPartition("t", 0)


@dataclass
class Record:
    topic: str
    partition: int
    offset: int


class RecordingConsumer:
    """A consumer that only records which offsets it was told to commit, and when."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        committed = {tp: meta.offset for tp, meta in offsets.items()}
        self.commits.append(committed)
        self.log.append(f"commit {committed[TP]}")


def poll(*offsets: int) -> list[Record]:
    return [Record("t", 0, offset) for offset in offsets]


def test_a_poll_commits_one_past_its_last_record_per_partition() -> None:
    records = [Record("t", 0, 4), Record("t", 1, 9), Record("t", 0, 5)]
    assert offsets_after(records) == {TP: 6, TopicPartition("t", 1): 10}


async def test_polls_are_written_in_order_while_the_next_is_handed_over() -> None:
    log: list[str] = []
    consumer = RecordingConsumer(log)
    polls = Polls(depth=1)
    release = asyncio.Event()

    def writer(name: str, wait: bool) -> Any:
        async def write() -> None:
            log.append(f"start {name}")
            if wait:
                await release.wait()
            log.append(f"durable {name}")
        return write

    await polls.submit(consumer, poll(0, 1), writer("a", wait=True))
    await asyncio.sleep(0.01)
    # The handler is back before poll a is durable: the next poll can be fetched meanwhile.
    assert log == ["start a"]
    handing_over_b = asyncio.create_task(polls.submit(consumer, poll(2, 3), writer("b", False)))
    await asyncio.sleep(0.05)
    assert not handing_over_b.done()  # at most one poll is written ahead of the one read
    release.set()
    await handing_over_b
    await polls.drain()
    assert log == ["start a", "durable a", "commit 2", "start b", "durable b", "commit 4"]
    assert consumer.commits == [{TP: 2}, {TP: 4}]


async def test_without_overlap_the_handler_returns_once_the_poll_is_committed() -> None:
    log: list[str] = []
    consumer = RecordingConsumer(log)

    async def write() -> None:
        await asyncio.sleep(0.01)
        log.append("durable")

    await Polls(depth=0).submit(consumer, poll(7), write)
    assert log == ["durable", "commit 8"]


async def test_a_failing_poll_commits_nothing_until_it_is_written_and_holds_back_the_next(
) -> None:
    log: list[str] = []
    consumer = RecordingConsumer(log)
    polls = Polls(depth=1, pause_s=0.01)
    failures = 3

    async def failing() -> None:
        nonlocal failures
        if failures:
            failures -= 1
            log.append("failed")
            raise ConnectionError("database away")
        log.append("durable a")

    async def next_one() -> None:
        log.append("durable b")

    await polls.submit(consumer, poll(0), failing)
    handing_over_b = asyncio.create_task(polls.submit(consumer, poll(1), next_one))
    await asyncio.sleep(0.015)
    assert consumer.commits == []
    await handing_over_b
    await polls.drain()
    assert log == ["failed", "failed", "failed", "durable a", "commit 1", "durable b",
                   "commit 2"]


async def test_polls_cancelled_at_shutdown_are_not_committed() -> None:
    log: list[str] = []
    consumer = RecordingConsumer(log)
    polls = Polls(depth=1)

    async def never() -> None:
        await asyncio.Event().wait()

    await polls.submit(consumer, poll(0), never)
    await polls.cancel()
    assert consumer.commits == []


@pytest.fixture
def app(tmp_path: Path) -> EngineApp:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'polls.db'}",
                        topic_prefix="polls", rebalance_enabled=False, ingest_overlap_polls=1)
    built = build_app(settings)
    migrate(built.services.db)
    built.services.dead_letters = RecordedDeadLetters()  # type: ignore[assignment]
    return built


async def test_with_overlapping_polls_a_bad_record_is_still_dead_lettered(
        app: EngineApp) -> None:
    sink: RecordedDeadLetters = app.services.dead_letters  # type: ignore[assignment]
    async with TestKafkaBroker(app.broker) as broker:
        await register(broker, app)
        await broker.publish(f.encode(f.goods_offer("g1", "p1")), app.topics.offers, key=b"g1")
        await broker.publish(b"{not json", app.topics.offers, key=b"g2")
        await broker.publish(f.encode(f.goods_offer("g3", "p1")), app.topics.offers, key=b"g3")
        await app.services.polls.drain()
    assert [code for _, code, _ in sink.sent] == ["not_json"]
    assert audit(app).count("offer.published") == 2


async def test_ingest_is_behind_while_the_last_poll_of_a_consumer_came_back_full() -> None:
    polls = Polls(depth=1, full=2)
    consumer = RecordingConsumer([])

    async def write() -> None: ...

    await polls.submit(consumer, poll(0, 1), write)
    assert polls.behind()
    await polls.submit(consumer, poll(2), write)
    assert not polls.behind()
    await polls.drain()


def test_a_resting_shard_stays_due_from_its_first_change() -> None:
    from sqlalchemy import create_engine

    from matcher.services.engine import MatchingEngine
    from schemas.topics import Topics

    engine = MatchingEngine(db=create_engine("sqlite://"), topics=Topics("t"))
    engine.mark_dirty({"a", "b"})
    assert engine.due_shards(0, resting={"a"}) == ["b"]
    engine.mark_dirty({"a"})  # a later change does not push its first one back
    assert engine.due_shards(0) == ["a"]
