"""Needs: cases opened by grid workers for vulnerable people."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, model_validator

from schemas.common import (
    MAX_VERSION,
    AwareDatetime,
    Count,
    Flag,
    Identifier,
    Location,
    Number,
    TimeWindow,
    WireModel,
)
from schemas.envelope import InboundEnvelope
from schemas.offers import BeneficiaryGroup, OfferKind


class SensitiveAttributes(WireModel):
    """Attributes shown only to coordinators whose jurisdiction covers the case; never logged."""

    health: str | None = Field(
        default=None, max_length=500, description="Health notes.",
        examples=["after hip surgery, walks with a frame"],
    )
    income: str | None = Field(
        default=None, max_length=100, description="Income band or benefit status.",
        examples=["minimum living allowance"],
    )
    child_screening: str | None = Field(
        default=None, max_length=500, description="Outcome of a child mental-health screening.",
        examples=["follow-up advised"],
    )


class Beneficiary(WireModel):
    """The person served, pseudonymous on the wire."""

    pseudonym: Identifier = Field(
        description="Pseudonymous id; the real identity stays with the grid worker.",
        examples=["ben-5b1e"],
    )
    group: BeneficiaryGroup = Field(description="Main group of the beneficiary.",
                                    examples=["elderly_alone"])
    vulnerability: Count = Field(
        ge=1, le=5, description="How vulnerable, 1 (least) to 5 (most), set by the grid worker.",
        examples=[4],
    )
    languages: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default_factory=list, max_length=10, description="Languages or dialects spoken.",
        examples=[["chongqing_dialect"]],
    )
    location: Location | None = Field(
        default=None, description="Approximate home location (for travel distance).",
        examples=[{"lat": 28.995, "lon": 106.668}],
    )
    sensitive: SensitiveAttributes | None = Field(
        default=None, description="Sensitive attributes (restricted).",
        examples=[{"health": "diabetic"}],
    )


class Preferences(WireModel):
    """Preferences of the beneficiary for one item; `languages` is a hard requirement."""

    languages: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default_factory=list, max_length=10,
        description="A volunteer must speak one of these (empty: no requirement).",
        examples=[["chongqing_dialect"]],
    )
    preferred_partner_ids: list[Identifier] = Field(
        default_factory=list, max_length=10,
        description="Partners the beneficiary knows and prefers (a soft preference).",
        examples=[["partner-017"]],
    )
    recurring: Flag = Field(
        default=False,
        description="A recurring visit: the same volunteer as before is preferred.",
        examples=[True],
    )


class NeedItem(WireModel):
    """One requested item of a case: a skill for some hours, goods, or a service session."""

    item_id: Identifier = Field(description="Id of the item, unique within the case.",
                                examples=["i1"])
    kind: OfferKind = Field(description="Kind of offer that can serve it.", examples=["volunteer"])
    need: str = Field(
        min_length=1, max_length=60,
        description="The skill (volunteer), goods category (goods) or service type (service).",
        examples=["companionship"],
    )
    quantity: Number = Field(
        gt=0, le=100_000,
        description="Hours (volunteer), units of goods, or sessions (service).",
        examples=[2],
    )
    unit: str = Field(default="", max_length=20, description="Unit of quantity.",
                      examples=["hours"])
    window: TimeWindow = Field(
        description="When the item is wanted.",
        examples=[{"start": "2026-11-30T09:00:00+08:00", "end": "2026-11-30T17:00:00+08:00"}],
    )
    deadline: AwareDatetime = Field(
        description="Latest moment the item is still useful.",
        examples=["2026-11-30T17:00:00+08:00"],
    )
    urgency: Count = Field(ge=1, le=5, description="1 (can wait) to 5 (today, or harm follows).",
                         examples=[3])
    splittable: Flag = Field(
        default=True,
        description="May be served by several offers (goods, hours); sessions are not.",
        examples=[True],
    )
    preferences: Preferences = Field(default_factory=Preferences,
                                     description="Preferences for this item.")


class Case(WireModel):
    """A case: a beneficiary and the items requested for them."""

    case_id: Identifier = Field(description="Stable id of the case.", examples=["case-000381"])
    version: Count = Field(ge=1, le=MAX_VERSION,
                           description="Version of the case; updates carry a higher one.",
                         examples=[1])
    grid_id: Identifier = Field(description="Grid (smallest node) the case belongs to.",
                                examples=["ws-wenlong-st-shuanglong-g2"])
    beneficiary: Beneficiary = Field(description="Who is served.")
    items: list[NeedItem] = Field(min_length=1, max_length=50, description="Requested items.")

    @model_validator(mode="after")
    def _unique_items(self) -> Case:
        ids = [item.item_id for item in self.items]
        if len(ids) != len(set(ids)):
            raise ValueError("item ids must be unique within a case")
        return self


class Closure(WireModel):
    """A case is closed: no further matching."""

    case_id: Identifier = Field(description="The case closed.", examples=["case-000381"])
    version: Count = Field(ge=1, le=MAX_VERSION,
                           description="Version after closure.", examples=[2])
    reason: str = Field(default="", max_length=500, description="Why, in words.",
                        examples=["moved to a care home"])


class CaseOpened(InboundEnvelope):
    """A grid worker opened a case."""

    event_type: Literal["case.opened"] = Field(
        default="case.opened", description="Event discriminator.", examples=["case.opened"]
    )
    payload: Case = Field(description="The case.")


class CaseUpdated(InboundEnvelope):
    """A grid worker replaced a case with a newer version."""

    event_type: Literal["case.updated"] = Field(
        default="case.updated", description="Event discriminator.", examples=["case.updated"]
    )
    payload: Case = Field(description="The whole new version of the case.")


class CaseClosed(InboundEnvelope):
    """A grid worker closed a case."""

    event_type: Literal["case.closed"] = Field(
        default="case.closed", description="Event discriminator.", examples=["case.closed"]
    )
    payload: Closure = Field(description="Which case, and why.")


NeedEvent = Annotated[CaseOpened | CaseUpdated | CaseClosed, Field(discriminator="event_type")]
need_event_adapter: TypeAdapter[CaseOpened | CaseUpdated | CaseClosed] = TypeAdapter(NeedEvent)
