"""Flow, then repair: large batches with whole (unsplittable) needs, solved in well under a
second instead of timing out in CP-SAT.

1. Min-cost flow of the relaxation (every need splittable, a whole need only on arcs that
   can carry all of it): its optimum is a proven upper bound.
2. A whole need the flow served whole through one arc keeps it; the others give it back.
3. Those needs are matched again on the capacity left, with CP-SAT (a small problem).
4. Capacity still left tops up the splittable needs (min-cost flow again).

The plan is feasible by construction (checked), and reported FEASIBLE with the relaxation's
optimum as its bound, so the gap to optimal is always known.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from matcher.solver.cpsat import solve_cp_sat
from matcher.solver.flow import flow_obstacle, solve_min_cost_flow
from matcher.solver.prepare import group_room
from matcher.solver.problem import Problem, Solution, Status, objective_value, violations

# Repair's CP-SAT works on the few whole needs the flow split: a short limit is plenty.
REPAIR_TIME_LIMIT_S = 2.0


def flow_relaxation(problem: Problem) -> Problem:
    """Every need splittable; a whole need only on arcs that can carry all of it."""
    whole = ~problem.splittable[problem.arc_need]
    demand = problem.demand[problem.arc_need]
    cap = demand if problem.arc_capacity is None else problem.arc_capacity
    return replace(problem, splittable=np.ones(problem.num_needs, dtype=np.bool_),
                   arc_capacity=np.where(whole & (cap < demand), 0, cap))


def repairable(problem: Problem) -> bool:
    """Whether whole needs are the only thing that keeps the problem from being a flow."""
    return flow_obstacle(flow_relaxation(problem)) is None


def _arc_subset(problem: Problem, arcs: np.ndarray, *, capacity: np.ndarray,
                group_capacity: np.ndarray | None, demand: np.ndarray | None = None,
                arc_capacity: np.ndarray | None = None,
                time_limit_s: float | None = None) -> Problem:
    """The problem on some arcs only, with other capacity (and demand, arc caps)."""
    caps = problem.arc_capacity[arcs] if problem.arc_capacity is not None else None
    return replace(
        problem, demand=problem.demand if demand is None else demand,
        capacity=np.maximum(capacity, 0),
        group_capacity=None if group_capacity is None else np.maximum(group_capacity, 0),
        arc_need=problem.arc_need[arcs],
        arc_offer=problem.arc_offer[arcs], arc_utility=problem.arc_utility[arcs],
        arc_use=problem.arc_use[arcs],
        arc_capacity=caps if arc_capacity is None else arc_capacity,
        # A previous plan is only a hint without a change penalty (see `repairable`).
        pinned=None, previous=None,
        splittable=(problem.splittable if demand is None
                    else np.ones(problem.num_needs, dtype=np.bool_)),
        time_limit_s=problem.time_limit_s if time_limit_s is None else time_limit_s,
    )


def _left(problem: Problem, amount: np.ndarray) -> np.ndarray:
    """Capacity of each offer not used by the plan."""
    used = np.bincount(problem.arc_offer.astype(np.int64), weights=amount,
                       minlength=problem.num_offers)
    return problem.capacity - used.astype(np.int64)


def _group_left(problem: Problem, amount: np.ndarray) -> np.ndarray | None:
    """Capacity of each shared-capacity group not used by the plan (None without groups)."""
    return None if problem.group_capacity is None else group_room(problem, amount)


def solve_flow_then_repair(problem: Problem) -> Solution:
    """Feasible plan with a proven bound, for problems where only whole needs break the flow."""
    started = time.perf_counter()
    relaxed = solve_min_cost_flow(flow_relaxation(problem))
    if not relaxed.has_solution:  # e.g. a pin the relaxation cannot hold: let CP-SAT say why
        return solve_cp_sat(problem)
    amount = relaxed.amount.copy()
    need = problem.arc_need.astype(np.int64)
    whole_arc = ~problem.splittable[need]
    arcs_used = np.bincount(need[amount > 0], minlength=problem.num_needs)
    served = np.bincount(need, weights=amount, minlength=problem.num_needs)
    broken = ~problem.splittable & (served > 0) & ((arcs_used > 1) | (served < problem.demand))
    if problem.pinned is not None and np.any(problem.pinned[broken[need]] > 0):
        # Repair would take back a pinned amount: only CP-SAT can keep the pin whole.
        return solve_cp_sat(problem)
    amount[broken[need]] = 0
    # The broken whole needs, on arcs whose offer still has room for all of each.
    left = _left(problem, amount)
    demand = problem.demand[need]
    cap = demand if problem.arc_capacity is None else problem.arc_capacity
    candidates = np.flatnonzero(broken[need] & (cap >= demand)
                                & (left[problem.arc_offer] >= demand))
    if len(candidates):
        part = _arc_subset(problem, candidates, capacity=left,
                           group_capacity=_group_left(problem, amount),
                           time_limit_s=min(problem.time_limit_s, REPAIR_TIME_LIMIT_S))
        repaired = solve_cp_sat(part)
        if repaired.has_solution:
            amount[candidates] += repaired.amount
    # Splittable needs take what is left, on the room left on their arcs.
    left = _left(problem, amount)
    short = problem.demand - np.bincount(need, weights=amount,
                                         minlength=problem.num_needs).astype(np.int64)
    room = cap - amount
    top_up = np.flatnonzero(~whole_arc & (room > 0) & (short[need] > 0)
                            & (left[problem.arc_offer] > 0))
    if len(top_up):
        part = _arc_subset(problem, top_up, capacity=left,
                           group_capacity=_group_left(problem, amount),
                           demand=np.maximum(short, 0),
                           arc_capacity=room[top_up])
        amount[top_up] += solve_min_cost_flow(part).amount
    problems = violations(problem, amount)
    if problems:  # a bug, not bad input: never hand out an infeasible plan
        raise AssertionError(f"flow+repair produced an infeasible plan: {problems[:3]}")
    elapsed = time.perf_counter() - started
    return Solution(status=Status.FEASIBLE, objective=objective_value(problem, amount),
                    bound=relaxed.objective, amount=amount, method="flow_repair",
                    build_s=relaxed.build_s, solve_s=elapsed - relaxed.build_s)
