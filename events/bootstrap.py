"""Building the engine's services once: database, matching engine, desk, dead letters, shard
ownership and the lanes that write polls. Everything else (routers, publishers, loops, the
ASGI app) is handed these."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastapi import FastAPI
from sqlalchemy import Engine

from events.deadletter import DeadLetters
from events.polls import Polls
from events.shards import ShardOwnership
from matcher.kafka_access import KafkaAccess, kafka_access
from matcher.localkafka import TopicsOnDemand
from matcher.services.desk import Desk
from matcher.services.engine import MatchingEngine
from matcher.services.matching import MatchingConfig
from matcher.settings import Settings
from matcher.storage.database import open_engine
from matcher.web.app import build_web
from schemas.common import Level
from schemas.topics import Topics


@dataclass
class Services:
    """The running engine's parts, built once and shared by every edge."""

    settings: Settings
    topics: Topics
    db: Engine
    engine: MatchingEngine
    web: FastAPI
    desk: Desk
    dead_letters: DeadLetters
    ownership: ShardOwnership
    kafka: KafkaAccess
    on_demand: TopicsOnDemand
    polls: Polls = field(default_factory=Polls)
    wake_relay: asyncio.Event = field(default_factory=asyncio.Event)


def build_services(settings: Settings, *, db: Engine | None = None) -> Services:
    """Wire the service layer from the settings (one database engine, one matching engine)."""
    topics = Topics(settings.topic_prefix)
    kafka = kafka_access(settings)
    on_demand = TopicsOnDemand(kafka, settings.topic_partitions)
    database = db or open_engine(settings.database_url)
    engine = MatchingEngine(
        db=database, topics=topics, shard_level=Level(settings.shard_level),
        matching=MatchingConfig.from_settings(settings, topics),
    )
    web = build_web(engine, settings)

    async def catch_up(_: set[str] | None) -> None:
        """Match every shard with open demand that this instance has just come to own."""
        shards = await asyncio.to_thread(engine.all_shards)
        engine.mark_dirty(ownership.owned_among(shards))

    ownership = ShardOwnership(topics.shard_changes, settings.topic_partitions, catch_up)
    return Services(settings=settings, topics=topics, db=database, engine=engine, web=web,
                    desk=web.state.desk,
                    dead_letters=DeadLetters(kafka, topics, on_demand), kafka=kafka,
                    on_demand=on_demand,
                    ownership=ownership, polls=Polls(depth=settings.ingest_overlap_polls,
                                                       full=settings.batch_max_records))
