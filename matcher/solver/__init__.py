"""Pure solver core: matches needs to offers over candidate arcs, knowing nothing of charity.

`solve` uses OR-Tools min-cost flow when the problem is a plain transportation problem
and CP-SAT otherwise; `relaxation_bound` gives an LP upper bound for gap reports.
"""

from matcher.solver.core import METHODS, solve
from matcher.solver.lp import relaxation_bound
from matcher.solver.problem import Problem, Solution, Status, objective_value, violations

__all__ = [
    "METHODS",
    "Problem",
    "Solution",
    "Status",
    "objective_value",
    "relaxation_bound",
    "solve",
    "violations",
]
