"""Subscribers: module-level handlers for what partners, grids and coordinators publish.

Input topics are consumed in batches (one poll at a time): each record is validated on its
own, the valid events of the poll are applied in one transaction (a savepoint each), refused
records are dead-lettered, and only then are the poll's offsets committed, so they are
committed after the effect is durable (AckPolicy.MANUAL, auto-commit off: `events.polls`
commits each poll's own offsets). The handler hands the validated poll over and returns, so
the next poll is fetched and validated while this one is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from faststream import Context
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from pydantic import TypeAdapter

from events.batches import Decoded, batch_decoder, outcomes_of, tolerant_batch_parser
from events.bootstrap import Services
from events.codec import json_decoder, tolerant_parser
from events.deadletter import MAX_ATTEMPTS, RETRY_PAUSE_S, is_infrastructure
from events.identity import NOT_OWNER, identity_refusal
from matcher.observability import EVENTS_APPLIED, EVENTS_DUPLICATE, EVENTS_FAILED
from matcher.services.engine import Incoming, MatchingEngine, Outcome, Refused
from matcher.services.ingest import Applied
from matcher.services.rebalancing import options_from, rebalance
from schemas.internal import ShardChanged
from schemas.matches import FulfilmentEvent, MatchDecided
from schemas.needs import NeedEvent
from schemas.offers import OfferEvent
from schemas.rebalance import RebalanceRequested
from schemas.registry import RegistryEvent
from schemas.topics import Topics

log = logging.getLogger("matcher.events")


# --- input topics: a poll at a time ------------------------------------------------------------


async def on_registry(events: list[RegistryEvent], message: KafkaMessage,
                      services: Services = Context("services")) -> None:
    """The hierarchy and the partner registry: nodes and partners join."""
    await hand_over(services, message)


async def on_offers(events: list[OfferEvent], message: KafkaMessage,
                    services: Services = Context("services")) -> None:
    """Partner systems publish, update and withdraw offers."""
    await hand_over(services, message)


async def on_needs(events: list[NeedEvent], message: KafkaMessage,
                   services: Services = Context("services")) -> None:
    """Grid workers open, update and close cases."""
    await hand_over(services, message)


async def on_decisions(events: list[MatchDecided], message: KafkaMessage,
                       services: Services = Context("services")) -> None:
    """Coordinators approve or reject proposals."""
    await hand_over(services, message)


async def on_fulfilments(events: list[FulfilmentEvent], message: KafkaMessage,
                         services: Services = Context("services")) -> None:
    """Partners report how approved matches went."""
    await hand_over(services, message)


# --- internal and command topics, a record at a time ---------------------------------------


async def on_shard_changes(event: ShardChanged, services: Services = Context("services")
                           ) -> None:
    """A shard this instance owns changed (maybe through another instance): match it soon."""
    if services.ownership.owns(event.payload.shard):
        services.engine.mark_dirty({event.payload.shard})


async def on_rebalance(event: RebalanceRequested, services: Services = Context("services")
                       ) -> None:
    """Coordinators or systems ask for a rebalancing run now; acknowledged once it is done."""
    options = options_from(services.settings, services.engine, trigger="event",
                           requested_by=event.payload.requested_by, reason=event.payload.reason,
                           event_id=str(event.event_id))
    summary = await asyncio.to_thread(rebalance, services.engine, options)
    services.wake_relay.set()
    log.info("requested rebalancing done", extra={"run_id": summary.run_id,
                                                  "status": summary.status.value})


# --- applying a batch ----------------------------------------------------------------------------


async def hand_over(services: Services, message: KafkaMessage) -> None:
    """Give the validated poll to its consumer's lane: written in order, committed once
    durable (returns as soon as the lane takes it, or once it is durable without overlap)."""
    try:
        decoded = outcomes_of(message)
        await services.polls.submit(message.consumer, message.raw_message,
                                    lambda: apply_batch(services, decoded))
    except Exception:
        # Not handed over, so never committed by its lane: fetch the poll again rather than
        # let the next poll's commit pass over it.
        await message.nack()
        raise


async def apply_batch(services: Services, decoded: list[Decoded]) -> None:
    """Apply the poll's valid events in one transaction, then dead-letter what was refused."""
    started = time.perf_counter()
    refused: list[tuple[Decoded, str, str]] = []
    valid: list[Decoded] = []
    for entry in decoded:
        if entry.event is None:
            refused.append((entry, entry.code, entry.reason))
        elif (impostor := identity_refusal(services.topics, entry.record.topic, entry.event)):
            refused.append((entry, NOT_OWNER, impostor))
        else:
            valid.append(entry)
    incoming = [Incoming(d.event, d.record.topic, d.record.partition, d.record.offset)
                for d in valid]
    outcomes = await asyncio.to_thread(ingest_isolating, services.engine, incoming)
    counts: Counter[str] = Counter()
    for entry, outcome in zip(valid, outcomes, strict=True):
        topic = entry.record.topic
        if isinstance(outcome, Applied):
            if outcome.duplicate:
                EVENTS_DUPLICATE.labels(topic=topic).inc()
                counts["duplicate"] += 1
            else:
                EVENTS_APPLIED.labels(topic=topic, event_type=entry.event.event_type).inc()
                counts["applied"] += 1
            log.debug(outcome.summary, extra={"event_id": str(entry.event.event_id),
                                              "topic": topic, "offset": entry.record.offset})
        elif isinstance(outcome, Refused):
            refused.append((entry, outcome.error.code, outcome.error.reason))
        else:
            refused.append((entry, "processing_failed", outcome))
    await asyncio.gather(*(services.dead_letters.send(entry.record, code, reason)
                           for entry, code, reason in refused))
    if counts["applied"]:
        services.wake_relay.set()
    first, last = decoded[0].record, decoded[-1].record
    log.info("batch applied", extra={
        "topic": first.topic, "records": len(decoded), "applied": counts["applied"],
        "duplicates": counts["duplicate"], "refused": len(refused),
        "offsets": f"{first.offset}-{last.offset}", "seconds": round(
            time.perf_counter() - started, 4)})


def ingest_isolating(engine: MatchingEngine, batch: list[Incoming]) -> list[Outcome | str]:
    """The batch in one transaction; if it fails unexpectedly, event by event, so only the
    event that triggers a bug fails (retried, then given up with a reason string).

    Database trouble is not the events' fault: it propagates, and the batch is redelivered.
    """
    if not batch:
        return []
    try:
        return list(engine.ingest_batch(batch))
    except Exception as error:
        if is_infrastructure(error):
            log.error("database unavailable; batch will be retried",
                      extra={"error": type(error).__name__})
            time.sleep(RETRY_PAUSE_S)
            raise
        log.warning("batch failed; applying its events one by one",
                    extra={"error": type(error).__name__, "records": len(batch)})
    return [_ingest_alone(engine, incoming) for incoming in batch]


def _ingest_alone(engine: MatchingEngine, incoming: Incoming) -> Outcome | str:
    """One event in its own transaction, retried a few times before it is given up."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return engine.ingest_batch([incoming])[0]
        except Exception as error:
            if is_infrastructure(error):
                raise
            EVENTS_FAILED.labels(topic=incoming.topic).inc()
            log.exception("event failed", extra={"attempt": attempt, "offset": incoming.offset})
            if attempt == MAX_ATTEMPTS:
                return (f"the engine failed on this event {attempt} times "
                        f"({type(error).__name__}); see engine logs")
            time.sleep(RETRY_PAUSE_S * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


# --- the router ------------------------------------------------------------------------------


def consumer_groups(group: str, topics: Topics) -> dict[str, str]:
    """One consumer group per input topic: a rebalance of one never pauses the others."""
    return {topic: f"{group}.{topic.rsplit('.', 1)[-1]}" for topic in topics.inputs}


def partner_groups(group: str, topics: Topics) -> dict[str, str]:
    """One consumer group per pattern of partners' own topics."""
    return {topics.partner_offers_pattern: f"{group}.partner-offers",
            topics.partner_fulfilments_pattern: f"{group}.partner-fulfilments"}


def build_router(services: Services) -> KafkaRouter:
    """Every subscriber of the engine on its topic, with its consumer group and batch size."""
    topics, settings = services.topics, services.settings
    groups = consumer_groups(settings.consumer_group, topics)
    router = KafkaRouter()
    batched: list[tuple[str, Any, Any]] = [
        (topics.registry, on_registry, RegistryEvent),
        (topics.offers, on_offers, OfferEvent),
        (topics.needs, on_needs, NeedEvent),
        (topics.decisions, on_decisions, MatchDecided),
        (topics.fulfilments, on_fulfilments, FulfilmentEvent),
    ]
    batch = {"batch": True, "max_records": settings.batch_max_records,
             "batch_timeout_ms": settings.batch_poll_ms, "auto_offset_reset": "earliest",
             "ack_policy": AckPolicy.MANUAL, "parser": tolerant_batch_parser}
    for topic, handler, event_type in batched:
        router.subscriber(  # type: ignore[call-overload]
            topic, title=handler.__name__, group_id=groups[topic],
            decoder=batch_decoder(TypeAdapter(event_type)), **batch,
        )(handler)
    # Partners' own topics, found by pattern: a partner added later joins without a restart.
    own = partner_groups(settings.consumer_group, topics)
    for pattern, handler, event_type in (
            (topics.partner_offers_pattern, on_offers, OfferEvent),
            (topics.partner_fulfilments_pattern, on_fulfilments, FulfilmentEvent)):
        router.subscriber(  # type: ignore[call-overload]
            pattern=pattern, title=f"{handler.__name__}_of_partner", group_id=own[pattern],
            decoder=batch_decoder(TypeAdapter(event_type)), **batch,
        )(handler)
    single = {"auto_offset_reset": "earliest", "ack_policy": AckPolicy.NACK_ON_ERROR,
              "parser": tolerant_parser, "decoder": json_decoder}
    router.subscriber(  # type: ignore[call-overload]
        topics.shard_changes, title="on_shard_changes",
        group_id=f"{settings.consumer_group}.matching", listener=services.ownership, **single,
    )(on_shard_changes)
    router.subscriber(  # type: ignore[call-overload]
        topics.rebalance, title="on_rebalance", group_id=groups[topics.rebalance], **single,
    )(on_rebalance)
    return router
