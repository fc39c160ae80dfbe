"""The Kafka edge: subscribers for what partners, grids and coordinators publish, publisher
objects for what the engine says back, and the loops that match and relay.

Subscribers are thin: FastStream validates the payload against `schemas/`, the handler hands
the event to the service layer in a worker thread, and returns. The offset is committed only
after that (AckPolicy.NACK_ON_ERROR, auto-commit off), so an effect is durable before its
event is acknowledged; refused events are dead-lettered by `events.deadletter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field

from aiokafka.structs import ConsumerRecord
from faststream.asgi import AsgiFastStream, make_ping_asgi
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.middlewares import AckPolicy
from faststream.specification import AsyncAPI
from prometheus_client import REGISTRY, make_asgi_app
from sqlalchemy import Engine

from events.codec import json_decoder, tolerant_parser
from events.deadletter import DeadLetters, dead_letter_middleware
from events.shards import ShardOwnership
from events.web import AsgiWithMounts
from matcher.localkafka import ensure_topics_async
from matcher.observability import (
    BATCH_SECONDS,
    EVENTS_APPLIED,
    EVENTS_DUPLICATE,
    OUTBOX_BACKLOG,
    PENDING_SHARDS,
    PROPOSALS,
)
from matcher.services.desk import Desk
from matcher.services.engine import MatchingEngine
from matcher.services.ingest import IncomingEvent
from matcher.services.matching import MatchingConfig
from matcher.services.rebalancing import options_from, rebalance, rebalance_nightly
from matcher.settings import Settings
from matcher.storage.database import migrate, open_engine
from matcher.web.app import build_web
from schemas.common import Level
from schemas.internal import ShardChanged
from schemas.matches import (
    MatchApproved,
    MatchDecided,
    MatchFulfilled,
    MatchProposed,
    MatchRevoked,
    NeedUnmatched,
)
from schemas.needs import NeedEvent
from schemas.offers import OfferEvent
from schemas.rebalance import RebalanceCompleted, RebalanceRequested
from schemas.registry import RegistryEvent
from schemas.topics import Topics

log = logging.getLogger("matcher.events")

RELAY_BATCH = 500
LOOP_TICK_S = 0.1


@dataclass
class EngineApp:
    """Everything the running engine is made of, wired together."""

    settings: Settings
    topics: Topics
    broker: KafkaBroker
    engine: MatchingEngine
    dead_letters: DeadLetters
    asgi: AsgiFastStream
    ownership: ShardOwnership
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    wake_relay: asyncio.Event = field(default_factory=asyncio.Event)

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


def consumer_groups(group: str, topics: Topics) -> dict[str, str]:
    """One consumer group per input topic: a rebalance of one never pauses the others."""
    return {topic: f"{group}.{topic.rsplit('.', 1)[-1]}" for topic in topics.inputs}


def asyncapi_json(settings: Settings) -> str:
    """The AsyncAPI document as stable, pretty JSON (what docs/asyncapi.json holds)."""
    document = asyncapi_of(build_app(settings).broker).to_specification()
    return json.dumps(document.to_jsonable(), indent=2, sort_keys=True) + "\n"


def build_app(settings: Settings, *, db: Engine | None = None) -> EngineApp:
    """Wire the broker, the service layer and the HTTP side (health, metrics, AsyncAPI)."""
    topics = Topics(settings.topic_prefix)
    database = db or open_engine(settings.database_url)
    engine = MatchingEngine(
        db=database, topics=topics, shard_level=Level(settings.shard_level),
        matching=MatchingConfig(topics=topics, candidates_per_item=settings.candidates_per_item,
                                time_limit_s=settings.solver_time_limit_s,
                                workers=settings.solver_workers),
    )
    groups = consumer_groups(settings.consumer_group, topics)
    dead_letters = DeadLetters(settings.kafka_bootstrap_servers, topics.dead_letter)
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY),
                     dead_letter_middleware(dead_letters)],
        logger=logging.getLogger("matcher.broker"),
    )
    consumer = {
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "parser": tolerant_parser,
        "decoder": json_decoder,
    }

    async def catch_up(_: set[str] | None) -> None:
        """Match every shard with open demand that this instance has just come to own."""
        shards = await asyncio.to_thread(engine.all_shards)
        engine.mark_dirty(ownership.owned_among(shards))

    ownership = ShardOwnership(topics.shard_changes, settings.topic_partitions, catch_up)

    async def apply(event: IncomingEvent, message: KafkaMessage) -> None:
        """Hand the event to the service layer; returns once its effect is committed."""
        record: ConsumerRecord[bytes, bytes] = message.raw_message
        applied = await asyncio.to_thread(engine.ingest, event, topic=record.topic,
                                          partition=record.partition, offset=record.offset)
        if applied.duplicate:
            EVENTS_DUPLICATE.labels(topic=record.topic).inc()
        else:
            EVENTS_APPLIED.labels(topic=record.topic, event_type=event.event_type).inc()
            app.wake_relay.set()
        log.info(applied.summary, extra={"event_id": str(event.event_id),
                                         "topic": record.topic, "offset": record.offset})

    @broker.subscriber(topics.registry, title="on_registry", group_id=groups[topics.registry],
                       **consumer)  # type: ignore[call-overload]
    async def on_registry(event: RegistryEvent, message: KafkaMessage) -> None:
        """The hierarchy and the partner registry: nodes and partners join."""
        await apply(event, message)

    @broker.subscriber(topics.offers, title="on_offers", group_id=groups[topics.offers],
                       **consumer)  # type: ignore[call-overload]
    async def on_offers(event: OfferEvent, message: KafkaMessage) -> None:
        """Partner systems publish, update and withdraw offers."""
        await apply(event, message)

    @broker.subscriber(topics.needs, title="on_needs", group_id=groups[topics.needs],
                       **consumer)  # type: ignore[call-overload]
    async def on_needs(event: NeedEvent, message: KafkaMessage) -> None:
        """Grid workers open, update and close cases."""
        await apply(event, message)

    @broker.subscriber(topics.decisions, title="on_decisions", group_id=groups[topics.decisions],
                       **consumer)  # type: ignore[call-overload]
    async def on_decisions(event: MatchDecided, message: KafkaMessage) -> None:
        """Coordinators approve or reject proposals."""
        await apply(event, message)

    @broker.subscriber(topics.fulfilments, title="on_fulfilments",
                       group_id=groups[topics.fulfilments],
                       **consumer)  # type: ignore[call-overload]
    async def on_fulfilments(event: MatchFulfilled, message: KafkaMessage) -> None:
        """Partners report how approved matches went."""
        await apply(event, message)

    @broker.subscriber(topics.shard_changes, title="on_shard_changes",  # type: ignore[call-overload]
                       group_id=f"{settings.consumer_group}.matching", listener=ownership,
                       **consumer)
    async def on_shard_changes(event: ShardChanged) -> None:
        """A shard this instance owns changed: match it after the batch window."""
        if ownership.owns(event.payload.shard):
            engine.mark_dirty({event.payload.shard})

    to_shard_changes = broker.publisher(
        topics.shard_changes, title="to_shard_changes", schema=ShardChanged,
        description="Internal: a matching shard changed, keyed by shard id; the instance "
        "owning that partition matches the shard.",
    )
    to_proposals = broker.publisher(
        topics.proposals, title="to_proposals", schema=MatchProposed | MatchRevoked,
        description="Proposals made (match.proposed) and taken back (match.revoked), "
        "keyed by case id.",
    )
    to_unmatched = broker.publisher(
        topics.unmatched, title="to_unmatched", schema=NeedUnmatched,
        description="Need items left unmatched after a batch, with the reason; sent when "
        "the reason changes. Keyed by case id.",
    )
    # Dead letters are sent by `DeadLetters` with the original bytes and headers; this
    # publisher object documents the topic (value: the refused bytes; dlq.* headers).
    broker.publisher(
        topics.dead_letter, title="to_dead_letter", schema=bytes,
        description="Refused events: original value, key and headers, plus headers "
        "dlq.reason_code, dlq.reason, dlq.topic, dlq.partition, dlq.offset, dlq.at.",
    )
    publishers = {topics.proposals: to_proposals, topics.unmatched: to_unmatched,
                  topics.shard_changes: to_shard_changes}

    # --- coordination (issue 4): assignments to partners, web API + console, sweep loop ---
    publishers[topics.assignments] = broker.publisher(
        topics.assignments, title="to_assignments", schema=MatchApproved,
        description="Approved matches for the offering partner (match.approved), keyed by "
        "partner id; the partner answers with match.fulfilled on the fulfilments topic.",
    )
    web = build_web(engine, settings)
    desk: Desk = web.state.desk
    # --- end coordination -------------------------------------------------------------------

    # --- rebalancing (issue 5): requests in, run reports out, the nightly run --------------
    publishers[topics.rebalance_reports] = broker.publisher(
        topics.rebalance_reports, title="to_rebalance_reports", schema=RebalanceCompleted,
        description="One rebalance.completed per rebalancing run (nightly, CLI or requested): "
        "counts, objective before and after, and the diff (new, moved, revoked, released "
        "proposals with reasons and score changes). Keyed by run id.",
    )

    @broker.subscriber(topics.rebalance, title="on_rebalance", group_id=groups[topics.rebalance],
                       **consumer)  # type: ignore[call-overload]
    async def on_rebalance(event: RebalanceRequested, message: KafkaMessage) -> None:
        """Coordinators or systems ask for a rebalancing run now; acked once it is done."""
        options = options_from(settings, engine, trigger="event",
                               requested_by=event.payload.requested_by,
                               reason=event.payload.reason, event_id=str(event.event_id))
        summary = await asyncio.to_thread(rebalance, engine, options)
        app.wake_relay.set()
        log.info("requested rebalancing done", extra={"run_id": summary.run_id,
                                                      "status": summary.status.value})
    # --- end rebalancing ---------------------------------------------------------------------

    async def relay_outbox() -> None:
        """Publish committed outgoing events, then mark them published (at-least-once)."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(app.wake_relay.wait(), timeout=1.0)
            app.wake_relay.clear()
            try:
                while rows := await asyncio.to_thread(engine.unpublished, RELAY_BATCH):
                    OUTBOX_BACKLOG.set(len(rows))
                    for row in rows:
                        await publishers[row.topic].publish(
                            row.value.encode(), key=row.key.encode(),
                            headers={"content-type": "application/json",
                                     "event_type": row.event_type, "event_id": row.event_id},
                        )
                    await asyncio.to_thread(engine.mark_published, [r.seq for r in rows])
                OUTBOX_BACKLOG.set(0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                await asyncio.sleep(1.0)

    async def match_continuously() -> None:
        """Every shard that changed is matched once its batch window has passed."""
        while True:
            await asyncio.sleep(LOOP_TICK_S)
            PENDING_SHARDS.set(engine.pending_shards())
            for shard in engine.due_shards(settings.batch_window_s):
                if not ownership.owns(shard):
                    continue  # another instance owns it and heard of the change too
                try:
                    report = await asyncio.to_thread(engine.match_shard, shard)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("matching batch failed", extra={"shard": shard})
                    engine.mark_dirty({shard})
                    await asyncio.sleep(1.0)
                    continue
                BATCH_SECONDS.labels(shard=shard).observe(report.total_s)
                PROPOSALS.labels(shard=shard).inc(report.proposals)
                log.info("matching batch done", extra=report.__dict__)
                app.wake_relay.set()

    async def on_startup() -> None:
        await asyncio.to_thread(migrate, database)
        created = await ensure_topics_async(settings.kafka_bootstrap_servers, topics.all,
                                            settings.topic_partitions)
        if created:
            log.info("topics created", extra={"topics": created})
        await dead_letters.start()

    async def after_startup() -> None:
        app.tasks = [asyncio.create_task(relay_outbox(), name="relay_outbox"),
                     asyncio.create_task(match_continuously(), name="match_continuously"),
                     # coordination (issue 4): escalate / expire pending proposals
                     asyncio.create_task(desk.sweep_forever(app.wake_relay.set),
                                         name="sweep_pending")]
        if settings.rebalance_enabled:  # rebalancing (issue 5): the nightly run
            app.tasks.append(asyncio.create_task(
                rebalance_nightly(engine, settings, app.wake_relay.set), name="rebalance_nightly"))
        app.wake_relay.set()
        log.info("engine started", extra={"bootstrap": settings.kafka_bootstrap_servers,
                                          "topic_prefix": settings.topic_prefix})

    async def on_shutdown() -> None:
        for task in app.tasks:
            task.cancel()
        for task in app.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def after_shutdown() -> None:
        await dead_letters.stop()
        log.info("engine stopped")

    asgi = AsgiWithMounts(
        broker,
        mounts=[("/api", web), ("/console", web)],  # coordination (issue 4)
        asgi_routes=[("/health", make_ping_asgi(broker, timeout=5.0)),
                     ("/metrics", make_asgi_app(REGISTRY))],
        asyncapi_path="/asyncapi",
        specification=asyncapi_of(broker),
        on_startup=[on_startup], after_startup=[after_startup],
        on_shutdown=[on_shutdown], after_shutdown=[after_shutdown],
        logger=logging.getLogger("matcher.app"),
    )
    app = EngineApp(settings=settings, topics=topics, broker=broker, engine=engine,
                    dead_letters=dead_letters, asgi=asgi, ownership=ownership)
    return app

