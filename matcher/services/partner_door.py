"""The partner door over HTTP: for partners without a Kafka client.

A partner signs in with the API key `matcher partners add --http-key-file` gave it (or on
the partner page, which opens a session with that key). What it sends is built into the very
event a Kafka client would publish, validated by the same schemas, with the producer set to
the partner the key proves, and sent to that partner's own topic. The engine then consumes it
like any other record there: the same identity check, ownership checks and dead letters.
"""

from __future__ import annotations

import json
import math
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import TypeAdapter

from matcher.domain.errors import NotOwner
from matcher.domain.reach import (
    SERVICE_TRAVEL_KM,
    ReachDefaults,
    offer_place,
    reach_and_source,
)
from matcher.services.coordinators import token_hash
from matcher.storage.coordination import CoordinationStore
from matcher.storage.store import OfferRow, ProposalRow, Store
from schemas.matches import FulfilmentEvent
from schemas.offers import OfferEvent
from schemas.topics import Topics

KEY_PREFIX = "pk_"
KEY = "key"
PAGE_SESSION = "cookie"
OfferVerb = Literal["published", "updated", "withdrawn"]

_OFFER_EVENTS: TypeAdapter[Any] = TypeAdapter(OfferEvent)
_FULFILMENT_EVENTS: TypeAdapter[Any] = TypeAdapter(FulfilmentEvent)


@dataclass(frozen=True)
class Outgoing:
    """One event to publish: where, under which key, and its bytes."""

    topic: str
    key: str
    value: bytes
    event_id: str
    event_type: str


@dataclass(frozen=True)
class PartnerOverview:
    """What the partner page shows: the partner's offers and the proposals made of them."""

    partner_id: str
    name: str
    home_node_id: str | None
    offers: list[OfferRow]
    proposals: list[ProposalRow]
    default_reach: dict[str, Any] | None = None  # the partner's own, as registered
    reaches: dict[str, OfferReach] = field(default_factory=dict)  # per offer id


@dataclass(frozen=True)
class OfferReach:
    """How far an offer reaches as matching reads it, and who said so."""

    mode: str  # pickup, delivery, district, workstation (its street) or travel (volunteers)
    km: float | None  # None: the whole district, or the workstation's street
    set_by: str  # offer, partner, node (the nearest node's default) or rule (none said)


# --- credentials ---------------------------------------------------------------------------


def issue_key(store: Store, partner_id: str, *, at: datetime) -> str:
    """A new API key for the partner; its older keys and sessions stop working."""
    credentials = CoordinationStore(store.conn)
    credentials.revoke_partner_keys(partner_id, at=at)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    credentials.add_partner_credential(token_hash=token_hash(key), partner_id=partner_id,
                                       kind=KEY, at=at, expires_at=None)
    return key


def partner_of_key(store: Store, key: str, *, at: datetime) -> str | None:
    """The partner an API key belongs to, if it is live."""
    return CoordinationStore(store.conn).credential_partner(token_hash(key), at=at,
                                                            kinds=(KEY,))


def open_page_session(store: Store, partner_id: str, *, at: datetime,
                      lifetime_s: float) -> str:
    """A session secret for the partner page, after the partner signed in with its key."""
    secret = secrets.token_urlsafe(32)
    CoordinationStore(store.conn).add_partner_credential(
        token_hash=token_hash(secret), partner_id=partner_id, kind=PAGE_SESSION, at=at,
        expires_at=at + timedelta(seconds=lifetime_s))
    return secret


def partner_of_session(store: Store, secret: str, *, at: datetime) -> str | None:
    """The partner a live page session belongs to."""
    return CoordinationStore(store.conn).credential_partner(token_hash(secret), at=at,
                                                            kinds=(PAGE_SESSION,))


def close_page_session(store: Store, secret: str, *, at: datetime) -> None:
    """Sign out of the partner page."""
    CoordinationStore(store.conn).revoke_partner_credential(token_hash(secret), at=at)


# --- events the partner sends -----------------------------------------------------------------


def _envelope(event_type: str, partner_id: str, payload: dict[str, Any],
              now: datetime) -> bytes:
    """The wire form of an event sent by `partner_id` now."""
    return json.dumps({"event_id": str(uuid.uuid4()), "event_type": event_type,
                       "schema_version": 1, "occurred_at": now.isoformat(),
                       "producer": partner_id, "correlation_id": None, "payload": payload},
                      ensure_ascii=False).encode()


def offer_event(topics: Topics, partner_id: str, verb: OfferVerb, payload: dict[str, Any],
                now: datetime) -> Outgoing:
    """An offer event of the partner, validated as the engine validates a Kafka record.

    Raises pydantic's ValidationError for what the schema refuses, and NotOwner when the
    offer names another partner as its owner.
    """
    if verb != "withdrawn":
        payload = {"partner_id": partner_id, **payload}
    value = _envelope(f"offer.{verb}", partner_id, payload, now)
    event = _OFFER_EVENTS.validate_json(value)
    owner = getattr(event.payload, "partner_id", partner_id)
    if owner != partner_id:
        raise NotOwner(f"partner '{partner_id}' cannot publish an offer owned by '{owner}'")
    return Outgoing(topics.offers_of(partner_id), event.payload.offer_id, value,
                    str(event.event_id), event.event_type)


def fulfilment_event(topics: Topics, partner_id: str, payload: dict[str, Any],
                     now: datetime) -> Outgoing:
    """A fulfilment report of the partner, validated as a Kafka record would be."""
    value = _envelope("match.fulfilled", partner_id, payload, now)
    event = _FULFILMENT_EVENTS.validate_json(value)
    return Outgoing(topics.fulfilments_of(partner_id), event.payload.proposal_id, value,
                    str(event.event_id), event.event_type)


# --- what the partner sees -------------------------------------------------------------------


def partner_overview(store: Store, partner_id: str, *, limit: int = 100,
                     service_travel_km: float = SERVICE_TRAVEL_KM) -> PartnerOverview:
    """The partner's own offers, how far each reaches, and the proposals made of them, newest
    first."""
    offers = store.partner_offers(partner_id, limit=limit)
    default = store.partner_reaches().get(partner_id)
    return PartnerOverview(partner_id=partner_id,
                           name=store.partner_name(partner_id) or partner_id,
                           home_node_id=store.partner_home(partner_id),
                           offers=offers,
                           proposals=store.partner_proposals(partner_id, limit=limit),
                           default_reach=default,
                           reaches=offer_reaches(store, offers, default, service_travel_km))


def offer_reaches(store: Store, offers: list[OfferRow], default: dict[str, Any] | None,
                  service_travel_km: float) -> dict[str, OfferReach]:
    """Each offer's reach by the rules matching uses (`resolve_reach`)."""
    if not offers:
        return {}
    nodes = {node.node_id: node for node in store.all_nodes()}
    defaults = ReachDefaults(partners={offers[0].partner_id: default} if default else {},
                             service_travel_km=service_travel_km)
    out: dict[str, OfferReach] = {}
    for offer in offers:
        payload = offer.payload
        reach, said_by = reach_and_source(payload, has_own_place=offer_place(payload) is not None,
                                          nodes=nodes, defaults=defaults)
        out[offer.offer_id] = OfferReach(mode=reach.mode,
                                         km=reach.radius_km if math.isfinite(reach.radius_km)
                                         else None,
                                         set_by=said_by)
    return out
