"""Vectorised groundwork shared by the solvers: per-arc columns, pin checks, utility scaling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matcher.solver.problem import Problem

IntArray = np.ndarray[Any, np.dtype[np.int64]]

# Utilities are floats but both solvers need integers: they are multiplied by the
# smallest power of ten up to MAX_SCALE that makes them whole, else by MAX_SCALE and
# rounded. So precision is 0.001 utility per unit served; objectives are always
# recomputed from the amounts in the original float units.
MAX_SCALE = 1000


def sum_by(index: np.ndarray, values: np.ndarray, size: int) -> IntArray:
    """Integer sums of `values` grouped by `index` (exact, unlike float bincount)."""
    out = np.zeros(size, dtype=np.int64)
    np.add.at(out, index, values)
    return out


def group_starts(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Arc order sorted by key and the start offset of each key's run (length size + 1)."""
    order = np.argsort(keys, kind="stable")
    starts = np.searchsorted(keys[order], np.arange(size + 1))
    return order, starts


@dataclass(frozen=True)
class ArcColumns:
    """Per-arc arrays every model needs; amount[a] = unit[a] * x[a] with lo <= x <= hi."""

    need: np.ndarray
    offer: np.ndarray
    use: IntArray
    utility: np.ndarray
    pinned: IntArray
    non_split: np.ndarray
    unit: IntArray
    lo: IntArray
    hi: IntArray


def arc_columns(problem: Problem) -> ArcColumns:
    """Gather demand and capacity onto the arcs and derive each arc's variable bounds."""
    need = problem.arc_need.astype(np.intp)
    offer = problem.arc_offer.astype(np.intp)
    use = problem.arc_use.astype(np.int64)
    demand = problem.demand.astype(np.int64)[need]
    capacity = problem.capacity.astype(np.int64)[offer]
    pinned = (
        np.zeros(need.shape[0], dtype=np.int64)
        if problem.pinned is None
        else problem.pinned.astype(np.int64)
    )
    non_split = ~problem.splittable.astype(bool)[need]
    # A non-splittable arc is a yes/no choice worth the whole demand.
    unit = np.where(non_split, demand, 1)
    cap = demand if problem.arc_capacity is None else problem.arc_capacity.astype(np.int64)
    if problem.offer_group is not None and problem.group_capacity is not None:
        # An arc never carries more than its offer's group can give.
        group = problem.offer_group.astype(np.intp)[offer]
        room = np.append(problem.group_capacity.astype(np.int64), np.iinfo(np.int64).max)
        capacity = np.minimum(capacity, room[np.where(group >= 0, group, -1)])
    fits_whole = (demand > 0) & (demand * use <= capacity) & (demand <= cap)
    most = np.minimum(np.minimum(demand, capacity // use), cap)
    hi = np.where(non_split, fits_whole.astype(np.int64), most)
    lo = np.where(non_split, (pinned > 0).astype(np.int64), pinned)
    # An impossible pin is reported by pin_obstacle; here it must not make a domain empty.
    hi = np.maximum(hi, lo)
    return ArcColumns(
        need=need,
        offer=offer,
        use=use,
        utility=problem.arc_utility.astype(np.float64),
        pinned=pinned,
        non_split=non_split,
        unit=unit,
        lo=lo,
        hi=hi,
    )


def pin_obstacle(problem: Problem) -> str | None:
    """Why the problem is infeasible before any search (pins that cannot hold), or None."""
    n, m = problem.num_needs, problem.num_offers
    need = problem.arc_need.astype(np.intp)
    arcs_per_need = np.bincount(need, minlength=n)
    lonely = np.flatnonzero(problem.required & (problem.demand > 0) & (arcs_per_need == 0))
    if lonely.size:
        return f"required need {problem.need_ids[int(lonely[0])]} has no candidate offer"
    if problem.pinned is None or not np.any(problem.pinned):
        return None
    pinned = problem.pinned.astype(np.int64)
    offer = problem.arc_offer.astype(np.intp)
    if problem.arc_capacity is not None:
        over = np.flatnonzero(pinned > problem.arc_capacity)
        if over.size:
            a = int(over[0])
            return f"pin on arc {a} ({pinned[a]}) exceeds the arc's own capacity"
    served = sum_by(need, pinned, n)
    over = np.flatnonzero(served > problem.demand)
    if over.size:
        i = int(over[0])
        return f"pins on need {problem.need_ids[i]} ({served[i]}) exceed its demand"
    load = sum_by(offer, pinned * problem.arc_use.astype(np.int64), m)
    over = np.flatnonzero(load > problem.capacity)
    if over.size:
        j = int(over[0])
        return f"pins on offer {problem.offer_ids[j]} ({load[j]}) exceed its capacity"
    short = np.flatnonzero(group_room(problem, pinned) < 0)
    if short.size:
        return f"pins on offer group {int(short[0])} exceed its capacity"
    pinned_arcs = np.bincount(need[pinned > 0], minlength=n)
    torn = np.flatnonzero(~problem.splittable & (pinned_arcs > 1))
    if torn.size:
        return f"non-splittable need {problem.need_ids[int(torn[0])]} is pinned to several offers"
    for g, group in enumerate(problem.conflicts):
        if np.count_nonzero(pinned[np.unique(group)]) > 1:
            return f"conflict group {g} has more than one pinned arc"
    return None


def group_room(problem: Problem, amount: np.ndarray) -> IntArray:
    """Capacity each shared-capacity group has beyond what `amount` (per arc) uses of it."""
    if problem.offer_group is None or problem.group_capacity is None:
        return np.zeros(0, dtype=np.int64)
    load = sum_by(problem.arc_offer.astype(np.intp),
                  np.asarray(amount, dtype=np.int64) * problem.arc_use.astype(np.int64),
                  problem.num_offers)
    grouped = problem.offer_group >= 0
    used = sum_by(problem.offer_group[grouped].astype(np.intp), load[grouped],
                  len(problem.group_capacity))
    return problem.group_capacity.astype(np.int64) - used


def utility_scale(problem: Problem) -> int:
    """Smallest power of ten (<= MAX_SCALE) making utilities and change penalty whole."""
    values = problem.arc_utility.astype(np.float64)
    if problem.previous is not None and problem.change_penalty:
        values = np.append(values, problem.change_penalty)
    scale = 1
    while scale < MAX_SCALE:
        scaled = values * scale
        if np.all(np.abs(scaled - np.rint(scaled)) <= 1e-9 * np.maximum(1.0, np.abs(scaled))):
            return scale
        scale *= 10
    return MAX_SCALE


def scaled(values: np.ndarray | float, scale: int) -> IntArray:
    """Round utilities (or a penalty) to integers after multiplying by `scale`."""
    return np.rint(np.asarray(values, dtype=np.float64) * scale).astype(np.int64)
