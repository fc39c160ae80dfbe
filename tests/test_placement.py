"""Volunteer visits placed in time: a visit that no longer fits goes to the next volunteer."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine

from matcher.domain.frames import free_windows
from matcher.services.engine import MatchingEngine
from matcher.storage.store import ProposalRow, unit_of_work
from schemas.topics import Topics
from tests import factories as f

NOW = f.DAY


@pytest.fixture
def engine(sqlite_db: Engine) -> MatchingEngine:
    eng = MatchingEngine(db=sqlite_db, topics=Topics("t"), clock=lambda: NOW)
    for event in [*f.hierarchy(), f.partner("p1")]:
        eng.ingest(f.parse(event), topic="test")
    return eng


def feed(engine: MatchingEngine, event: dict[str, object]) -> None:
    engine.ingest(f.parse(event), topic="test")


def match(engine: MatchingEngine) -> list[ProposalRow]:
    for shard in engine.due_shards(0):
        engine.match_shard(shard)
    with unit_of_work(engine.db) as store:
        return store.proposals_where()


def visits_of(proposals: list[ProposalRow], case_id: str) -> list[tuple[str, datetime | None]]:
    return [(p.offer_id, p.window_start) for p in proposals if p.case_id == case_id]


def test_a_visit_that_no_longer_fits_goes_to_the_next_volunteer(engine: MatchingEngine) -> None:
    # Next door: free 9-13 with 6 hours. Further away: free 9-13 too.
    feed(engine, f.volunteer_offer("near", "p1", start=9, end=13, lat=29.052, lon=106.662))
    feed(engine, f.volunteer_offer("far", "p1", start=9, end=13, lat=29.07, lon=106.68))
    # Two visits in the same batch, both 9-11: the solver sees the near volunteer's hours,
    # not their diary, and may give them both; the one that no longer fits goes to the far one.
    feed(engine, f.case("c1", items=[f.item(quantity=2, start=9, end=11, splittable=False,
                                            urgency=5)]))
    feed(engine, f.case("c2", items=[f.item(quantity=2, start=9, end=11, splittable=False)]))

    proposals = match(engine)
    assert sorted(o for case in ("c1", "c2") for o, _ in visits_of(proposals, case)) == [
        "far", "near"]
    (moved,) = [p for p in proposals if p.offer_id == "far"]
    runner_ups = {r["offer_id"]: r["why_lost"] for r in moved.explanation["runner_ups"]}
    assert "no free time" in runner_ups["near"], "the solver gave both to the near volunteer"


def test_a_promised_visit_is_taken_out_of_the_volunteers_free_time(
        engine: MatchingEngine) -> None:
    feed(engine, f.volunteer_offer("near", "p1", start=9, end=13, lat=29.052, lon=106.662))
    feed(engine, f.volunteer_offer("far", "p1", start=9, end=13, lat=29.07, lon=106.68))
    feed(engine, f.case("c1", items=[f.item(quantity=2, start=9, end=11, splittable=False)]))
    assert [o for o, _ in visits_of(match(engine), "c1")] == ["near"]
    feed(engine, f.case("c2", items=[f.item(quantity=2, start=9, end=11, splittable=False)]))
    assert [o for o, _ in visits_of(match(engine), "c2")] == ["far"]


def test_without_another_volunteer_the_visit_is_dropped(engine: MatchingEngine) -> None:
    feed(engine, f.volunteer_offer("near", "p1", start=9, end=13, lat=29.052, lon=106.662))
    feed(engine, f.case("c1", items=[f.item(quantity=2, start=9, end=11, splittable=False)]))
    match(engine)
    feed(engine, f.case("c2", items=[f.item(quantity=2, start=9, end=11, splittable=False)]))

    assert visits_of(match(engine), "c2") == []


def test_free_windows_leave_out_promised_visits() -> None:
    assert free_windows([(9, 13)], [(9, 11)]) == [(11, 13)]
    assert free_windows([(9, 13)], [(10, 11), (12, 14)]) == [(9, 10), (11, 12)]
    assert free_windows([(9, 13), (15, 17)], [(8, 20)]) == []
    assert free_windows([(9, 13)], []) == [(9, 13)]
