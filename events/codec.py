"""Turning raw Kafka records into messages without ever failing, and errors into words.

FastStream parses and decodes before any middleware runs; a parser that raised on a hostile
header would have the record redelivered forever. So parsing and decoding here never raise:
whatever cannot be understood reaches validation, fails there, and is dead-lettered.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.structs import ConsumerRecord
from faststream.kafka.message import KafkaMessage
from pydantic import ValidationError

MAX_ERRORS_SHOWN = 5
# No wire contract nests deeper than about 8; json.loads on 10,000 levels costs seconds and
# ends in RecursionError, so deeper values are refused before parsing.
MAX_JSON_DEPTH = 64
_STRUCTURE = re.compile(rb'["\\\[\]{}]')
_OPENERS = frozenset(b"[{")


def nests_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text opens more than `limit` arrays/objects inside each other."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # cannot nest deeper than it has brackets
    depth, in_string, skip = 0, False, -1
    for match in _STRUCTURE.finditer(body):
        position = match.start()
        if position == skip:
            continue  # the character after a backslash is escaped
        char = body[position]
        if in_string:
            if char == 0x5C:  # backslash
                skip = position + 1
            elif char == 0x22:  # closing quote
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


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
    if nests_too_deep(body):
        return body
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
    if nests_too_deep(body):
        return "not_json", f"message value nests deeper than {MAX_JSON_DEPTH} levels"
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
