"""How much an offer gives, and how much a need item asks, in common units."""

from __future__ import annotations

from datetime import datetime

from schemas.offers import GoodsOffer, OfferKind, ServiceOffer, VolunteerOffer

VOLUNTEER_UNIT = "hours"
SERVICE_UNIT = "sessions"


def offer_capacity(offer: VolunteerOffer | GoodsOffer | ServiceOffer) -> tuple[float, str]:
    """Total capacity of an offer and its unit."""
    if isinstance(offer, VolunteerOffer):
        available = sum(window.hours for window in offer.availability)
        return min(offer.weekly_hour_limit, available), VOLUNTEER_UNIT
    if isinstance(offer, GoodsOffer):
        return offer.quantity, offer.unit
    return float(sum(slot.places for slot in offer.slots)), SERVICE_UNIT


def item_unit(kind: OfferKind, given: str) -> str:
    """The unit a need item is counted in: hours and sessions are fixed, goods name theirs."""
    if kind is OfferKind.VOLUNTEER:
        return VOLUNTEER_UNIT
    if kind is OfferKind.SERVICE:
        return SERVICE_UNIT
    return given


def offer_live_until(offer: VolunteerOffer | GoodsOffer | ServiceOffer) -> datetime | None:
    """When an offer stops being matchable: its last window or slot is over, or it expires.

    None means never: goods without a shelf life stay on offer until withdrawn.
    """
    if isinstance(offer, VolunteerOffer):
        return max((window.end for window in offer.availability), default=None)
    if isinstance(offer, ServiceOffer):
        return max((slot.window.end for slot in offer.slots), default=None)
    return offer.expires_at
