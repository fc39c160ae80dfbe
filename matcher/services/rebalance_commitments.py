"""Approved matches at a rebalance: kept unless impossible, and what is taken back and why.

An approved match stays as it is unless its offer is gone, its time no longer fits, or its
offer now gives less than is approved (the newest approvals not yet begun give way). Nothing
that has begun is touched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from matcher.domain.commitments import SLACK, has_begun
from matcher.domain.frames import supply_units
from matcher.storage.store import OfferRow, ProposalRow
from schemas.matches import ProposalStatus


@dataclass(frozen=True)
class Revocation:
    """A proposal to take back: a pending one (moved or revoked) or a released approved one."""

    proposal: ProposalRow
    reason_code: str
    reason: str
    forced: bool  # impossible now (not counted against the move cap)


def _window_inside(start: datetime, end: datetime, windows: Iterable[tuple[str, str]]) -> bool:
    """Whether [start, end) lies inside one of the windows (ISO strings)."""
    return any(datetime.fromisoformat(s) <= start and end <= datetime.fromisoformat(e)
               for s, e in windows)


def started(proposal: ProposalRow, now: datetime) -> bool:
    """Whether a match has begun (see `has_begun`): nothing begun is revoked or re-planned."""
    return has_begun(kind=proposal.kind, status=proposal.status,
                     window_start=proposal.window_start, now=now)


def impossible_reason(proposal: ProposalRow, offer: OfferRow | None, now: datetime
                      ) -> tuple[str, str] | None:
    """Why an approved match that has not begun can no longer happen (offer gone, time gone),
    or None. Goods approved are committed: a lot expiring after the handover is no reason."""
    if started(proposal, now):
        return None
    if offer is None or offer.status != "active":
        return "offer_withdrawn", f"offer {proposal.offer_id} is no longer active"
    payload = offer.payload
    start, end = proposal.window_start, proposal.window_end
    if start is None or end is None:
        return None  # nothing scheduled: the partner reports how it went
    if proposal.kind == "volunteer":
        windows = [(w["start"], w["end"]) for w in payload.get("availability", [])]
        if not _window_inside(start, end, windows):
            return "volunteer_unavailable", (f"the volunteer of offer {proposal.offer_id} is no "
                                             f"longer available {start:%Y-%m-%d %H:%M} UTC")
    if proposal.kind == "service":
        slots = payload.get("slots", [])
        slot = slots[proposal.slot] if proposal.slot is not None and \
            0 <= proposal.slot < len(slots) else None
        if slot is None or not _window_inside(start, end, [(slot["window"]["start"],
                                                           slot["window"]["end"])]):
            return "slot_changed", f"the slot of offer {proposal.offer_id} was moved or removed"
    return None


def unit_capacities(offers: Iterable[OfferRow]) -> dict[tuple[str, int | None], float]:
    """Capacity per (offer, slot), as the frames count it."""
    out: dict[tuple[str, int | None], float] = {}
    for offer in offers:
        for unit in supply_units({"offer_id": offer.offer_id, "payload": offer.payload}):
            out[offer.offer_id, None if unit["slot"] < 0 else unit["slot"]] = unit["capacity"]
    return out


def split_committed(holding: Iterable[ProposalRow], offer_rows: Mapping[str, OfferRow],
                    offers: Iterable[OfferRow], now: datetime
                    ) -> tuple[list[ProposalRow], list[Revocation]]:
    """Matches to keep as they are (pinned): fulfilled ones, approved ones still possible, and
    anything already begun, pending or not; and approved ones to release."""
    kept: list[ProposalRow] = []
    released: list[Revocation] = []
    for p in holding:
        if started(p, now):
            kept.append(p)
        elif p.status == ProposalStatus.APPROVED:
            why = impossible_reason(p, offer_rows.get(p.offer_id), now)
            if why is None:
                kept.append(p)
            else:
                released.append(Revocation(p, why[0], why[1], forced=True))
    # An offer updated to less capacity than it has approved: the newest approvals not yet
    # begun give way (what has begun cannot be taken back).
    capacity = unit_capacities(offers)
    load: dict[tuple[str, int | None], float] = defaultdict(float)
    for p in kept:
        load[p.offer_id, p.slot] += p.amount
    keep: list[ProposalRow] = []
    for p in sorted(kept, key=lambda p: (p.status != ProposalStatus.APPROVED, p.created_at),
                    reverse=True):
        key = (p.offer_id, p.slot)
        if p.status == ProposalStatus.APPROVED and not started(p, now) and key in capacity \
                and load[key] > capacity[key] + SLACK:
            load[key] -= p.amount
            released.append(Revocation(p, "capacity_reduced", f"offer {p.offer_id} now gives "
                                       f"{capacity[key]:g}, less than was approved", forced=True))
        else:
            keep.append(p)
    return keep, released


def sum_by_item(rows: Iterable[ProposalRow]) -> dict[tuple[str, str], float]:
    """Amount per (case, item)."""
    out: dict[tuple[str, str], float] = defaultdict(float)
    for p in rows:
        out[p.case_id, p.item_id] += p.amount
    return dict(out)


def sum_by_offer(rows: Iterable[ProposalRow]) -> dict[tuple[str, int | None], float]:
    """Amount per (offer, slot)."""
    out: dict[tuple[str, int | None], float] = defaultdict(float)
    for p in rows:
        out[p.offer_id, p.slot] += p.amount
    return dict(out)
