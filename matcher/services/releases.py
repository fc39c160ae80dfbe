"""Approved matches an update makes impossible: released, fewest first, and told to everyone.

When a partner shrinks an offer (less quantity, fewer places, a slot removed, fewer hours a
week, less availability) or a grid lowers or removes a requested item, the approved matches
that no longer fit are released (`matcher.domain.commitments.to_release` says which), so
capacity is never left over-committed. Each release sets the proposal revoked with its
reason (shown in the console beside the proposal's state and in its history) and publishes
`match.released` on the proposals topic, keyed by case id, naming the partner and the grid.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from matcher.domain.commitments import Held, may_release, to_release
from matcher.domain.weeks import (
    DEFAULT_ZONE,
    stated_limits,
    week_label,
    week_of,
    week_start,
)
from matcher.services.outbound import queue
from matcher.services.rebalance_commitments import impossible_reason, unit_capacities
from matcher.storage.store import OfferRow, ProposalRow, Store
from schemas.common import TimeWindow
from schemas.matches import MatchReleased, MatchRevoked, ProposalStatus, Release, Revocation
from schemas.offers import OfferKind
from schemas.topics import Topics


@dataclass
class Releaser:
    """Releases approved matches in the caller's transaction, once each."""

    store: Store
    topics: Topics
    producer: str
    at: datetime
    changed_shards: set[str] = field(default_factory=set)
    released: set[str] = field(default_factory=set)

    def release(self, proposal: ProposalRow, code: str, reason: str) -> None:
        """Take one approved match back, say why, and tell the coordinator and the partner."""
        if proposal.proposal_id in self.released:
            return
        self.released.add(proposal.proposal_id)
        self.store.set_proposal_status(proposal.proposal_id, ProposalStatus.REVOKED,
                                       at=self.at, by=self.producer, reason=reason[:500])
        self.changed_shards.add(proposal.shard)
        window = (TimeWindow(start=proposal.window_start, end=proposal.window_end)
                  if proposal.window_start and proposal.window_end
                  and proposal.window_end > proposal.window_start else None)
        queue(self.store, self.topics, MatchReleased(
            event_id=uuid.uuid4(), occurred_at=self.at, producer=self.producer,
            payload=Release(
                proposal_id=proposal.proposal_id, case_id=proposal.case_id,
                item_id=proposal.item_id, grid_id=proposal.grid_id, offer_id=proposal.offer_id,
                partner_id=proposal.partner_id, kind=OfferKind(proposal.kind),
                amount=proposal.amount, unit=proposal.unit, window=window, reason_code=code,
                reason=reason[:500])))
        self.store.record_applied(
            event_id=str(uuid.uuid4()), event_type="match.released", topic="engine",
            producer=self.producer, occurred_at=self.at, applied_at=self.at,
            summary=(f"proposal {proposal.proposal_id} (case {proposal.case_id}/"
                     f"{proposal.item_id}, offer {proposal.offer_id}) released at "
                     f"{self.at.isoformat()}: {reason}")[:2000])

    def revoke(self, proposal: ProposalRow, code: str, reason: str) -> None:
        """Take one pending proposal back and say why (`match.revoked`)."""
        if proposal.proposal_id in self.released:
            return
        self.released.add(proposal.proposal_id)
        self.store.set_proposal_status(proposal.proposal_id, ProposalStatus.REVOKED,
                                       at=self.at, reason=reason[:500])
        self.changed_shards.add(proposal.shard)
        queue(self.store, self.topics, MatchRevoked(
            event_id=uuid.uuid4(), occurred_at=self.at, producer=self.producer,
            payload=Revocation(
                proposal_id=proposal.proposal_id, case_id=proposal.case_id,
                item_id=proposal.item_id, offer_id=proposal.offer_id,
                previous_status=ProposalStatus(proposal.status), reason_code=code,
                reason=reason[:500])))

    def fit(self, holding: Sequence[ProposalRow], capacity: float, code: str,
            reason: str) -> None:
        """Take back the fewest matches so that `holding` fits in `capacity`: pending
        proposals first (revoked), then approved matches (released)."""
        live = [p for p in holding if p.proposal_id not in self.released]
        by_id = {p.proposal_id: p for p in live}
        for key in to_release([self._held(p) for p in live], capacity):
            self.take_back(by_id[key], code, reason)

    def take_back(self, proposal: ProposalRow, code: str, reason: str) -> None:
        """Revoke a pending proposal, release an approved match."""
        if proposal.status == ProposalStatus.PROPOSED:
            self.revoke(proposal, code, reason)
        else:
            self.release(proposal, code, reason)

    def _held(self, p: ProposalRow) -> Held:
        if p.status == ProposalStatus.PROPOSED:
            return Held(key=p.proposal_id, amount=p.amount, releasable=True,
                        since=p.created_at, pending=True)
        return Held(key=p.proposal_id, amount=p.amount,
                    releasable=may_release(kind=p.kind, status=p.status,
                                           window_start=p.window_start, now=self.at),
                    since=p.decided_at or p.created_at)


def _committed(rows: Iterable[ProposalRow]) -> list[ProposalRow]:
    """Approved and fulfilled matches (a case update re-makes the pending ones it touches)."""
    return [p for p in rows if p.status in (ProposalStatus.APPROVED, ProposalStatus.FULFILLED)]


def release_for_offer(releaser: Releaser, offer: OfferRow,
                      timezone: str = DEFAULT_ZONE) -> None:
    """After an offer update: take back what the new version cannot hold any more (a slot
    removed or moved, the volunteer no longer free then), then the fewest matches, pending
    before approved, that bring each slot, the offer and the volunteer's weeks back within
    capacity."""
    store, at = releaser.store, releaser.at
    holding = store.holding_for_offer(offer.offer_id)
    for p in holding:
        if p.status == ProposalStatus.PROPOSED or may_release(
                kind=p.kind, status=p.status, window_start=p.window_start, now=at):
            why = impossible_reason(p, offer, at)
            if why is not None:
                releaser.take_back(p, why[0], why[1])
    if offer.kind == OfferKind.VOLUNTEER.value:
        # Visits lie inside the windows (checked above) and never overlap, so the windows'
        # hours hold them; what may not hold any more is the volunteer's week.
        _fit_weeks(releaser, offer, timezone)
        return
    units = {slot: capacity for (_, slot), capacity in unit_capacities([offer]).items()}
    by_unit: dict[int | None, list[ProposalRow]] = defaultdict(list)
    for p in holding:
        by_unit[p.slot].append(p)
    for slot, rows in sorted(by_unit.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
        capacity = units.get(slot, 0.0)
        releaser.fit(rows, capacity, "capacity_reduced",
                     f"offer {offer.offer_id} v{offer.version} now gives {capacity:g}"
                     + (f" in slot {slot}" if slot is not None else "")
                     + ", less than was approved")


def _fit_weeks(releaser: Releaser, offer: OfferRow, timezone: str) -> None:
    """The volunteer's weeks from this one on, across all their offers, within the new limit."""
    volunteer = offer.payload["volunteer_id"]
    since = week_start(week_of(releaser.at, timezone), timezone)
    visits = releaser.store.holding_for_volunteer(volunteer, since=since)
    # The lowest limit the volunteer states on any active offer of theirs counts.
    others = [releaser.store.offer(o) for o in sorted({p.offer_id for p in visits})]
    limit = stated_limits([offer.payload, *(o.payload for o in others
                                            if o is not None and o.status == "active")]
                          )[volunteer]
    weeks: dict[int, list[ProposalRow]] = defaultdict(list)
    for p in visits:
        if p.window_start is not None:
            weeks[week_of(p.window_start, timezone)].append(p)
    for week, rows in sorted(weeks.items()):
        # Pending visits of the volunteer's other offers give way before anything approved.
        pending = [p for p in rows if p.status == ProposalStatus.PROPOSED]
        held = [Held(key=p.proposal_id, amount=p.amount, releasable=True, since=p.created_at,
                     pending=True) for p in pending]
        committed = [p for p in _committed(rows) if p.proposal_id not in releaser.released]
        held += [releaser._held(p) for p in committed]
        chosen = set(to_release(held, limit))
        reason = (f"volunteer of offer {offer.offer_id} now gives at most {limit:g} h a week, "
                  f"less than was planned for {week_label(week, timezone)}")
        for p in pending:
            if p.proposal_id in chosen:
                releaser.revoke(p, "weekly_limit_reduced", reason)
        for p in committed:
            if p.proposal_id in chosen:
                releaser.release(p, "weekly_limit_reduced", reason)


def release_for_case(releaser: Releaser, case_id: str, quantities: dict[str, float],
                     version: int) -> None:
    """After a case update: approved matches of items no longer asked are released, and of
    each item asked for less, the fewest that bring it back within its quantity."""
    holding = _committed(releaser.store.holding_for_case(case_id))
    by_item: dict[str, list[ProposalRow]] = defaultdict(list)
    for p in holding:
        by_item[p.item_id].append(p)
    for item_id, rows in sorted(by_item.items()):
        if item_id not in quantities:
            for p in rows:
                if p.status == ProposalStatus.APPROVED:
                    releaser.release(p, "item_removed", f"item no longer requested in case "
                                     f"{case_id} v{version}")
            continue
        quantity = quantities[item_id]
        releaser.fit(rows, quantity, "quantity_reduced",
                     f"item {case_id}/{item_id} now asks for {quantity:g} (v{version}), less "
                     "than was approved")
