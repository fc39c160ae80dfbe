"""The one decision service behind every door (Kafka, HTTP API, console).

Each verb checks first and writes after: who decides (an active coordinator whose subtree
holds the case), whether the proposal can still be decided (stale otherwise), then the
status change, the partner's assignment event and the audit entry, in the caller's
transaction. A decision applies once: the status update is conditional on 'proposed'.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from matcher.domain.errors import InvalidCommand, NotOwner, ProposalNotFound, StaleProposal
from matcher.services.jurisdiction import (
    Coordinator,
    active_coordinator,
    require_case_in_jurisdiction,
)
from matcher.services.outbound import queue
from matcher.settings import Settings
from matcher.storage.coordination import CoordinationStore
from matcher.storage.store import ProposalRow, Store
from matcher.storage.tables import offers, proposals
from schemas.common import TimeWindow
from schemas.matches import (
    Assignment,
    Decision,
    Expiry,
    MatchApproved,
    MatchExpired,
    MatchRejected,
    Outcome,
    ProposalStatus,
    Rejection,
)
from schemas.offers import OfferKind
from schemas.topics import Topics

Clock = Callable[[], datetime]
ENGINE = "charity-matcher"
AUTO = "auto"
CAPACITY_SLACK = 1e-6  # float sums of amounts may overshoot by rounding

OUTCOME_STATUS = {
    Outcome.FULFILLED: ProposalStatus.FULFILLED,
    Outcome.NO_SHOW: ProposalStatus.NO_SHOW,
    Outcome.CANCELLED: ProposalStatus.CANCELLED,
}


@dataclass(frozen=True)
class DecisionResult:
    """What a verb did: the new status, a summary for the audit log, shards to re-match."""

    proposal_id: str
    status: ProposalStatus
    summary: str
    changed_shards: frozenset[str] = frozenset()


# --- checks -------------------------------------------------------------------------------------


def _proposal(store: Store, proposal_id: str) -> ProposalRow:
    """The proposal, or ProposalNotFound."""
    proposal = store.proposal(proposal_id)
    if proposal is None:
        raise ProposalNotFound(f"proposal '{proposal_id}' is not known")
    return proposal


def _decider(store: Store, coordinator_id: str, proposal: ProposalRow) -> Coordinator:
    """The coordinator, if active and the case lies in their subtree."""
    coordinator = active_coordinator(store, coordinator_id)
    require_case_in_jurisdiction(store, coordinator, proposal.grid_id,
                                 f"proposal '{proposal.proposal_id}'")
    return coordinator


def _check_pending(proposal: ProposalRow) -> None:
    """Only a proposed match can be decided; a decided one never again."""
    if proposal.status != ProposalStatus.PROPOSED:
        by = f" by {proposal.decided_by}" if proposal.decided_by else ""
        raise StaleProposal(f"proposal '{proposal.proposal_id}' is {proposal.status}{by} "
                            "already")


def _check_servable(store: Store, proposal: ProposalRow, now: datetime) -> None:
    """The case is open, the offer active and unexpired, and its capacity still covers it."""
    case = store.case(proposal.case_id)
    if case is None or case.status != "open":
        raise StaleProposal(f"case '{proposal.case_id}' is closed")
    if proposal.item_id not in store.item_keys(proposal.case_id):
        raise StaleProposal(f"item '{proposal.item_id}' is no longer requested")
    row = store.conn.execute(
        offers.select().where(offers.c.offer_id == proposal.offer_id)
    ).first()
    if row is None or row.status != "active":
        raise StaleProposal(f"offer '{proposal.offer_id}' was withdrawn")
    if row.expires_at is not None and row.expires_at <= now:
        raise StaleProposal(f"offer '{proposal.offer_id}' expired at {row.expires_at:%Y-%m-%d}")
    if _held(store, proposal) > _capacity(row.capacity, row.payload, proposal.slot) \
            + CAPACITY_SLACK:
        raise StaleProposal(f"offer '{proposal.offer_id}' has no capacity left for this match")


def _held(store: Store, proposal: ProposalRow) -> float:
    """Capacity of the proposal's offer (and slot) held by holding proposals (read by the
    offer's index: approving costs the same however long the shard's history)."""
    held = store.held_for_offers([proposal.offer_id])
    return held.get((proposal.offer_id, proposal.slot), 0.0)


def _capacity(total: float, payload: dict[str, object], slot: int | None) -> float:
    """Capacity of one slot of a service, or of the whole offer."""
    slots = payload.get("slots")
    if slot is not None and isinstance(slots, list) and 0 <= slot < len(slots):
        return float(slots[slot]["places"])
    return total


def _fate(proposal: ProposalRow) -> dict[str, str]:
    """Who a change of a proposal's fate concerns: case, item, grid, offer and partner."""
    return {"proposal_id": proposal.proposal_id, "case_id": proposal.case_id,
            "item_id": proposal.item_id, "grid_id": proposal.grid_id,
            "offer_id": proposal.offer_id, "partner_id": proposal.partner_id}


def _require_reason(reason: str, what: str) -> str:
    """A trimmed reason; refused when empty."""
    if not reason.strip():
        raise InvalidCommand(f"{what} needs a reason")
    return reason.strip()


# --- effects ------------------------------------------------------------------------------------


def _assignment_event(store: Store, proposal: ProposalRow, *, by: str, note: str,
                      at: datetime) -> MatchApproved:
    """The event telling the offering partner what to deliver (pseudonymous)."""
    case = store.case(proposal.case_id)
    assert case is not None  # checked by _check_servable
    window = (TimeWindow(start=proposal.window_start, end=proposal.window_end)
              if proposal.window_start and proposal.window_end else None)
    return MatchApproved(
        event_id=uuid.uuid4(), occurred_at=at, producer=ENGINE,
        payload=Assignment(
            proposal_id=proposal.proposal_id, case_id=proposal.case_id, item_id=proposal.item_id,
            grid_id=proposal.grid_id, beneficiary=case.beneficiary["pseudonym"],
            offer_id=proposal.offer_id, partner_id=proposal.partner_id,
            kind=OfferKind(proposal.kind), amount=proposal.amount, unit=proposal.unit,
            window=window, approved_by=by, note=note[:500],
        ),
    )


def _claim(store: Store, proposal: ProposalRow, status: ProposalStatus, *, at: datetime,
           by: str, reason: str | None) -> None:
    """Apply the status change once; a concurrent decision that won makes this one stale."""
    if not CoordinationStore(store.conn).claim_pending(proposal.proposal_id, status, at=at,
                                                       by=by, reason=reason):
        raise StaleProposal(f"proposal '{proposal.proposal_id}' was decided meanwhile")


def _audit(store: Store, audit_event_id: str | None, *, by: str, at: datetime,
           summary: str, event_type: str = "match.decided", topic: str = "http") -> None:
    """Write the audit entry, unless the caller's door audits under its own event id."""
    if audit_event_id is None:
        return
    store.record_applied(event_id=audit_event_id, event_type=event_type, topic=topic,
                         producer=by, occurred_at=at, applied_at=at, summary=summary)


def _summary(proposal: ProposalRow, verb: str, by: str, at: datetime, reason: str) -> str:
    """Who did what to which proposal, when and why; never beneficiary attributes."""
    why = f": {reason}" if reason else ""
    return (f"proposal {proposal.proposal_id} (case {proposal.case_id}/{proposal.item_id}, "
            f"offer {proposal.offer_id}) {verb} by {by} at {at.isoformat()}{why}")


# --- verbs --------------------------------------------------------------------------------------


def approve_match(store: Store, *, proposal_id: str, coordinator_id: str, reason: str = "",
                  clock: Clock, topics: Topics, audit_event_id: str | None = None,
                  channel: str = "http") -> DecisionResult:
    """A coordinator approves a pending proposal: capacity is committed, the partner told."""
    proposal = _proposal(store, proposal_id)
    _decider(store, coordinator_id, proposal)
    return _approve(store, proposal, by=coordinator_id, reason=reason.strip(), at=clock(),
                    topics=topics, audit_event_id=audit_event_id, channel=channel)


def _approve(store: Store, proposal: ProposalRow, *, by: str, reason: str, at: datetime,
             topics: Topics, audit_event_id: str | None, channel: str) -> DecisionResult:
    """Approve after the decider is known to be allowed (a coordinator, or auto-approval)."""
    _check_pending(proposal)
    _check_servable(store, proposal, at)
    _claim(store, proposal, ProposalStatus.APPROVED, at=at, by=by, reason=reason or None)
    event = _assignment_event(store, proposal, by=by, note=reason, at=at)
    queue(store, topics, event)
    summary = _summary(proposal, "approved", by, at, reason)
    _audit(store, audit_event_id, by=by, at=at, summary=summary, topic=channel)
    return DecisionResult(proposal.proposal_id, ProposalStatus.APPROVED, summary)


def reject_match(store: Store, *, proposal_id: str, coordinator_id: str, reason: str,
                 clock: Clock, topics: Topics | None = None,
                 audit_event_id: str | None = None, channel: str = "http") -> DecisionResult:
    """A coordinator rejects a proposal, saying why; the item is matched again without it.
    With `topics`, `match.rejected` tells the partner and downstream systems."""
    why = _require_reason(reason, "a rejection")
    return _turn_down(store, proposal_id=proposal_id, coordinator_id=coordinator_id,
                      reason=why, verb="rejected", code="rejected", clock=clock,
                      topics=topics, audit_event_id=audit_event_id, channel=channel)


def request_alternative(store: Store, *, proposal_id: str, coordinator_id: str,
                        reason: str = "", clock: Clock, topics: Topics | None = None,
                        audit_event_id: str | None = None,
                        channel: str = "http") -> DecisionResult:
    """A coordinator asks for another offer: this one is turned down, the item re-matched."""
    why = f"alternative requested: {reason.strip()}".rstrip(": ")
    return _turn_down(store, proposal_id=proposal_id, coordinator_id=coordinator_id,
                      reason=why, verb="sent back for an alternative",
                      code="alternative_requested", clock=clock, topics=topics,
                      audit_event_id=audit_event_id, channel=channel)


def _turn_down(store: Store, *, proposal_id: str, coordinator_id: str, reason: str, verb: str,
               code: str, clock: Clock, topics: Topics | None, audit_event_id: str | None,
               channel: str) -> DecisionResult:
    """Reject a pending proposal; rejected triples are never proposed again."""
    proposal = _proposal(store, proposal_id)
    _decider(store, coordinator_id, proposal)
    _check_pending(proposal)
    at = clock()
    _claim(store, proposal, ProposalStatus.REJECTED, at=at, by=coordinator_id, reason=reason)
    if topics is not None:
        queue(store, topics, MatchRejected(
            event_id=uuid.uuid4(), occurred_at=at, producer=ENGINE,
            payload=Rejection(**_fate(proposal), decided_by=coordinator_id, reason_code=code,
                              reason=reason[:500])))
    summary = _summary(proposal, verb, coordinator_id, at, reason)
    _audit(store, audit_event_id, by=coordinator_id, at=at, summary=summary, topic=channel)
    return DecisionResult(proposal.proposal_id, ProposalStatus.REJECTED, summary,
                          frozenset({proposal.shard}))


def decide(store: Store, *, decision: Decision, proposal_id: str, coordinator_id: str,
           reason: str, clock: Clock, topics: Topics, audit_event_id: str | None = None,
           channel: str = "http") -> DecisionResult:
    """Apply a coordinator's decision with the verb it names (one entry for every door)."""
    if decision is Decision.APPROVE:
        return approve_match(store, proposal_id=proposal_id, coordinator_id=coordinator_id,
                             reason=reason, clock=clock, topics=topics,
                             audit_event_id=audit_event_id, channel=channel)
    if decision is Decision.REJECT:
        return reject_match(store, proposal_id=proposal_id, coordinator_id=coordinator_id,
                            reason=reason, clock=clock, topics=topics,
                            audit_event_id=audit_event_id, channel=channel)
    return request_alternative(store, proposal_id=proposal_id, coordinator_id=coordinator_id,
                               reason=reason, clock=clock, topics=topics,
                               audit_event_id=audit_event_id, channel=channel)


def report_outcome(store: Store, *, proposal_id: str, outcome: Outcome, delivered: float,
                   note: str, reported_by: str, clock: Clock,
                   audit_event_id: str | None = None, channel: str = "http") -> DecisionResult:
    """The offering partner reports how an approved match went; demand reopens unless done."""
    proposal = _proposal(store, proposal_id)
    if proposal.partner_id != reported_by:
        raise NotOwner(f"only '{proposal.partner_id}' reports on proposal '{proposal_id}'")
    if proposal.status != ProposalStatus.APPROVED:
        raise StaleProposal(f"proposal '{proposal_id}' is {proposal.status}, not approved")
    at = clock()
    status = OUTCOME_STATUS[outcome]
    store.set_proposal_status(proposal_id, status, at=at, reason=note or None,
                              delivered=delivered)
    summary = _summary(proposal, f"reported {outcome} ({delivered:g} {proposal.unit})",
                       reported_by, at, note)
    _audit(store, audit_event_id, by=reported_by, at=at, summary=summary,
           event_type="match.fulfilled", topic=channel)
    shards = frozenset() if outcome is Outcome.FULFILLED else frozenset({proposal.shard})
    return DecisionResult(proposal_id, status, summary, shards)


# --- sweeping pending proposals -----------------------------------------------------------------


@dataclass
class SweepReport:
    """What one sweep did to proposals left pending too long."""

    escalated: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    auto_approved: list[str] = field(default_factory=list)
    changed_shards: set[str] = field(default_factory=set)


def sweep_pending(store: Store, now: datetime, settings: Settings) -> SweepReport:
    """Escalate proposals pending too long to the parent node, then expire (or auto-approve)."""
    report = SweepReport()
    expire_before = now - timedelta(seconds=settings.proposal_expire_after_s)
    escalate_before = now - timedelta(seconds=settings.proposal_escalate_after_s)
    for proposal in _pending_since(store, escalate_before):
        if proposal.created_at <= expire_before:
            _expire(store, proposal, now, settings, report)
        else:
            _escalate(store, proposal, now, report)
    return report


def _pending_since(store: Store, before: datetime) -> list[ProposalRow]:
    """Proposals still pending that were made before `before`."""
    return store.proposals_where(proposals.c.status == ProposalStatus.PROPOSED.value,
                                 proposals.c.created_at <= before)


def _escalate(store: Store, proposal: ProposalRow, now: datetime, report: SweepReport) -> None:
    """Hand a waiting proposal to the level above the coordinators who let it wait."""
    coordination = CoordinationStore(store.conn)
    if coordination.escalation(proposal.proposal_id) is not None:
        return
    target = escalation_target(store, proposal.grid_id)
    coordination.escalate(proposal.proposal_id, to_node=target, at=now)
    _audit(store, str(uuid.uuid4()), by=ENGINE, at=now, event_type="match.escalated",
           topic="sweep", summary=f"proposal {proposal.proposal_id} escalated to {target} at "
           f"{now.isoformat()}: pending since {proposal.created_at.isoformat()}")
    report.escalated.append(proposal.proposal_id)


def escalation_target(store: Store, grid_id: str) -> str:
    """Parent of the lowest staffed node above the case (the grid's parent if none is)."""
    node = store.node(grid_id)
    assert node is not None  # proposals name registered grids
    ids = [part for part in node.path.split("/") if part]
    staffed = CoordinationStore(store.conn).staffed_node_ids()
    lowest = max((i for i, node_id in enumerate(ids) if node_id in staffed),
                 default=len(ids) - 1)
    return ids[max(lowest - 1, 0)]


def _expire(store: Store, proposal: ProposalRow, now: datetime, settings: Settings,
            report: SweepReport) -> None:
    """Nobody decided in time: approve automatically when configured for the kind, else expire."""
    if proposal.kind in settings.auto_approve_kinds:
        try:
            _approve(store, proposal, by=AUTO, reason="approved automatically: not decided "
                     "in time", at=now, topics=Topics(settings.topic_prefix),
                     audit_event_id=str(uuid.uuid4()), channel="sweep")
        except StaleProposal:
            pass  # no longer servable: expire it below instead
        else:
            report.auto_approved.append(proposal.proposal_id)
            return
    reason = f"not decided within {settings.proposal_expire_after_s / 3600:g} h"
    if not CoordinationStore(store.conn).claim_pending(
            proposal.proposal_id, ProposalStatus.EXPIRED, at=now, by=ENGINE, reason=reason):
        return
    queue(store, Topics(settings.topic_prefix), MatchExpired(
        event_id=uuid.uuid4(), occurred_at=now, producer=ENGINE,
        payload=Expiry(**_fate(proposal), pending_since=proposal.created_at,
                       reason_code="not_decided_in_time", reason=reason)))
    _audit(store, str(uuid.uuid4()), by=ENGINE, at=now, event_type="match.expired",
           topic="sweep", summary=_summary(proposal, "expired", ENGINE, now, reason))
    report.expired.append(proposal.proposal_id)
    report.changed_shards.add(proposal.shard)
