"""LP relaxation (GLOP through OR-Tools model_builder): an upper bound for gap reports."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from ortools.linear_solver.python import model_builder as mb

from matcher.solver.prepare import arc_columns, group_starts, pin_obstacle
from matcher.solver.problem import Problem, Solution, Status

METHOD = "lp_bound"


def relaxation_bound(problem: Problem) -> float:
    """Optimal value of the LP relaxation: no plan can score more (+inf if GLOP times out)."""
    problem.validate()
    return _relaxation(problem)[0]


def solve_lp_bound(problem: Problem) -> Solution:
    """Only bound the problem: UNKNOWN (or INFEASIBLE if the LP is) with an empty plan."""
    bound, build_s, solve_s = _relaxation(problem)
    status = Status.INFEASIBLE if bound == -math.inf else Status.UNKNOWN
    return Solution(
        status=status,
        objective=-math.inf,
        bound=bound,
        amount=np.zeros(problem.num_arcs, dtype=np.int64),
        method=METHOD,
        build_s=build_s,
        solve_s=solve_s,
        note="LP relaxation only: a bound, no plan",
    )


def _relaxation(problem: Problem) -> tuple[float, float, float]:
    """Solve the LP relaxation; return (bound, build seconds, solve seconds)."""
    started = time.perf_counter()
    if pin_obstacle(problem) is not None:
        return -math.inf, time.perf_counter() - started, 0.0

    # Data: the CP-SAT variables with integrality dropped (x[a] in [lo, hi], amount = unit * x).
    n, m, k = problem.num_needs, problem.num_offers, problem.num_arcs
    arcs = arc_columns(problem)
    penalise = problem.previous is not None and problem.change_penalty > 0
    previous = (
        np.zeros(k, np.int64) if problem.previous is None else problem.previous.astype(np.int64)
    )
    gain = arcs.utility * arcs.unit
    if penalise:
        gain = gain - problem.change_penalty * arcs.unit * (previous == 0)

    # Model
    model = mb.Model()
    helper = model.helper

    # Variables, added as one array: fractional x[a].
    continuous: Any = np.zeros(k, dtype=bool)  # the stub's array type for bools is off
    index = helper.add_var_array_with_bounds(
        arcs.lo.astype(np.float64), arcs.hi.astype(np.float64), continuous, ""
    )
    x = np.array([model.var_from_index(i) for i in index.tolist()], dtype=object)

    # Constraints
    order, starts = group_starts(arcs.need, n)
    for i in range(n):
        group = order[starts[i] : starts[i + 1]]
        if group.size == 0:
            continue
        # A need is served at most (a required need exactly) up to its demand; for a
        # whole need x is a share of one choice, so the row is sum(x) <= 1.
        whole = not problem.splittable[i]
        top = 1.0 if whole else float(problem.demand[i])
        expr = mb.LinearExpr.sum(x[group].tolist())
        if problem.required[i] and problem.demand[i] > 0:
            model.add(expr == top)
        else:
            model.add(expr <= top)
    # An offer never gives more than its capacity.
    weight = (arcs.use * arcs.unit).astype(np.float64)
    order, starts = group_starts(arcs.offer, m)
    for j in range(m):
        group = order[starts[j] : starts[j + 1]]
        if group.size:
            expr = mb.LinearExpr.weighted_sum(x[group].tolist(), weight[group].tolist())
            model.add(expr <= float(problem.capacity[j]))
    # A shared-capacity group (a volunteer's week) gives at most its capacity.
    if problem.offer_group is not None and problem.group_capacity is not None:
        arc_group = problem.offer_group.astype(np.int64)[arcs.offer]
        for g in range(len(problem.group_capacity)):
            members = np.flatnonzero(arc_group == g)
            if members.size:
                expr = mb.LinearExpr.weighted_sum(x[members].tolist(), weight[members].tolist())
                model.add(expr <= float(problem.group_capacity[g]))
    # Conflicts relax to "the used fractions of the group's arcs add up to at most one".
    for group_arcs in problem.conflicts:
        group = np.unique(group_arcs)
        group = group[arcs.hi[group] > 0]
        if group.size > 1:
            shares = (1.0 / arcs.hi[group]).tolist()
            model.add(mb.LinearExpr.weighted_sum(x[group].tolist(), shares) <= 1.0)

    # Objective: utility, minus penalty on |amount - previous| where a previous amount exists.
    terms, weights = list(x), gain.tolist()
    if penalise:
        for a in np.flatnonzero(previous > 0).tolist():
            moved = model.new_num_var(0.0, math.inf, "")
            amount = float(arcs.unit[a]) * x[a]
            model.add(moved >= amount - float(previous[a]))
            model.add(moved >= float(previous[a]) - amount)
            terms.append(moved)
            weights.append(-problem.change_penalty)
    model.maximize(mb.LinearExpr.weighted_sum(terms, weights))
    build_s = time.perf_counter() - started

    # Solve
    solver = mb.Solver("glop")
    solver.set_time_limit_in_seconds(float(problem.time_limit_s))
    solve_started = time.perf_counter()
    status = solver.solve(model)
    solve_s = time.perf_counter() - solve_started
    if status == mb.SolveStatus.OPTIMAL:
        return float(solver.objective_value), build_s, solve_s
    if status == mb.SolveStatus.INFEASIBLE:
        return -math.inf, build_s, solve_s
    # Timed out or failed: nothing is proven, and +inf is the only honest bound.
    return math.inf, build_s, solve_s
