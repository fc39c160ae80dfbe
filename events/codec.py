"""Turning raw Kafka records into messages without ever failing, and errors into words.

FastStream parses and decodes before any middleware runs; a parser that raised on a hostile
header would have the record redelivered forever. So parsing and decoding here never raise:
whatever cannot be understood reaches validation, fails there, and is dead-lettered.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.structs import ConsumerRecord
from faststream.kafka.message import KafkaMessage
from pydantic import ValidationError

MAX_ERRORS_SHOWN = 5


def safe_header(value: bytes | None) -> bytes:
    """A header value any UTF-8 decoder accepts (invalid bytes replaced)."""
    if value is None:
        return b""
    return value.decode("utf-8", errors="replace").encode("utf-8")


async def tolerant_parser(
    record: ConsumerRecord[Any, Any],
    original: Callable[[ConsumerRecord[Any, Any]], Awaitable[KafkaMessage]],
) -> KafkaMessage:
    """FastStream's parser on a copy with readable headers; the original record is kept."""
    headers = [(key, safe_header(value)) for key, value in (record.headers or ())]
    cleaned = dataclasses.replace(record, headers=headers)
    message = await original(cleaned)
    message.raw_message = record
    message.content_type = "application/json"
    return message


def json_or_bytes(body: bytes | None) -> Any:
    """JSON if the body is JSON, else the raw bytes (validation then refuses them)."""
    if body is None:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return body


async def json_decoder(message: KafkaMessage) -> Any:
    """JSON if the body is JSON, else the raw bytes (validation then refuses them)."""
    return json_or_bytes(message.body)


def describe_validation_error(error: ValidationError, body: bytes | None, *, skip: int = 1
                              ) -> tuple[str, str]:
    """(code, reason) for a payload that failed validation, readable by a partner's developer.

    `skip`: leading location parts that are not the event's (a handler's parameter name).
    """
    if not body:
        return "empty", "message has no value"
    try:
        json.loads(body)
    except UnicodeDecodeError:
        return "not_json", "message value is not UTF-8 text"
    except ValueError as exc:
        return "not_json", f"message value is not JSON: {exc}"
    except RecursionError:
        return "not_json", "message value is JSON nested too deeply"
    problems = []
    for detail in error.errors(include_url=False, include_input=False)[:MAX_ERRORS_SHOWN]:
        # Drop the handler's own parameter name and the union tags pydantic inserts.
        location = [str(part) for part in detail["loc"][skip:]
                    if not (isinstance(part, str) and "." in part and part[0].islower()
                            and part.count(".") == 1 and " " not in part)]
        where = ".".join(location) or "event"
        problems.append(f"{where}: {detail['msg']}")
    more = error.error_count() - len(problems)
    if more > 0:
        problems.append(f"... and {more} more")
    return "schema_violation", "; ".join(problems)
