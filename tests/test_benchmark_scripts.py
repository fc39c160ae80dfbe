"""Smoke tests of the benchmark scripts at a tiny scale: they run and their numbers cohere.

No wall-clock limits are asserted here; the benchmarks themselves report the timings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from matcher.services.matching import MatchingConfig
from matcher.simulator import build_district
from matcher.solver import Problem, relaxation_bound, solve, violations
from schemas.topics import Topics

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import plain
import quality_month
import speed


def test_quality_month_judges_the_engine_and_both_greedy_baselines(tmp_path: Path) -> None:
    month = quality_month.run_month(tmp_path, days=2, scale=0.1, every=25, seed=3)
    outcomes = quality_month.judged(month)
    bound = quality_month.hindsight_bound(
        quality_month.state_at_end(month.engine.engine.db, month.end), month.published,
        month.start)

    assert month.events > 100 and all(side.batches > 0 for side in month.sides)
    assert [o.name for o in outcomes] == ["engine", "engine + nightly rebalance",
                                          "greedy (FCFS)", "greedy (urgency first)"]
    for outcome in outcomes:
        assert outcome.allocations > 0 and 0.0 < outcome.fulfilment <= bound.fulfilment
        assert 0.0 <= outcome.grid_gini <= 1.0 and outcome.mean_km >= 0.0
        assert outcome.violations == {}, outcome.name
    assert 0.0 < bound.fulfilment <= 1.0
    text = quality_month.table(outcomes, bound, month.sides)
    assert "| engine |" in text and "| greedy (urgency first) |" in text

    # Knowing the month in advance, in whole units and real diaries: the plain judge finds
    # no rule broken, and the plan stays under the LP bound.
    known = quality_month.hindsight(
        quality_month.state_at_end(month.engine.engine.db, month.end), month.published,
        month.start)
    plan = quality_month.hindsight_plan(known, month.world, 10.0)
    judged = plain.judge(plan.name, month.world, plan.given, month.end)
    assert judged.allocations > 0 and judged.violations == {}
    assert 0.0 < judged.fulfilment <= bound.fulfilment + 1e-9
    assert "| hindsight LP bound |" in text and "Violations: none." in text


def test_priority() -> None:
    assert quality_month.priority(5, 5) == 25


@pytest.fixture(scope="module")
def small_state() -> speed.State:
    return speed.synthetic_state(items=400, offers=200, days=2, seed=5,
                                 district=build_district(seed=5, workstations=3))


def test_one_batch_compares_the_engine_flow_with_a_bare_min_cost_flow(
        small_state: speed.State) -> None:
    result = speed.one_batch(small_state, repeats=1)

    assert result.arcs > 0 and result.items > 0
    assert result.flow.raw_objective == pytest.approx(result.flow.engine_objective, rel=1e-6)
    assert 0.0 <= result.cp_sat_gap < 1.0
    assert "bare `SimpleMinCostFlow`" in speed.one_batch_table(result)


def test_flow_then_repair_keeps_every_rule_and_stays_under_the_lp_bound_on_a_small_case() -> None:
    # Two whole needs of 2 units compete for one offer of 3; a splittable need takes the rest.
    # The flow serves b half on x, half on y (LP 9.5); the repair must give b one offer.
    problem = Problem(
        need_ids=["a", "b", "c"], demand=np.array([2, 2, 3]),
        splittable=np.array([False, False, True]), required=np.zeros(3, dtype=np.bool_),
        offer_ids=["x", "y"], capacity=np.array([3, 2]),
        arc_need=np.array([0, 1, 1, 2, 2]), arc_offer=np.array([0, 0, 1, 0, 1]),
        arc_utility=np.array([3.0, 2.0, 1.0, 0.5, 0.5]), arc_use=np.ones(5, dtype=np.int64),
        arc_capacity=np.array([2, 2, 2, 3, 3]),
    )
    repaired = solve(problem, method="flow_repair")

    assert violations(problem, repaired.amount) == []
    assert repaired.bound == pytest.approx(relaxation_bound(problem))
    assert repaired.objective <= repaired.bound + 1e-9
    # Whole a on x (6.0) survives the repair; the exact optimum here is 8.5.
    assert 6.0 <= repaired.objective <= solve(problem).objective + 1e-9


def test_district_batch_phases_mirror_run_batch(tmp_path: Path,
                                                small_state: speed.State) -> None:
    db = speed.fresh_database(tmp_path / "state.db")
    speed.bulk_load(db, small_state)
    config = MatchingConfig(topics=Topics("t"))

    phased = speed.timed_in_rollback(
        db, lambda store: speed.phased_batch(store, speed.SHARD, config, small_state.now))
    _, report = speed.run_batch_total(db, config, small_state.now)

    # Items whose deadline passed before `now` are not live: the batch never reads them.
    live_items = sum(1 for case in small_state.cases for item in case.items
                     if item.deadline > small_state.now)
    assert phased.items == live_items == report.items
    assert phased.arcs == report.arcs > 0
    assert phased.objective == pytest.approx(report.objective, rel=1e-6)
    assert set(phased.phases.seconds) == set(speed.PHASES)
    table = speed.district_table([("engine as is", phased)], 0.1, None, "")
    assert "**total (state to proposals)**" in table
