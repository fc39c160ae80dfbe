"""The partner door's Kafka side: sending a partner's HTTP events to its own topic, and
reading back why its latest events were refused (its feedback topic)."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from faststream.kafka import KafkaBroker

from events.lag import partitions_of
from matcher.kafka_access import KafkaAccess
from matcher.localkafka import TopicsOnDemand
from matcher.services.partner_door import Outgoing
from schemas.topics import Topics

READ_TIMEOUT_MS = 2000


class PartnerDoorKafka:
    """What the partner API needs of the broker, bound to the engine's connection."""

    def __init__(self, broker: KafkaBroker, access: KafkaAccess, topics: Topics,
                 on_demand: TopicsOnDemand) -> None:
        self.broker = broker
        self.access = access
        self.topics = topics
        self.on_demand = on_demand

    async def send(self, outgoing: Outgoing) -> None:
        """Publish one event on the partner's own topic; returns once the broker has it."""
        await self.on_demand.ensure([outgoing.topic])
        await self.broker.publish(
            outgoing.value, outgoing.topic, key=outgoing.key.encode(),
            headers={"content-type": "application/json", "event_type": outgoing.event_type,
                     "event_id": outgoing.event_id})

    async def refusals(self, partner_id: str, limit: int) -> list[dict[str, Any]]:
        """The partner's latest refused events, newest first: when, code, reason, event id."""
        topic = self.topics.feedback_of(partner_id)
        partitions = await partitions_of(self.access, [topic])
        if not partitions:
            return []
        consumer = AIOKafkaConsumer(**self.access.aiokafka(), group_id=None,
                                    enable_auto_commit=False)
        try:
            await consumer.start()
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, max(starts[tp], ends[tp] - limit))
            records = await _read_until(consumer, ends)
        finally:
            await consumer.stop()
        records.sort(key=lambda r: r.timestamp, reverse=True)
        return [_refusal(record) for record in records[:limit]]


async def _read_until(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]
                      ) -> list[Any]:
    """Every record up to the end offsets taken before reading."""
    records: list[Any] = []
    while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
        batch = await consumer.getmany(timeout_ms=READ_TIMEOUT_MS)
        if not batch:
            break
        for partition_records in batch.values():
            records.extend(partition_records)
    return records


def _refusal(record: Any) -> dict[str, Any]:
    """A dead letter as the partner sees it: why, when, and which event."""
    headers = {name: value.decode("utf-8", errors="replace")
               for name, value in (record.headers or ())}
    event_id = None
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        event_id = json.loads(record.value).get("event_id")
    return {"at": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
            "reason_code": headers.get("dlq.reason_code"), "reason": headers.get("dlq.reason"),
            "event_id": event_id, "key": record.key.decode("utf-8", errors="replace")
            if record.key else None}
