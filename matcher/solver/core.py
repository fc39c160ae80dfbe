"""The one entry point: pick the solver that fits the problem and run it."""

from __future__ import annotations

from matcher.solver.cpsat import solve_cp_sat
from matcher.solver.flow import flow_obstacle, solve_min_cost_flow
from matcher.solver.lp import solve_lp_bound
from matcher.solver.problem import Problem, Solution

METHODS = ("auto", "min_cost_flow", "cp_sat", "lp_bound")


def solve(problem: Problem, *, method: str = "auto") -> Solution:
    """Solve with min-cost flow when the problem is a plain flow, else CP-SAT (or as asked)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    problem.validate()
    if method == "lp_bound":
        return solve_lp_bound(problem)
    obstacle = flow_obstacle(problem)
    if method == "min_cost_flow" and obstacle is not None:
        raise ValueError(f"min_cost_flow cannot solve this problem: {obstacle}")
    if method == "min_cost_flow" or (method == "auto" and obstacle is None):
        return solve_min_cost_flow(problem)
    return solve_cp_sat(problem)
