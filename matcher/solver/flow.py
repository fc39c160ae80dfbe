"""Exact min-cost-flow path for problems that are pure transportation problems."""

from __future__ import annotations

import math
import time

import numpy as np
from ortools.graph.python import min_cost_flow

from matcher.solver.prepare import group_room, pin_obstacle, scaled, sum_by, utility_scale
from matcher.solver.problem import Problem, Solution, Status, objective_value

METHOD = "min_cost_flow"


def flow_obstacle(problem: Problem) -> str | None:
    """Why the problem is not a plain flow (so CP-SAT is needed), or None if it is one."""
    if problem.num_needs and not np.all(problem.splittable):
        return "a need is not splittable"
    if np.any(problem.required):
        return "a need is required"
    if problem.num_arcs and np.any(problem.arc_use != 1):
        return "an arc uses more than one unit of capacity per unit served"
    if any(np.unique(group).size > 1 for group in problem.conflicts):
        return "there are conflict groups"
    if problem.previous is not None and problem.change_penalty > 0:
        return "there is a change penalty against a previous plan"
    return None


def solve_min_cost_flow(problem: Problem) -> Solution:
    """Solve a flow problem to proven optimality with OR-Tools SimpleMinCostFlow."""
    started = time.perf_counter()
    k = problem.num_arcs
    obstacle = pin_obstacle(problem)
    if obstacle is not None:
        return _infeasible(k, obstacle, time.perf_counter() - started)

    # Data: pins are served up front, so they come off the demand and the capacity.
    n, m = problem.num_needs, problem.num_offers
    need = problem.arc_need.astype(np.int32)
    offer = problem.arc_offer.astype(np.int32)
    pinned = (
        np.zeros(k, dtype=np.int64) if problem.pinned is None else problem.pinned.astype(np.int64)
    )
    demand_left = problem.demand.astype(np.int64) - sum_by(need, pinned, n)
    capacity_left = problem.capacity.astype(np.int64) - sum_by(offer, pinned, m)
    # Objective: min-cost flow minimises integer costs, so utility becomes a scaled
    # negative cost; arcs that gain nothing are left out: they never carry flow beyond
    # their pin.
    cost = -scaled(problem.arc_utility, utility_scale(problem))
    useful = np.flatnonzero(cost < 0)
    total = int(demand_left.sum())

    # Shared-capacity groups (a volunteer's week) sit between their offers and the sink.
    group = (np.full(m, -1, dtype=np.int64) if problem.offer_group is None
             else problem.offer_group.astype(np.int64))
    group_left = group_room(problem, pinned)
    g = len(group_left)

    # Model: source -> need -> offer -> (group ->) sink, plus a zero-cost source -> sink
    # bypass that carries whatever demand is better left unserved (so flow is not forced to
    # be maximal).
    source, sink = n + m + g, n + m + g + 1
    offer_head = np.where(group >= 0, n + m + group, sink)
    tails = np.concatenate([np.full(n, source), need[useful], n + np.arange(m),
                            n + m + np.arange(g), [source]])
    heads = np.concatenate([np.arange(n), n + offer[useful], offer_head, np.full(g, sink),
                            [sink]])
    arc_room = demand_left[need[useful]]
    if problem.arc_capacity is not None:
        # A capped arc carries at most its cap, of which the pin has taken a part.
        arc_room = np.minimum(arc_room, (problem.arc_capacity - pinned)[useful])
    capacities = np.concatenate([demand_left, arc_room, capacity_left,
                                 np.maximum(group_left, 0), [total]]).astype(np.int64)
    costs = np.concatenate(
        [np.zeros(n, np.int64), cost[useful], np.zeros(m + g, np.int64), np.zeros(1, np.int64)]
    )

    # Variables: the flow on each network arc, owned by the solver.
    flow = min_cost_flow.SimpleMinCostFlow()
    arcs = flow.add_arcs_with_capacity_and_unit_cost(
        tails.astype(np.int32), heads.astype(np.int32), capacities, costs
    )
    # Constraints: flow conservation; all demand leaves the source and reaches the sink,
    # through an offer or through the bypass. Capacities are the arc capacities above.
    flow.set_nodes_supplies(
        np.array([source, sink], dtype=np.int32), np.array([total, -total], dtype=np.int64)
    )
    build_s = time.perf_counter() - started

    # Solve.
    solve_started = time.perf_counter()
    status = flow.solve()
    solve_s = time.perf_counter() - solve_started
    if status == min_cost_flow.SimpleMinCostFlow.BAD_COST_RANGE:
        raise ValueError(
            "min-cost flow rejected the cost range: utilities are too large; scale them down"
        )
    if status != min_cost_flow.SimpleMinCostFlow.OPTIMAL:
        # The bypass makes every instance feasible, so this is a solver failure, not a verdict.
        return Solution(
            status=Status.UNKNOWN,
            objective=-math.inf,
            bound=math.inf,
            amount=np.zeros(k, dtype=np.int64),
            method=METHOD,
            build_s=build_s,
            solve_s=solve_s,
            note=f"min-cost flow ended with status {status}",
        )
    amount = pinned.copy()
    amount[useful] += np.asarray(flow.flows(arcs[n : n + useful.size]), dtype=np.int64)
    value = objective_value(problem, amount)
    return Solution(
        status=Status.OPTIMAL,
        objective=value,
        bound=value,
        amount=amount,
        method=METHOD,
        build_s=build_s,
        solve_s=solve_s,
    )


def _infeasible(k: int, note: str, build_s: float) -> Solution:
    """A proven-infeasible answer found before building any model."""
    return Solution(
        status=Status.INFEASIBLE,
        objective=-math.inf,
        bound=-math.inf,
        amount=np.zeros(k, dtype=np.int64),
        method=METHOD,
        build_s=build_s,
        solve_s=0.0,
        note=note,
    )
