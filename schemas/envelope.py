"""The envelope every event on every topic carries around its payload."""

from __future__ import annotations

from typing import Final, Literal
from uuid import UUID

from pydantic import Field

from schemas.common import AwareDatetime, Identifier, WireModel

SCHEMA_VERSION: Final = 1


class Envelope(WireModel):
    """Fields common to all events; concrete events add `event_type` and `payload`."""

    event_id: UUID = Field(
        description="Unique id of this event, chosen by the producer. It is the idempotency key: "
        "an event id seen before is acknowledged and ignored.",
        examples=["6f1c2b9e-3d4a-4f5b-9c1d-2e3f4a5b6c7d"],
    )
    schema_version: Literal[1] = Field(
        default=SCHEMA_VERSION,
        description="Version of the wire contract this event follows.",
        examples=[1],
    )
    occurred_at: AwareDatetime = Field(
        description="When the fact happened at the producer, with offset.",
        examples=["2026-11-30T08:15:00+08:00"],
    )
    producer: Identifier = Field(
        description="Who published the event: a partner id for offers and fulfilment reports, "
        "a hierarchy node id (grid, studio...) for needs, a coordinator id for decisions.",
        examples=["partner-017"],
    )
    correlation_id: str | None = Field(
        default=None,
        max_length=120,
        description="Id tying together events of one conversation, echoed on events caused by it.",
        examples=["sim-day-2026-11-30"],
    )
