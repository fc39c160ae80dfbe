"""A batch reads again only the live rows whose version changed since the shard's last batch:
what it reads through the shard's cache is exactly what a fresh read gives."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from matcher.services.engine import MatchingEngine
from matcher.services.matching import read_live_inputs
from matcher.storage.store import LiveRows, snapshot, unit_of_work
from schemas.topics import Topics
from tests import factories as f

NOW = f.DAY


def test_rows_read_through_the_cache_equal_a_fresh_read_after_every_kind_of_change(
        sqlite_db: Engine) -> None:
    engine = MatchingEngine(db=sqlite_db, topics=Topics("t"), clock=lambda: NOW)

    def feed(event: dict[str, object]) -> None:
        engine.ingest(f.parse(event), topic="test")

    for event in [*f.hierarchy(), f.partner("p1")]:
        feed(event)
    for n in range(4):
        feed(f.volunteer_offer(f"v{n}", "p1"))
        feed(f.case(f"c{n}", items=[f.item("i1"), f.item("i2", quantity=1)]))
    cache = LiveRows()

    def same_as_fresh() -> None:
        with snapshot(sqlite_db) as store:
            cached = read_live_inputs(store, "centre", NOW, cache=cache)
            fresh = read_live_inputs(store, "centre", NOW)
        assert cached == fresh
        assert cached.items and cached.offers

    same_as_fresh()
    same_as_fresh()  # all from the cache
    feed(f.case("c1", items=[f.item("i1", quantity=5)], version=2, event_type="case.updated"))
    feed(f.closure("c2"))
    feed(f.withdrawal("v0", "p1"))
    feed(f.volunteer_offer("v9", "p1"))
    feed(f.case("c9"))
    with unit_of_work(sqlite_db) as store:
        store.set_unmatched("c3", "i2", code="no_offer", reason="nothing offered")
    same_as_fresh()


def test_a_new_limit_on_an_offer_that_is_over_counts_through_the_cache(
        sqlite_db: Engine) -> None:
    """An offer whose hours are over still gives this week's hours, so its stated weekly
    limit counts; the partner lowering it is read at the next batch."""
    now = [NOW]
    engine = MatchingEngine(db=sqlite_db, topics=Topics("t"), clock=lambda: now[0])
    for event in [*f.hierarchy(), f.partner("p1"), f.volunteer_offer("v1", "p1", hours=6),
                  f.case("c1", items=[f.item("i1", quantity=2, start=9, end=12)])]:
        engine.ingest(f.parse(event), topic="test")
    engine.match_shard(f.CENTRE)
    now[0] = NOW + timedelta(hours=13)  # the offer's availability is over
    cache = LiveRows()

    def limits() -> dict[str, float]:
        with snapshot(sqlite_db) as store:
            cached = read_live_inputs(store, f.CENTRE, now[0], cache=cache)
            assert cached == read_live_inputs(store, f.CENTRE, now[0])
        assert not cached.offers
        return cached.limits

    assert limits() == {"vol-v1": 6.0}
    engine.ingest(f.parse(f.volunteer_offer("v1", "p1", hours=2, version=2,
                                            event_type="offer.updated")), topic="test")
    assert limits() == {"vol-v1": 2.0}
    engine.ingest(f.parse(f.withdrawal("v1", "p1", version=3)), topic="test")
    assert limits() == {}


def test_a_forecast_window_sliding_forward_reads_what_a_fresh_read_gives(
        sqlite_db: Engine) -> None:
    """The window of past cases a forecast repeats slides with the clock; read through the
    cache, it holds exactly the items a whole read of the window gives, in the same order."""
    engine = MatchingEngine(db=sqlite_db, topics=Topics("t"), clock=lambda: NOW)
    first = NOW - timedelta(days=2)
    for event in [*f.hierarchy(), f.partner("p1")]:
        engine.ingest(f.parse(event), topic="test")
    for n in range(100):  # a case every 25 minutes, of urgency 1 to 5
        event = f.case(f"c{n:03}", items=[f.item("i1", urgency=1 + n % 5),
                                          f.item("i2", urgency=1 + (n + 2) % 5)])
        event["occurred_at"] = (first + timedelta(minutes=25 * n)).isoformat()
        engine.ingest(f.parse(event), topic="test")
    engine.ingest(f.parse(f.closure("c010")), topic="test")  # whatever became of it
    cache = LiveRows()
    start = first - timedelta(hours=2)
    for step_min in [0, 7, 1, 55, 200, 13, 61, 0, 300, 30, 90, 400, 25, 1]:
        start += timedelta(minutes=step_min)
        end = start + timedelta(hours=6)
        with snapshot(sqlite_db) as store:
            cached = store.items_opened_between("centre", start, end, min_urgency=3,
                                                cache=cache)
            fresh = store.items_opened_between("centre", start, end, min_urgency=3)
        assert cached == fresh
    assert cached, "the window ends among the cases"
