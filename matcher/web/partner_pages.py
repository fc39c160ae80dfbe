"""The partner page under /partner: sign in with the partner's API key, publish a goods offer
through a form, and see the partner's offers, proposals, approvals and refusals.

It is the partner door's API in a browser: the form becomes the same offer.published event,
sent to the partner's own topic, and the engine applies or refuses it as any other.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from matcher.domain.errors import DomainError
from matcher.services import oversight, partner_door
from matcher.storage.store import unit_of_work
from matcher.web import i18n
from matcher.web.auth import client_address, csrf_ok, desk_of
from matcher.web.console import page
from matcher.web.i18n import gettext as _
from matcher.web.partner_api import MAX_SHOWN, PARTNER_SESSION, Refusals, Send
from matcher.web.throttle import SignInThrottle

router = APIRouter(prefix="/partner", include_in_schema=False)
# Goods a charity supermarket or merchant usually gives, with the unit each is counted in.
GOODS = {"rice": "kg", "cooking_oil": "litre", "flour": "kg", "vegetables": "kg",
         "milk": "box", "bread": "bag", "eggs": "tray", "quilt": "piece",
         "winter_clothing": "piece", "adult_diapers": "pack", "school_supplies": "set",
         "walking_aid": "piece"}


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _flash(request: Request, message: str, kind: str = "ok") -> None:
    request.session["flash"] = {"message": message, "kind": kind}


def _now() -> datetime:
    return datetime.now(UTC)


def _speak(request: Request) -> None:
    """Choose the reader's language before any message is worded."""
    settings = desk_of(request).settings
    i18n.activate(request, default=settings.default_locale, timezone=settings.timezone)


def _signed_in(request: Request) -> str | None:
    """The partner of this browser's page session, if live."""
    secret = request.session.get(PARTNER_SESSION)
    if not isinstance(secret, str):
        return None
    with unit_of_work(desk_of(request).engine.db) as store:
        return partner_door.partner_of_session(store, secret, at=_now())


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    """The partner's page: the offer form, its offers, proposals and refusals."""
    partner = _signed_in(request)
    if partner is None:
        return _see_other("/partner/sign-in")
    with unit_of_work(desk_of(request).engine.db) as store:
        seen = partner_door.partner_overview(
            store, partner, limit=MAX_SHOWN,
            service_travel_km=desk_of(request).settings.service_travel_km)
        names = oversight.node_names(store)
    read: Refusals | None = getattr(request.app.state, "partner_refusals", None)
    refusals = await read(partner, 20) if read is not None else []
    return page(request, "partner.html", partner=seen, names=names, goods=GOODS,
                refusals=refusals, default_node=seen.home_node_id or "")


@router.get("/sign-in")
def sign_in_form(request: Request) -> HTMLResponse:
    return page(request, "partner_sign_in.html", error=None, partner_id="")


@router.post("/sign-in", response_model=None)
def sign_in(request: Request, partner_id: Annotated[str, Form(max_length=80)],
            api_key: Annotated[str, Form(max_length=200)],
            csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    """Sign in with the partner id and API key; throttled like the coordinators' sign-in."""
    _speak(request)
    partner_id = partner_id.strip()
    if not csrf_ok(request, csrf):
        return page(request, "partner_sign_in.html", status_code=422, partner_id=partner_id,
                    error=_("The sign-in form expired; please try again."))
    throttle: SignInThrottle = request.app.state.throttle
    keys = [f"partner:{partner_id.lower()}", f"address:{client_address(request)}"]
    stamp = throttle.begin(keys)  # TooManySignIns becomes a 429 page
    with unit_of_work(desk_of(request).engine.db) as store:
        owner = partner_door.partner_of_key(store, api_key.strip(), at=_now())
        if owner is None or owner != partner_id:
            return page(request, "partner_sign_in.html", status_code=401,
                        partner_id=partner_id, error=_("Unknown partner id or wrong key."))
        secret = partner_door.open_page_session(
            store, partner_id, at=_now(), lifetime_s=desk_of(request).settings.session_max_age_s)
    throttle.succeeded(keys, stamp)
    old = request.session.get(PARTNER_SESSION)
    request.session.clear()
    request.session[PARTNER_SESSION] = secret
    if isinstance(old, str):
        with unit_of_work(desk_of(request).engine.db) as store:
            partner_door.close_page_session(store, old, at=_now())
    return _see_other("/partner/")


@router.post("/sign-out")
def sign_out(request: Request, csrf: Annotated[str, Form()] = "") -> RedirectResponse:
    secret = request.session.get(PARTNER_SESSION)
    if csrf_ok(request, csrf) and isinstance(secret, str):
        with unit_of_work(desk_of(request).engine.db) as store:
            partner_door.close_page_session(store, secret, at=_now())
        request.session.clear()
    return _see_other("/partner/sign-in")


@router.post("/offers", response_model=None)
async def publish_goods(request: Request, category: Annotated[str, Form(max_length=60)],
                        quantity: Annotated[str, Form(max_length=20)],
                        node_id: Annotated[str, Form(max_length=80)],
                        expires_on: Annotated[str, Form(max_length=10)] = "",
                        csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    """The goods form: becomes offer.published on the partner's own topic."""
    _speak(request)
    partner = _signed_in(request)
    if partner is None:
        return _see_other("/partner/sign-in")
    if not csrf_ok(request, csrf):
        _flash(request, _("The form expired; please try again."), "error")
        return _see_other("/partner/")
    send: Send | None = getattr(request.app.state, "partner_send", None)
    try:
        payload = _goods_payload(request, partner, category, quantity, node_id.strip(),
                                 expires_on.strip())
        outgoing = partner_door.offer_event(desk_of(request).engine.topics, partner,
                                            "published", payload, _now())
    except (ValidationError, ValueError, DomainError) as refused:
        _flash(request, _("Not sent: %(why)s") % {"why": _why(refused)}, "error")
        return _see_other("/partner/")
    if send is None:
        _flash(request, _("Not sent: the engine is not connected to the broker."), "error")
        return _see_other("/partner/")
    await send(outgoing)
    _flash(request, _("Offer %(offer)s sent; it is listed below once the engine has applied "
                      "it.") % {"offer": outgoing.key})
    return _see_other("/partner/")


def _goods_payload(request: Request, partner: str, category: str, quantity: str, node_id: str,
                   expires_on: str) -> dict[str, Any]:
    """The offer payload of the form's fields (quantity as a number, expiry as local midnight
    after the last usable day)."""
    if category not in GOODS:
        raise ValueError(_("choose a kind of goods from the list"))
    try:
        amount = float(quantity.replace(",", "."))
    except ValueError:
        raise ValueError(_("the quantity must be a number")) from None
    zone = ZoneInfo(desk_of(request).settings.timezone)
    stamp = datetime.now(zone).strftime("%Y%m%d%H%M%S")
    payload: dict[str, Any] = {"kind": "goods", "offer_id": f"{partner}-goods-{stamp}",
                               "version": 1, "node_id": node_id, "category": category,
                               "quantity": amount, "unit": GOODS[category]}
    if expires_on:
        try:
            last_day = datetime.strptime(expires_on, "%Y-%m-%d").date()
        except ValueError:
            raise ValueError(_("the expiry date must be a date")) from None
        payload["expires_at"] = datetime.combine(last_day + timedelta(days=1), time(),
                                                 zone).isoformat()
    return payload


def _why(refused: Exception) -> str:
    """A refusal in a sentence, naming the fields at fault."""
    if isinstance(refused, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'][-1:])}: {e['msg']}"
                         for e in refused.errors(include_url=False, include_input=False)[:5])
    if isinstance(refused, DomainError):
        return refused.reason
    return str(refused)
