"""Soft terms: how good a match is. Each term is a named function giving 0..1 per pair;
the score is the weighted sum, with every weight in one configuration (`Weights`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from matcher.domain.frames import FloatArray
from matcher.domain.pairs import Pairs

DAY = 86_400.0
VOLUNTEER, GOODS = 0, 1


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
    needs = p.demand.need[p.d].tolist()
    ranks = [p.supply.skill_rank[s].get(n, 0) for s, n in zip(p.s.tolist(), needs, strict=True)]
    fit = 1.0 / (1.0 + np.asarray(ranks, dtype=np.float64))
    return np.where(p.supply.kind[p.s] == VOLUNTEER, fit, 1.0)


def expiry(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """Goods that expire soonest go out first, so less is wasted."""
    left = (p.supply.expires[p.s] - p.now) / (ctx.expiry_horizon_days * DAY)
    soon = 1.0 - np.clip(left, 0.0, 1.0)
    return np.where((p.supply.kind[p.s] == GOODS) & np.isfinite(left), soon, 0.0)


def continuity(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """Recurring visits go to a volunteer the beneficiary already knows."""
    if not ctx.history:
        return np.zeros(len(p))
    known = np.fromiter(
        ((p.demand.beneficiary[d], v) in ctx.history
         for d, v in zip(p.d.tolist(), p.supply.volunteer[p.s].tolist(), strict=True)),
        dtype=np.bool_, count=len(p),
    )
    return (known & p.demand.recurring[p.d]).astype(np.float64)


def preferred_partner(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """A partner the beneficiary asked for is preferred."""
    if not p.demand.preferred:
        return np.zeros(len(p))
    return np.fromiter(
        ((d, partner) in p.demand.preferred
         for d, partner in zip(p.d.tolist(), p.supply.partner[p.s].tolist(), strict=True)),
        dtype=np.float64, count=len(p),
    )


def workload_balance(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """Spread the load: offers (volunteers, partners) with more left are preferred."""
    capacity = p.supply.capacity[p.s]
    return np.where(capacity > 0, p.supply.remaining[p.s] / np.maximum(capacity, 1e-9), 0.0)


def grid_coverage(p: Pairs, ctx: ScoringContext) -> FloatArray:
    """When supply is short, grids that have been served least come first."""
    if not ctx.grid_coverage:
        return np.full(len(p), 0.5)
    served = np.fromiter((ctx.grid_coverage.get(p.demand.grid_id[d], 0.0) for d in p.d.tolist()),
                         dtype=np.float64, count=len(p))
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
