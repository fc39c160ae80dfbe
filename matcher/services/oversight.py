"""What a coordinator may read: the queue, proposals, cases, offers and unmatched needs.

Every query is limited to the coordinator's subtree in SQL and checked again per row. A
single entity outside the jurisdiction is answered as not found (NotFoundHere), exactly like
an unknown one; lists, proposals and history lines of a visible entity are filtered to the
subtree, so no other jurisdiction's case ids or reasons show.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import and_, select

from matcher.services.jurisdiction import (
    Coordinator,
    NotFoundHere,
    require_case_in_jurisdiction,
)
from matcher.storage.coordination import CoordinationStore
from matcher.storage.store import Store
from matcher.storage.tables import (
    audit_log,
    cases,
    need_items,
    nodes,
    offers,
    partners,
    proposals,
)
from schemas.matches import ProposalStatus


class QueueEntry(BaseModel):
    """A pending proposal as it appears in a coordinator's queue."""

    proposal_id: str
    case_id: str
    item_id: str
    grid_id: str
    offer_id: str
    partner_id: str
    kind: str
    need: str
    amount: float
    unit: str
    urgency: int
    deadline: datetime
    window_start: datetime | None
    window_end: datetime | None
    score: float
    status: str
    created_at: datetime
    waiting_s: float
    escalated_to: str | None = None
    explanation: dict[str, Any]
    grid_name: str = ""
    partner_name: str = ""


QueueSort = Literal["urgency", "waiting", "deadline", "grid"]
QUEUE_SORTS: tuple[QueueSort, ...] = ("urgency", "waiting", "deadline", "grid")


class QueuePage(BaseModel):
    """One page of a coordinator's queue, with how many wait in all and the oldest wait."""

    entries: list[QueueEntry]
    total: int
    offset: int
    limit: int
    oldest_wait_s: float


class HistoryEntry(BaseModel):
    """One line of the audit log about a case, offer or proposal."""

    at: datetime
    event_type: str
    by: str
    summary: str


class ProposalView(QueueEntry):
    """A proposal with who decided it and why."""

    decided_by: str | None
    decision_reason: str | None
    history: list[HistoryEntry]


class CaseView(BaseModel):
    """A case in the coordinator's jurisdiction, sensitive attributes included."""

    case_id: str
    grid_id: str
    status: str
    version: int
    opened_at: datetime
    beneficiary: dict[str, Any]
    items: list[dict[str, Any]]
    proposals: list[ProposalView]
    history: list[HistoryEntry]
    grid_name: str = ""


class OfferView(BaseModel):
    """An offer and the proposals on it that lie in the coordinator's jurisdiction."""

    offer_id: str
    partner_id: str
    kind: str
    status: str
    version: int
    node_id: str
    capacity: float
    unit: str
    payload: dict[str, Any]
    proposals: list[ProposalView]
    history: list[HistoryEntry]
    partner_name: str = ""
    node_name: str = ""


class PartnerView(BaseModel):
    """A partner, with its offers and history as far as they concern the jurisdiction."""

    partner_id: str
    name: str
    kind: str
    home_node_id: str
    offers: list[str]
    history: list[HistoryEntry]


class UnmatchedNeed(BaseModel):
    """A need item left (partly) unmatched, with the engine's reason."""

    case_id: str
    item_id: str
    grid_id: str
    kind: str
    need: str
    quantity: float
    unit: str
    urgency: int
    deadline: datetime
    reason_code: str
    reason: str
    grid_name: str = ""
    taken_by: str | None = None  # for capacity_taken: who holds the capacity


def _in_subtree(coordinator: Coordinator) -> Any:
    """SQL condition: the joined node lies in the coordinator's subtree (no LIKE wildcards)."""
    return nodes.c.path.startswith(coordinator.node_path, autoescape=True)


def _proposal_query() -> Any:
    """Proposals joined with their item (urgency, need) and grid node."""
    return (
        select(proposals, need_items.c.need, need_items.c.urgency, need_items.c.deadline,
               nodes.c.path.label("grid_path"), nodes.c.name.label("grid_name"),
               partners.c.name.label("partner_name"))
        .join(need_items, and_(need_items.c.case_id == proposals.c.case_id,
                               need_items.c.item_id == proposals.c.item_id))
        .join(nodes, nodes.c.node_id == proposals.c.grid_id)
        .outerjoin(partners, partners.c.partner_id == proposals.c.partner_id)
    )


def _entry(row: Any, now: datetime, escalated_to: str | None) -> dict[str, Any]:
    """Fields of a queue entry from a joined row."""
    data = dict(row._mapping)
    data["waiting_s"] = max((now - data["created_at"]).total_seconds(), 0.0)
    data["escalated_to"] = escalated_to
    data["partner_name"] = data.get("partner_name") or ""
    return data


def pending_queue(store: Store, coordinator: Coordinator, *, now: datetime,
                  grid_id: str | None = None, kind: str | None = None,
                  min_urgency: int | None = None, limit: int = 200) -> list[QueueEntry]:
    """Pending proposals in the jurisdiction, most urgent first (escalated ones lead ties)."""
    return queue_page(store, coordinator, now=now, grid_id=grid_id, kind=kind,
                      min_urgency=min_urgency, limit=limit).entries


def _sort_key(sort: QueueSort) -> Any:
    """How a queue is ordered; every order ends on urgency, deadline and age for stability."""
    def by_urgency(e: QueueEntry) -> tuple[Any, ...]:
        return (-e.urgency, e.escalated_to is None, e.deadline, e.created_at, e.proposal_id)

    if sort == "waiting":
        return lambda e: (e.created_at, *by_urgency(e))
    if sort == "deadline":
        return lambda e: (e.deadline, *by_urgency(e))
    if sort == "grid":
        return lambda e: (e.grid_name or e.grid_id, *by_urgency(e))
    return by_urgency


def queue_page(store: Store, coordinator: Coordinator, *, now: datetime,
               grid_id: str | None = None, kind: str | None = None,
               min_urgency: int | None = None, min_waiting_s: float | None = None,
               sort: QueueSort = "urgency", offset: int = 0, limit: int = 50) -> QueuePage:
    """A page of pending proposals in the jurisdiction, with the total behind the filters."""
    query = _proposal_query().where(proposals.c.status == ProposalStatus.PROPOSED.value,
                                    _in_subtree(coordinator))
    if grid_id:
        query = query.where(proposals.c.grid_id == grid_id)
    if kind:
        query = query.where(proposals.c.kind == kind)
    if min_urgency is not None:
        query = query.where(need_items.c.urgency >= min_urgency)
    rows = [r for r in store.conn.execute(query) if coordinator.covers(r.grid_path)]
    escalated = CoordinationStore(store.conn).escalations_for([r.proposal_id for r in rows])
    entries = [QueueEntry(**_entry(r, now, escalated[r.proposal_id].escalated_to
                                   if r.proposal_id in escalated else None)) for r in rows]
    if min_waiting_s is not None:
        entries = [e for e in entries if e.waiting_s >= min_waiting_s]
    entries.sort(key=_sort_key(sort))
    offset = max(offset, 0)
    return QueuePage(entries=entries[offset:offset + limit], total=len(entries), offset=offset,
                     limit=limit, oldest_wait_s=max((e.waiting_s for e in entries), default=0.0))


# Ids as audit summaries write them: 'case c1', 'proposal p1' (the Identifier alphabet).
_MENTION = re.compile(r"\b(case|proposal) ([A-Za-z0-9][A-Za-z0-9_.:-]*)")


def _history(store: Store, coordinator: Coordinator, pattern: str) -> list[HistoryEntry]:
    """Audit lines naming an entity ('case c1', 'offer o1'), oldest first, that name no case
    or proposal outside the jurisdiction."""
    rows = store.conn.execute(
        select(audit_log.c.applied_at, audit_log.c.event_type, audit_log.c.producer,
               audit_log.c.summary)
        .where(audit_log.c.summary.contains(pattern, autoescape=True))
        .order_by(audit_log.c.seq)
    )
    # 'case c1' must not match 'case c10'.
    exact = re.compile(re.escape(pattern) + r"(?![A-Za-z0-9_.:-])")
    lines = [r for r in rows if exact.search(r.summary)]
    visible = _visible_mentions(store, coordinator, [r.summary for r in lines])
    return [HistoryEntry(at=r.applied_at, event_type=r.event_type, by=r.producer,
                         summary=r.summary) for r in lines if visible(r.summary)]


def _visible_mentions(store: Store, coordinator: Coordinator,
                      summaries: list[str]) -> Any:
    """A test: does a summary name only cases and proposals in the jurisdiction?"""
    mentioned = [m.groups() for text in summaries for m in _MENTION.finditer(text)]
    case_ids = {ident.rstrip(".:") for kind, ident in mentioned if kind == "case"}
    proposal_ids = {ident.rstrip(".:") for kind, ident in mentioned if kind == "proposal"}
    inside: set[tuple[str, str]] = set()
    if case_ids:
        inside |= {("case", r.case_id) for r in store.conn.execute(
            select(cases.c.case_id, nodes.c.path).join(nodes, nodes.c.node_id == cases.c.grid_id)
            .where(cases.c.case_id.in_(case_ids))) if coordinator.covers(r.path)}
    if proposal_ids:
        inside |= {("proposal", r.proposal_id) for r in store.conn.execute(
            select(proposals.c.proposal_id, nodes.c.path)
            .join(nodes, nodes.c.node_id == proposals.c.grid_id)
            .where(proposals.c.proposal_id.in_(proposal_ids))) if coordinator.covers(r.path)}

    def visible(summary: str) -> bool:
        # Unknown ids count as outside: a line is shown only when every id in it is cleared.
        return all((kind, ident.rstrip(".:")) in inside
                   for kind, ident in _MENTION.findall(summary))

    return visible


def _views(store: Store, coordinator: Coordinator, rows: list[Any],
           now: datetime) -> list[ProposalView]:
    """Full views of joined proposal rows (the caller has kept only the jurisdiction's)."""
    escalated = CoordinationStore(store.conn).escalations_for([r.proposal_id for r in rows])
    return [
        ProposalView(**_entry(r, now, escalated[r.proposal_id].escalated_to
                              if r.proposal_id in escalated else None),
                     history=_history(store, coordinator, f"proposal {r.proposal_id}"))
        for r in rows
    ]


def proposal_view(store: Store, coordinator: Coordinator, proposal_id: str, *,
                  now: datetime) -> ProposalView:
    """One proposal with its explanation, if it lies in the jurisdiction."""
    row = store.conn.execute(
        _proposal_query().where(proposals.c.proposal_id == proposal_id)
    ).first()
    if row is None or not coordinator.covers(row.grid_path):
        raise NotFoundHere(f"proposal '{proposal_id}'")
    return _views(store, coordinator, [row], now)[0]


def case_view(store: Store, coordinator: Coordinator, case_id: str, *,
              now: datetime) -> CaseView:
    """A case with items, every proposal made for it and its history."""
    case = store.case(case_id)
    if case is None:
        raise NotFoundHere(f"case '{case_id}'")
    require_case_in_jurisdiction(store, coordinator, case.grid_id, f"case '{case_id}'")
    items = [dict(r._mapping) for r in store.conn.execute(
        select(*(c for c in need_items.c if c.name != "revision"))
        .where(need_items.c.case_id == case_id).order_by(need_items.c.item_id)
    )]
    rows = list(store.conn.execute(
        _proposal_query().where(proposals.c.case_id == case_id)
        .order_by(proposals.c.created_at, proposals.c.proposal_id)
    ))
    status = store.conn.execute(select(cases.c.status).where(cases.c.case_id == case_id))
    grid_name = store.conn.execute(
        select(nodes.c.name).where(nodes.c.node_id == case.grid_id)).scalar_one_or_none()
    return CaseView(case_id=case.case_id, grid_id=case.grid_id, status=status.scalar_one(),
                    grid_name=grid_name or "",
                    version=case.version, opened_at=case.opened_at,
                    beneficiary=case.beneficiary, items=items,
                    proposals=_views(store, coordinator, rows, now),
                    history=_history(store, coordinator, f"case {case_id}"))


def offer_view(store: Store, coordinator: Coordinator, offer_id: str, *,
               now: datetime) -> OfferView:
    """An offer based in the jurisdiction, or serving a case in it."""
    offer = store.conn.execute(
        select(offers, nodes.c.path, nodes.c.name.label("node_name"),
               partners.c.name.label("partner_name"))
        .join(nodes, nodes.c.node_id == offers.c.node_id)
        .outerjoin(partners, partners.c.partner_id == offers.c.partner_id)
        .where(offers.c.offer_id == offer_id)
    ).first()
    if offer is None:
        raise NotFoundHere(f"offer '{offer_id}'")
    rows = _proposals_on(store, coordinator, offer_id)
    if not coordinator.covers(offer.path) and not rows:
        raise NotFoundHere(f"offer '{offer_id}'")
    data = {k: v for k, v in offer._mapping.items() if k in OfferView.model_fields}
    data["partner_name"] = data.get("partner_name") or ""
    return OfferView(**data, proposals=_views(store, coordinator, rows, now),
                     history=_history(store, coordinator, f"offer {offer_id}"))


def _proposals_on(store: Store, coordinator: Coordinator, offer_id: str) -> list[Any]:
    """Proposals on an offer that serve cases in the jurisdiction, oldest first."""
    return [r for r in store.conn.execute(
        _proposal_query().where(proposals.c.offer_id == offer_id, _in_subtree(coordinator))
        .order_by(proposals.c.created_at, proposals.c.proposal_id)
    ) if coordinator.covers(r.grid_path)]


def partner_view(store: Store, coordinator: Coordinator, partner_id: str) -> PartnerView:
    """A partner attached in the jurisdiction, or with an offer based in or serving it."""
    partner = store.conn.execute(
        select(partners, nodes.c.path).join(nodes, nodes.c.node_id == partners.c.home_node_id)
        .where(partners.c.partner_id == partner_id)
    ).first()
    if partner is None:
        raise NotFoundHere(f"partner '{partner_id}'")
    visible = [r.offer_id for r in store.conn.execute(
        select(offers.c.offer_id, nodes.c.path).join(nodes, nodes.c.node_id == offers.c.node_id)
        .where(offers.c.partner_id == partner_id).order_by(offers.c.offer_id)
    ) if coordinator.covers(r.path) or _proposals_on(store, coordinator, r.offer_id)]
    if not coordinator.covers(partner.path) and not visible:
        raise NotFoundHere(f"partner '{partner_id}'")
    return PartnerView(partner_id=partner.partner_id, name=partner.name, kind=partner.kind,
                       home_node_id=partner.home_node_id, offers=visible,
                       history=_history(store, coordinator, f"partner {partner_id}"))


def unmatched_needs(store: Store, coordinator: Coordinator, *,
                    grid_id: str | None = None) -> list[UnmatchedNeed]:
    """Open items in the jurisdiction the engine could not (fully) serve, with reasons."""
    query = (
        select(need_items, cases.c.grid_id, nodes.c.path, nodes.c.name.label("grid_name"))
        .join(cases, cases.c.case_id == need_items.c.case_id)
        .join(nodes, nodes.c.node_id == cases.c.grid_id)
        .where(need_items.c.status == "open", cases.c.status == "open",
               need_items.c.unmatched_code.is_not(None), _in_subtree(coordinator))
        .order_by(need_items.c.urgency.desc(), need_items.c.deadline)
    )
    if grid_id:
        query = query.where(cases.c.grid_id == grid_id)
    return [
        UnmatchedNeed(case_id=r.case_id, item_id=r.item_id, grid_id=r.grid_id, kind=r.kind,
                      need=r.need, quantity=r.quantity, unit=r.unit, urgency=r.urgency,
                      deadline=r.deadline, reason_code=r.unmatched_code,
                      reason=r.unmatched_reason or "", grid_name=r.grid_name,
                      taken_by=r.unmatched_taken_by)
        for r in store.conn.execute(query) if coordinator.covers(r.path)
    ]


def grids_in(store: Store, coordinator: Coordinator) -> list[str]:
    """Ids of the grids in the jurisdiction (for filters)."""
    return list(store.conn.execute(
        select(nodes.c.node_id).where(nodes.c.level == "grid", _in_subtree(coordinator))
        .order_by(nodes.c.node_id)
    ).scalars())


def grid_choices(store: Store, coordinator: Coordinator) -> list[tuple[str, str]]:
    """(id, registry name) of the grids in the jurisdiction, by name (for filters)."""
    return [(r.node_id, r.name) for r in store.conn.execute(
        select(nodes.c.node_id, nodes.c.name)
        .where(nodes.c.level == "grid", _in_subtree(coordinator))
        .order_by(nodes.c.name, nodes.c.node_id)
    )]


def node_names(store: Store) -> dict[str, str]:
    """Registry name of every node (for headers and escalation badges)."""
    return {r.node_id: r.name for r in store.conn.execute(select(nodes.c.node_id, nodes.c.name))}


class NodeEntry(BaseModel):
    """One node of the district's hierarchy, as partners and coordinators refer to it."""

    node_id: str
    level: str
    name: str
    parent_id: str | None


def node_registry(store: Store) -> list[NodeEntry]:
    """Every node of the hierarchy, parents before children (the registry is public)."""
    rows = store.conn.execute(select(nodes.c.node_id, nodes.c.level, nodes.c.name,
                                     nodes.c.parent_id).order_by(nodes.c.path))
    return [NodeEntry(node_id=r.node_id, level=r.level, name=r.name, parent_id=r.parent_id)
            for r in rows]
