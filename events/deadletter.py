"""The dead-letter topic: original bytes and headers, plus why the engine refused them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from faststream import BaseMiddleware
from faststream.kafka.message import KafkaMessage
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from events.codec import describe_validation_error
from matcher.domain.errors import DomainError
from matcher.observability import DEAD_LETTERS, EVENTS_FAILED

log = logging.getLogger("matcher.events")

# An unexpected error (a bug, not bad input) is retried this often before the event is
# dead-lettered, so one poison event never stalls its partition for good.
MAX_ATTEMPTS = 3
RETRY_PAUSE_S = 1.0


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
    """Sends refused records to the dead-letter topic, acknowledged by every replica."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect (the producer belongs to the running event loop, so it is made here)."""
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                          enable_idempotence=True)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, record: ConsumerRecord[Any, Any], code: str, reason: str) -> None:
        """Dead-letter one record (waits for the broker's acknowledgement)."""
        if self._producer is None:
            raise RuntimeError("dead-letter producer is not started")
        await self._producer.send_and_wait(
            self.topic, value=record.value, key=record.key,
            headers=dead_letter_headers(record, code, reason),
        )
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
            if isinstance(message.raw_message, tuple):
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
