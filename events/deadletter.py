"""The dead-letter topic: original bytes and headers, plus why the engine refused them.

Two exceptions to "original bytes": a value naming sensitive or free-text fields is replaced
by a redacted JSON copy (the topic is shared by every partner), and a record too big to send
again is cut to a prefix. Either way the headers say so, with the original size and sha256,
so nothing can stall a partition and nothing sensitive leaves the engine.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from faststream import BaseMiddleware
from faststream.kafka.message import KafkaMessage
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from events.codec import describe_validation_error, nests_too_deep
from matcher.domain.errors import DomainError
from matcher.kafka_access import KafkaAccess
from matcher.localkafka import TopicsOnDemand
from matcher.observability import DEAD_LETTERS, EVENTS_FAILED
from schemas.topics import Topics

log = logging.getLogger("matcher.events")

# An unexpected error (a bug, not bad input) is retried this often before the event is
# dead-lettered, so one poison event never stalls its partition for good.
MAX_ATTEMPTS = 3
RETRY_PAUSE_S = 1.0


DEFAULT_MAX_REQUEST_BYTES = 1_048_576  # aiokafka's and Kafka's default max.request.size
HEADROOM_BYTES = 16 * 1024  # record batch framing, dlq.* headers and varints, generously
PREFIX_BYTES = 64 * 1024  # what is kept of a value too big to dead-letter whole
MAX_KEY_BYTES = 1024
# Fields that hold beneficiaries' attributes or people's own words (reasons, notes).
REDACTED_FIELDS = frozenset({"sensitive", "health", "income", "child_screening", "reason",
                             "note"})
REDACTED = "[redacted]"
_MARKERS = tuple(f'"{name}"'.encode() for name in sorted(REDACTED_FIELDS))


@dataclass(frozen=True)
class DeadLetter:
    """What goes to the dead-letter topic for one refused record."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _redact(value: Any) -> tuple[Any, bool]:
    """A copy with every non-empty sensitive or free-text field replaced; and whether any was."""
    if isinstance(value, dict):
        changed = False
        copy: dict[str, Any] = {}
        for name, item in value.items():
            if name in REDACTED_FIELDS and item not in (None, "", {}, []):
                copy[name], changed = REDACTED, True
            else:
                copy[name], inner = _redact(item)
                changed = changed or inner
        return copy, changed
    if isinstance(value, list):
        items = [_redact(item) for item in value]
        return [item for item, _ in items], any(changed for _, changed in items)
    return value, False


def redacted_value(value: bytes | None) -> bytes | None:
    """The value with sensitive fields redacted, or None when it names none (kept as is)."""
    if not value:
        return None
    parsed: Any = None
    if not nests_too_deep(value):
        try:
            parsed = json.loads(value)
        except (ValueError, UnicodeDecodeError, RecursionError):
            parsed = None
    if parsed is None:
        if not any(marker in value for marker in _MARKERS):
            return None
        # Not JSON, so it cannot be redacted field by field: only its size and hash remain.
        return json.dumps({"dlq_redacted": "the value is not JSON and names sensitive "
                           "fields; see dlq.original_size and dlq.sha256"}).encode()
    copy, changed = _redact(parsed)
    return json.dumps(copy, ensure_ascii=False).encode() if changed else None


def _size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """Bytes a record takes in a produce request, before framing."""
    return (len(key or b"") + len(value or b"")
            + sum(len(name) + len(data) for name, data in headers))


def dead_letter(record: ConsumerRecord[Any, Any], code: str, reason: str, *,
                max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> DeadLetter:
    """The dead letter of a record: redacted if sensitive, cut down if too big to send."""
    value: bytes | None = record.value
    key: bytes | None = record.key
    original = value or b""
    notes: list[tuple[str, bytes]] = []
    redacted = redacted_value(value)
    if redacted is not None:
        value = redacted
        notes.append(("dlq.redacted", b"true"))
    headers = dead_letter_headers(record, code, reason)
    budget = max_request_bytes - HEADROOM_BYTES
    if _size(key, value, headers) > budget and value and len(value) > PREFIX_BYTES:
        value = value[:PREFIX_BYTES]
        notes.append(("dlq.truncated", b"true"))
    if _size(key, value, headers) > budget:
        # Hostile headers or keys: keep ours, drop theirs.
        headers = headers[len(record.headers or ()):]
        key = key[:MAX_KEY_BYTES] if key else key
        notes.append(("dlq.headers_dropped", b"true"))
    if notes:
        notes += [("dlq.original_size", str(len(original)).encode()),
                  ("dlq.sha256", hashlib.sha256(original).hexdigest().encode())]
    return DeadLetter(key=key, value=value, headers=headers + notes)


def dead_letter_headers(record: ConsumerRecord[Any, Any], code: str,
                        reason: str) -> list[tuple[str, bytes]]:
    """The original headers, untouched, followed by where the record came from and why."""
    return [
        *(record.headers or ()),
        ("dlq.reason_code", code.encode()),
        ("dlq.reason", reason.encode("utf-8", errors="replace")),
        ("dlq.topic", record.topic.encode()),
        ("dlq.partition", str(record.partition).encode()),
        ("dlq.offset", str(record.offset).encode()),
        ("dlq.at", datetime.now(UTC).isoformat().encode()),
    ]


class DeadLetters:
    """Sends refused records to the dead-letter topic, acknowledged by every replica.

    A record refused on a partner's own topic is also sent to that partner's feedback topic,
    which only it (and the district) may read: it holds nothing but the partner's own events,
    redacted as in the shared topic, so a partner learns why without seeing anyone else's.
    """

    def __init__(self, access: KafkaAccess, topics: Topics, on_demand: TopicsOnDemand,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        self.topics = topics
        self.topic = topics.dead_letter
        self.access = access
        self.on_demand = on_demand
        self.max_request_bytes = max_request_bytes
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect (the producer belongs to the running event loop, so it is made here)."""
        self._producer = AIOKafkaProducer(**self.access.aiokafka(), acks="all",
                                          enable_idempotence=True,
                                          max_request_size=self.max_request_bytes)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, record: ConsumerRecord[Any, Any], code: str, reason: str) -> None:
        """Dead-letter one record (waits for the broker's acknowledgement)."""
        if self._producer is None:
            raise RuntimeError("dead-letter producer is not started")
        letter = dead_letter(record, code, reason, max_request_bytes=self.max_request_bytes)
        await self._producer.send_and_wait(self.topic, value=letter.value, key=letter.key,
                                           headers=letter.headers)
        partner = self.topics.partner_of(record.topic)
        if partner is not None:
            feedback = self.topics.feedback_of(partner)
            await self.on_demand.ensure([feedback])
            await self._producer.send_and_wait(feedback, value=letter.value, key=letter.key,
                                               headers=letter.headers)
        DEAD_LETTERS.labels(topic=record.topic, reason_code=code).inc()
        log.warning("event dead-lettered", extra={
            "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "reason_code": code, "reason": reason,
        })


def is_infrastructure(error: Exception) -> bool:
    """Database trouble is not the event's fault: retry until the database is back."""
    return isinstance(error, OperationalError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )


def dead_letter_middleware(sink: DeadLetters) -> type[BaseMiddleware]:
    """A consume middleware that turns refused events into dead letters and acknowledges them."""
    attempts: dict[tuple[str, int, int], int] = {}

    class DeadLetterMiddleware(BaseMiddleware):
        async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]],
                                msg: Any) -> Any:
            message: KafkaMessage = msg
            if isinstance(message.raw_message, tuple | list):
                # Batch subscribers dead-letter their records one by one themselves.
                return await call_next(msg)
            record: ConsumerRecord[Any, Any] = message.raw_message
            position = (record.topic, record.partition, record.offset)
            try:
                result = await call_next(msg)
            except ValidationError as error:
                code, reason = describe_validation_error(error, record.value)
                await sink.send(record, code, reason)
                return None
            except DomainError as error:
                await sink.send(record, error.code, error.reason)
                return None
            except Exception as error:
                if is_infrastructure(error):
                    log.error("database unavailable; event will be retried",
                              extra={"error": type(error).__name__})
                    await asyncio.sleep(RETRY_PAUSE_S)
                    raise
                EVENTS_FAILED.labels(topic=record.topic).inc()
                tries = attempts[position] = attempts.get(position, 0) + 1
                if tries < MAX_ATTEMPTS:
                    log.exception("event failed; will be retried",
                                  extra={"attempt": tries, "offset": record.offset})
                    await asyncio.sleep(RETRY_PAUSE_S * tries)
                    raise
                attempts.pop(position, None)
                await sink.send(record, "processing_failed",
                                f"the engine failed on this event {tries} times "
                                f"({type(error).__name__}); see engine logs")
                return None
            attempts.pop(position, None)
            return result

    return DeadLetterMiddleware
