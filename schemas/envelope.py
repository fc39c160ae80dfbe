"""The envelope every event on every topic carries around its payload."""

from __future__ import annotations

from typing import Final, Literal
from uuid import UUID

from pydantic import Field, model_validator

from schemas.common import (
    EARLIEST_MOMENT,
    EARLIEST_OCCURRED_AT,
    HORIZON,
    LATEST_OCCURRED_AT,
    AwareDatetime,
    Identifier,
    WireModel,
    moments,
)

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
        description="When the fact happened at the producer, with offset. In events sent to "
        "the engine: from 2020 on, and every other moment in the event lies between 2000 and "
        "a year after it.",
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



class InboundEnvelope(Envelope):
    """The envelope of events the engine consumes from partners, grids and coordinators: their
    moments must be plausible. (The engine's own events follow its clock, which may differ
    from the times it plans for, so they are not held to this.)"""

    @model_validator(mode="after")
    def _plausible_moments(self) -> InboundEnvelope:
        """Refuse dates no partner or grid worker could mean (1969, year 9999...)."""
        if not EARLIEST_OCCURRED_AT <= self.occurred_at < LATEST_OCCURRED_AT:
            raise ValueError(f"occurred_at {self.occurred_at.isoformat()} is not between "
                             f"{EARLIEST_OCCURRED_AT:%Y} and {LATEST_OCCURRED_AT:%Y}")
        latest = self.occurred_at + HORIZON
        for where, moment in moments(getattr(self, "payload", None)):
            if moment < EARLIEST_MOMENT:
                raise ValueError(f"{where} {moment.isoformat()} is before "
                                 f"{EARLIEST_MOMENT:%Y}")
            if moment > latest:
                raise ValueError(f"{where} {moment.isoformat()} is more than a year after "
                                 "occurred_at")
        return self
