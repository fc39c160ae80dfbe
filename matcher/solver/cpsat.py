"""CP-SAT path: every rule (whole needs, required needs, use > 1, conflicts, change penalty)."""

from __future__ import annotations

import math
import time

import numpy as np
from ortools.sat.python import cp_model

from matcher.solver.greedy import greedy_plan
from matcher.solver.prepare import (
    arc_columns,
    group_starts,
    pin_obstacle,
    scaled,
    sum_by,
    utility_scale,
)
from matcher.solver.problem import Problem, Solution, Status, objective_value

METHOD = "cp_sat"

_STATUS = {
    cp_model.OPTIMAL: Status.OPTIMAL,
    cp_model.FEASIBLE: Status.FEASIBLE,
    cp_model.INFEASIBLE: Status.INFEASIBLE,
    cp_model.UNKNOWN: Status.UNKNOWN,
}


def solve_cp_sat(problem: Problem) -> Solution:
    """Build and solve the CP-SAT model within the problem's time limit and worker count."""
    started = time.perf_counter()
    k = problem.num_arcs
    obstacle = pin_obstacle(problem)
    if obstacle is not None:
        elapsed = time.perf_counter() - started
        return _no_solution(Status.INFEASIBLE, k, -math.inf, elapsed, obstacle)

    # Data
    n, m = problem.num_needs, problem.num_offers
    arcs = arc_columns(problem)
    scale = utility_scale(problem)
    gain = scaled(arcs.utility, scale) * arcs.unit  # objective weight of x[a]
    penalise = problem.previous is not None and problem.change_penalty > 0
    previous = (
        np.zeros(k, np.int64) if problem.previous is None else problem.previous.astype(np.int64)
    )
    penalty = int(scaled(problem.change_penalty, scale)) if penalise else 0

    # Model
    model = cp_model.CpModel()

    # Variables: x[a] is the amount on arc a, or for a non-splittable need a yes/no choice
    # of serving the whole demand (amount = unit[a] * x[a]). Created first so that x[a]
    # has proto index a, which lets the solution be read back as one array.
    x = [
        model.new_int_var(lo, hi, "")
        for lo, hi in zip(arcs.lo.tolist(), arcs.hi.tolist(), strict=True)
    ]
    x_array = np.array(x, dtype=object)

    # Constraints
    order, starts = group_starts(arcs.need, n)
    demand = problem.demand.tolist()
    required = problem.required.tolist()
    splittable = problem.splittable.tolist()
    for i in range(n):
        group = order[starts[i] : starts[i + 1]]
        if group.size == 0:
            continue  # pin_obstacle already rejected required needs without arcs
        terms = x_array[group].tolist()
        if not splittable[i]:
            # A whole need goes to one offer or (if not required) stays open.
            if required[i] and demand[i] > 0:
                model.add_exactly_one(terms)
            else:
                model.add_at_most_one(terms)
        elif required[i]:
            # A required need is served in full.
            model.add(cp_model.LinearExpr.sum(terms) == demand[i])
        else:
            # A need is never served beyond its demand.
            model.add(cp_model.LinearExpr.sum(terms) <= demand[i])

    # An offer never gives more than its capacity; rows that cannot bind are skipped.
    weight = arcs.use * arcs.unit
    most_load = sum_by(arcs.offer, weight * arcs.hi, m)
    binding = most_load > problem.capacity
    order, starts = group_starts(arcs.offer, m)
    capacity = problem.capacity.tolist()
    for j in np.flatnonzero(binding).tolist():
        group = order[starts[j] : starts[j + 1]]
        model.add(
            cp_model.LinearExpr.weighted_sum(x_array[group].tolist(), weight[group].tolist())
            <= capacity[j]
        )

    # A volunteer gives at most their weekly hours across all their offers (shared groups).
    if problem.offer_group is not None and problem.group_capacity is not None:
        arc_group = problem.offer_group.astype(np.int64)[arcs.offer]
        groups = len(problem.group_capacity)
        in_group = np.flatnonzero(arc_group >= 0)
        most_group = sum_by(arc_group[in_group], (weight * arcs.hi)[in_group], groups)
        order, starts = group_starts(arc_group[in_group], groups)
        group_cap = problem.group_capacity.tolist()
        for g in np.flatnonzero(most_group > problem.group_capacity).tolist():
            members = in_group[order[starts[g] : starts[g + 1]]]
            model.add(
                cp_model.LinearExpr.weighted_sum(x_array[members].tolist(),
                                                 weight[members].tolist())
                <= group_cap[g]
            )

    # Of arcs that exclude each other (one volunteer's overlapping slots) at most one is used.
    used_literal: dict[int, cp_model.IntVar] = {}
    for group_arcs in problem.conflicts:
        literals = []
        for a in np.unique(group_arcs).tolist():
            if arcs.hi[a] == 0:
                continue  # an arc that can carry nothing never conflicts
            if arcs.hi[a] == 1:
                literals.append(x[a])  # x[a] is already 0/1
                continue
            if a not in used_literal:
                flag = model.new_bool_var("")
                # The flag must be on whenever the arc carries anything.
                model.add(x[a] <= int(arcs.hi[a]) * flag)
                used_literal[a] = flag
            literals.append(used_literal[a])
        if len(literals) > 1:
            model.add_at_most_one(literals)

    # Objective: utility minus the change penalty. Against a previous amount of 0 the
    # moved amount is the amount itself, so its penalty folds into the arc's weight;
    # only arcs with a previous amount need an explicit |amount - previous| variable.
    objective_vars: list[cp_model.IntVar] = list(x)
    objective_weights = gain
    if penalise:
        objective_weights = gain - penalty * arcs.unit * (previous == 0)
        extra_weights = []
        for a in np.flatnonzero(previous > 0).tolist():
            unit, before = int(arcs.unit[a]), int(previous[a])
            spread = max(before - unit * int(arcs.lo[a]), unit * int(arcs.hi[a]) - before, 0)
            moved = model.new_int_var(0, spread, "")
            # moved >= |amount - previous|; maximising pushes it down to equality.
            model.add(moved >= unit * x[a] - before)
            model.add(moved >= before - unit * x[a])
            objective_vars.append(moved)
            extra_weights.append(-penalty)
        objective_weights = np.concatenate([objective_weights, np.array(extra_weights, np.int64)])
    model.maximize(cp_model.LinearExpr.weighted_sum(objective_vars, objective_weights.tolist()))

    # Start the search from the current plan when there is one (it is usually nearly
    # optimal), else from a greedy plan: with few workers and a short time limit CP-SAT's
    # own first solutions on large batches are far from optimal.
    hint = (
        np.where(arcs.non_split, previous >= np.maximum(arcs.unit, 1), previous)
        if problem.previous is not None
        else greedy_plan(problem, arcs)
    )
    if hint is not None:
        for var, value in zip(x, np.clip(hint, arcs.lo, arcs.hi).tolist(), strict=True):
            model.add_hint(var, value)
    build_s = time.perf_counter() - started

    # Solve
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(problem.time_limit_s)
    solver.parameters.num_workers = int(problem.workers)
    solve_started = time.perf_counter()
    code = solver.solve(model)
    solve_s = time.perf_counter() - solve_started
    if code == cp_model.MODEL_INVALID:
        raise RuntimeError(f"CP-SAT rejected the model: {model.validate()}")
    status = _STATUS[code]
    if status == Status.INFEASIBLE:
        return _no_solution(status, k, -math.inf, build_s, "CP-SAT proved no plan fits", solve_s)
    bound = solver.best_objective_bound / scale
    if status == Status.UNKNOWN:
        note = f"no plan found within {problem.time_limit_s:g} s"
        return _no_solution(status, k, bound, build_s, note, solve_s)

    values = np.asarray(solver.response_proto.solution, dtype=np.int64)[:k]
    amount = values * arcs.unit
    value = objective_value(problem, amount)
    # Rounding utilities to the scale can put the float objective a hair above the
    # integer model's bound; a proven optimum is reported with bound == objective.
    bound = value if status == Status.OPTIMAL else max(bound, value)
    return Solution(
        status=status,
        objective=value,
        bound=bound,
        amount=amount,
        method=METHOD,
        build_s=build_s,
        solve_s=solve_s,
    )


def _no_solution(
    status: Status, k: int, bound: float, build_s: float, note: str, solve_s: float = 0.0
) -> Solution:
    """An answer without a plan: proven infeasible, or nothing found in time."""
    return Solution(
        status=status,
        objective=-math.inf,
        bound=bound,
        amount=np.zeros(k, dtype=np.int64),
        method=METHOD,
        build_s=build_s,
        solve_s=solve_s,
        note=note,
    )
