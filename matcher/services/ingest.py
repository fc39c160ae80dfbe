"""Applying incoming events to durable state: one handler per event type.

Every handler checks first and writes after, so a refused event (a `DomainError`) leaves
nothing behind; the caller records the applied event in the audit log in the same
transaction, which is also what makes a repeated event id change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

from matcher.domain.capacity import item_unit, offer_capacity, offer_live_until
from matcher.domain.commitments import (
    item_unchanged_for_matching,
    only_capacity_changed,
    person_unchanged_for_matching,
    slot_moves,
)
from matcher.domain.errors import (
    InvalidCommand,
    InvalidHierarchy,
    NotOwner,
    StaleVersion,
    UnknownPartner,
    UnknownReference,
)
from matcher.domain.hierarchy import child_path, in_subtree, parent_level, root_path, shard_of
from matcher.domain.weeks import DEFAULT_ZONE
from matcher.services import decisions
from matcher.services.outbound import queue
from matcher.services.releases import Releaser, release_for_case, release_for_offer
from matcher.storage.store import OfferRow, ProposalRow, Store
from schemas.common import Level
from schemas.matches import (
    MatchDecided,
    MatchFulfilled,
    MatchRevoked,
    ProposalStatus,
    Revocation,
)
from schemas.needs import Case, CaseClosed, CaseOpened, CaseUpdated
from schemas.offers import OfferPublished, OfferUpdated, OfferWithdrawn
from schemas.registry import NodeRegistered, PartnerRegistered
from schemas.topics import Topics

IncomingEvent: TypeAlias = (
    NodeRegistered | PartnerRegistered | OfferPublished | OfferUpdated | OfferWithdrawn
    | CaseOpened | CaseUpdated | CaseClosed | MatchDecided | MatchFulfilled
)

@dataclass
class Context:
    """What a handler needs besides the store: configuration and the engine's own identity."""

    topics: Topics
    shard_level: Level
    producer: str = "charity-matcher"
    changed_shards: set[str] = field(default_factory=set)
    timezone: str = DEFAULT_ZONE  # whose calendar counts a volunteer's weeks


@dataclass(frozen=True)
class Applied:
    """Result of applying one event."""

    duplicate: bool
    summary: str


# --- registry ---------------------------------------------------------------------------------


def register_node(event: NodeRegistered, store: Store, ctx: Context) -> str:
    """Add a node under its parent, one level down; the centre is the only root."""
    node = event.payload
    expected_parent = parent_level(node.level)
    if node.parent_id is None:
        path = root_path(node.node_id)
    else:
        parent = store.node(node.parent_id)
        if parent is None:
            raise UnknownReference(f"parent node '{node.parent_id}' is not registered")
        if parent.level != expected_parent:
            raise InvalidHierarchy(
                f"a {node.level} must hang under a {expected_parent}, "
                f"but '{parent.node_id}' is a {parent.level}"
            )
        path = child_path(parent.path, node.node_id)
    existing = store.node(node.node_id)
    if existing is not None and existing.path != path:
        raise InvalidHierarchy(f"node '{node.node_id}' cannot move to another parent")
    lat, lon = (node.location.lat, node.location.lon) if node.location else (None, None)
    store.upsert_node(node_id=node.node_id, level=node.level.value, parent_id=node.parent_id,
                      name=node.name, path=path, lat=lat, lon=lon,
                      reach=node.default_reach.model_dump(mode="json")
                      if node.default_reach else None)
    return f"node {node.node_id} ({node.level}) registered"


def register_partner(event: PartnerRegistered, store: Store, ctx: Context) -> str:
    """Register a partner attached to a known node."""
    partner = event.payload
    if store.node(partner.home_node_id) is None:
        raise UnknownReference(f"home node '{partner.home_node_id}' is not registered")
    store.upsert_partner(partner_id=partner.partner_id, name=partner.name,
                         kind=partner.kind.value, home_node_id=partner.home_node_id,
                         at=event.occurred_at,
                         reach=partner.default_reach.model_dump(mode="json")
                         if partner.default_reach else None)
    return f"partner {partner.partner_id} ({partner.kind}) registered"


# --- offers -----------------------------------------------------------------------------------


def _check_producer_owns(event: OfferPublished | OfferUpdated, store: Store) -> None:
    """The producer is a registered partner and names itself as the offer's owner."""
    if store.partner_home(event.producer) is None:
        raise UnknownPartner(f"producer '{event.producer}' is not a registered partner")
    if event.payload.partner_id != event.producer:
        raise NotOwner(
            f"partner '{event.producer}' cannot publish an offer owned by "
            f"'{event.payload.partner_id}'"
        )


def _save_offer(event: OfferPublished | OfferUpdated, store: Store, ctx: Context, *,
                new: bool = False) -> str:
    """Write the offer as given; returns its shard."""
    offer = event.payload
    node = store.node(offer.node_id)
    if node is None:
        raise UnknownReference(f"node '{offer.node_id}' of offer '{offer.offer_id}' is unknown")
    capacity, unit = offer_capacity(offer)
    shard = shard_of(node.path, ctx.shard_level)
    store.save_offer(
        offer_id=offer.offer_id, partner_id=offer.partner_id, kind=offer.kind,
        version=offer.version, status="active", node_id=offer.node_id, shard=shard,
        capacity=capacity, unit=unit,
        expires_at=getattr(offer, "expires_at", None), live_until=offer_live_until(offer),
        payload=offer.model_dump(mode="json"), at=event.occurred_at, new=new,
    )
    ctx.changed_shards.add(shard)
    return shard


def publish_offer(event: OfferPublished, store: Store, ctx: Context) -> str:
    """A partner adds a new offer of its own."""
    _check_producer_owns(event, store)
    existing = store.offer(event.payload.offer_id)
    if existing is not None:
        if existing.partner_id != event.producer:
            raise NotOwner(f"offer '{existing.offer_id}' belongs to '{existing.partner_id}'")
        raise StaleVersion(
            f"offer '{existing.offer_id}' exists at version {existing.version}; "
            "send offer.updated with a higher version"
        )
    _save_offer(event, store, ctx, new=True)
    offer = event.payload
    return f"offer {offer.offer_id} v{offer.version} ({offer.kind}) published by {event.producer}"


def update_offer(event: OfferUpdated, store: Store, ctx: Context) -> str:
    """The owner replaces an offer with a newer version. When only its capacity changed
    (hours, availability, quantity, slots), matches on it stay while it can hold them and the
    fewest are taken back, pending before approved; any other change re-makes the pending
    proposals. Approved ones it cannot hold any more are released either way."""
    _check_producer_owns(event, store)
    offer = event.payload
    existing = _owned_offer(offer.offer_id, event.producer, store)
    _check_newer(existing.version, offer.version, f"offer '{offer.offer_id}'")
    if existing.status != "active":
        raise StaleVersion(f"offer '{offer.offer_id}' was withdrawn")
    if existing.kind != offer.kind:
        raise UnknownReference(f"offer '{offer.offer_id}' is a {existing.kind} offer")
    _save_offer(event, store, ctx)
    saved = store.offer(offer.offer_id)
    assert saved is not None  # just saved
    # Matches follow their slot, not its place in the list: a slot removed before others
    # leaves theirs where they were.
    store.move_slots(offer.offer_id, slot_moves(existing.payload, saved.payload))
    if not only_capacity_changed(existing.payload, saved.payload):
        _revoke(store, ctx, store.holding_for_offer(offer.offer_id),
                (ProposalStatus.PROPOSED,), "offer_updated",
                f"offer {offer.offer_id} changed (v{offer.version})", event.occurred_at)
    releaser = _releaser(store, ctx, event.occurred_at)
    release_for_offer(releaser, saved, ctx.timezone)
    ctx.changed_shards.update(releaser.changed_shards)
    released = f"; {len(releaser.released)} matches released" if releaser.released else ""
    return f"offer {offer.offer_id} updated to v{offer.version} by {event.producer}{released}"


def withdraw_offer(event: OfferWithdrawn, store: Store, ctx: Context) -> str:
    """The owner withdraws an offer; every pending or approved match on it is revoked."""
    if store.partner_home(event.producer) is None:
        raise UnknownPartner(f"producer '{event.producer}' is not a registered partner")
    withdrawal = event.payload
    existing = _owned_offer(withdrawal.offer_id, event.producer, store)
    _check_newer(existing.version, withdrawal.version, f"offer '{withdrawal.offer_id}'")
    store.withdraw_offer(withdrawal.offer_id, version=withdrawal.version, at=event.occurred_at)
    ctx.changed_shards.add(existing.shard)
    reason = f"offer {withdrawal.offer_id} was withdrawn"
    if withdrawal.reason:
        reason += f": {withdrawal.reason}"
    _revoke(store, ctx, store.holding_for_offer(withdrawal.offer_id),
            (ProposalStatus.PROPOSED, ProposalStatus.APPROVED), "offer_withdrawn", reason,
            event.occurred_at)
    return f"offer {withdrawal.offer_id} withdrawn by {event.producer}"


def _owned_offer(offer_id: str, producer: str, store: Store) -> OfferRow:
    """The stored offer, if it exists and belongs to the producer."""
    existing = store.offer(offer_id)
    if existing is None:
        raise UnknownReference(f"offer '{offer_id}' is not known")
    if existing.partner_id != producer:
        raise NotOwner(
            f"partner '{producer}' cannot change offer '{offer_id}' owned by "
            f"'{existing.partner_id}'"
        )
    return existing


def _check_newer(current: int, given: int, what: str) -> None:
    """Versions only go up: an older or equal version is out of date."""
    if given <= current:
        raise StaleVersion(f"{what} is at version {current}; version {given} is out of date")


# --- cases ------------------------------------------------------------------------------------


def _case_items(case: Case) -> list[dict[str, Any]]:
    """Rows of a case's items."""
    return [
        {
            "item_id": item.item_id,
            "kind": item.kind.value,
            "need": item.need,
            "quantity": item.quantity,
            "unit": item_unit(item.kind, item.unit),
            "window_start": item.window.start,
            "window_end": item.window.end,
            "deadline": item.deadline,
            "urgency": item.urgency,
            # Sessions are one person in one slot: never split across offers.
            "splittable": item.splittable and item.kind.value != "service",
            "preferences": item.preferences.model_dump(mode="json"),
        }
        for item in case.items
    ]


def _check_case_producer(event: CaseOpened | CaseUpdated | CaseClosed, grid_path: str,
                         store: Store) -> None:
    """Cases come from a node of the hierarchy whose subtree holds the case's grid."""
    producer = store.node(event.producer)
    if producer is None:
        raise UnknownPartner(f"producer '{event.producer}' is not a registered node")
    if not in_subtree(grid_path, producer.path):
        raise NotOwner(f"node '{event.producer}' cannot act on cases outside its subtree")


def _grid_path(grid_id: str, store: Store) -> str:
    """Path of a registered grid."""
    grid = store.node(grid_id)
    if grid is None:
        raise UnknownReference(f"grid '{grid_id}' is not registered")
    if grid.level != Level.GRID:
        raise InvalidHierarchy(f"cases open at a grid; '{grid_id}' is a {grid.level}")
    return grid.path


def open_case(event: CaseOpened, store: Store, ctx: Context) -> str:
    """A grid opens a case; its items become open demand."""
    case = event.payload
    path = _grid_path(case.grid_id, store)
    _check_case_producer(event, path, store)
    existing = store.case(case.case_id)
    if existing is not None:
        raise StaleVersion(
            f"case '{case.case_id}' exists at version {existing.version}; "
            "send case.updated with a higher version"
        )
    shard = shard_of(path, ctx.shard_level)
    store.save_case(case_id=case.case_id, grid_id=case.grid_id, shard=shard,
                    version=case.version, beneficiary=case.beneficiary.model_dump(mode="json"),
                    items=_case_items(case), at=event.occurred_at, new=True)
    ctx.changed_shards.add(shard)
    return f"case {case.case_id} v{case.version} opened at {case.grid_id} ({len(case.items)} items)"


def update_case(event: CaseUpdated, store: Store, ctx: Context) -> str:
    """A grid replaces a case. Pending proposals of items it changes are re-made; those of
    items left as they were (or only more urgent) stay. Approved ones are kept while still
    asked for (of an item asked for less, the fewest that no longer fit are released)."""
    case = event.payload
    path = _grid_path(case.grid_id, store)
    _check_case_producer(event, path, store)
    existing = store.case(case.case_id)
    if existing is None:
        raise UnknownReference(f"case '{case.case_id}' is not known")
    _check_newer(existing.version, case.version, f"case '{case.case_id}'")
    if existing.status != "open":
        raise StaleVersion(f"case '{case.case_id}' is closed")
    shard = shard_of(path, ctx.shard_level)
    before = store.case_items(case.case_id)
    beneficiary, items = case.beneficiary.model_dump(mode="json"), _case_items(case)
    store.save_case(case_id=case.case_id, grid_id=case.grid_id, shard=shard,
                    version=case.version, beneficiary=beneficiary, items=items,
                    at=event.occurred_at)
    ctx.changed_shards.update({shard, existing.shard})
    after = {item["item_id"]: item for item in items}
    same_person = person_unchanged_for_matching(existing.beneficiary, beneficiary) \
        and case.grid_id == existing.grid_id
    touched = [p for p in store.holding_for_case(case.case_id)
               if not (same_person and item_unchanged_for_matching(before.get(p.item_id),
                                                                   after.get(p.item_id)))]
    _revoke(store, ctx, touched, (ProposalStatus.PROPOSED,), "case_updated",
            f"case {case.case_id} changed (v{case.version})", event.occurred_at)
    releaser = _releaser(store, ctx, event.occurred_at)
    release_for_case(releaser, case.case_id,
                     {item.item_id: float(item.quantity) for item in case.items}, case.version)
    ctx.changed_shards.update(releaser.changed_shards)
    released = f"; {len(releaser.released)} matches released" if releaser.released else ""
    return f"case {case.case_id} updated to v{case.version}{released}"


def close_case(event: CaseClosed, store: Store, ctx: Context) -> str:
    """A grid closes a case; whatever was pending or approved for it is revoked."""
    closure = event.payload
    existing = store.case(closure.case_id)
    if existing is None:
        raise UnknownReference(f"case '{closure.case_id}' is not known")
    grid = store.node(existing.grid_id)
    assert grid is not None  # a stored case always has its grid
    _check_case_producer(event, grid.path, store)
    _check_newer(existing.version, closure.version, f"case '{closure.case_id}'")
    store.close_case(closure.case_id, version=closure.version, at=event.occurred_at)
    ctx.changed_shards.add(existing.shard)
    reason = f"case {closure.case_id} was closed"
    if closure.reason:
        reason += f": {closure.reason}"
    _revoke(store, ctx, store.holding_for_case(closure.case_id),
            (ProposalStatus.PROPOSED, ProposalStatus.APPROVED), "case_closed", reason,
            event.occurred_at)
    return f"case {closure.case_id} closed"


# --- decisions and fulfilment -------------------------------------------------------------------


def decide_match(event: MatchDecided, store: Store, ctx: Context) -> str:
    """A coordinator decides over Kafka: the decision service checks and applies it once."""
    decision = event.payload
    if event.producer != decision.coordinator_id:
        raise InvalidCommand(f"'{event.producer}' cannot decide for "
                             f"'{decision.coordinator_id}'")
    # The audit entry is written by apply_event under the event's own id.
    result = decisions.decide(
        store, decision=decision.decision, proposal_id=decision.proposal_id,
        coordinator_id=decision.coordinator_id, reason=decision.reason,
        clock=lambda: event.occurred_at, topics=ctx.topics, channel=ctx.topics.decisions,
    )
    ctx.changed_shards.update(result.changed_shards)
    return result.summary


def report_fulfilment(event: MatchFulfilled, store: Store, ctx: Context) -> str:
    """The offering partner reports how an approved match went."""
    report = event.payload
    result = decisions.report_outcome(
        store, proposal_id=report.proposal_id, outcome=report.outcome,
        delivered=report.delivered, note=report.note, reported_by=event.producer,
        clock=lambda: event.occurred_at, channel=ctx.topics.fulfilments,
    )
    ctx.changed_shards.update(result.changed_shards)
    return result.summary


# --- revocation ---------------------------------------------------------------------------------


def _releaser(store: Store, ctx: Context, at: datetime) -> Releaser:
    """Releases approved matches in this handler's transaction."""
    return Releaser(store=store, topics=ctx.topics, producer=ctx.producer, at=at)



def _revoke(store: Store, ctx: Context, holding: list[ProposalRow],
            statuses: tuple[ProposalStatus, ...], code: str, reason: str,
            at: datetime) -> None:
    """Revoke the proposals in the given statuses and tell everyone through the outbox."""
    for proposal in holding:
        if proposal.status not in statuses:
            continue
        store.set_proposal_status(proposal.proposal_id, ProposalStatus.REVOKED, at=at,
                                  reason=reason)
        ctx.changed_shards.add(proposal.shard)
        revoked = MatchRevoked(
            event_id=uuid.uuid4(), occurred_at=at, producer=ctx.producer,
            payload=Revocation(
                proposal_id=proposal.proposal_id, case_id=proposal.case_id,
                item_id=proposal.item_id, offer_id=proposal.offer_id,
                previous_status=ProposalStatus(proposal.status), reason_code=code, reason=reason,
            ),
        )
        queue(store, ctx.topics, revoked)


# --- dispatch -----------------------------------------------------------------------------------

Handler: TypeAlias = Callable[[Any, Store, Context], str]

HANDLERS: dict[type[Any], Handler] = {
    NodeRegistered: register_node,
    PartnerRegistered: register_partner,
    OfferPublished: publish_offer,
    OfferUpdated: update_offer,
    OfferWithdrawn: withdraw_offer,
    CaseOpened: open_case,
    CaseUpdated: update_case,
    CaseClosed: close_case,
    MatchDecided: decide_match,
    MatchFulfilled: report_fulfilment,
}


def apply_event(event: IncomingEvent, store: Store, ctx: Context, *, topic: str,
                partition: int | None = None, offset: int | None = None) -> Applied:
    """Apply one validated event exactly once; raises DomainError when it is refused."""
    event_id = str(event.event_id)
    if store.seen(event_id):
        return Applied(duplicate=True, summary=f"duplicate event {event_id} ignored")
    summary = HANDLERS[type(event)](event, store, ctx)
    store.record_applied(
        event_id=event_id, event_type=event.event_type, topic=topic, producer=event.producer,
        occurred_at=event.occurred_at, applied_at=datetime.now(UTC), summary=summary,
        partition=partition, offset=offset,
    )
    return Applied(duplicate=False, summary=summary)
