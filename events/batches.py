"""Batches of records: parsed without ever failing, then validated one record at a time.

A batch subscriber gets a whole poll. FastStream's own batch parser decodes every header as
UTF-8 and validates the batch as one list, so one hostile record would fail its whole batch
again and again. Here each record is decoded and validated on its own: the valid events go to
the handler, and every record keeps its outcome (event, or why it was refused) on the message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka.structs import ConsumerRecord
from faststream.kafka.message import KafkaMessage
from pydantic import TypeAdapter, ValidationError

from events.codec import MAX_JSON_DEPTH, describe_validation_error, nests_too_deep, safe_header

Record: TypeAlias = ConsumerRecord[Any, Any]


@dataclass(frozen=True)
class Decoded:
    """One record of a batch: its validated event (None if refused), or the code and words
    of its refusal."""

    record: Record
    event: Any
    code: str = ""
    reason: str = ""


async def tolerant_batch_parser(
    records: tuple[Record, ...],
    original: Callable[[tuple[Record, ...]], Awaitable[KafkaMessage]],
) -> KafkaMessage:
    """FastStream's batch parser on copies with readable headers; the originals are kept."""
    cleaned = tuple(dataclasses.replace(record, headers=[
        (key, safe_header(value)) for key, value in (record.headers or ())]) for record in records)
    message = await original(cleaned)
    message.raw_message = records
    message.content_type = "application/json"
    return message


def batch_decoder(adapter: TypeAdapter[Any]) -> Callable[..., Awaitable[Any]]:
    """A decoder validating each record with `adapter`; outcomes go on `message.decoded`."""

    async def decode(message: KafkaMessage, _original: Any = None) -> list[Any]:
        """The valid events of the batch, in order (refusals are on `message.decoded`)."""
        records: tuple[Record, ...] = message.raw_message
        decoded = [decode_record(record, adapter) for record in records]
        message.decoded = decoded  # type: ignore[attr-defined]
        return [d.event for d in decoded if d.event is not None]

    return decode


def decode_record(record: Record, adapter: TypeAdapter[Any]) -> Decoded:
    """Parse and validate one record in one pass (pydantic's own JSON parser, which also
    bounds nesting); never raises."""
    if record.value and nests_too_deep(record.value):
        return Decoded(record, None, "not_json",
                       f"message value nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return Decoded(record, adapter.validate_json(record.value or b""))
    except ValidationError as error:
        code, reason = describe_validation_error(error, record.value, skip=0)
        return Decoded(record, None, code, reason)


def outcomes_of(message: KafkaMessage) -> list[Decoded]:
    """What the batch decoder found for each record of the message."""
    decoded: list[Decoded] = message.decoded  # type: ignore[attr-defined]
    return decoded
