"""The web console under /console: sign-in, the queue, decisions, cases, offers, charts.

Pages speak the reader's language (Chinese first) and show times in the district's zone.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from matcher.domain.errors import DomainError, InvalidCommand, NotInJurisdiction
from matcher.services import impact, oversight
from matcher.services.jurisdiction import Coordinator
from matcher.services.proposal_facts import facts_for
from matcher.storage.store import Store
from matcher.web import i18n
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
from matcher.web.explain import plain_sentence, refusal_words, runner_up_words, unmatched_words
from matcher.web.i18n import N_
from matcher.web.i18n import gettext as _
from matcher.web.words import reach_words, word
from schemas.matches import Decision
from schemas.offers import OfferKind

TEMPLATES = Jinja2Templates(env=Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
    extensions=["jinja2.ext.i18n"]))
TEMPLATES.env.install_gettext_callables(  # type: ignore[attr-defined]
    i18n.gettext, i18n.ngettext, newstyle=True)
TEMPLATES.env.filters.update(
    dt=i18n.local_datetime, dt_short=lambda v: i18n.local_datetime(v, short=True),
    iso=i18n.iso_local, num=i18n.number, pct=i18n.percent, duration=i18n.duration, word=word,
    reach=reach_words,
)
TEMPLATES.env.globals.update(zone_label=i18n.zone_label, html_lang=i18n.html_lang,
                             current_locale=i18n.current_locale)
router = APIRouter(prefix="/console", include_in_schema=False)
SENSITIVE_KEYS = ("health", "income", "child_screening")
PAGE_SIZE = 25
MAX_PAGE_SIZE = 200
BULK_MAX = 100
WAITED_HOURS = (1, 4, 12, 24)
ERROR_TITLES = {400: N_("Not possible"), 403: N_("Outside your jurisdiction"),
                404: N_("Not found"), 409: N_("Already decided or no longer possible"),
                422: N_("Please check the form")}
SORT_LABELS = {"urgency": N_("most urgent first"), "waiting": N_("longest waiting first"),
               "deadline": N_("nearest deadline first"), "grid": N_("by grid name")}
SENSITIVE_LABELS = {"health": N_("health"), "income": N_("income"),
                    "child_screening": N_("child screening")}


def _activate(request: Request) -> str:
    """Choose the reader's language and the district's zone for this request."""
    settings = desk_of(request).settings
    return i18n.activate(request, default=settings.default_locale, timezone=settings.timezone)


def _switch_link(request: Request, locale: str) -> str:
    """This page's address with ?lang= set to another language."""
    query = {k: v for k, v in request.query_params.items() if k != "lang"}
    query["lang"] = locale
    return f"{request.url.path}?{urlencode(query)}"


def page(request: Request, template: str, status_code: int = 200, **context: Any
         ) -> HTMLResponse:
    """Render a console page in the reader's language, with the coordinator, CSRF token and
    flash message."""
    _activate(request)
    context.setdefault("me", None)
    context["node_names"] = _node_names(request, context["me"])
    context["flash"] = request.session.pop("flash", None)
    context["csrf"] = csrf_token(request)
    context["switch"] = {"zh_CN": _switch_link(request, "zh_CN"),
                         "en": _switch_link(request, "en")}
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
    i18n.remember_choice(request, response)
    return response


def _node_names(request: Request, me: Coordinator | None) -> dict[str, str]:
    """Registry names of the nodes, for a signed-in coordinator's pages."""
    if me is None:
        return {}
    return desk_of(request).read(lambda store, c: oversight.node_names(store), me.username)


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
        raise InvalidCommand(_("urgency filter must be 1..5, not '%(value)s'")
                             % {"value": value[:20]})
    return int(value)


def _kind(value: str | None) -> str | None:
    """The kind filter: empty means any; otherwise a kind of offer."""
    if not value:
        return None
    if value not in set(OfferKind):
        raise InvalidCommand(_("kind filter must be one of %(kinds)s")
                             % {"kinds": ", ".join(OfferKind)})
    return value


def _waited(value: str | None) -> float | None:
    """The waiting-time filter in hours: empty means any."""
    if not value:
        return None
    if not value.isdigit() or int(value) not in WAITED_HOURS:
        raise InvalidCommand(_("waiting filter must be one of %(hours)s hours")
                             % {"hours": ", ".join(map(str, WAITED_HOURS))})
    return int(value) * 3600.0


def _sort(value: str | None) -> oversight.QueueSort:
    """The queue's order: urgency unless another known order is asked for."""
    for known in oversight.QUEUE_SORTS:
        if value == known:
            return known
    return "urgency"


def _page_number(value: str | None) -> int:
    """The 1-based page asked for; anything else is the first page."""
    return int(value) if value and value.isdigit() and int(value) >= 1 else 1


def _page_size(value: str | None) -> int:
    """Proposals per page, within bounds."""
    if value and value.isdigit():
        return max(1, min(int(value), MAX_PAGE_SIZE))
    return PAGE_SIZE


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
        _activate(request)
        return page(request, "sign_in.html", status_code=401, next=_local(next),
                    error=_("Unknown username or wrong password."))
    start_session(request, coordinator.username)
    return _see_other(_local(next))


@router.post("/sign-out")
def sign_out(request: Request, csrf: Annotated[str, Form()] = "") -> RedirectResponse:
    if csrf_ok(request, csrf):
        end_session(request)
    return _see_other("/console/sign-in")


def _explained(store: Store, entries: list[Any]) -> dict[str, dict[str, Any]]:
    """Each proposal's plain sentence and runner-ups in words, keyed by proposal id."""
    facts = facts_for(store, entries)
    return {e.proposal_id: {
        "sentence": plain_sentence(e, facts.get(e.proposal_id)),
        "runner_ups": [runner_up_words(e, r, facts.get(e.proposal_id))
                       for r in e.explanation.get("runner_ups", [])],
    } for e in entries}


@router.get("/queue")
def queue(request: Request, grid: str | None = None, kind: str | None = None,
          urgency: str | None = None, waited: str | None = None, sort: str | None = None,
          size: str | None = None) -> HTMLResponse:
    _activate(request)
    me = _me(request)
    desk = desk_of(request)
    min_urgency, kind_filter, min_waiting = _urgency(urgency), _kind(kind), _waited(waited)
    order = _sort(sort)
    number, per_page = _page_number(request.query_params.get("page")), _page_size(size)

    def read(store: Store, c: Coordinator) -> tuple[Any, ...]:
        found = oversight.queue_page(
            store, c, now=desk.engine.clock(), grid_id=grid or None, kind=kind_filter,
            min_urgency=min_urgency, min_waiting_s=min_waiting, sort=order,
            offset=(number - 1) * per_page, limit=per_page)
        return found, oversight.grid_choices(store, c), _explained(store, found.entries)

    found, grids, explained = desk.read(read, me.username)
    filters = {"grid": grid or "", "kind": kind or "", "urgency": urgency or "",
               "waited": waited or "", "sort": order if order != "urgency" else ""}
    kept = {k: v for k, v in filters.items() if v}
    if per_page != PAGE_SIZE:
        kept["size"] = str(per_page)
    here = {**kept, "page": str(number)} if number > 1 else kept
    back = "/console/queue" + ("?" + urlencode(here) if here else "")
    pages = max(1, -(-found.total // per_page))

    def page_link(n: int) -> str:
        return "/console/queue?" + urlencode({**kept, "page": str(n)})

    return page(request, "queue.html", me=me, found=found, entries=found.entries,
                grids=grids, kinds=list(OfferKind), filters=filters, back=back,
                explained=explained, number=number, pages=pages, page_link=page_link,
                sorts=SORT_LABELS, waited_hours=WAITED_HOURS,
                csv_link="/console/queue.csv" + ("?" + urlencode(kept) if kept else ""))


CSV_COLUMNS = (N_("proposal"), N_("case"), N_("item"), N_("grid"), N_("grid id"), N_("kind"),
               N_("need"), N_("amount"), N_("unit"), N_("urgency"), N_("from"),
               N_("deadline"), N_("proposed at"), N_("waiting (hours)"))


@router.get("/queue.csv")
def queue_csv(request: Request, grid: str | None = None, kind: str | None = None,
              urgency: str | None = None, waited: str | None = None,
              sort: str | None = None) -> Response:
    """The filtered queue as CSV for a spreadsheet: names, and times on the district's clock
    with their offset (the header says which zone)."""
    _activate(request)
    me = _me(request)
    desk = desk_of(request)
    found = desk.read(lambda store, c: oversight.queue_page(
        store, c, now=desk.engine.clock(), grid_id=grid or None, kind=_kind(kind),
        min_urgency=_urgency(urgency), min_waiting_s=_waited(waited), sort=_sort(sort),
        limit=100_000), me.username)
    header = [_(c) for c in CSV_COLUMNS]
    header[-3:-1] = [_("%(column)s, %(zone)s %(utc)s") % {
        "column": h, "zone": i18n.zone_name(), "utc": i18n.utc_offset()} for h in header[-3:-1]]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for e in found.entries:
        writer.writerow([e.proposal_id, e.case_id, e.item_id, e.grid_name, e.grid_id,
                         word(e.kind, "kind"), word(e.need, "need"), f"{e.amount:g}",
                         word(e.unit, "unit"), e.urgency, e.partner_name or e.partner_id,
                         i18n.iso_local(e.deadline), i18n.iso_local(e.created_at),
                         f"{e.waiting_s / 3600:.1f}"])
    # A byte-order mark so spreadsheet programs on Chinese Windows read UTF-8.
    return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="queue.csv"'})


def _decision_message(result: Any) -> str:
    """The flash after one decision, in the reader's language."""
    return _("Proposal %(id)s: %(status)s.") % {"id": result.proposal_id,
                                                "status": word(result.status.value, "status")}


@router.post("/proposals/{proposal_id}/decide")
def decide(request: Request, proposal_id: str, decision: Annotated[Decision, Form()],
           csrf: Annotated[str, Form()] = "", reason: Annotated[str, Form(max_length=500)] = "",
           back: Annotated[str, Form(max_length=300)] = "/console/queue") -> RedirectResponse:
    _activate(request)
    if not csrf_ok(request, csrf):
        raise InvalidCommand(_("the form expired; reload the page and try again"))
    username = signed_in(request)
    try:
        result = desk_of(request).decide(username, proposal_id, decision, reason,
                                         channel="http:console")
    except NotInJurisdiction:
        raise
    except DomainError as refused:
        _flash(request, refusal_words(refused.reason), "error")
    else:
        _flash(request, _decision_message(result))
    return _see_other(_local(back))


@router.post("/proposals/approve-many")
def approve_many(request: Request, proposal: Annotated[list[str], Form()],
                 csrf: Annotated[str, Form()] = "",
                 back: Annotated[str, Form(max_length=300)] = "/console/queue"
                 ) -> RedirectResponse:
    """Approve the selected proposals, each decided, checked and audited on its own."""
    _activate(request)
    if not csrf_ok(request, csrf):
        raise InvalidCommand(_("the form expired; reload the page and try again"))
    if len(proposal) > BULK_MAX:
        raise InvalidCommand(_("select at most %(n)s proposals at once") % {"n": BULK_MAX})
    username = signed_in(request)
    approved: list[str] = []
    refused: list[str] = []
    for proposal_id in dict.fromkeys(proposal):
        try:
            desk_of(request).decide(username, proposal_id, Decision.APPROVE, "",
                                    channel="http:console")
        except DomainError as why:
            refused.append(_("%(id)s: %(why)s") % {"id": proposal_id,
                                                    "why": refusal_words(why.reason)})
        else:
            approved.append(proposal_id)
    message = i18n.ngettext("%(n)s proposal approved.", "%(n)s proposals approved.",
                            len(approved)) % {"n": len(approved)}
    if refused:
        message += " " + _("Not approved: %(list)s") % {"list": _("; ").join(refused)}
    _flash(request, message, "error" if refused else "ok")
    return _see_other(_local(back))


@router.get("/proposals/{proposal_id}")
def proposal(request: Request, proposal_id: str) -> HTMLResponse:
    _activate(request)
    me = _me(request)
    desk = desk_of(request)

    def read(store: Store, c: Coordinator) -> tuple[Any, ...]:
        view = oversight.proposal_view(store, c, proposal_id, now=desk.engine.clock())
        return view, _explained(store, [view])

    view, explained = desk.read(read, me.username)
    return page(request, "proposal.html", me=me, p=view, explained=explained,
                back=f"/console/proposals/{view.proposal_id}")


@router.get("/cases/{case_id}")
def case(request: Request, case_id: str) -> HTMLResponse:
    _activate(request)
    me = _me(request)
    desk = desk_of(request)
    view = desk.read(lambda store, c: oversight.case_view(
        store, c, case_id, now=desk.engine.clock()), me.username)
    sensitive = {_(SENSITIVE_LABELS[k]): v
                 for k, v in (view.beneficiary.get("sensitive") or {}).items()
                 if k in SENSITIVE_KEYS and v}
    return page(request, "case.html", me=me, case=view, sensitive=sensitive)


@router.get("/offers/{offer_id}")
def offer(request: Request, offer_id: str) -> HTMLResponse:
    _activate(request)
    me = _me(request)
    desk = desk_of(request)
    view = desk.read(lambda store, c: oversight.offer_view(
        store, c, offer_id, now=desk.engine.clock()), me.username)
    return page(request, "offer.html", me=me, offer=view)


@router.get("/unmatched")
def unmatched(request: Request, grid: str | None = None) -> HTMLResponse:
    _activate(request)
    me = _me(request)
    needs, grids = desk_of(request).read(lambda store, c: (
        oversight.unmatched_needs(store, c, grid_id=grid or None),
        oversight.grid_choices(store, c)), me.username)
    why = {(n.case_id, n.item_id): unmatched_words(n.reason_code, n.need, n.taken_by)
           for n in needs}
    return page(request, "unmatched.html", me=me, needs=needs, grids=grids, grid=grid or "",
                why=why)


def _named(values: Mapping[str, float], names: Mapping[str, str]) -> dict[str, float]:
    """Chart rows with registry names instead of ids."""
    return {names.get(key, key): value for key, value in values.items()}


@router.get("/stats")
def stats(request: Request) -> HTMLResponse:
    _activate(request)
    me = _me(request)
    desk = desk_of(request)
    figures, grids = desk.read(lambda store, c: (
        impact.queue_stats(store, c, now=desk.engine.clock()),
        dict(oversight.grid_choices(store, c))), me.username)
    kinds = {k: word(k, "kind") for k in figures.pending_by_kind}
    decided = {k: word(k, "status") for k in figures.decided}
    waits = {k: word(k, "wait") for k in figures.waiting_buckets}
    empty = _("nothing to show")
    charts = [
        bar_chart(_named(figures.pending_by_grid, grids), title=_("Pending proposals by grid"),
                  empty=empty),
        bar_chart(_named(figures.waiting_buckets, waits),
                  title=_("Waiting time of pending proposals"), empty=empty),
        bar_chart(_named(figures.pending_by_kind, kinds), title=_("Pending proposals by kind"),
                  empty=empty),
        bar_chart(_named(figures.decided, decided), title=_("Decided and closed proposals"),
                  empty=empty),
    ]
    return page(request, "stats.html", me=me, stats=figures, charts=charts)


def console_error(request: Request, status_code: int, title: str, reason: str) -> Response:
    """A friendly error page (404 unknown or outside the jurisdiction, 409...)."""
    if status_code == 401:
        return _see_other("/console/sign-in?" + urlencode({"next": str(request.url.path)}))
    _activate(request)
    me = None
    with contextlib.suppress(SignInRequired, DomainError):
        me = _me(request)
    shown = _(ERROR_TITLES[status_code]) if status_code in ERROR_TITLES else title
    return page(request, "error.html", status_code=status_code, me=me, title=shown,
                reason=refusal_words(reason))
