"""A quick greedy plan used as CP-SAT's starting hint when there is no previous plan."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from matcher.solver.prepare import ArcColumns, IntArray, group_room, sum_by
from matcher.solver.problem import Problem


def greedy_plan(problem: Problem, arcs: ArcColumns) -> IntArray | None:
    """x per arc (amount = unit * x): pins first, then best utility per capacity used.

    A second pass tops up required needs at any utility. The plan keeps every rule, or
    None is returned when it leaves a required need short: a hint that breaks a hard
    rule steers CP-SAT into the wrong region (seen on the tight GAP instances).
    """
    x = arcs.lo.copy()
    need, offer = arcs.need.tolist(), arcs.offer.tolist()
    unit, use, hi = arcs.unit.tolist(), arcs.use.tolist(), arcs.hi.tolist()
    non_split = arcs.non_split.tolist()
    demand_left = (
        problem.demand.astype(np.int64) - sum_by(arcs.need, arcs.unit * x, problem.num_needs)
    ).tolist()
    capacity_left = (
        problem.capacity.astype(np.int64)
        - sum_by(arcs.offer, arcs.use * arcs.unit * x, problem.num_offers)
    ).tolist()
    # Shared-capacity groups (a volunteer's week): -1 where the offer is in none.
    offer_group = ([-1] * problem.num_offers if problem.offer_group is None
                   else problem.offer_group.tolist())
    group_left = group_room(problem, arcs.unit * x).tolist()
    groups_of: dict[int, list[int]] = defaultdict(list)
    group_used = [False] * len(problem.conflicts)
    for g, group in enumerate(problem.conflicts):
        for a in np.unique(group).tolist():
            groups_of[a].append(g)
            group_used[g] = group_used[g] or bool(x[a] > 0)
    taken = x.tolist()

    def place(a: int) -> None:
        """Give arc a as much as its need, its offer and its conflict groups allow."""
        if taken[a] >= hi[a]:
            return
        if taken[a] == 0 and any(group_used[g] for g in groups_of.get(a, ())):
            return  # another arc of a conflict group is already in use
        i, j = need[a], offer[a]
        room = capacity_left[j] if offer_group[j] < 0 else min(capacity_left[j],
                                                               group_left[offer_group[j]])
        if non_split[a]:
            if taken[a] or demand_left[i] < unit[a] or room < unit[a] * use[a]:
                return
            more = 1
        else:
            more = min(hi[a] - taken[a], demand_left[i], room // use[a])
            if more <= 0:
                return
        taken[a] += more
        demand_left[i] -= unit[a] * more
        capacity_left[j] -= unit[a] * more * use[a]
        if offer_group[j] >= 0:
            group_left[offer_group[j]] -= unit[a] * more * use[a]
        for g in groups_of.get(a, ()):
            group_used[g] = True

    density = arcs.utility / arcs.use
    for a in np.flatnonzero(arcs.utility > 0)[np.argsort(-density[arcs.utility > 0])].tolist():
        place(a)
    short = problem.required.astype(bool)[arcs.need]
    for a in np.flatnonzero(short)[np.argsort(-arcs.utility[short], kind="stable")].tolist():
        if demand_left[need[a]] > 0:
            place(a)
    if any(left > 0 for left in np.asarray(demand_left)[problem.required].tolist()):
        return None
    return np.asarray(taken, dtype=np.int64)
