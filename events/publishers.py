"""What the engine says back: one publisher object per outgoing topic, and the outbox relay's
sending of committed rows with the producer's sends in flight together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
from faststream.kafka import KafkaBroker

from matcher.kafka_principals import names_a_topic
from matcher.localkafka import TopicsOnDemand
from matcher.services.outbound import ROUTES
from matcher.storage.store import OutboxRow
from schemas.internal import ShardChanged
from schemas.matches import (
    MatchApproved,
    MatchExpired,
    MatchProposed,
    MatchRejected,
    MatchReleased,
    MatchRevoked,
    NeedUnmatched,
)
from schemas.rebalance import RebalanceCompleted
from schemas.topics import Topics

# Events the offering partner is also sent on its own assignments topic.
PARTNER_EVENTS = frozenset({"match.approved", "match.released"})

# Per routed topic (a `Topics` attribute): AsyncAPI title, schema and description.
DOCUMENTED: dict[str, tuple[str, Any, str]] = {
    "proposals": ("to_proposals",
                  MatchProposed | MatchRevoked | MatchRejected | MatchExpired | MatchReleased,
                  "Every change of a proposal's fate, keyed by case id: made (match.proposed), "
                  "taken back (match.revoked), turned down by a coordinator (match.rejected), "
                  "expired undecided (match.expired), and approved matches an update made "
                  "impossible or over-committed (match.released), each with a reason."),
    "unmatched": ("to_unmatched", NeedUnmatched,
                  "Need items left unmatched after a batch, with the reason; sent when the "
                  "reason changes. Keyed by case id."),
    "assignments": ("to_assignments", MatchApproved,
                    "Approved matches for the offering partner (match.approved), keyed by "
                    "partner id; the partner answers with match.fulfilled on the fulfilments "
                    "topic."),
    "shard_changes": ("to_shard_changes", ShardChanged,
                      "Internal: a matching shard changed, keyed by shard id; the instance "
                      "owning that partition matches the shard."),
    "rebalance_reports": ("to_rebalance_reports", RebalanceCompleted,
                          "One rebalance.completed per rebalancing run (nightly, CLI or "
                          "requested): counts, objective before and after, and the diff. Keyed "
                          "by run id."),
}


class Publishers:
    """The engine's publisher objects, by topic name."""

    def __init__(self, broker: KafkaBroker, topics: Topics, on_demand: TopicsOnDemand) -> None:
        assert {route.topic for route in ROUTES.values()} == set(DOCUMENTED)
        self.broker = broker
        self.topics = topics
        self.on_demand = on_demand
        self.by_topic: dict[str, Any] = {}
        for attribute, (title, schema, description) in DOCUMENTED.items():
            topic = getattr(topics, attribute)
            self.by_topic[topic] = broker.publisher(topic, title=title, schema=schema,
                                                    description=description)
        # Dead letters are sent by `DeadLetters` with the original bytes and headers; this
        # publisher object documents the topic (value: the refused bytes; dlq.* headers).
        broker.publisher(
            topics.dead_letter, title="to_dead_letter", schema=bytes,
            description="Refused events: original value, key and headers, plus headers "
            "dlq.reason_code, dlq.reason, dlq.topic, dlq.partition, dlq.offset, dlq.at.",
        )

    async def send(self, rows: Sequence[OutboxRow]) -> None:
        """Publish outbox rows, all in flight at once; returns when the broker has them all.

        What a partner must act on (an approval, or the release of one) also goes to that
        partner's own assignments topic, keyed by partner id: the one topic it may read, as
        the shared topics hold every partner's and every case's events.
        """
        partner_of = {row.seq: partner for row in rows
                      if (partner := _partner_to_tell(row)) and names_a_topic(partner)}
        await self.on_demand.ensure({self.topics.assignments_of(p) for p in partner_of.values()})
        pending = []
        for row in rows:
            value, key = row.value.encode(), row.key.encode()
            headers = {"content-type": "application/json", "event_type": row.event_type,
                       "event_id": row.event_id}
            pending.append(await self.by_topic[row.topic].publish(
                value, key=key, no_confirm=True, headers=headers))
            if (partner := partner_of.get(row.seq)) is not None:
                pending.append(await self.broker.publish(
                    value, self.topics.assignments_of(partner), key=partner.encode(),
                    no_confirm=True, headers=headers))
        await asyncio.gather(*pending)


def _partner_to_tell(row: OutboxRow) -> str | None:
    """The partner whose own assignments topic also gets this event, if any."""
    if row.event_type in PARTNER_EVENTS:
        partner: str = orjson.loads(row.value)["payload"]["partner_id"]
        return partner
    return None
