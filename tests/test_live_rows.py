"""A batch reads again only the live rows whose version changed since the shard's last batch:
what it reads through the shard's cache is exactly what a fresh read gives."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from matcher.services.engine import MatchingEngine
from matcher.services.matching import read_live_inputs
from matcher.storage.store import LiveRows, snapshot, unit_of_work
from matcher.storage.tables import need_items
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


def test_what_time_takes_out_of_play_leaves_the_cache_as_it_leaves_a_fresh_read(
        sqlite_db: Engine) -> None:
    """Nothing is written when an offer's hours are over or an item's deadline passes; the
    rows read through the cache still lose them exactly when a fresh read does."""
    now = [NOW]
    engine = MatchingEngine(db=sqlite_db, topics=Topics("t"), clock=lambda: now[0])
    for event in [*f.hierarchy(), f.partner("p1")]:
        engine.ingest(f.parse(event), topic="test")
    # Ends within the hour after the first read, so they fall between whole reads.
    for n, (offer_end, deadline) in enumerate([(10, 10.25), (10.5, 10.75), (12.1, 12.1),
                                               (20, 21)]):
        engine.ingest(f.parse(f.volunteer_offer(f"v{n}", "p1", start=9, end=offer_end)),
                      topic="test")
        engine.ingest(f.parse(f.case(f"c{n}", items=[f.item("i1", start=8, end=deadline)])),
                      topic="test")
    cache = LiveRows()
    seen = []
    for hour in [9.9, 10.1, 10.3, 10.6, 10.8, 11.95, 12.05, 12.15, 20.5, 21.5]:
        now[0] = NOW + timedelta(hours=hour)
        if hour == 12.05:
            engine.ingest(f.parse(f.case("c9", items=[f.item("i1", start=8, end=18)])),
                          topic="test")
        with snapshot(sqlite_db) as store:
            cached = read_live_inputs(store, f.CENTRE, now[0], cache=cache)
            assert cached == read_live_inputs(store, f.CENTRE, now[0])
        seen.append((len(cached.offers), len(cached.items)))
    assert seen[0] == (4, 4) and seen[-1] == (0, 0)


def test_a_write_that_took_no_revision_is_read_at_the_hourly_whole_read(
        sqlite_db: Engine) -> None:
    """The hourly whole read bounds the harm of a writer that forgot to take a revision."""
    engine = MatchingEngine(db=sqlite_db, topics=Topics("t"), clock=lambda: NOW)
    for event in [*f.hierarchy(), f.partner("p1"), f.case("c1")]:
        engine.ingest(f.parse(event), topic="test")
    cache = LiveRows()

    def reason(minutes: float) -> object:
        with snapshot(sqlite_db) as store:
            [item] = read_live_inputs(store, f.CENTRE, NOW + timedelta(minutes=minutes),
                                      cache=cache).items
        return item["unmatched_reason"]

    assert reason(0) is None
    with unit_of_work(sqlite_db) as store:
        store.conn.execute(need_items.update().values(unmatched_reason="written behind"))
    assert reason(59) is None
    assert reason(61) == "written behind"
