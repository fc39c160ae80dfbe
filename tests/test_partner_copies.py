"""What a partner must act on also reaches its own assignments topic: approvals and releases,
never another partner's events or the cases' other news."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from events.publishers import Publishers
from matcher.storage.store import OutboxRow
from schemas.topics import Topics

TOPICS = Topics("t")


class Sent:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    async def publish(self, value: bytes, topic: str = "", *, key: bytes, **_: Any) -> Any:
        self.records.append((topic, key))
        return _done()


async def _ack() -> None:
    return None


def _done() -> Any:
    """What a producer's send returns: something to await for the broker's acknowledgement."""
    return asyncio.ensure_future(_ack())


class Broker(Sent):
    def publisher(self, topic: str, **_: Any) -> Any:
        broker = self

        class Named:
            async def publish(self, value: bytes, *, key: bytes, **rest: Any) -> Any:
                return await broker.publish(value, topic, key=key, **rest)

        return Named()


class OnDemand:
    def __init__(self) -> None:
        self.made: set[str] = set()

    async def ensure(self, topics: Any) -> None:
        self.made.update(topics)


def row(seq: int, event_type: str, topic: str, key: str, partner: str) -> OutboxRow:
    value = json.dumps({"event_type": event_type, "payload": {"partner_id": partner}})
    return OutboxRow(seq=seq, topic=topic, key=key, value=value, event_id=f"e{seq}",
                     event_type=event_type)


async def test_approvals_and_releases_also_go_to_the_partners_own_topic() -> None:
    broker, on_demand = Broker(), OnDemand()
    publishers = Publishers(broker, TOPICS, on_demand)  # type: ignore[arg-type]
    await publishers.send([
        row(1, "match.approved", TOPICS.assignments, "p1", "p1"),
        row(2, "match.released", TOPICS.proposals, "case-1", "p2"),
        row(3, "match.proposed", TOPICS.proposals, "case-2", "p1"),
        row(4, "match.rejected", TOPICS.proposals, "case-3", "p1"),
    ])
    assert broker.records == [
        (TOPICS.assignments, b"p1"), (TOPICS.assignments_of("p1"), b"p1"),
        (TOPICS.proposals, b"case-1"), (TOPICS.assignments_of("p2"), b"p2"),
        (TOPICS.proposals, b"case-2"), (TOPICS.proposals, b"case-3"),
    ]
    assert on_demand.made == {TOPICS.assignments_of("p1"), TOPICS.assignments_of("p2")}
