"""Soft terms: how good a match is. Each term is a named function giving 0..1 per pair;
the score is the weighted sum, with every weight in one configuration (`Weights`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from matcher.domain.frames import FloatArray
from matcher.domain.kinds import Kind
from matcher.domain.pairs import Pairs

DAY = 86_400.0


@dataclass(frozen=True)
class Weights:
    """Weight of each soft term; a match's score is sum(weight x term value)."""

    base: float = 10.0
    urgency: float = 30.0
    vulnerability: float = 20.0
    waiting: float = 10.0
    travel: float = 10.0
    skill_fit: float = 5.0
    expiry: float = 10.0
    continuity: float = 8.0
    preferred_partner: float = 4.0
    workload_balance: float = 4.0
    grid_coverage: float = 8.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class ScoringContext:
    """Facts outside the pair itself that some terms need."""

    history: frozenset[tuple[str, int]] = frozenset()  # (beneficiary, volunteer code) served
    grid_coverage: dict[str, float] | None = None  # share of each grid's demand served so far
    max_travel_km: float = 10.0
    waiting_horizon_days: float = 7.0
    expiry_horizon_days: float = 14.0


def base(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """Serving anyone at all is worth something."""
    return np.ones(len(p))


def urgency(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """Urgent items first (urgency 1..5)."""
    return (p.demand.urgency[p.d] - 1) / 4.0


def vulnerability(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """The most vulnerable first (vulnerability 1..5)."""
    return (p.demand.vulnerability[p.d] - 1) / 4.0


def waiting(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """Cases that have waited longer come first, up to a horizon."""
    waited = (p.now - p.demand.opened_at[p.d]) / (ctx.waiting_horizon_days * DAY)
    return np.clip(waited, 0.0, 1.0)


def travel(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """Shorter trips are better; unknown distance counts as halfway."""
    closeness = 1.0 - np.clip(p.distance_km / ctx.max_travel_km, 0.0, 1.0)
    return np.where(np.isnan(closeness), 0.5, closeness)


def skill_fit(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """A volunteer's first-listed skills are their best; goods and services fit fully."""
    supply = p.supply
    if len(supply.key_row) == 0 or len(p) == 0:
        return np.ones(len(p))
    # Look each (offer row, item's need) up among the offer's (row, need) entries; a need
    # listed twice ranks where it was listed last.
    width = int(max(supply.key_need.max(), p.demand.need.max(initial=0))) + 1
    entry_key = supply.key_row * width + supply.key_need
    order = np.argsort(entry_key, kind="stable")
    sorted_key = entry_key[order]
    pair_key = p.s * width + p.demand.need[p.d]
    at = np.maximum(np.searchsorted(sorted_key, pair_key, side="right") - 1, 0)
    rank = np.where(sorted_key[at] == pair_key, supply.key_rank[order[at]], 0)
    fit = 1.0 / (1.0 + rank.astype(np.float64))
    return np.where(supply.kind[p.s] == Kind.VOLUNTEER, fit, 1.0)


def expiry(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """Goods that expire soonest go out first, so less is wasted."""
    left = (p.supply.expires[p.s] - p.now) / (ctx.expiry_horizon_days * DAY)
    soon = 1.0 - np.clip(left, 0.0, 1.0)
    return np.where((p.supply.kind[p.s] == Kind.GOODS) & np.isfinite(left), soon, 0.0)


def continuity(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """Recurring visits go to a volunteer the beneficiary already knows."""
    if not ctx.history:
        return np.zeros(len(p))
    # (beneficiary, volunteer) as one integer; volunteer -1 (goods, services) is never known.
    beneficiaries = p.demand.beneficiaries
    volunteer = p.supply.volunteer
    width = max(int(volunteer.max(initial=-1)), max(v for _, v in ctx.history)) + 2
    known_keys = np.fromiter(
        (beneficiaries.index[b] * width + v + 1 for b, v in ctx.history
         if b in beneficiaries.index), dtype=np.int64)
    pair_keys = beneficiaries.codes[p.d] * width + volunteer[p.s] + 1
    known = np.isin(pair_keys, known_keys)
    return (known & p.demand.recurring[p.d]).astype(np.float64)


def preferred_partner(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """A partner the beneficiary asked for is preferred."""
    if not p.demand.preferred:
        return np.zeros(len(p))
    width = max(int(p.supply.partner.max(initial=0)),
                max(partner for _, partner in p.demand.preferred)) + 1
    wanted = np.fromiter((row * width + partner for row, partner in p.demand.preferred),
                         dtype=np.int64, count=len(p.demand.preferred))
    return np.isin(p.d * width + p.supply.partner[p.s], wanted).astype(np.float64)


def workload_balance(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """Spread the load: offers (volunteers, partners) with more left are preferred."""
    capacity = p.supply.capacity[p.s]
    return np.where(capacity > 0, p.supply.remaining[p.s] / np.maximum(capacity, 1e-9), 0.0)


def grid_coverage(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """When supply is short, grids that have been served least come first."""
    if not ctx.grid_coverage:
        return np.full(len(p), 0.5)
    grids = p.demand.grids
    by_code = np.asarray([ctx.grid_coverage.get(grid, 0.0) for grid in grids.index],
                         dtype=np.float64)
    served = by_code[grids.codes[p.d]] if len(by_code) else np.zeros(len(p))
    return 1.0 - np.clip(served, 0.0, 1.0)


Term = Callable[[Pairs, ScoringContext], FloatArray]

TERMS: dict[str, Term] = {
    "base": base,
    "urgency": urgency,
    "vulnerability": vulnerability,
    "waiting": waiting,
    "travel": travel,
    "skill_fit": skill_fit,
    "expiry": expiry,
    "continuity": continuity,
    "preferred_partner": preferred_partner,
    "workload_balance": workload_balance,
    "grid_coverage": grid_coverage,
}


def term_values(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """Matrix of term values: one row per pair, one column per term (order of TERMS)."""
    if len(p) == 0:
        return np.zeros((0, len(TERMS)))
    return np.column_stack([term(p, ctx) for term in TERMS.values()])


def weight_vector(weights: Weights) -> FloatArray:
    """Weights in the order of TERMS."""
    table = weights.as_dict()
    return np.asarray([table[name] for name in TERMS], dtype=np.float64)


def weighted_score(terms: FloatArray, weights: FloatArray) -> FloatArray:
    """Score per pair: sum of weight x term value, added term by term in the order of TERMS.

    Unlike a matrix product, every pair gets the same bits however pairs are batched.
    """
    score = np.zeros(len(terms))
    for column, weight in enumerate(weights.tolist()):
        score += terms[:, column] * weight
    return score
