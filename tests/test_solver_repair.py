"""Flow-then-repair: feasible plans with a proven bound for large batches of whole needs."""

from __future__ import annotations

import numpy as np
import pytest

from matcher.solver import Problem, Status, solve, violations
from matcher.solver.core import REPAIR_MIN_ARCS
from matcher.solver.repair import repairable


def mixed_problem(seed: int, needs: int, offers: int, per_need: int) -> Problem:
    """Needs of 1-8 units, a third of them whole; candidate arcs with their own caps."""
    rng = np.random.default_rng(seed)
    arc_need = np.repeat(np.arange(needs), per_need)
    arc_offer = rng.integers(0, offers, size=len(arc_need))
    demand = rng.integers(1, 9, size=needs)
    return Problem(
        need_ids=[f"n{i}" for i in range(needs)], demand=demand,
        splittable=rng.random(needs) > 0.33, required=np.zeros(needs, dtype=bool),
        offer_ids=[f"o{j}" for j in range(offers)],
        capacity=rng.integers(2, 20, size=offers),
        arc_need=arc_need.astype(np.int32), arc_offer=arc_offer.astype(np.int32),
        arc_utility=rng.uniform(1, 10, size=len(arc_need)) / demand[arc_need],
        arc_use=np.ones(len(arc_need), dtype=np.int64),
        arc_capacity=rng.integers(1, 9, size=len(arc_need)),
        time_limit_s=10,
    )


@pytest.mark.parametrize("seed", range(5))
def test_repair_is_feasible_bounded_and_close_to_cp_sat(seed: int) -> None:
    problem = mixed_problem(seed, needs=60, offers=15, per_need=4)
    assert repairable(problem)
    repaired = solve(problem, method="flow_repair")
    exact = solve(problem, method="cp_sat")
    assert repaired.status is Status.FEASIBLE
    assert violations(problem, repaired.amount) == []
    assert repaired.objective <= repaired.bound + 1e-6
    assert exact.objective <= repaired.bound + 1e-6, "the relaxation bounds every plan"
    assert repaired.objective >= 0.9 * exact.objective


def test_auto_uses_repair_for_large_batches_of_whole_needs() -> None:
    problem = mixed_problem(1, needs=REPAIR_MIN_ARCS // 4 + 100, offers=2000, per_need=4)
    solution = solve(problem)
    assert solution.method == "flow_repair"
    assert violations(problem, solution.amount) == []
    assert solution.objective >= 0.95 * solution.bound


def test_repair_refuses_problems_that_are_not_flows_apart_from_whole_needs() -> None:
    problem = mixed_problem(2, needs=10, offers=4, per_need=3)
    required = Problem(**{**problem.__dict__, "required": np.ones(10, dtype=bool)})
    assert not repairable(required)
    with pytest.raises(ValueError, match="flow_repair"):
        solve(required, method="flow_repair")


def test_repair_ignores_a_previous_plan_hint() -> None:
    problem = mixed_problem(3, needs=40, offers=10, per_need=4)
    hinted = Problem(**{**problem.__dict__,
                        "previous": np.ones(problem.num_arcs, dtype=np.int64)})
    assert repairable(hinted)
    assert violations(hinted, solve(hinted, method="flow_repair").amount) == []


@pytest.mark.parametrize("seed", range(5))
def test_repair_keeps_every_pinned_amount(seed: int) -> None:
    problem = mixed_problem(seed, needs=60, offers=15, per_need=4)
    # Pin what a first plan gave on a few arcs, whole needs whole, as approved matches are.
    first = solve(problem, method="flow_repair").amount
    pins = np.zeros(problem.num_arcs, dtype=np.int64)
    chosen = np.flatnonzero(first > 0)[::3]
    pins[chosen] = first[chosen]
    pinned = Problem(**{**problem.__dict__, "pinned": pins})
    assert repairable(pinned)
    solution = solve(pinned, method="flow_repair")
    assert violations(pinned, solution.amount) == []
    assert np.all(solution.amount >= pins)
