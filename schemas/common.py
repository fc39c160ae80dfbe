"""Small value types shared by every wire contract."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, get_args

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    model_validator,
)

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

# Numbers and flags on the wire are what they say: "2" is not a quantity, 1 is not true, and
# NaN or infinity is no amount. Only these fields are strict: FastStream validates decoded
# JSON in python mode, so datetimes and enums must still parse from their strings.
Number = Annotated[float, Strict(), AllowInfNan(False)]
Count = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]
MAX_VERSION = 2**31 - 1  # versions fit the database's integer columns
MAX_AMOUNT = 1_000_000.0  # more than any lot, week or report the union has seen

# Plausible moments: the union's records start in 2020; nothing is planned before 2000, nor
# more than a year beyond the event that announces it.
EARLIEST_OCCURRED_AT = datetime(2020, 1, 1, tzinfo=UTC)
LATEST_OCCURRED_AT = datetime(2100, 1, 1, tzinfo=UTC)
EARLIEST_MOMENT = datetime(2000, 1, 1, tzinfo=UTC)
HORIZON = timedelta(days=366)


def moments(value: Any, where: str = "payload") -> Iterator[tuple[str, datetime]]:
    """Every datetime inside a wire model, with its dotted location.

    Only fields whose type can hold a datetime are walked: validation runs this on every
    inbound event, and most fields (ids, numbers, places, words) never hold one.
    """
    if isinstance(value, datetime):
        yield where, value
    elif isinstance(value, BaseModel):
        for name in date_fields(type(value)):
            yield from moments(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from moments(item, f"{where}.{index}")


_DATE_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {}


def date_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The names of a model's fields whose declared type can hold a datetime (cached)."""
    known = _DATE_FIELDS.get(model)
    if known is None:
        _DATE_FIELDS[model] = ()  # a model that contains itself adds nothing new
        known = tuple(name for name, info in model.model_fields.items()
                      if _may_hold_dates(info.annotation))
        _DATE_FIELDS[model] = known
    return known


def _may_hold_dates(annotation: Any) -> bool:
    """Whether a value of this type (or anything inside it) can be a datetime."""
    if isinstance(annotation, type):
        if issubclass(annotation, datetime):
            return True
        if issubclass(annotation, BaseModel):
            return bool(date_fields(annotation))
    return any(_may_hold_dates(argument) for argument in get_args(annotation))


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

    lat: Number = Field(ge=-90, le=90, description="Latitude in degrees.", examples=[28.995037])
    lon: Number = Field(ge=-180, le=180, description="Longitude in degrees.", examples=[106.667709])


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


class ReachMode(StrEnum):
    """How an offer reaches the people it serves."""

    PICKUP = "pickup"
    DELIVERY = "delivery"
    DISTRICT = "district"


class Reach(WireModel):
    """How far an offer reaches: people come to its place, it is brought to them, or it
    serves the whole district."""

    mode: ReachMode = Field(
        description="pickup: people come to the offer's place (within km of it); delivery: "
        "the partner brings it to people within km of its place; district: anyone in the "
        "district, wherever they live.",
        examples=["delivery"],
    )
    km: Number | None = Field(
        default=None, gt=0, le=200,
        description="Radius around the offer's place (its pickup point or service place, "
        "else its node's point); required for pickup and delivery, absent for district.",
        examples=[15.0],
    )

    @model_validator(mode="after")
    def _radius_fits_mode(self) -> Reach:
        if (self.mode is ReachMode.DISTRICT) != (self.km is None):
            raise ValueError("pickup and delivery need km; district takes none")
        return self

    @staticmethod
    def parse(text: str) -> Reach:
        """A reach from its short form: 'pickup:3', 'delivery:15' or 'district'."""
        mode, _, km = text.strip().partition(":")
        return Reach(mode=ReachMode(mode.strip().lower()),
                     km=float(km) if km.strip() else None)
