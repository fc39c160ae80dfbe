"""The partner door's JSON API under /api/partner: publish, update and withdraw offers and
report fulfilment without a Kafka client. Each call becomes the Kafka event a partner's own
client would send, on the partner's own topic (see matcher/services/partner_door.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from matcher.services import partner_door
from matcher.services.partner_door import Outgoing, PartnerOverview
from matcher.storage.store import unit_of_work
from matcher.web.auth import SignInRequired, bearer_token, desk_of

router = APIRouter(prefix="/api/partner", tags=["partners"])
PARTNER_SESSION = "partner_sid"
MAX_SHOWN = 100
# Sends one event to the broker; set by the engine's assembly (None: no broker, 503).
Send = Callable[[Outgoing], Awaitable[None]]
# The partner's latest refusals from its feedback topic.
Refusals = Callable[[str, int], Awaitable[list[dict[str, Any]]]]
OfferId = Annotated[str, Path(min_length=1, max_length=80, description="Id of your offer.")]


def signed_in_partner(request: Request) -> str:
    """The partner proven by an API key (Bearer pk_…) or a partner page session."""
    now = datetime.now(UTC)
    db = desk_of(request).engine.db
    token = bearer_token(request)
    with unit_of_work(db) as store:
        if token is not None:
            partner = partner_door.partner_of_key(store, token, at=now)
        else:
            secret = request.session.get(PARTNER_SESSION)
            partner = (partner_door.partner_of_session(store, secret, at=now)
                       if isinstance(secret, str) else None)
    if partner is None:
        raise SignInRequired()
    return partner


Partner = Annotated[str, Depends(signed_in_partner)]


class Accepted(BaseModel):
    """The event was validated and handed to the broker; the engine applies it shortly.
    Refusals found then (unknown node, stale version…) appear under /api/partner/refusals."""

    event_id: str
    event_type: str
    topic: str
    key: str


class Withdrawal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(description="The offer's new version (higher than the last).")
    reason: str = Field(default="", max_length=500, description="Why it is withdrawn.")


def _sender(request: Request) -> Send:
    send: Send | None = getattr(request.app.state, "partner_send", None)
    if send is None:
        raise BrokerUnavailable()
    return send


class BrokerUnavailable(Exception):
    """The web app runs without the engine's broker connection."""


def _schema_refusal(error: ValidationError) -> JSONResponse:
    """A 422 naming each field at fault (never echoing the input)."""
    problems = []
    for detail in error.errors(include_url=False, include_input=False)[:10]:
        where = ".".join(str(part) for part in detail["loc"]
                         if not (isinstance(part, str) and part.startswith(("offer.", "match."))))
        problems.append(f"{where or 'event'}: {detail['msg']}")
    return JSONResponse({"error": "schema_violation", "reason": "; ".join(problems)},
                        status_code=422)


async def _send(request: Request, build: Callable[[], Outgoing]) -> Accepted | JSONResponse:
    """Build the event (validated), send it, and say what was sent."""
    try:
        outgoing = build()
    except ValidationError as error:
        return _schema_refusal(error)
    await _sender(request)(outgoing)
    return Accepted(event_id=outgoing.event_id, event_type=outgoing.event_type,
                    topic=outgoing.topic, key=outgoing.key)


def _topics(request: Request) -> Any:
    return desk_of(request).engine.topics


@router.post("/offers", status_code=202, response_model=Accepted)
async def publish_offer(request: Request, partner: Partner,
                        offer: Annotated[dict[str, Any], Body(description="The offer payload, "
                                         "as in offer.published (partner_id may be left out)."
                                         )]) -> Any:
    """Publish a new offer (offer.published on your own offers topic)."""
    return await _send(request, lambda: partner_door.offer_event(
        _topics(request), partner, "published", offer, datetime.now(UTC)))


@router.put("/offers/{offer_id}", status_code=202, response_model=Accepted)
async def update_offer(request: Request, partner: Partner, offer_id: OfferId,
                       offer: Annotated[dict[str, Any], Body(description="The whole offer, "
                                        "with a higher version.")]) -> Any:
    """Replace an offer of yours with a new version (offer.updated)."""
    return await _send(request, lambda: partner_door.offer_event(
        _topics(request), partner, "updated", {**offer, "offer_id": offer_id},
        datetime.now(UTC)))


@router.post("/offers/{offer_id}/withdrawal", status_code=202, response_model=Accepted)
async def withdraw_offer(request: Request, partner: Partner, offer_id: OfferId,
                         withdrawal: Withdrawal) -> Any:
    """Withdraw an offer of yours (offer.withdrawn)."""
    payload = {"offer_id": offer_id, "version": withdrawal.version,
               "reason": withdrawal.reason}
    return await _send(request, lambda: partner_door.offer_event(
        _topics(request), partner, "withdrawn", payload, datetime.now(UTC)))


@router.post("/fulfilments", status_code=202, response_model=Accepted)
async def report_fulfilment(request: Request, partner: Partner,
                            report: Annotated[dict[str, Any], Body(
                                description="As in match.fulfilled: proposal_id, outcome, "
                                "delivered, note.")]) -> Any:
    """Report how an approved match of your offer ended (match.fulfilled)."""
    return await _send(request, lambda: partner_door.fulfilment_event(
        _topics(request), partner, report, datetime.now(UTC)))


@router.get("/overview")
def overview(request: Request, partner: Partner) -> dict[str, Any]:
    """Your offers and the proposals made of them (pending, approved, rejected, fulfilled)."""
    with unit_of_work(desk_of(request).engine.db) as store:
        seen = partner_door.partner_overview(
            store, partner, limit=MAX_SHOWN,
            service_travel_km=desk_of(request).settings.service_travel_km)
    return overview_json(seen)


@router.get("/refusals")
async def refusals(request: Request, partner: Partner) -> list[dict[str, Any]]:
    """Why your latest events were refused (from your feedback topic), newest first."""
    read: Refusals | None = getattr(request.app.state, "partner_refusals", None)
    if read is None:
        raise BrokerUnavailable()
    return await read(partner, MAX_SHOWN)


def _reach_json(reach: partner_door.OfferReach | None) -> dict[str, Any] | None:
    """How far an offer reaches: mode, km (null: district-wide or its workstation's street)
    and who set it (offer, partner, node or rule)."""
    if reach is None:
        return None
    return {"mode": reach.mode, "km": reach.km, "set_by": reach.set_by}


def overview_json(seen: PartnerOverview) -> dict[str, Any]:
    """The overview as JSON: nothing about beneficiaries beyond the case's grid."""
    return {
        "partner_id": seen.partner_id,
        "default_reach": seen.default_reach,
        "offers": [{"offer_id": o.offer_id, "kind": o.kind, "version": o.version,
                    "status": o.status, "reach": _reach_json(seen.reaches.get(o.offer_id))}
                   for o in seen.offers],
        "proposals": [{"proposal_id": p.proposal_id, "offer_id": p.offer_id,
                       "status": p.status, "amount": p.amount, "unit": p.unit,
                       "grid_id": p.grid_id, "created_at": p.created_at.isoformat(),
                       "window_start": p.window_start.isoformat() if p.window_start else None,
                       "window_end": p.window_end.isoformat() if p.window_end else None}
                      for p in seen.proposals],
    }
