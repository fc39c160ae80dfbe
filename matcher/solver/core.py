"""The one entry point: pick the solver that fits the problem and run it."""

from __future__ import annotations

import numpy as np

from matcher.solver.cpsat import solve_cp_sat
from matcher.solver.flow import flow_obstacle, solve_min_cost_flow
from matcher.solver.lp import solve_lp_bound
from matcher.solver.problem import Problem, Solution, Status
from matcher.solver.repair import repairable, solve_flow_then_repair

METHODS = ("auto", "min_cost_flow", "cp_sat", "flow_repair", "lp_bound")

# From this many arcs on, a batch broken only by whole needs goes to flow-then-repair: CP-SAT
# seldom proves such batches optimal within a batch's time limit, may find no plan at all,
# and every proposal of the batch waits for it (at a few thousand arcs it already runs to
# its limit, where flow-then-repair takes a tenth of a second with a proven bound).
REPAIR_MIN_ARCS = 2_000


def solve(problem: Problem, *, method: str = "auto") -> Solution:
    """Min-cost flow when the problem is a plain flow; flow-then-repair for large batches
    that only whole needs keep from being one; CP-SAT otherwise (or as asked)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    problem.validate()
    if method == "auto" and problem.num_arcs == 0:
        return nothing_to_plan()
    if method == "lp_bound":
        return solve_lp_bound(problem)
    obstacle = flow_obstacle(problem)
    if method == "min_cost_flow" and obstacle is not None:
        raise ValueError(f"min_cost_flow cannot solve this problem: {obstacle}")
    if method == "min_cost_flow" or (method == "auto" and obstacle is None):
        return solve_min_cost_flow(problem)
    if method == "flow_repair" or (method == "auto" and problem.num_arcs >= REPAIR_MIN_ARCS
                                   and repairable(problem)):
        if not repairable(problem):
            raise ValueError("flow_repair needs a problem that only whole needs keep from "
                             "being a flow (no pins, previous plan, conflicts or use > 1)")
        return solve_flow_then_repair(problem)
    return solve_cp_sat(problem)


def nothing_to_plan() -> Solution:
    """A problem without arcs: the empty plan, optimal without asking a solver (most batches
    of a quiet shard; a solver's set-up alone costs more than the rest of such a batch)."""
    return Solution(status=Status.OPTIMAL, objective=0.0, bound=0.0,
                    amount=np.zeros(0, dtype=np.int64), method="none", build_s=0.0, solve_s=0.0)
