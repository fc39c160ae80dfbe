"""The Kafka edge assembled: services, the router of subscribers, the publishers, the
background loops and the HTTP side (health, metrics, AsyncAPI, API and console).

Handlers live in `events.handlers`, publishers in `events.publishers`, loops in
`events.loops`; the services are built once in `events.bootstrap`. This module only wires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from faststream._internal.context.repository import ContextRepo
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.specification import AsyncAPI
from prometheus_client import REGISTRY, make_asgi_app
from sqlalchemy import Engine
from starlette.responses import RedirectResponse

from events.bootstrap import Services, build_services
from events.deadletter import DeadLetters, dead_letter_middleware
from events.handlers import build_router, consumer_groups
from events.health import broker_check, database_check, liveness, readiness
from events.loops import start_loops, stop_loops
from events.partner_feedback import PartnerDoorKafka
from events.publishers import Publishers
from events.shards import ShardOwnership
from events.web import AsgiWithMounts
from matcher.localkafka import ensure_topics_async
from matcher.services.engine import MatchingEngine
from matcher.settings import Settings
from matcher.storage.database import migrate
from schemas.topics import Topics

__all__ = ["EngineApp", "asyncapi_json", "asyncapi_of", "build_app", "consumer_groups"]

log = logging.getLogger("matcher.events")
DRAIN_TIMEOUT_S = 30.0


@dataclass
class EngineApp:
    """Everything the running engine is made of, wired together."""

    settings: Settings
    topics: Topics
    broker: KafkaBroker
    services: Services
    publishers: Publishers
    asgi: AsgiFastStream
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def engine(self) -> MatchingEngine:
        return self.services.engine

    @property
    def dead_letters(self) -> DeadLetters:
        return self.services.dead_letters

    @property
    def ownership(self) -> ShardOwnership:
        return self.services.ownership

    def asyncapi(self) -> AsyncAPI:
        """The AsyncAPI document of every topic, generated from the code."""
        return asyncapi_of(self.broker)


def asyncapi_of(broker: KafkaBroker) -> AsyncAPI:
    """The AsyncAPI document for a broker with the engine's subscribers and publishers."""
    return AsyncAPI(
        broker,
        title="Charity matching engine",
        version="1.0.0",
        description="Offers and needs in; proposals, unmatched reasons and dead letters out.",
    )


def asyncapi_json(settings: Settings) -> str:
    """The AsyncAPI document as stable, pretty JSON (what docs/asyncapi.json holds)."""
    document = asyncapi_of(build_app(settings).broker).to_specification().to_jsonable()
    return json.dumps(one_event_per_record(document), indent=2, sort_keys=True) + "\n"


def one_event_per_record(document: dict[str, Any]) -> dict[str, Any]:
    """Document a batch subscriber's payload as the one event each Kafka record carries.

    FastStream describes a batch subscriber by its handler's parameter, a list; but the list
    is how the engine reads a poll, not what a partner writes: every record is one event.
    """
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        if name.endswith(":Message:Payload") and schema.get("type") == "array":
            items = schema.pop("items")
            schema.pop("type")
            schema.update(items)
    return document


def build_app(settings: Settings, *, db: Engine | None = None) -> EngineApp:
    """Wire the broker, the service layer and the HTTP side."""
    services = build_services(settings, db=db)
    context = ContextRepo()
    context.set_global("services", services)
    broker = KafkaBroker(
        services.kafka.bootstrap,
        security=services.kafka.faststream(),
        # New partners' topics join the pattern subscriptions at the next metadata refresh.
        metadata_max_age_ms=settings.kafka_metadata_max_age_ms,
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY),
                     dead_letter_middleware(services.dead_letters)],
        logger=logging.getLogger("matcher.broker"),
        # Per-message lines are for debugging; a batch logs one line of its own at INFO.
        log_level=logging.DEBUG,
        context=context,
    )
    broker.include_router(build_router(services))
    publishers = Publishers(broker, services.topics, services.on_demand)
    door = PartnerDoorKafka(broker, services.kafka, services.topics, services.on_demand)
    services.web.state.partner_send = door.send
    services.web.state.partner_refusals = door.refusals

    async def on_startup() -> None:
        await asyncio.to_thread(migrate, services.db)
        created = await ensure_topics_async(services.kafka, services.topics.all,
                                            settings.topic_partitions)
        if created:
            log.info("topics created", extra={"topics": created})
        await services.dead_letters.start()

    async def after_startup() -> None:
        app.tasks = start_loops(services, publishers)
        services.wake_relay.set()
        log.info("engine started", extra={"bootstrap": services.kafka.bootstrap,
                                          "principal": services.kafka.principal,
                                          "topic_prefix": settings.topic_prefix})

    async def on_shutdown() -> None:
        # Polls handed over are written and committed while the consumers still run; what
        # is not done in time is delivered again after the restart.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(services.polls.drain(), DRAIN_TIMEOUT_S)
        await stop_loops(app.tasks)

    async def after_shutdown() -> None:
        await services.polls.cancel()
        await services.dead_letters.stop()
        log.info("engine stopped")

    asgi = AsgiWithMounts(
        broker,
        mounts=[("/api", services.web), ("/console", services.web),
                ("/partner", services.web)],
        asgi_routes=[("/health", liveness),
                     ("/ready", readiness({"database": database_check(services.db),
                                           "broker": broker_check(broker)})),
                     ("/metrics", make_asgi_app(REGISTRY)),
                     # The web app's page renders the document with self-hosted assets.
                     ("/asyncapi", RedirectResponse("/api/asyncapi"))],
        specification=asyncapi_of(broker),
        on_startup=[on_startup], after_startup=[after_startup],
        on_shutdown=[on_shutdown], after_shutdown=[after_shutdown],
        logger=logging.getLogger("matcher.app"),
    )
    app = EngineApp(settings=settings, topics=services.topics, broker=broker,
                    services=services, publishers=publishers, asgi=asgi)
    return app
