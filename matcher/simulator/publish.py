"""Publish simulated events to Kafka: the one impure edge of the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import NamedTuple

from aiokafka import AIOKafkaProducer

from matcher.kafka_access import KafkaAccess
from schemas import (
    CaseClosed,
    CaseOpened,
    CaseUpdated,
    Envelope,
    NodeRegistered,
    OfferPublished,
    OfferUpdated,
    OfferWithdrawn,
    PartnerRegistered,
    Topics,
)
from schemas.topics import REGISTRY_KEY

# Events in flight before waiting for their acknowledgements: big enough to keep the
# producer's batches full, small enough to report progress often.
BATCH_SIZE = 500
DEFAULT_TOPICS = Topics()


class Route(NamedTuple):
    """Where an event goes: topic, partition key (entity id) and its event type."""

    topic: str
    key: str
    event_type: str


def route(event: Envelope, topics: Topics = DEFAULT_TOPICS) -> Route:
    """The topic, key and type of an event; keys keep each entity's (and the registry's) order."""
    if isinstance(event, NodeRegistered):
        return Route(topics.registry, REGISTRY_KEY, event.event_type)
    if isinstance(event, PartnerRegistered):
        return Route(topics.registry, REGISTRY_KEY, event.event_type)
    if isinstance(event, OfferPublished | OfferUpdated | OfferWithdrawn):
        return Route(topics.offers, event.payload.offer_id, event.event_type)
    if isinstance(event, CaseOpened | CaseUpdated | CaseClosed):
        return Route(topics.needs, event.payload.case_id, event.event_type)
    raise ValueError(f"the simulator does not publish {type(event).__name__} events")


def topic_and_key(event: Envelope, topics: Topics = DEFAULT_TOPICS) -> tuple[str, bytes]:
    """The topic an event goes to and its key (the entity id) as bytes."""
    target = route(event, topics)
    return target.topic, target.key.encode()


def headers_of(event: Envelope, topics: Topics = DEFAULT_TOPICS) -> list[tuple[str, bytes]]:
    """Kafka headers: event type and id, so consumers can filter without parsing."""
    return [("event_type", route(event, topics).event_type.encode()),
            ("event_id", str(event.event_id).encode())]


async def publish_events(
    access: KafkaAccess,
    topics: Topics,
    events: Iterable[Envelope],
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Send every event (JSON) to its topic in order, acknowledged by all replicas; the count."""
    pending = list(events)
    producer = AIOKafkaProducer(**access.aiokafka(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = 0
        for start in range(0, len(pending), batch_size):
            batch = pending[start:start + batch_size]
            await _send_batch(producer, topics, batch)
            sent += len(batch)
            if progress is not None:
                progress(sent, len(pending))
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def _send_batch(producer: AIOKafkaProducer, topics: Topics, batch: list[Envelope]) -> None:
    """Enqueue a batch in order, then wait until every record of it is acknowledged."""
    futures = []
    for event in batch:
        topic, key = topic_and_key(event, topics)
        futures.append(await producer.send(topic, value=event.model_dump_json().encode(),
                                           key=key, headers=headers_of(event, topics)))
    await asyncio.gather(*futures)
