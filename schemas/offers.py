"""Offers published by partner systems: volunteers, goods and service capacity."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.common import (
    MAX_VERSION,
    AwareDatetime,
    Count,
    Identifier,
    Location,
    Number,
    Reach,
    TimeWindow,
    WireModel,
)
from schemas.envelope import InboundEnvelope


class OfferKind(StrEnum):
    """What an offer gives, and so what a need item may ask for."""

    VOLUNTEER = "volunteer"
    GOODS = "goods"
    SERVICE = "service"


class BeneficiaryGroup(StrEnum):
    """Groups of people the union serves (used for service eligibility)."""

    ELDERLY_ALONE = "elderly_alone"
    ELDERLY = "elderly"
    DISABLED = "disabled"
    LOW_INCOME = "low_income"
    LEFT_BEHIND_CHILD = "left_behind_child"
    CHILD_IN_DIFFICULTY = "child_in_difficulty"
    ILL_OR_RECOVERING = "ill_or_recovering"


class _OfferBase(WireModel):
    offer_id: Identifier = Field(description="Stable id of the offer.", examples=["offer-v-0042"])
    version: Count = Field(ge=1, le=MAX_VERSION,
        description="Version of the offer; each update must carry a higher one.",
        examples=[1],
    )
    partner_id: Identifier = Field(
        description="Owning partner; must be the producer of every event about this offer.",
        examples=["partner-017"],
    )
    node_id: Identifier = Field(
        description="Hierarchy node the offer is based at (where it can be used from).",
        examples=["ws-wenlong-st-shuanglong"],
    )


class VolunteerOffer(_OfferBase):
    """A volunteer's time: skills, languages, when, where and how far."""

    kind: Literal["volunteer"] = Field(
        default="volunteer", description="Offer discriminator.", examples=["volunteer"]
    )
    volunteer_id: Identifier = Field(
        description="Pseudonymous id of the person (one person may publish several offers).",
        examples=["vol-8812"],
    )
    skills: list[Annotated[str, Field(min_length=1, max_length=60)]] = Field(
        min_length=1,
        max_length=20,
        description="What the volunteer can do.",
        examples=[["companionship", "physiotherapy"]],
    )
    languages: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default_factory=list,
        max_length=10,
        description="Languages and dialects spoken.",
        examples=[["mandarin", "chongqing_dialect"]],
    )
    availability: list[TimeWindow] = Field(
        min_length=1,
        max_length=50,
        description="Windows in which the volunteer is free.",
        examples=[[{"start": "2026-11-30T09:00:00+08:00", "end": "2026-11-30T12:00:00+08:00"}]],
    )
    home: Location | None = Field(
        default=None,
        description="Where the volunteer starts from.",
        examples=[{"lat": 29.001, "lon": 106.672}],
    )
    travel_radius_km: Number = Field(
        default=3.0,
        ge=0,
        le=100,
        description="How far from home the volunteer will go.",
        examples=[5.0],
    )
    weekly_hour_limit: Number = Field(
        gt=0,
        le=80,
        description="Most hours the volunteer gives in one week; the offer's capacity.",
        examples=[6.0],
    )


class GoodsOffer(_OfferBase):
    """A lot of goods: what, how much, until when, where to pick it up."""

    kind: Literal["goods"] = Field(default="goods", description="Offer discriminator.",
                                   examples=["goods"])
    category: str = Field(
        min_length=1, max_length=60, description="Category of goods.", examples=["rice"]
    )
    quantity: Number = Field(gt=0, le=1_000_000, description="How much is given.", examples=[200])
    unit: str = Field(min_length=1, max_length=20, description="Unit of quantity.",
                      examples=["kg"])
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="When the goods stop being usable; none for durable goods.",
        examples=["2026-12-05T00:00:00+08:00"],
    )
    pickup: Location | None = Field(
        default=None, description="Where the goods are picked up.",
        examples=[{"lat": 28.996, "lon": 106.668}],
    )
    reach: Reach | None = Field(
        default=None,
        description="How the goods reach people; none: the partner's default, else the "
        "nearest node's, else anyone in the workstation's street of the offer's node.",
        examples=[{"mode": "delivery", "km": 15.0}],
    )


class ServiceSlot(WireModel):
    """One time slot of a service with a number of places."""

    window: TimeWindow = Field(
        description="When the slot runs.",
        examples=[{"start": "2026-11-30T14:00:00+08:00", "end": "2026-11-30T15:00:00+08:00"}],
    )
    places: Count = Field(ge=1, le=10_000, description="How many people it takes.", examples=[4])


class ServiceOffer(_OfferBase):
    """Capacity of a service (physio, canteen seats, counselling, screening)."""

    kind: Literal["service"] = Field(default="service", description="Offer discriminator.",
                                     examples=["service"])
    service_type: str = Field(
        min_length=1, max_length=60, description="Which service.", examples=["physiotherapy"]
    )
    slots: list[ServiceSlot] = Field(
        min_length=1, max_length=500, description="Slots on offer.",
        examples=[[{"window": {"start": "2026-11-30T14:00:00+08:00",
                               "end": "2026-11-30T15:00:00+08:00"}, "places": 4}]],
    )
    eligibility: list[BeneficiaryGroup] = Field(
        default_factory=list,
        description="Groups the service is for; empty means everyone.",
        examples=[["elderly_alone", "disabled"]],
    )
    place: Location | None = Field(
        default=None, description="Where the service takes place.",
        examples=[{"lat": 29.003, "lon": 106.670}],
    )
    reach: Reach | None = Field(
        default=None,
        description="How far people travel to the service (pickup), or how far it comes to "
        "them (delivery), or district-wide; none: the partner's default, else the nearest "
        "node's, else within MATCHER_SERVICE_TRAVEL_KM of its place.",
        examples=[{"mode": "pickup", "km": 10.0}],
    )


Offer = Annotated[VolunteerOffer | GoodsOffer | ServiceOffer, Field(discriminator="kind")]


class Withdrawal(WireModel):
    """A partner takes an offer back."""

    offer_id: Identifier = Field(description="The offer withdrawn.", examples=["offer-v-0042"])
    version: Count = Field(ge=1, le=MAX_VERSION,
                           description="Version after withdrawal (higher than the last).",
                         examples=[2])
    reason: str = Field(default="", max_length=500, description="Why, in words.",
                        examples=["volunteer fell ill"])


class OfferPublished(InboundEnvelope):
    """A partner published a new offer."""

    event_type: Literal["offer.published"] = Field(
        default="offer.published", description="Event discriminator.",
        examples=["offer.published"],
    )
    payload: Offer = Field(description="The offer.")


class OfferUpdated(InboundEnvelope):
    """A partner replaced an offer with a newer version."""

    event_type: Literal["offer.updated"] = Field(
        default="offer.updated", description="Event discriminator.", examples=["offer.updated"]
    )
    payload: Offer = Field(description="The whole new version of the offer.")


class OfferWithdrawn(InboundEnvelope):
    """A partner withdrew an offer."""

    event_type: Literal["offer.withdrawn"] = Field(
        default="offer.withdrawn", description="Event discriminator.",
        examples=["offer.withdrawn"],
    )
    payload: Withdrawal = Field(description="Which offer, and why.")


OfferEvent = Annotated[
    OfferPublished | OfferUpdated | OfferWithdrawn, Field(discriminator="event_type")
]
offer_event_adapter: TypeAdapter[OfferPublished | OfferUpdated | OfferWithdrawn] = TypeAdapter(
    OfferEvent
)
