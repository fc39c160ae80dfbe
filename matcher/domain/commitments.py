"""Commitments meet time: what has begun stays, and which approved matches give way when an
update leaves an offer, a volunteer's week or an item over-committed.

Pure: plain values in, plain values out; the services apply the answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SLACK = 1e-6  # float sums of amounts may overshoot by rounding

# What an offer says about how much it gives, per kind. An update that changes only these
# leaves every pending proposal on the offer possible or fits it out, fewest first; any
# other change (skills, place, unit, groups...) may change whom the offer can serve.
CAPACITY_FIELDS = {
    "volunteer": frozenset({"availability", "weekly_hour_limit"}),
    "goods": frozenset({"quantity"}),
    "service": frozenset({"slots"}),
}
# An item or a person may become more pressing without any match of theirs changing.
PRESSING_ITEM_FIELDS = frozenset({"urgency"})
PRESSING_PERSON_FIELDS = frozenset({"vulnerability"})


def _same_except(old: Mapping[str, Any], new: Mapping[str, Any], ignored: frozenset[str]
                 ) -> bool:
    """Whether two records agree on every field but the ignored ones."""
    keys = (set(old) | set(new)) - ignored
    return all(old.get(key) == new.get(key) for key in keys)


def only_capacity_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether an offer update changes only how much it gives, never whom it may serve."""
    if old.get("kind") != new.get("kind"):
        return False
    ignored = CAPACITY_FIELDS.get(str(new.get("kind")), frozenset()) | {"version"}
    return _same_except(old, new, ignored)


def slot_moves(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[int, int | None]:
    """Old slot index -> new index, for the slots a service update keeps (same start and end)
    at another place in the list, e.g. after a slot before them was removed; -> None for the
    slots it removes, so that nothing held on them counts against the slot now at their
    place."""
    def windows(payload: Mapping[str, Any]) -> list[tuple[datetime, datetime]]:
        return [(datetime.fromisoformat(slot["window"]["start"]),
                 datetime.fromisoformat(slot["window"]["end"]))
                for slot in payload.get("slots", [])]
    places: dict[tuple[datetime, datetime], list[int]] = {}
    for index, window in enumerate(windows(new)):
        places.setdefault(window, []).append(index)
    moves: dict[int, int | None] = {}
    for index, window in enumerate(windows(old)):
        # Two slots with one window are told apart by their order.
        if places.get(window):
            moved_to = places[window].pop(0)
            if moved_to != index:
                moves[index] = moved_to
        else:
            moves[index] = None
    return moves


def item_unchanged_for_matching(old: Mapping[str, Any] | None,
                                new: Mapping[str, Any] | None) -> bool:
    """Whether a case update leaves an item as its matches saw it (it may be more urgent)."""
    return old is not None and new is not None \
        and _same_except(old, new, PRESSING_ITEM_FIELDS)


def person_unchanged_for_matching(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a case update leaves the beneficiary as their matches saw them."""
    return _same_except(old, new, PRESSING_PERSON_FIELDS)


def has_begun(*, kind: str, status: str, window_start: datetime | None, now: datetime) -> bool:
    """Whether a match has begun in the real world, so that nothing may revoke or re-plan it:
    fulfilled; a visit or session whose window has started; approved goods (handed over, or
    promised for a handover before the lot expires). A pending goods proposal has handed
    nothing over yet: that waits for approval."""
    if status == "fulfilled":
        return True
    if kind == "goods":
        return status == "approved"
    return window_start is not None and window_start <= now


def may_release(*, kind: str, status: str, window_start: datetime | None,
                now: datetime) -> bool:
    """Whether an approved match may be released when an update makes it impossible: its
    visit or session has not started (approved goods not reported fulfilled may: the
    partner's own update says the lot no longer covers them)."""
    if status != "approved":
        return False
    return kind == "goods" or window_start is None or window_start > now


@dataclass(frozen=True)
class Held:
    """One match holding capacity: how much, whether it may give way, and since when."""

    key: str
    amount: float
    releasable: bool
    since: datetime  # when it was approved (or made): later ones give way first among equals
    pending: bool = False  # not yet approved: always gives way before any approved match


def to_release(held: Sequence[Held], capacity: float) -> list[str]:
    """The fewest matches to take back so the rest fit in `capacity`.

    Pending proposals go first (nobody relies on them yet). Among approved matches the largest
    go first: for a given excess, taking the largest ones releases the fewest matches, so the
    fewest beneficiaries and partners lose a plan; equal amounts release the latest approved
    first, since the earlier ones have been relied on longer. A last pass keeps any chosen
    match whose release turned out unnecessary (smallest first). Matches that may not be
    released (begun) always stay, even if they alone exceed the capacity.
    """
    excess = sum(h.amount for h in held) - capacity
    if excess <= SLACK:
        return []
    order = sorted((h for h in held if h.releasable),
                   key=lambda h: (not h.pending, -h.amount, -h.since.timestamp()))
    chosen: list[Held] = []
    for h in order:
        if excess <= SLACK:
            break
        chosen.append(h)
        excess -= h.amount
    for h in sorted(chosen, key=lambda h: h.amount):
        if excess + h.amount <= SLACK:
            chosen.remove(h)
            excess += h.amount
    return [h.key for h in chosen]
