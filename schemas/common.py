"""Small value types shared by every wire contract."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

Identifier = Annotated[
    str,
    Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"),
]


def _aware(value: datetime) -> datetime:
    """Reject naive timestamps: partners sit in one time zone today, not forever."""
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone offset, e.g. 2026-11-29T09:00:00+08:00")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class WireModel(BaseModel):
    """Base of every wire payload: strict about unknown fields, immutable once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Level(StrEnum):
    """The four levels of the charity hierarchy, top to bottom."""

    CENTRE = "centre"
    WORKSTATION = "workstation"
    STUDIO = "studio"
    GRID = "grid"


class Location(WireModel):
    """A point on the map (WGS84)."""

    lat: float = Field(ge=-90, le=90, description="Latitude in degrees.", examples=[30.2741])
    lon: float = Field(ge=-180, le=180, description="Longitude in degrees.", examples=[120.1551])


class TimeWindow(WireModel):
    """A half-open interval [start, end) in which something can happen."""

    start: AwareDatetime = Field(
        description="First moment of the window, with offset.",
        examples=["2026-11-30T09:00:00+08:00"],
    )
    end: AwareDatetime = Field(
        description="End of the window (exclusive), with offset.",
        examples=["2026-11-30T12:00:00+08:00"],
    )

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.end <= self.start:
            raise ValueError("time window must end after it starts")
        return self

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600.0
