"""The operators' gauges: pending proposals and their age, unmatched items, consumer lag and
the last rebalancing success and failure, all exposed at /metrics."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from sqlalchemy import Engine

from events import lag
from events.app import build_app
from events.loops import refresh_figures
from matcher.kafka_access import KafkaAccess
from matcher.observability import (
    OLDEST_PENDING_AGE,
    PENDING_PROPOSALS,
    REBALANCE_LAST_FAILURE,
    REBALANCE_LAST_SUCCESS,
    UNMATCHED_ITEMS,
)
from matcher.services import rebalancing
from matcher.services.engine import MatchingEngine
from matcher.services.matching import MatchingConfig
from matcher.services.rebalance_inputs import RebalanceConfig
from matcher.services.rebalancing import RunOptions, rebalance
from matcher.settings import Settings
from schemas.topics import Topics
from tests import factories as f
from tests.coordination_world import Clock

NOW = datetime(2030, 6, 3, 0, 0, tzinfo=UTC)
TOPICS = Topics("t")


def engine_with(db: Engine, *events: dict[str, Any]) -> MatchingEngine:
    """An engine on the factories' hierarchy fed the events and matched once."""
    engine = MatchingEngine(db=db, topics=TOPICS, clock=Clock(NOW))
    for event in (*f.hierarchy(), f.partner("p1"), *events):
        engine.ingest(f.parse(event), topic="test")
    engine.match_shard(f.CENTRE)
    return engine


def run_options() -> RunOptions:
    return RunOptions(trigger="test", requested_by="tester",
                      config=RebalanceConfig(matching=MatchingConfig(topics=TOPICS)))


def test_figures_count_pending_proposals_their_age_and_unmatched_items(db: Engine) -> None:
    engine_with(db, f.volunteer_offer("v1", "p1", hours=2, start=8, end=18),
                f.case("matched"),
                f.case("alone", items=[f.item(kind="goods", need="rice")]))
    refresh_figures(db, NOW + timedelta(minutes=30))
    assert PENDING_PROPOSALS._value.get() == 1
    assert OLDEST_PENDING_AGE._value.get() == pytest.approx(1800, abs=1)
    assert UNMATCHED_ITEMS._value.get() == 1


def test_figures_are_zero_on_a_quiet_district(db: Engine) -> None:
    engine_with(db)
    refresh_figures(db, NOW)
    assert (PENDING_PROPOSALS._value.get(), OLDEST_PENDING_AGE._value.get(),
            UNMATCHED_ITEMS._value.get()) == (0, 0, 0)


def test_a_completed_rebalance_sets_the_last_success_time(db: Engine) -> None:
    engine = engine_with(db)
    before = time.time()
    rebalance(engine, run_options())
    assert REBALANCE_LAST_SUCCESS._value.get() >= before


def test_a_failed_rebalance_sets_the_last_failure_time(db: Engine,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_with(db, f.case("c1"))

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("solver crashed")

    monkeypatch.setattr(rebalancing, "_attempts", crash)
    success = REBALANCE_LAST_SUCCESS._value.get()
    before = time.time()
    with pytest.raises(RuntimeError):
        rebalance(engine, run_options())
    assert REBALANCE_LAST_FAILURE._value.get() >= before
    assert REBALANCE_LAST_SUCCESS._value.get() == success


async def test_lag_by_topic_counts_uncommitted_records_per_topic(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ends = {TopicPartition("t.offers", 0): 10, TopicPartition("t.offers", 1): 5,
            TopicPartition("t.needs", 0): 7}
    committed = {"g.offers": {TopicPartition("t.offers", 0): OffsetAndMetadata(8, ""),
                              TopicPartition("t.offers", 1): OffsetAndMetadata(-1, "")},
                 "g.needs": {TopicPartition("t.needs", 0): OffsetAndMetadata(7, "")}}

    async def end_offsets(access: KafkaAccess, topics: list[str]) -> dict[TopicPartition, int]:
        return ends

    class Admin:
        def __init__(self, **_: Any) -> None: ...
        async def start(self) -> None: ...
        async def close(self) -> None: ...
        async def list_consumer_group_offsets(self, group: str
                                              ) -> dict[TopicPartition, OffsetAndMetadata]:
            return committed[group]

    monkeypatch.setattr(lag, "end_offsets", end_offsets)
    monkeypatch.setattr(lag, "AIOKafkaAdminClient", Admin)
    groups = {"t.offers": "g.offers", "t.needs": "g.needs", "t.registry": "g.registry"}
    committed["g.registry"] = {}
    lags = await lag.lag_by_topic(KafkaAccess(bootstrap="broker:9092"), groups)
    assert lags == {"t.offers": 7, "t.needs": 0, "t.registry": 0}


async def test_metrics_exposes_the_operator_gauges(tmp_path: Path) -> None:
    app = build_app(Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}")).asgi
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
        text = (await client.get("/metrics")).text
    for name in ("matcher_consumer_lag", "matcher_pending_proposals",
                 "matcher_oldest_pending_proposal_age_seconds", "matcher_unmatched_items",
                 "matcher_rebalance_last_success_timestamp_seconds",
                 "matcher_rebalance_last_failure_timestamp_seconds",
                 "matcher_dead_letters_total"):
        assert f"# HELP {name} " in text
