"""The web console under /console: sign-in, the queue, decisions, cases, offers, charts."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from matcher.domain.errors import DomainError, InvalidCommand, NotInJurisdiction
from matcher.services import impact, oversight
from matcher.services.jurisdiction import Coordinator
from matcher.web.auth import (
    SignInRequired,
    check_password,
    csrf_ok,
    csrf_token,
    desk_of,
    end_session,
    signed_in,
    start_session,
)
from matcher.web.charts import bar_chart
from schemas.matches import Decision
from schemas.offers import OfferKind

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(prefix="/console", include_in_schema=False)
SENSITIVE_KEYS = ("health", "income", "child_screening")


def page(request: Request, template: str, status_code: int = 200, **context: Any
         ) -> HTMLResponse:
    """Render a console page with the signed-in coordinator, CSRF token and flash message."""
    context.setdefault("me", None)
    context["flash"] = request.session.pop("flash", None)
    context["csrf"] = csrf_token(request)
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)


def _flash(request: Request, message: str, kind: str = "ok") -> None:
    """A one-time message shown on the next page."""
    request.session["flash"] = {"message": message, "kind": kind}


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _me(request: Request) -> Coordinator:
    """The signed-in, still active coordinator."""
    return desk_of(request).read(lambda store, c: c, signed_in(request))


def _local(url: str) -> str:
    """Only redirect within the console (no open redirects)."""
    return url if url.startswith("/console/") and not url.startswith("//") else "/console/queue"


def _urgency(value: str | None) -> int | None:
    """The urgency filter: empty means any; otherwise 1..5."""
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 5:
        raise InvalidCommand(f"urgency filter must be 1..5, not '{value[:20]}'")
    return int(value)


def _kind(value: str | None) -> str | None:
    """The kind filter: empty means any; otherwise a kind of offer."""
    if not value:
        return None
    if value not in set(OfferKind):
        raise InvalidCommand(f"kind filter must be one of {', '.join(OfferKind)}")
    return value


@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    return _see_other("/console/queue")


@router.get("/sign-in")
def sign_in_form(request: Request, next: str = "/console/queue") -> HTMLResponse:
    return page(request, "sign_in.html", next=_local(next), error=None)


@router.post("/sign-in", response_model=None)
def sign_in(request: Request, username: Annotated[str, Form(max_length=80)],
            password: Annotated[str, Form(max_length=200)],
            next: Annotated[str, Form(max_length=300)] = "/console/queue",
            csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    if not csrf_ok(request, csrf):  # the token was set when the form was shown
        return page(request, "sign_in.html", status_code=422, next=_local(next),
                    error="The sign-in form expired; please try again.")
    coordinator = check_password(request, username.strip(), password, channel="http:console")
    if coordinator is None:
        return page(request, "sign_in.html", status_code=401, next=_local(next),
                    error="Unknown username or wrong password.")
    start_session(request, coordinator.username)
    return _see_other(_local(next))


@router.post("/sign-out")
def sign_out(request: Request, csrf: Annotated[str, Form()] = "") -> RedirectResponse:
    if csrf_ok(request, csrf):
        end_session(request)
    return _see_other("/console/sign-in")


@router.get("/queue")
def queue(request: Request, grid: str | None = None, kind: str | None = None,
          urgency: str | None = None) -> HTMLResponse:
    me = _me(request)
    desk = desk_of(request)
    min_urgency, kind_filter = _urgency(urgency), _kind(kind)
    entries, grids = desk.read(lambda store, c: (
        oversight.pending_queue(store, c, now=desk.engine.clock(), grid_id=grid or None,
                                kind=kind_filter, min_urgency=min_urgency),
        oversight.grids_in(store, c)), me.username)
    filters = {"grid": grid or "", "kind": kind or "", "urgency": urgency or ""}
    back = "/console/queue?" + urlencode({k: v for k, v in filters.items() if v})
    return page(request, "queue.html", me=me, entries=entries, grids=grids,
                kinds=list(OfferKind), filters=filters, back=back)


@router.post("/proposals/{proposal_id}/decide")
def decide(request: Request, proposal_id: str, decision: Annotated[Decision, Form()],
           csrf: Annotated[str, Form()] = "", reason: Annotated[str, Form(max_length=500)] = "",
           back: Annotated[str, Form(max_length=300)] = "/console/queue") -> RedirectResponse:
    if not csrf_ok(request, csrf):
        raise InvalidCommand("the form expired; reload the page and try again")
    username = signed_in(request)
    try:
        result = desk_of(request).decide(username, proposal_id, decision, reason,
                                         channel="http:console")
    except NotInJurisdiction:
        raise
    except DomainError as refused:
        _flash(request, refused.reason, "error")
    else:
        _flash(request, f"Proposal {result.proposal_id} {result.status.value}.")
    return _see_other(_local(back))


@router.get("/proposals/{proposal_id}")
def proposal(request: Request, proposal_id: str) -> HTMLResponse:
    me = _me(request)
    desk = desk_of(request)
    view = desk.read(lambda store, c: oversight.proposal_view(
        store, c, proposal_id, now=desk.engine.clock()), me.username)
    return page(request, "proposal.html", me=me, p=view,
                back=f"/console/proposals/{view.proposal_id}")


@router.get("/cases/{case_id}")
def case(request: Request, case_id: str) -> HTMLResponse:
    me = _me(request)
    desk = desk_of(request)
    view = desk.read(lambda store, c: oversight.case_view(
        store, c, case_id, now=desk.engine.clock()), me.username)
    sensitive = {k: v for k, v in (view.beneficiary.get("sensitive") or {}).items()
                 if k in SENSITIVE_KEYS and v}
    return page(request, "case.html", me=me, case=view, sensitive=sensitive)


@router.get("/offers/{offer_id}")
def offer(request: Request, offer_id: str) -> HTMLResponse:
    me = _me(request)
    desk = desk_of(request)
    view = desk.read(lambda store, c: oversight.offer_view(
        store, c, offer_id, now=desk.engine.clock()), me.username)
    return page(request, "offer.html", me=me, offer=view)


@router.get("/unmatched")
def unmatched(request: Request, grid: str | None = None) -> HTMLResponse:
    me = _me(request)
    needs, grids = desk_of(request).read(lambda store, c: (
        oversight.unmatched_needs(store, c, grid_id=grid or None),
        oversight.grids_in(store, c)), me.username)
    return page(request, "unmatched.html", me=me, needs=needs, grids=grids, grid=grid or "")


@router.get("/stats")
def stats(request: Request) -> HTMLResponse:
    me = _me(request)
    desk = desk_of(request)
    figures = desk.read(lambda store, c: impact.queue_stats(store, c, now=desk.engine.clock()),
                        me.username)
    charts = [
        bar_chart(figures.pending_by_grid, title="Pending proposals by grid"),
        bar_chart(figures.waiting_buckets, title="Waiting time of pending proposals"),
        bar_chart(figures.pending_by_kind, title="Pending proposals by kind"),
        bar_chart(figures.decided, title="Decided and closed proposals"),
    ]
    return page(request, "stats.html", me=me, stats=figures, charts=charts)


def console_error(request: Request, status_code: int, title: str, reason: str) -> Response:
    """A friendly error page (404 unknown or outside the jurisdiction, 409...)."""
    if status_code == 401:
        return _see_other("/console/sign-in?" + urlencode({"next": str(request.url.path)}))
    me = None
    with contextlib.suppress(SignInRequired, DomainError):
        me = _me(request)
    return page(request, "error.html", status_code=status_code, me=me, title=title,
                reason=reason)
