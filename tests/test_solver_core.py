"""Unit tests of the pure solver core: each rule where it bites and where it doesn't."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from matcher.cli_solve import solve_command
from matcher.solver import (
    Problem,
    Solution,
    Status,
    relaxation_bound,
    solve,
    violations,
)
from matcher.solver.greedy import greedy_plan
from matcher.solver.jsonio import (
    dump_solution,
    load_problem,
    problem_from_dict,
    problem_to_dict,
    solution_to_dict,
)
from matcher.solver.prepare import arc_columns


def make_problem(
    *,
    demand: list[int],
    capacity: list[int],
    arcs: list[tuple[int, int, float]],
    use: list[int] | None = None,
    splittable: list[bool] | None = None,
    required: list[bool] | None = None,
    **extra: Any,
) -> Problem:
    """A small problem from (need, offer, utility) triples; needs n0.., offers o0..."""
    n, m = len(demand), len(capacity)
    return Problem(
        need_ids=[f"n{i}" for i in range(n)],
        demand=np.array(demand, dtype=np.int64),
        splittable=np.array(splittable if splittable is not None else [True] * n),
        required=np.array(required if required is not None else [False] * n),
        offer_ids=[f"o{j}" for j in range(m)],
        capacity=np.array(capacity, dtype=np.int64),
        arc_need=np.array([a[0] for a in arcs], dtype=np.int32),
        arc_offer=np.array([a[1] for a in arcs], dtype=np.int32),
        arc_utility=np.array([a[2] for a in arcs], dtype=np.float64),
        arc_use=np.array(use if use is not None else [1] * len(arcs), dtype=np.int64),
        **extra,
    )


def solved(problem: Problem, method: str = "auto") -> Solution:
    """Solve and check that any plan returned keeps every rule."""
    solution = solve(problem, method=method)
    if solution.has_solution:
        assert violations(problem, solution.amount) == []
        assert solution.bound >= solution.objective - 1e-9
    return solution


def plan(problem: Problem, solution: Solution) -> dict[tuple[str, str], int]:
    """Assignments as {(need, offer): amount}."""
    return {(n, o): a for n, o, a in solution.assignments(problem)}


def random_flow_problem(seed: int, *, integer_utility: bool = True) -> Problem:
    """A random transportation problem (splittable, use 1), sometimes with pins."""
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(1, 9)), int(rng.integers(1, 7))
    pairs = [(i, j) for i in range(n) for j in range(m) if rng.random() < 0.6]
    k = len(pairs)
    utility = rng.integers(-5, 30, k) if integer_utility else rng.normal(8.0, 6.0, k)
    demand = rng.integers(0, 6, n)
    capacity = rng.integers(0, 7, m)
    pinned = None
    if k and rng.random() < 0.4:
        pinned = np.zeros(k, dtype=np.int64)
        a = int(rng.integers(0, k))
        pinned[a] = min(int(demand[pairs[a][0]]), int(capacity[pairs[a][1]]))
    arc_capacity = None
    if k and rng.random() < 0.4:
        arc_capacity = rng.integers(0, 4, k)
        if pinned is not None:
            arc_capacity = np.maximum(arc_capacity, pinned)
    return make_problem(
        demand=demand.tolist(),
        capacity=capacity.tolist(),
        arcs=[(i, j, float(u)) for (i, j), u in zip(pairs, utility, strict=True)],
        pinned=pinned,
        arc_capacity=arc_capacity,
    )


# --- capacity --------------------------------------------------------------------------


def test_capacity_caps_what_an_offer_gives() -> None:
    problem = make_problem(demand=[5], capacity=[3], arcs=[(0, 0, 1.0)])
    solution = solved(problem)
    assert solution.status == Status.OPTIMAL
    assert plan(problem, solution) == {("n0", "o0"): 3}


def test_capacity_counts_use_per_unit_served() -> None:
    problem = make_problem(demand=[5], capacity=[5], arcs=[(0, 0, 1.0)], use=[2])
    assert plan(problem, solved(problem)) == {("n0", "o0"): 2}


def test_capacity_does_not_bind_when_large_enough() -> None:
    problem = make_problem(demand=[2, 2], capacity=[10], arcs=[(0, 0, 1.0), (1, 0, 1.0)])
    solution = solved(problem)
    assert solution.objective == 4.0
    assert solution.method == "min_cost_flow"


def test_demand_caps_what_a_need_receives_across_offers() -> None:
    problem = make_problem(demand=[3], capacity=[2, 2], arcs=[(0, 0, 1.0), (0, 1, 2.0)])
    assert plan(problem, solved(problem)) == {("n0", "o0"): 1, ("n0", "o1"): 2}


@pytest.mark.parametrize("method", ["min_cost_flow", "cp_sat"])
def test_arc_capacity_caps_a_single_arc(method: str) -> None:
    problem = make_problem(
        demand=[5], capacity=[9, 9], arcs=[(0, 0, 3.0), (0, 1, 1.0)], arc_capacity=np.array([2, 9])
    )
    assert plan(problem, solved(problem, method)) == {("n0", "o0"): 2, ("n0", "o1"): 3}


def test_whole_need_skips_an_arc_capped_below_its_demand() -> None:
    problem = make_problem(
        demand=[3],
        capacity=[9, 9],
        arcs=[(0, 0, 3.0), (0, 1, 1.0)],
        splittable=[False],
        arc_capacity=np.array([2, 3]),
    )
    assert plan(problem, solved(problem)) == {("n0", "o1"): 3}


# --- non-splittable needs ----------------------------------------------------------------


def test_non_splittable_need_is_not_split_over_offers() -> None:
    arcs = [(0, 0, 1.0), (0, 1, 1.0)]
    split = make_problem(demand=[3], capacity=[2, 2], arcs=arcs)
    whole = make_problem(demand=[3], capacity=[2, 2], arcs=arcs, splittable=[False])
    assert solved(split).objective == 3.0
    solution = solved(whole)
    assert solution.status == Status.OPTIMAL
    assert solution.objective == 0.0
    assert solution.method == "cp_sat"


def test_non_splittable_need_goes_whole_to_one_offer() -> None:
    problem = make_problem(
        demand=[3], capacity=[2, 3], arcs=[(0, 0, 5.0), (0, 1, 1.0)], splittable=[False]
    )
    assert plan(problem, solved(problem)) == {("n0", "o1"): 3}


def test_whole_need_with_use_fits_only_where_demand_times_use_fits() -> None:
    problem = make_problem(
        demand=[2],
        capacity=[7, 8],
        arcs=[(0, 0, 9.0), (0, 1, 1.0)],
        use=[4, 4],
        splittable=[False],
    )
    assert plan(problem, solved(problem)) == {("n0", "o1"): 2}


# --- required needs ----------------------------------------------------------------------


def test_required_need_is_served_even_at_a_loss() -> None:
    optional = make_problem(demand=[2], capacity=[5], arcs=[(0, 0, -1.0)])
    required = make_problem(demand=[2], capacity=[5], arcs=[(0, 0, -1.0)], required=[True])
    assert solved(optional).objective == 0.0
    solution = solved(required)
    assert solution.status == Status.OPTIMAL
    assert plan(required, solution) == {("n0", "o0"): 2}
    assert solution.objective == -2.0


def test_required_need_that_cannot_be_met_is_infeasible() -> None:
    problem = make_problem(demand=[4], capacity=[3], arcs=[(0, 0, 1.0)], required=[True])
    solution = solved(problem)
    assert solution.status == Status.INFEASIBLE
    assert not solution.has_solution
    assert solution.objective == -np.inf


def test_required_whole_need_without_room_is_infeasible() -> None:
    problem = make_problem(
        demand=[3],
        capacity=[2, 2],
        arcs=[(0, 0, 1.0), (0, 1, 1.0)],
        splittable=[False],
        required=[True],
    )
    assert solved(problem).status == Status.INFEASIBLE


def test_required_need_without_candidates_is_infeasible_with_a_reason() -> None:
    problem = make_problem(demand=[1, 1], capacity=[3], arcs=[(0, 0, 1.0)], required=[False, True])
    solution = solved(problem)
    assert solution.status == Status.INFEASIBLE
    assert "n1" in solution.note


# --- pinned (approved) matches -----------------------------------------------------------


@pytest.mark.parametrize("method", ["min_cost_flow", "cp_sat"])
def test_pinned_amount_stays_even_when_a_better_offer_exists(method: str) -> None:
    problem = make_problem(
        demand=[2], capacity=[5, 5], arcs=[(0, 0, 1.0), (0, 1, 5.0)], pinned=np.array([1, 0])
    )
    solution = solved(problem, method)
    assert plan(problem, solution) == {("n0", "o0"): 1, ("n0", "o1"): 1}
    assert solution.objective == 6.0


@pytest.mark.parametrize("method", ["min_cost_flow", "cp_sat"])
def test_pins_count_against_capacity(method: str) -> None:
    problem = make_problem(
        demand=[2, 3],
        capacity=[3],
        arcs=[(0, 0, 1.0), (1, 0, 10.0)],
        pinned=np.array([2, 0]),
    )
    assert plan(problem, solved(problem, method)) == {("n0", "o0"): 2, ("n1", "o0"): 1}


@pytest.mark.parametrize("method", ["min_cost_flow", "cp_sat", "lp_bound"])
def test_pins_beyond_capacity_are_infeasible(method: str) -> None:
    problem = make_problem(
        demand=[2, 2], capacity=[3], arcs=[(0, 0, 1.0), (1, 0, 1.0)], pinned=np.array([2, 2])
    )
    solution = solved(problem, method)
    assert solution.status == Status.INFEASIBLE
    assert "o0" in solution.note or method == "lp_bound"


@pytest.mark.parametrize("method", ["min_cost_flow", "cp_sat"])
def test_pin_beyond_its_arc_capacity_is_infeasible(method: str) -> None:
    problem = make_problem(
        demand=[3],
        capacity=[5],
        arcs=[(0, 0, 1.0)],
        pinned=np.array([3]),
        arc_capacity=np.array([2]),
    )
    assert solved(problem, method).status == Status.INFEASIBLE


def test_pin_on_a_whole_need_serves_all_of_it() -> None:
    problem = make_problem(
        demand=[3],
        capacity=[5, 5],
        arcs=[(0, 0, 1.0), (0, 1, 9.0)],
        splittable=[False],
        pinned=np.array([3, 0]),
    )
    assert plan(problem, solved(problem)) == {("n0", "o0"): 3}


# --- change penalty ----------------------------------------------------------------------


def _replan(new_utility: float, penalty: float = 1.0, **extra: Any) -> Problem:
    """n0 is served by o0 (utility 10) in the current plan; o1 now offers `new_utility`."""
    return make_problem(
        demand=[1],
        capacity=[1, 1],
        arcs=[(0, 0, 10.0), (0, 1, new_utility)],
        previous=np.array([1, 0]),
        change_penalty=penalty,
        **extra,
    )


@pytest.mark.parametrize("splittable", [True, False])
def test_small_gain_keeps_the_previous_plan(splittable: bool) -> None:
    problem = _replan(10.5, splittable=[splittable])
    solution = solved(problem)
    assert solution.method == "cp_sat"
    assert plan(problem, solution) == {("n0", "o0"): 1}
    assert solution.objective == 10.0


@pytest.mark.parametrize("splittable", [True, False])
def test_large_gain_moves_away_from_the_previous_plan(splittable: bool) -> None:
    problem = _replan(15.0, splittable=[splittable])
    solution = solved(problem)
    assert plan(problem, solution) == {("n0", "o1"): 1}
    # Moving costs 1 to leave o0 and 1 to join o1.
    assert solution.objective == pytest.approx(13.0)


def test_previous_plan_without_penalty_is_just_a_flow() -> None:
    problem = _replan(10.5, penalty=0.0)
    solution = solved(problem)
    assert solution.method == "min_cost_flow"
    assert plan(problem, solution) == {("n0", "o1"): 1}


# --- conflicts ---------------------------------------------------------------------------


def _two_slots(conflicts: list[np.ndarray]) -> Problem:
    """One volunteer with two slots (offers), each wanted by a different need."""
    return make_problem(
        demand=[2, 2], capacity=[2, 2], arcs=[(0, 0, 3.0), (1, 1, 2.0)], conflicts=conflicts
    )


def test_conflicting_arcs_are_not_both_used() -> None:
    problem = _two_slots([np.array([0, 1])])
    solution = solved(problem)
    assert solution.method == "cp_sat"
    assert plan(problem, solution) == {("n0", "o0"): 2}


def test_arcs_without_conflict_are_both_used() -> None:
    problem = _two_slots([])
    assert plan(problem, solved(problem)) == {("n0", "o0"): 2, ("n1", "o1"): 2}


def test_conflict_between_whole_needs() -> None:
    problem = make_problem(
        demand=[1, 1, 1],
        capacity=[1, 1, 1],
        arcs=[(0, 0, 3.0), (1, 1, 2.0), (2, 2, 2.0)],
        splittable=[False, False, False],
        conflicts=[np.array([0, 1, 2])],
    )
    assert plan(problem, solved(problem)) == {("n0", "o0"): 1}


# --- flow and CP-SAT agree ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(25))
def test_flow_and_cp_sat_agree_on_flow_problems(seed: int) -> None:
    problem = random_flow_problem(seed)
    flow, cp = solved(problem, "min_cost_flow"), solved(problem, "cp_sat")
    assert flow.status == cp.status
    if flow.has_solution:
        assert flow.status == Status.OPTIMAL
        assert flow.objective == pytest.approx(cp.objective)
        assert flow.bound == flow.objective


@pytest.mark.parametrize("seed", range(5))
def test_flow_and_cp_sat_agree_with_fractional_utilities(seed: int) -> None:
    problem = random_flow_problem(100 + seed, integer_utility=False)
    flow, cp = solved(problem, "min_cost_flow"), solved(problem, "cp_sat")
    # Utilities are rounded to 0.001 per unit, so optima may differ by that much per unit.
    units = max(1, int(problem.demand.sum()))
    assert flow.objective == pytest.approx(cp.objective, abs=1e-3 * units)


def test_auto_picks_flow_for_flows_and_cp_sat_otherwise() -> None:
    problem = random_flow_problem(3)
    assert solve(problem).method == "min_cost_flow"
    non_flow = make_problem(demand=[1], capacity=[1], arcs=[(0, 0, 1.0)], use=[2])
    assert solve(non_flow).method == "cp_sat"


def test_forcing_min_cost_flow_on_a_non_flow_says_why() -> None:
    problem = make_problem(demand=[1], capacity=[1], arcs=[(0, 0, 1.0)], required=[True])
    with pytest.raises(ValueError, match="required"):
        solve(problem, method="min_cost_flow")
    with pytest.raises(ValueError, match="unknown method"):
        solve(problem, method="simplex")


# --- LP relaxation bound -----------------------------------------------------------------


def mixed_from_flow(seed: int, base_seed: int, **extra: Any) -> Problem:
    """A random flow problem made hard: more capacity, uses of 1-2, half the needs whole."""
    rng = np.random.default_rng(seed)
    base = random_flow_problem(base_seed)
    k = base.num_arcs
    use = rng.integers(1, 3, k).tolist()
    splittable = (rng.random(base.num_needs) < 0.5).tolist()
    return make_problem(
        demand=base.demand.tolist(),
        capacity=(base.capacity * 2).tolist(),
        arcs=list(zip(base.arc_need.tolist(), base.arc_offer.tolist(),
                      base.arc_utility.tolist(), strict=True)),
        use=use,
        splittable=splittable,
        **{name: make(base, rng, k) for name, make in extra.items()},
    )


@pytest.mark.parametrize("seed", range(8))
def test_lp_bound_is_above_the_integer_optimum(seed: int) -> None:
    problem = mixed_from_flow(seed, 200 + seed)
    solution = solved(problem, "cp_sat")
    assert solution.status == Status.OPTIMAL
    assert relaxation_bound(problem) >= solution.objective - 1e-6


def test_lp_bound_method_gives_a_bound_and_no_plan() -> None:
    # Two whole needs that each take 2 of an offer's 3: one fits, the LP fits one and a half.
    problem = make_problem(
        demand=[1, 1],
        capacity=[3],
        arcs=[(0, 0, 1.0), (1, 0, 1.0)],
        use=[2, 2],
        splittable=[False, False],
    )
    solution = solve(problem, method="lp_bound")
    assert solution.status == Status.UNKNOWN
    assert solution.bound == pytest.approx(1.5)
    assert not solution.amount.any()
    assert solved(problem).objective == 1.0


# --- greedy start ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_greedy_start_keeps_every_rule(seed: int) -> None:
    problem = mixed_from_flow(
        seed, 300 + seed,
        pinned=lambda base, rng, k: base.pinned,
        conflicts=lambda base, rng, k: [rng.choice(k, size=min(k, 3), replace=False)] if k
        else [],
    )
    arcs = arc_columns(problem)
    x = greedy_plan(problem, arcs)
    assert x is not None  # no required needs, so greedy always has a plan
    assert violations(problem, x * arcs.unit) == []


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"demand": np.array([1, 2, 3])}, "demand has 3 entries, expected 1"),
        ({"arc_offer": np.array([4], dtype=np.int32)}, r"arc_offer\[0\] = 4 is not a offer"),
        ({"capacity": np.array([-1])}, r"capacity\[0\] = -1 is negative"),
        ({"arc_use": np.array([0])}, "uses at least 1"),
        ({"arc_utility": np.array([np.nan])}, "not a finite number"),
        ({"pinned": np.array([1, 1])}, "pinned has 2 entries"),
        ({"demand": np.array([1.5])}, "demand must hold integers"),
        ({"conflicts": [np.array([0, 3])]}, r"conflicts\[0\]\[1\] = 3"),
        ({"time_limit_s": 0.0}, "time_limit_s"),
        (
            {
                "need_ids": ["n0", "n0"],
                "demand": np.array([1, 1]),
                "splittable": np.array([True, True]),
                "required": np.array([False, False]),
            },
            "need_ids must be unique",
        ),
    ],
)
def test_validate_names_what_is_wrong(change: dict[str, Any], message: str) -> None:
    base = make_problem(demand=[1], capacity=[1], arcs=[(0, 0, 1.0)])
    fields = {name: getattr(base, name) for name in base.__dataclass_fields__}
    problem = Problem(**{**fields, **change})
    with pytest.raises(ValueError, match=message):
        problem.validate()
    with pytest.raises(ValueError, match=message):
        solve(problem)


def test_empty_problem_solves_to_nothing() -> None:
    problem = make_problem(demand=[], capacity=[], arcs=[])
    for method in ("auto", "cp_sat"):
        solution = solved(problem, method)
        assert solution.status == Status.OPTIMAL
        assert solution.objective == 0.0


def test_needs_and_offers_without_arcs_are_planned_without_a_solver() -> None:
    problem = make_problem(demand=[2, 1], capacity=[3], arcs=[])
    quick, asked = solve(problem), solve(problem, method="cp_sat")
    assert quick.method == "none" and asked.method == "cp_sat"
    for solution in (quick, asked):
        assert (solution.status, solution.objective, len(solution.amount)) == \
            (Status.OPTIMAL, 0.0, 0)


# --- JSON in and out ---------------------------------------------------------------------

EXAMPLE = {
    "needs": [{"id": "n1", "demand": 1, "splittable": False, "required": False}],
    "offers": [{"id": "o1", "capacity": 36}],
    "arcs": [{"need": "n1", "offer": "o1", "utility": 17, "use": 8}],
    "time_limit_s": 10,
}


def test_json_example_solves() -> None:
    problem = load_problem(json.dumps(EXAMPLE))
    out = solution_to_dict(solve(problem), problem)
    assert out == {
        "status": "OPTIMAL",
        "objective": 17.0,
        "bound": 17.0,
        "method": "cp_sat",
        "assignments": [{"need": "n1", "offer": "o1", "amount": 1}],
    }


def test_json_defaults() -> None:
    problem = problem_from_dict(
        {
            "needs": [{"id": "a"}],
            "offers": [{"id": "x", "capacity": 2}],
            "arcs": [{"need": "a", "offer": "x", "utility": 1.5}],
        }
    )
    assert problem.demand.tolist() == [1]
    assert problem.splittable.tolist() == [True]
    assert problem.required.tolist() == [False]
    assert problem.arc_use.tolist() == [1]
    assert problem.pinned is None and problem.previous is None


def test_json_round_trip_keeps_the_problem() -> None:
    problem = make_problem(
        demand=[2, 1, 3],
        capacity=[2, 4],
        arcs=[(0, 0, 3.0), (0, 1, 1.25), (1, 1, 2.0), (2, 0, 4.0), (2, 1, 0.5)],
        use=[1, 1, 2, 1, 1],
        splittable=[True, False, True],
        required=[False, True, False],
        pinned=np.array([1, 0, 0, 0, 0]),
        previous=np.array([1, 0, 1, 0, 2]),
        change_penalty=0.25,
        conflicts=[np.array([3, 4])],
        time_limit_s=5.0,
        arc_capacity=np.array([2, 1, 1, 3, 3]),
    )
    again = load_problem(json.dumps(problem_to_dict(problem)))
    assert problem_to_dict(again) == problem_to_dict(problem)
    first, second = solved(problem), solved(again)
    assert second.objective == pytest.approx(first.objective)
    assert json.loads(dump_solution(second, again)) == solution_to_dict(first, problem)


def test_json_groups_share_capacity_across_offers() -> None:
    # One volunteer with two offers of 3 hours each, but 4 hours a week in all.
    week = {
        "needs": [{"id": "visit-a", "demand": 3}, {"id": "visit-b", "demand": 3}],
        "offers": [{"id": "mon", "capacity": 3}, {"id": "thu", "capacity": 3}],
        "arcs": [{"need": "visit-a", "offer": "mon", "utility": 2},
                 {"need": "visit-b", "offer": "thu", "utility": 1}],
        "groups": [{"id": "volunteer-7", "capacity": 4, "offers": ["mon", "thu"]}],
    }
    problem = problem_from_dict(week)
    assert problem.offer_group is not None and problem.offer_group.tolist() == [0, 0]
    out = solution_to_dict(solve(problem), problem)
    assert sum(a["amount"] for a in out["assignments"]) == 4
    assert out["objective"] == pytest.approx(3 * 2 + 1 * 1)
    without = problem_from_dict({k: v for k, v in week.items() if k != "groups"})
    assert solution_to_dict(solve(without), without)["objective"] == pytest.approx(9)
    again = problem_from_dict(problem_to_dict(problem))
    assert problem_to_dict(again)["groups"] == [{"id": "g0", "capacity": 4,
                                                 "offers": ["mon", "thu"]}]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(groups=[{"id": "g", "capacity": 1, "offers": ["ghost"]}]),
         r"groups\[0\].offers\[0\]: unknown offer id 'ghost'"),
        (lambda d: d.update(groups=[{"id": "g", "capacity": 1, "offers": ["o1"]},
                                    {"id": "h", "capacity": 1, "offers": ["o1"]}]),
         "already in a group"),
        (lambda d: d.update(groups=[{"id": "g", "offers": ["o1"]}]), "missing 'capacity'"),
        (lambda d: d["arcs"][0].update(need="ghost"), "unknown need id 'ghost'"),
        (lambda d: d["arcs"][0].update(offer="ghost"), "unknown offer id 'ghost'"),
        (lambda d: d["needs"].append({"id": "n1"}), "duplicate need id 'n1'"),
        (lambda d: d["offers"][0].pop("capacity"), "missing 'capacity'"),
        (lambda d: d["needs"][0].update(demand="two"), r"needs\[0\].demand must be a number"),
        (lambda d: d["needs"][0].update(demand=1.5), "whole number"),
        (lambda d: d["arcs"].append(dict(d["arcs"][0])), "duplicate arc"),
        (lambda d: d.update(conflicts=[[["n1", "o2"]]]), "no arc 'n1' -> 'o2'"),
        (lambda d: d.pop("arcs"), "missing 'arcs'"),
        (lambda d: d["offers"][0].update(capacity=-3), "negative"),
    ],
)
def test_json_errors_are_clear(mutate: Any, message: str) -> None:
    data = json.loads(json.dumps(EXAMPLE))
    mutate(data)
    with pytest.raises(ValueError, match=message):
        problem_from_dict(data)


def test_json_reports_an_unknown_objective_as_null() -> None:
    problem = make_problem(demand=[4], capacity=[3], arcs=[(0, 0, 1.0)], required=[True])
    out = solution_to_dict(solve(problem), problem)
    assert out["status"] == "INFEASIBLE"
    assert out["objective"] is None and out["bound"] is None
    assert out["assignments"] == []


def test_gap_is_relative_to_the_bound() -> None:
    amount = np.zeros(0, dtype=np.int64)
    feasible = Solution(Status.FEASIBLE, 90.0, 100.0, amount, "cp_sat", 0.0, 0.0)
    assert feasible.gap == pytest.approx(0.1)
    unknown = Solution(Status.UNKNOWN, -np.inf, 100.0, amount, "cp_sat", 0.0, 0.0)
    assert unknown.gap == np.inf


def test_json_that_is_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        load_problem("{needs: ")


# --- the solve command -------------------------------------------------------------------


def _app() -> typer.Typer:
    """The command registered the way the CLI registers it."""
    app = typer.Typer()
    app.command("solve")(solve_command)
    app.command("noop")(lambda: None)  # two commands, so "solve" stays a sub-command
    return app


def test_solve_command_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(EXAMPLE))
    result = CliRunner().invoke(_app(), ["solve", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["assignments"] == [{"need": "n1", "offer": "o1", "amount": 1}]


def test_solve_command_reads_stdin() -> None:
    result = CliRunner().invoke(
        _app(), ["solve", "-", "--method", "cp_sat"], input=json.dumps(EXAMPLE)
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "OPTIMAL"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["solve", "-"], "{broken", "not valid JSON"),
        (
            ["solve", "-"],
            json.dumps({**EXAMPLE, "arcs": [{"need": "x", "offer": "o1", "utility": 1}]}),
            "unknown need",
        ),
        (["solve", "/nonexistent/problem.json"], "", "No such file"),
        (["solve", "-", "--method", "magic"], json.dumps(EXAMPLE), "unknown method"),
    ],
)
def test_solve_command_rejects_bad_input_with_exit_2(
    args: list[str], stdin: str, message: str
) -> None:
    result = CliRunner().invoke(_app(), args, input=stdin)
    assert result.exit_code == 2
    assert message in result.stderr
