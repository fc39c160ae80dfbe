"""Capacity kept for urgent cases expected soon: last week's urgent cases, one week on, may
outbid a less urgent real case, never a real case as urgent, and are never proposed for."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from matcher.domain.forecast import EXPECTED_PREFIX, Reserve, expected_items
from matcher.services.engine import MatchingEngine
from matcher.services.matching import MatchingConfig, read_live_inputs
from matcher.storage.store import unit_of_work
from schemas.topics import Topics
from tests import factories as f
from tests import test_capacity_properties as cp
from tests.coordination_world import Clock
from tests.test_rebalancing import feed
from tests.test_unmatched_reasons import proposed, reasons

TOPICS = Topics("t")
MORNING = f.DAY - timedelta(hours=1)
WEEK_H = 7 * 24


def engine_with(db: Engine, share: float) -> tuple[MatchingEngine, Clock]:
    clock = Clock(MORNING - timedelta(days=7))
    engine = MatchingEngine(db=db, topics=TOPICS, clock=clock,
                            matching=MatchingConfig(topics=TOPICS, reserve=Reserve(share=share)))
    feed(engine, *f.hierarchy(), f.partner("p1"))
    return engine, clock


def nursing_case(case_id: str, *, urgency: int, vulnerability: int, hours_ago: float = 0
                 ) -> dict[str, Any]:
    """A case asking for two hours of nursing on the test day (a week earlier with
    `hours_ago`=168), opened at 07:00 that day."""
    def shifted(hour: float) -> str:
        return f.at(hour - hours_ago)
    item = f.item(need="nursing", urgency=urgency, splittable=False)
    item["window"] = {"start": shifted(8), "end": shifted(18)}
    item["deadline"] = shifted(18)
    event = f.case(case_id, items=[item], vulnerability=vulnerability)
    event["occurred_at"] = shifted(7)
    return event


def a_week_of_history(engine: MatchingEngine, clock: Clock) -> None:
    """Last week an urgent nursing case came in the morning; now it is the next week."""
    feed(engine, nursing_case("last-week", urgency=5, vulnerability=5, hours_ago=WEEK_H))
    clock.now = MORNING
    # The one nurse free this morning, for one visit.
    feed(engine, f.volunteer_offer("v1", "p1", skills=["nursing"], start=9, end=11))


@pytest.mark.parametrize("share", [0.0, 0.9])
def test_a_calm_case_gets_the_nurse_only_when_nothing_is_kept_back(db: Engine,
                                                                  share: float) -> None:
    engine, clock = engine_with(db, share)
    a_week_of_history(engine, clock)
    feed(engine, nursing_case("calm", urgency=1, vulnerability=1))
    engine.match_shard(f.CENTRE)
    if share == 0.0:
        assert [p["case_id"] for p in proposed(db)] == ["calm"]
        return
    assert proposed(db) == []
    calm = reasons(db)["calm"]
    assert (calm.reason_code, calm.taken_by) == ("capacity_taken", "expected_urgent_cases")
    assert "expected soon" in calm.reason


def test_a_real_urgent_case_takes_what_was_kept_and_expected_cases_are_never_proposed(
        db: Engine) -> None:
    engine, clock = engine_with(db, 0.9)
    a_week_of_history(engine, clock)
    feed(engine, nursing_case("calm", urgency=1, vulnerability=1),
         nursing_case("urgent", urgency=5, vulnerability=5))
    engine.match_shard(f.CENTRE)
    assert [p["case_id"] for p in proposed(db)] == ["urgent"]
    assert not any(p["case_id"].startswith(EXPECTED_PREFIX) for p in proposed(db))


def test_a_weekly_case_that_has_come_is_not_expected_again(db: Engine) -> None:
    engine, clock = engine_with(db, 0.9)
    a_week_of_history(engine, clock)
    # The same person's case of this week, calmer: it is what last week's case foretold.
    again = nursing_case("this-week", urgency=1, vulnerability=1)
    again["payload"]["beneficiary"]["pseudonym"] = "ben-last-week"
    feed(engine, again)
    engine.match_shard(f.CENTRE)
    assert [p["case_id"] for p in proposed(db)] == ["this-week"]


def test_nothing_is_kept_without_last_weeks_cases_or_below_the_urgency(db: Engine) -> None:
    engine, clock = engine_with(db, 0.9)
    feed(engine, nursing_case("last-week", urgency=Reserve().min_urgency - 1, vulnerability=5,
                              hours_ago=WEEK_H))
    clock.now = MORNING
    feed(engine, f.volunteer_offer("v1", "p1", skills=["nursing"], start=9, end=11),
         nursing_case("calm", urgency=1, vulnerability=1))
    engine.match_shard(f.CENTRE)
    assert [p["case_id"] for p in proposed(db)] == ["calm"]


def test_the_forecast_repeats_last_weeks_cases_one_week_on(db: Engine) -> None:
    engine, clock = engine_with(db, 0.9)
    a_week_of_history(engine, clock)
    with unit_of_work(db) as store:
        inputs = read_live_inputs(store, f.CENTRE, clock.now, reserve=Reserve(share=0.9))
        seen = store.items_opened_between(f.CENTRE, *Reserve().seen_between(clock.now),
                                          min_urgency=4)
    assert [row["case_id"] for row in seen] == ["last-week"]
    assert [item["case_id"] for item in inputs.expected] == [EXPECTED_PREFIX + "last-week"]
    [moved] = expected_items(seen, Reserve())
    for name in ("window_start", "window_end", "deadline", "opened_at"):
        assert moved[name] - seen[0][name] == timedelta(days=7)
    assert inputs.items == []  # last week's case itself is past: not live


# --- what is kept back never breaks a capacity -------------------------------------------------


def a_week_earlier(event: dict[str, Any]) -> dict[str, Any]:
    """The same case opened and asked for a week before."""
    def back(text: str) -> str:
        return (datetime.fromisoformat(text) - timedelta(days=7)).isoformat()
    items = [{**item, "window": {name: back(moment) for name, moment in item["window"].items()},
              "deadline": back(item["deadline"])} for item in event["payload"]["items"]]
    return {**event, "occurred_at": back(event["occurred_at"]),
            "payload": {**event["payload"], "case_id": "last-" + event["payload"]["case_id"],
                        "items": items}}


@cp.EXAMPLES
@given(seed=st.integers(0, 100_000), share=st.floats(0.05, 0.95))
def test_what_is_kept_for_expected_cases_never_over_commits_anyone(seed: int,
                                                                   share: float) -> None:
    rng = random.Random(seed)
    with cp.fresh_db() as db:
        clock = Clock(cp.NIGHT - timedelta(days=7))
        engine = MatchingEngine(db=db, topics=TOPICS, clock=clock, matching=MatchingConfig(
            topics=TOPICS, reserve=Reserve(share=share, min_urgency=rng.randint(1, 5))))
        feed(engine, *f.hierarchy(), f.partner("p1"), f.partner("p2"))
        feed(engine, *(a_week_earlier(case) for case in cp.visit_cases(rng, rng.randint(3, 12),
                                                                       first=100)))
        clock.now = cp.NIGHT
        offers = cp.volunteers_over_a_fortnight(rng)
        cases = cp.visit_cases(rng, rng.randint(6, 16))
        for wave in range(3):
            feed(engine, *offers[wave::3], *cases[wave::3])
            engine.match_shard(f.CENTRE)
            cp.approve_some(db, rng, 0.5)
        assert cp.weeks_over_limit(db) == {}
        assert cp.overlapping_visits(db) == []
        assert cp.items_over_served(db) == []
        assert cp.offers_over_committed(db) == []
        assert not any(p.case_id.startswith(EXPECTED_PREFIX) for p in cp.holding(db))
