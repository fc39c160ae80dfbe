"""Where each outgoing event goes: one routing table of topic and key per event type.

Services emit typed events (or, on the matching hot path, the same events as JSON-ready
dicts); this module alone turns them into outbox rows, so no service picks a topic or a key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from matcher.storage.store import Store
from schemas.envelope import Envelope
from schemas.topics import Topics


@dataclass(frozen=True)
class Route:
    """The topic (a `Topics` attribute) and the payload field that keys the record."""

    topic: str
    key: str


ROUTES: dict[str, Route] = {
    "match.proposed": Route("proposals", "case_id"),
    "match.revoked": Route("proposals", "case_id"),
    "match.rejected": Route("proposals", "case_id"),
    "match.expired": Route("proposals", "case_id"),
    "match.released": Route("proposals", "case_id"),
    "need.unmatched": Route("unmatched", "case_id"),
    "match.approved": Route("assignments", "partner_id"),
    "shard.changed": Route("shard_changes", "shard"),
    "rebalance.completed": Route("rebalance_reports", "run_id"),
}


def outbox_row(topics: Topics, *, event_type: str, event_id: str, payload: Mapping[str, Any],
               value: str, at: datetime) -> dict[str, Any]:
    """The outbox row of one event given as a JSON-ready payload, routed by its type."""
    route = ROUTES[event_type]
    return {"topic": getattr(topics, route.topic), "key": str(payload[route.key]),
            "value": value, "event_id": event_id, "event_type": event_type, "at": at}


def row_of(topics: Topics, event: Envelope) -> dict[str, Any]:
    """The outbox row of a typed event, routed by its type."""
    event_type: str = event.event_type  # type: ignore[attr-defined]
    route = ROUTES[event_type]
    key = getattr(event.payload, route.key)  # type: ignore[attr-defined]
    return {"topic": getattr(topics, route.topic), "key": str(key),
            "value": event.model_dump_json(), "event_id": str(event.event_id),
            "event_type": event_type, "at": event.occurred_at}


def queue(store: Store, topics: Topics, *events: Envelope) -> None:
    """Queue typed events; they are published after the caller's transaction commits."""
    store.add_outbox_many([row_of(topics, event) for event in events])


def envelope_json(*, event_id: str, event_type: str, occurred_at: str, producer: str,
                  payload: Mapping[str, Any]) -> str:
    """An event as the wire carries it, from a JSON-ready payload (the hot path's form; parts
    already JSON, such as an explanation, may be `orjson.Fragment`s)."""
    return orjson.dumps({"event_id": event_id, "event_type": event_type, "schema_version": 1,
                         "occurred_at": occurred_at, "producer": producer,
                         "correlation_id": None, "payload": payload},
                        option=orjson.OPT_SERIALIZE_NUMPY).decode()


def event_ids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs as text, drawn at once: a district batch sends ~100k."""
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.tobytes().hex()
    return [f"{text[i:i + 8]}-{text[i + 8:i + 12]}-{text[i + 12:i + 16]}-{text[i + 16:i + 20]}-"
            f"{text[i + 20:i + 32]}" for i in range(0, 32 * count, 32)]
