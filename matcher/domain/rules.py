"""Hard rules: which offer may serve which need item.

Each rule is a small named function over candidate pairs that returns where the rule holds,
with one business sentence as its docstring. Pairs reach the rules already joined on kind
and need (see `pairs.join_by_need`), which is itself the first rule, `kind_and_need_match`.
Order matters only for explanations: an unmatched item is told the first rule that failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from matcher.domain.frames import BoolArray
from matcher.domain.kinds import Kind
from matcher.domain.pairs import SECONDS_PER_HOUR, Pairs

VOLUNTEER, GOODS, SERVICE = Kind.VOLUNTEER, Kind.GOODS, Kind.SERVICE
MIN_SPLIT_HOURS = 1.0


@dataclass(frozen=True)
class Rule:
    """A named hard rule with the reason an item hears when it is the rule that failed."""

    name: str
    check: Callable[[Pairs], BoolArray]
    reason_code: str
    reason: str
    applies_to: frozenset[Kind] = frozenset(Kind)


def unit_matches(p: Pairs) -> BoolArray:
    """Goods are counted in the unit the case asked for (kg serves kg, never boxes)."""
    return p.demand.unit[p.d] == p.supply.unit[p.s]


def within_reach(p: Pairs) -> BoolArray:
    """Volunteers go as far as their travel radius; offers that pick up, deliver or take people
    within a radius serve that circle; district-wide offers serve everyone; goods that say
    nothing (and offers without a place) are brought anywhere in their workstation's street."""
    radius = p.supply.radius_km[p.s]
    by_radius = p.distance_km <= radius
    radius_known = ~np.isnan(radius) & ~np.isnan(p.distance_km)
    ws = p.supply.workstation[p.s]
    in_workstation = (ws < 0) | (ws == p.demand.workstation[p.d])
    return np.isposinf(radius) | np.where(radius_known, by_radius, in_workstation)


def deadline_not_passed(p: Pairs) -> BoolArray:
    """An item is matched only while it can still be served before its deadline."""
    return p.demand.end[p.d] > p.now


def time_windows_overlap(p: Pairs) -> BoolArray:
    """The offer is available when the item is wanted: a volunteer for long enough, a slot whole."""
    kind = p.supply.kind[p.s]
    holds = np.ones(len(p), dtype=np.bool_)
    # Each kind's own test on its own pairs only (goods have no windows: they always hold).
    volunteer = np.flatnonzero(kind == VOLUNTEER)
    visits = p.take(volunteer)
    overlap_hours = visits.best_overlap / SECONDS_PER_HOUR
    qty = visits.demand.open_qty[visits.d]
    needed = np.where(visits.demand.splittable[visits.d], np.minimum(qty, MIN_SPLIT_HOURS), qty)
    holds[volunteer] = overlap_hours >= needed - 1e-9
    service = np.flatnonzero(kind == SERVICE)
    holds[service] = p.take(service).slot_fits
    return holds


def still_good_when_used(p: Pairs) -> BoolArray:
    """Goods must not expire before they can be used."""
    return p.supply.expires[p.s] > p.usable_start


def eligible_beneficiary(p: Pairs) -> BoolArray:
    """A service with an eligibility list serves only those groups."""
    eligibility = p.supply.eligibility[p.s]
    return (eligibility == 0) | ((eligibility >> p.demand.group[p.d]) & 1 == 1)


def speaks_required_language(p: Pairs) -> BoolArray:
    """When a case requires a language or dialect, the volunteer speaks one of them."""
    required = p.demand.language_mask[p.d]
    return (required == 0) | ((p.supply.language_mask[p.s] & required) != 0)


def not_turned_down(p: Pairs) -> BoolArray:
    """An offer a coordinator rejected for an item is never proposed for it again."""
    if not p.excluded:
        return np.ones(len(p), dtype=np.bool_)
    # (item row, offer) as one integer; triples of items or offers not in the batch drop out.
    rows, offers = p.demand.row_of_item, p.supply.offers
    width = len(offers.index)
    turned_down = np.fromiter(
        (rows[(case, item)] * width + offers.index[offer] for case, item, offer in p.excluded
         if (case, item) in rows and offer in offers.index), dtype=np.int64)
    return ~np.isin(p.d * width + offers.codes[p.s], turned_down)


KIND_AND_NEED = "kind_and_need_match"

RULES: tuple[Rule, ...] = (
    Rule("deadline_not_passed", deadline_not_passed, "deadline_passed",
         "the item's deadline has passed"),
    Rule("unit_matches", unit_matches, "unit_mismatch",
         "offers of this category are counted in another unit", frozenset({GOODS})),
    Rule("within_reach", within_reach, "out_of_reach",
         "no eligible offer within reach of the beneficiary"),
    Rule("time_windows_overlap", time_windows_overlap, "no_time_overlap",
         "no offer available within the item's time window", frozenset({VOLUNTEER, SERVICE})),
    Rule("still_good_when_used", still_good_when_used, "expired",
         "the goods in reach expire before they can be used", frozenset({GOODS})),
    Rule("eligible_beneficiary", eligible_beneficiary, "not_eligible",
         "the services in reach are for other beneficiary groups", frozenset({SERVICE})),
    Rule("speaks_required_language", speaks_required_language, "language",
         "no volunteer in reach speaks the required language", frozenset({VOLUNTEER})),
    Rule("not_turned_down", not_turned_down, "turned_down",
         "every offer in reach was turned down by a coordinator"),
)


def rules_for(kind: int) -> list[str]:
    """Names of the rules a match of this kind passes, the join rule first."""
    return [KIND_AND_NEED, *(rule.name for rule in RULES if kind in rule.applies_to)]
