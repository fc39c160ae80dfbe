"""The solver core reaches the published optima of OR-Library GAP instances."""

from __future__ import annotations

import pytest

from matcher.solver import Status, relaxation_bound, solve, violations
from matcher.solver.gap import (
    KNOWN_OPTIMA,
    GapInstance,
    default_gap_folder,
    load_gap,
    read_gap_file,
)

GAP_DIR = default_gap_folder()
# Generous: proving optimality takes about 8 s on 2 quiet cores, and CI shares its machine.
TIME_LIMIT_S = 90.0

def instance(file: str, number: int) -> GapInstance:
    """The number-th (1-based) instance of a GAP file."""
    return load_gap(file, GAP_DIR)[number - 1]


def assert_reaches_optimum(gap: GapInstance) -> None:
    """Solve within the time limit; the plan must be proven optimal at the published value."""
    problem = gap.to_problem(time_limit_s=TIME_LIMIT_S, workers=2)
    solution = solve(problem)
    assert solution.method == "cp_sat"
    assert solution.status == Status.OPTIMAL, f"{gap.name}: {solution.status} {solution.note}"
    assert violations(problem, solution.amount) == []
    found, bound = gap.score(solution)
    assert found == gap.known_optimum
    assert bound == found
    assert solution.build_s + solution.solve_s < TIME_LIMIT_S + 5


def test_every_file_parses_to_its_known_instance_count() -> None:
    for file, optima in KNOWN_OPTIMA.items():
        instances = read_gap_file(GAP_DIR / f"{file}.txt")
        assert len(instances) == len(optima)
        for gap in instances:
            m, n = gap.value.shape
            assert gap.use.shape == (m, n) and gap.capacity.shape == (m,)
            assert gap.maximise == (file in ("gap1", "gap12"))


def test_gap_instance_becomes_required_whole_jobs() -> None:
    gap = instance("gapa", 1)
    problem = gap.to_problem()
    assert problem.num_needs == 100 and problem.num_offers == 5 and problem.num_arcs == 500
    assert problem.required.all() and not problem.splittable.any()
    # Costs are negated so that minimising cost is maximising utility.
    assert problem.arc_utility[0] == -gap.value[0, 0]


@pytest.mark.parametrize("number", range(1, 6))
def test_gap1_reaches_optimum(number: int) -> None:
    assert_reaches_optimum(instance("gap1", number))


@pytest.mark.parametrize(("file", "number"), [("gap12", 1), ("gap12", 3), ("gapa", 3), ("gapa", 6)])
def test_larger_instances_reach_optimum(file: str, number: int) -> None:
    assert_reaches_optimum(instance(file, number))


@pytest.mark.slow
def test_hardest_gapb_instance_reaches_optimum() -> None:
    # 10 agents x 200 jobs: about 8 s to prove optimal on 2 cores.
    assert_reaches_optimum(instance("gapb", 4))


def test_lp_bound_brackets_the_optimum() -> None:
    gap = instance("gap1", 1)
    optimum = KNOWN_OPTIMA["gap1"][0]
    bound = relaxation_bound(gap.to_problem())
    assert optimum <= bound < optimum * 1.05
