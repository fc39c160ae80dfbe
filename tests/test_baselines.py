"""The first-come-first-served baseline of the benchmarks: small cases checked by hand."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from matcher.services.engine import MatchingEngine
from matcher.storage.store import ProposalRow, unit_of_work
from schemas.topics import Topics
from tests import factories as f

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from baselines import greedy_batch

NOW = f.DAY


@pytest.fixture
def engine(sqlite_db: Engine) -> MatchingEngine:
    eng = MatchingEngine(db=sqlite_db, topics=Topics("t"), clock=lambda: NOW)
    for event in [*f.hierarchy(), f.partner("p1"), f.partner("p2", home=f.WS, kind="merchant")]:
        feed(eng, event)
    return eng


def feed(engine: MatchingEngine, event: dict[str, Any], opened_hour: float | None = None
         ) -> None:
    """Apply an event; a case can be given the hour it was opened (its arrival)."""
    if opened_hour is not None:
        event = {**event, "occurred_at": f.at(opened_hour)}
    engine.ingest(f.parse(event), topic="test")


def greedy(engine: MatchingEngine) -> list[ProposalRow]:
    """Run one baseline batch and return every proposal, by case and offer."""
    with engine.writing() as store:
        greedy_batch(store, f.CENTRE, NOW)
        made = store.proposals_where()
    return sorted(made, key=lambda p: (p.case_id, p.item_id, p.offer_id))


def served(proposals: list[ProposalRow]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for p in proposals:
        totals[p.case_id] = totals.get(p.case_id, 0.0) + p.amount
    return totals


def test_first_come_first_served_even_when_a_later_case_is_more_urgent(
        engine: MatchingEngine) -> None:
    # One volunteer with 3 hours; two cases each need 2 hours in one go. The later case
    # is the more urgent one, and comes first in the store's (case id) order.
    feed(engine, f.volunteer_offer("o1", "p1", start=9, end=12, hours=3))
    whole = [f.item(quantity=2, start=9, end=12, splittable=False)]
    feed(engine, f.case("c2-early", items=whole, vulnerability=1), opened_hour=6)
    urgent = [f.item(quantity=2, start=9, end=12, splittable=False, urgency=5)]
    feed(engine, f.case("c1-late", items=urgent, vulnerability=5), opened_hour=7)

    proposals = greedy(engine)

    assert [(p.case_id, p.offer_id, p.amount) for p in proposals] == [("c2-early", "o1", 2.0)]


def test_a_splittable_item_takes_from_several_offers_until_served(
        engine: MatchingEngine) -> None:
    feed(engine, f.goods_offer("g1", "p2", quantity=20))
    feed(engine, f.goods_offer("g2", "p2", quantity=20))
    rice = [f.item(kind="goods", need="rice", quantity=30, unit="kg")]
    feed(engine, f.case("c1", items=rice))

    proposals = greedy(engine)

    assert sorted(p.amount for p in proposals) == [10.0, 20.0]
    assert {p.offer_id for p in proposals} == {"g1", "g2"}


def test_an_unsplittable_item_skips_an_offer_too_small_for_all_of_it(
        engine: MatchingEngine) -> None:
    # The small offer is next door (better score), but has 1.5 hours for a 2-hour visit.
    feed(engine, f.volunteer_offer("small", "p1", hours=1.5, lat=29.052, lon=106.662))
    feed(engine, f.volunteer_offer("big", "p1", hours=3, lat=29.07, lon=106.68))
    feed(engine, f.case("c1", items=[f.item(quantity=2, start=9, end=12, splittable=False)]))

    proposals = greedy(engine)

    assert [(p.offer_id, p.amount) for p in proposals] == [("big", 2.0)]


def test_no_volunteer_is_in_two_places_at_once(engine: MatchingEngine) -> None:
    # Capacity would allow both 2-hour visits, but both must fit between 9 and 11.
    feed(engine, f.volunteer_offer("o1", "p1", start=9, end=13, hours=6))
    for number in (1, 2):
        feed(engine, f.case(f"c{number}", items=[f.item(quantity=2, start=9, end=11)]),
             opened_hour=5 + number)

    proposals = greedy(engine)

    assert served(proposals) == {"c1": 2.0}
    (visit,) = proposals
    assert visit.window_start is not None and visit.window_end is not None
    assert (visit.window_end - visit.window_start).total_seconds() == 2 * 3600


def test_proposals_hold_capacity_for_the_next_batch(engine: MatchingEngine) -> None:
    feed(engine, f.goods_offer("g1", "p2", quantity=20))
    feed(engine, f.case("c1", items=[f.item(kind="goods", need="rice", quantity=15,
                                            unit="kg")]))
    assert served(greedy(engine)) == {"c1": 15.0}
    feed(engine, f.case("c2", items=[f.item(kind="goods", need="rice", quantity=15,
                                            unit="kg")]))

    assert served(greedy(engine)) == {"c1": 15.0, "c2": 5.0}


def test_the_baseline_writes_no_outgoing_events(engine: MatchingEngine) -> None:
    feed(engine, f.goods_offer("g1", "p2", quantity=20))
    feed(engine, f.case("c1", items=[f.item(kind="goods", need="rice", quantity=5,
                                            unit="kg")]))
    with unit_of_work(engine.db) as store:
        before = store.count("outbox")
    greedy(engine)
    with unit_of_work(engine.db) as store:
        assert store.count("outbox") == before
        assert store.count("proposals") == 1
