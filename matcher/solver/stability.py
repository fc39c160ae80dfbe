"""Keeping today's plan: pending proposals as kept arcs worth a bonus, and the move cap.

A rebalance must not churn what people were told. Each pending proposal gets its own arc
whose utility carries `penalty / item size` per unit, so dropping it costs exactly the
configured score points (pro rata for a part); new demand is never penalised. When more moves
pay than a run may make, the bar a move must clear is raised until only the most valuable
ones do. Why a bonus rather than the solver's symmetric `change_penalty`: the solver counts
change in integer units, and units differ per item (a quarter hour, a tenth of a kg), so one
scalar per unit cannot mean "score points per whole item moved".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from matcher.solver.core import solve
from matcher.solver.problem import Problem, Solution, Status

# Utility per unit a kept pending proposal gets even at penalty 0: ties go to today's plan, so
# an unchanged district never churns between equally good plans (twice the solver's 0.001
# resolution, so rounding cannot erase it).
TIE_BONUS = 0.002
CAP_PROBES = 8  # solves spent finding the move threshold when the cap binds


@dataclass(frozen=True)
class KeptArcs:
    """Today's pending proposals as arcs of the problem: where they are and what keeping them
    is worth."""

    pair: np.ndarray  # the open arc (pair) each one sits on
    units: np.ndarray  # its amount in solver units
    per_point: np.ndarray  # bonus per unit per score point of penalty: 1 / item size in units


def stable_problem(base: Problem, kept: KeptArcs, penalty: float) -> Problem:
    """The base problem plus one kept arc per pending proposal, worth `penalty` more per item."""
    k = base.num_arcs
    pair = kept.pair
    # What pending proposals hold on a pair is theirs; the open arc carries only the rest.
    held = np.zeros(k, dtype=np.int64)
    np.add.at(held, pair, kept.units)
    assert base.arc_capacity is not None  # build_problem always caps arcs
    open_cap = np.maximum(base.arc_capacity - held, 0)
    previous = np.concatenate([np.zeros(k, dtype=np.int64), kept.units])
    return dataclasses.replace(
        base,
        arc_need=np.concatenate([base.arc_need, base.arc_need[pair]]),
        arc_offer=np.concatenate([base.arc_offer, base.arc_offer[pair]]),
        arc_utility=np.concatenate([base.arc_utility, base.arc_utility[pair]
                                    + penalty * kept.per_point + TIE_BONUS]),
        arc_use=np.ones(k + len(pair), dtype=np.int64),
        arc_capacity=np.concatenate([open_cap, kept.units]),
        previous=previous, change_penalty=0.0,
    )


def moves(solution: Solution, base_arcs: int, kept: KeptArcs) -> int:
    """Pending proposals the solution does not keep whole."""
    if not solution.has_solution:
        return 0
    kept_units = solution.amount[base_arcs:]
    return int(np.count_nonzero(kept_units < kept.units))


def keep_all(problem: Problem, base_arcs: int, kept: KeptArcs, note: str) -> Solution:
    """The current plan as a solution: every pending proposal kept, nothing new."""
    amount = np.zeros(problem.num_arcs, dtype=np.int64)
    amount[base_arcs:] = kept.units
    value = float(np.dot(problem.arc_utility, amount))
    return Solution(status=Status.FEASIBLE, objective=value, bound=math.inf, amount=amount,
                    method="keep_current", build_s=0.0, solve_s=0.0, note=note)


def solve_within_cap(base: Problem, kept: KeptArcs, penalty: float,
                     budget: int | None) -> tuple[Solution, Problem, int]:
    """Solve; when more moves than the budget pay, raise the bar a move must clear until only
    the most valuable ones do (the lowest-gain moves stay as they were). Returns the solution,
    its problem, and how many moves were held back."""
    problem = stable_problem(base, kept, penalty)
    solution = solve(problem)
    wanted = moves(solution, base.num_arcs, kept)
    if budget is None or wanted <= budget:
        return solution, problem, 0
    # Beyond this bonus no move pays: a unit taken from a kept arc frees one unit of demand and
    # one of capacity, so it enables at most two units elsewhere, each worth <= max utility.
    top_utility = float(np.max(np.abs(base.arc_utility), initial=0.0))
    top = (2.0 * top_utility + 1e-6) / float(np.min(kept.per_point)) * 1.01 + 1.0
    low, high = penalty, top
    best_problem = stable_problem(base, kept, high)
    best = solve(best_problem)
    over = solution
    for _ in range(CAP_PROBES):
        middle = math.sqrt(max(low, high * 1e-6) * high)
        probe_problem = stable_problem(base, kept, middle)
        probe = solve(probe_problem)
        if probe.has_solution and moves(probe, base.num_arcs, kept) <= budget:
            high, best, best_problem = middle, probe, probe_problem
        else:
            low, over = middle, probe
    if best.has_solution and over.has_solution and moves(best, base.num_arcs, kept) < budget:
        best, best_problem = _fill_budget(base, kept, penalty, best, over, budget)
    held_back = wanted - moves(best, base.num_arcs, kept)
    return best, best_problem, held_back


def _moved(solution: Solution, base_arcs: int, kept: KeptArcs) -> list[int]:
    """Positions (in kept order) of the pending proposals a solution does not keep whole."""
    return np.flatnonzero(solution.amount[base_arcs:] < kept.units).tolist()


def _fill_budget(base: Problem, kept: KeptArcs, penalty: float, within: Solution,
                 over: Solution, budget: int) -> tuple[Solution, Problem]:
    """Moves of equal worth cannot be told apart by the bar: allow those under the bar plus the
    first ones above it up to the budget, pin every other pending proposal, and solve again."""
    allowed = _moved(within, base.num_arcs, kept)
    extra = [j for j in _moved(over, base.num_arcs, kept) if j not in set(allowed)]
    allowed += extra[: budget - len(allowed)]
    problem = stable_problem(base, kept, penalty)
    pinned = np.zeros(problem.num_arcs, dtype=np.int64)
    pinned[base.num_arcs:] = kept.units
    pinned[[base.num_arcs + j for j in allowed]] = 0
    problem = dataclasses.replace(problem, pinned=pinned)
    solution = solve(problem)
    if not solution.has_solution or moves(solution, base.num_arcs, kept) > budget:
        return within, stable_problem(base, kept, penalty)
    return solution, problem
