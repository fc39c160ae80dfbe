"""Keeping today's plan, as the solver sees it: kept arcs worth a bonus and the move cap."""

from __future__ import annotations

import numpy as np
import pytest

from matcher.solver import Problem
from matcher.solver.stability import KeptArcs, keep_all, moves, solve_within_cap

# Three people each hold a pending proposal worth 1 (offers 0-2); each has a free offer of
# their own that would be worth more (offers 3-5: 5, 8 and 12), so every move stands alone.
GAINS = [5.0, 8.0, 12.0]


def today_and_better() -> tuple[Problem, KeptArcs]:
    needs, current = [0, 1, 2], [0, 1, 2]
    base = Problem(
        need_ids=["n0", "n1", "n2"], demand=np.ones(3, dtype=np.int64),
        splittable=np.ones(3, dtype=bool), required=np.zeros(3, dtype=bool),
        offer_ids=[f"o{i}" for i in range(6)], capacity=np.ones(6, dtype=np.int64),
        arc_need=np.asarray(needs + needs), arc_offer=np.asarray([*current, 3, 4, 5]),
        arc_utility=np.asarray([1.0, 1.0, 1.0, *GAINS]), arc_use=np.ones(6, dtype=np.int64),
        arc_capacity=np.ones(6, dtype=np.int64))
    kept = KeptArcs(pair=np.asarray(current), units=np.ones(3, dtype=np.int64),
                    per_point=np.ones(3))
    return base, kept


def moved_people(base: Problem, kept: KeptArcs, penalty: float, budget: int | None
                 ) -> tuple[list[int], int]:
    solution, _, held_back = solve_within_cap(base, kept, penalty, budget)
    assert solution.has_solution
    assert moves(solution, base.num_arcs, kept) == int(
        np.count_nonzero(solution.amount[base.num_arcs:] == 0))
    return np.flatnonzero(solution.amount[base.num_arcs:] == 0).tolist(), held_back


def test_without_a_cap_every_move_that_pays_is_made() -> None:
    base, kept = today_and_better()
    assert moved_people(base, kept, penalty=0.0, budget=None) == ([0, 1, 2], 0)


def test_a_move_must_gain_more_than_the_penalty() -> None:
    base, kept = today_and_better()
    # Moving gains 4, 7 and 11 points (the new value less today's 1).
    assert moved_people(base, kept, penalty=6.0, budget=None) == ([1, 2], 0)
    assert moved_people(base, kept, penalty=20.0, budget=None) == ([], 0)


@pytest.mark.parametrize(("budget", "moved"), [(0, []), (1, [2]), (2, [1, 2]), (3, [0, 1, 2])])
def test_the_cap_keeps_only_the_most_valuable_moves(budget: int, moved: list[int]) -> None:
    base, kept = today_and_better()
    assert moved_people(base, kept, penalty=0.0, budget=budget) == (moved, 3 - len(moved))


def test_keeping_everything_is_todays_plan() -> None:
    base, kept = today_and_better()
    _, problem, _ = solve_within_cap(base, kept, 0.0, None)
    current = keep_all(problem, base.num_arcs, kept, "kept")
    assert moves(current, base.num_arcs, kept) == 0
    assert current.amount[:base.num_arcs].sum() == 0
