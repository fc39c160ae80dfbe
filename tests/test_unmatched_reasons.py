"""An item left open hears what really stopped it; runner-ups say why they lost, once each."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import Engine

from matcher.services.engine import MatchingEngine
from matcher.storage.database import migrate, open_engine
from matcher.storage.store import unit_of_work
from matcher.storage.tables import need_items
from matcher.web.explain import runner_up_words, unmatched_words
from schemas.matches import Explanation, Unmatched
from schemas.topics import Topics
from tests import factories as f
from tests.coordination_world import Clock
from tests.test_explain_words import speak
from tests.test_rebalancing import events_on, feed

TOPICS = Topics("t")
MORNING = f.DAY - timedelta(hours=1)


def engine_on(db: Engine) -> MatchingEngine:
    engine = MatchingEngine(db=db, topics=TOPICS, clock=Clock(MORNING))
    feed(engine, *f.hierarchy(), f.partner("p1"), f.partner("p2"))
    return engine


def rice_case(case_id: str, *, urgency: int = 3, at: tuple[float, float] = (29.052, 106.662),
              quantity: float = 5, grid: str = f.GRID) -> dict[str, Any]:
    event = f.case(case_id, grid=grid, items=[f.item(kind="goods", need="rice", quantity=quantity,
                                          unit="kg", urgency=urgency, splittable=False)])
    event["payload"]["beneficiary"]["location"] = {"lat": at[0], "lon": at[1]}
    return event


def reasons(db: Engine) -> dict[str, Unmatched]:
    """The latest unmatched reason of each case, as published."""
    latest: dict[str, Unmatched] = {}
    for payload in events_on(db, TOPICS.unmatched, "need.unmatched"):
        latest[payload["case_id"]] = Unmatched.model_validate(payload)
    return latest


def proposed(db: Engine) -> list[dict[str, Any]]:
    return events_on(db, TOPICS.proposals, "match.proposed")


# --- capacity taken --------------------------------------------------------------------------


def test_capacity_taken_by_a_more_urgent_case_of_the_batch(db: Engine) -> None:
    engine = engine_on(db)
    feed(engine, f.goods_offer("g1", "p1", quantity=5), rice_case("urgent", urgency=5),
         rice_case("calm", urgency=2))
    engine.match_shard(f.CENTRE)
    assert [p["case_id"] for p in proposed(db)] == ["urgent"]
    calm = reasons(db)["calm"]
    assert calm.reason_code == "capacity_taken"
    assert calm.taken_by == "more_urgent_cases"
    assert "more urgent" in calm.reason and "urgency 5" in calm.reason


def test_capacity_taken_by_a_case_as_urgent_and_better_placed(db: Engine) -> None:
    engine = engine_on(db)
    feed(engine, f.goods_offer("g1", "p1", quantity=5), rice_case("near", at=(29.052, 106.662)),
         rice_case("far", at=(29.08, 106.69)))
    engine.match_shard(f.CENTRE)
    assert [p["case_id"] for p in proposed(db)] == ["near"]
    far = reasons(db)["far"]
    assert (far.reason_code, far.taken_by) == ("capacity_taken", "as_urgent_better_placed")


def test_capacity_held_by_earlier_commitments_even_when_the_offer_is_full(db: Engine) -> None:
    engine = engine_on(db)
    feed(engine, f.goods_offer("g1", "p1", quantity=5), rice_case("first"))
    engine.match_shard(f.CENTRE)
    feed(engine, rice_case("second", urgency=5))
    engine.match_shard(f.CENTRE)
    second = reasons(db)["second"]
    assert second.reason_code == "capacity_taken"  # not "no_offer": the full lot was eligible
    assert second.taken_by == "earlier_commitments"


def test_a_volunteer_whose_free_time_is_all_promised_counts_as_taken(db: Engine) -> None:
    engine = engine_on(db)
    # One volunteer, two offers on overlapping mornings: the first visit (9-11) leaves no
    # free time before 11, though both offers have hours left.
    feed(engine, f.volunteer_offer("v1", "p1", start=9, end=13, volunteer_id="vol-x"),
         f.volunteer_offer("v2", "p1", start=9, end=11, volunteer_id="vol-x"),
         f.case("first", items=[f.item(splittable=False)]))
    engine.match_shard(f.CENTRE)
    assert len(proposed(db)) == 1
    feed(engine, f.case("second", items=[f.item(splittable=False, end=11)]))
    engine.match_shard(f.CENTRE)
    second = reasons(db)["second"]
    # Not "no_time_overlap": the volunteer's time went to a visit promised earlier.
    assert (second.reason_code, second.taken_by) == ("capacity_taken", "earlier_commitments")


def test_a_volunteer_booked_at_other_hours_is_still_a_time_mismatch(db: Engine) -> None:
    engine = engine_on(db)
    feed(engine, f.volunteer_offer("v1", "p1", start=9, end=11, volunteer_id="vol-x"),
         f.case("first"))
    engine.match_shard(f.CENTRE)
    # An afternoon visit: the volunteer's morning could never have served it.
    feed(engine, f.case("afternoon", items=[f.item(start=14, end=18)]))
    engine.match_shard(f.CENTRE)
    assert reasons(db)["afternoon"].reason_code == "no_time_overlap"


def test_a_full_offer_that_fails_a_rule_does_not_count_as_taken(db: Engine) -> None:
    engine = engine_on(db)
    feed(engine, f.goods_offer("g1", "p1", quantity=5), rice_case("first"))
    engine.match_shard(f.CENTRE)
    # In workstation B's street: the full lot of workstation A never reached this case.
    feed(engine, rice_case("elsewhere", grid=f.GRID_B, at=(28.952, 106.602)))
    engine.match_shard(f.CENTRE)
    elsewhere = reasons(db)["elsewhere"]
    assert (elsewhere.reason_code, elsewhere.taken_by) == ("out_of_reach", None)


# --- the rule that excluded the last eligible offer --------------------------------------------


def test_the_reason_is_the_rule_that_stopped_the_offer_that_came_closest(db: Engine) -> None:
    engine = engine_on(db)
    far_away = [f.volunteer_offer(f"far{n}", "p1", lat=29.20, lon=106.80, radius_km=3)
                for n in range(5)]
    busy_nearby = f.volunteer_offer("near", "p2", start=19, end=21)  # in reach, wrong time
    feed(engine, *far_away, busy_nearby,
         f.case("c1", items=[f.item(start=9, end=12, quantity=2)]))
    engine.match_shard(f.CENTRE)
    c1 = reasons(db)["c1"]
    assert (c1.reason_code, c1.taken_by) == ("no_time_overlap", None)


def test_no_offer_at_all_is_said_plainly(db: Engine) -> None:
    engine = engine_on(db)
    feed(engine, rice_case("c1"))
    engine.match_shard(f.CENTRE)
    assert reasons(db)["c1"].reason_code == "no_offer"


# --- runner-ups ---------------------------------------------------------------------------------


def physio_offer(offer_id: str, partner_id: str, slots: int, *, place: tuple[float, float]
                 ) -> dict[str, Any]:
    offer = f.service_offer(offer_id, partner_id, places=1)
    offer["payload"]["slots"] = [
        {"window": {"start": f.at(13 + n * 0.5), "end": f.at(13.5 + n * 0.5)}, "places": 1}
        for n in range(slots)]
    offer["payload"]["place"] = {"lat": place[0], "lon": place[1]}
    return offer


def physio_case(case_id: str, urgency: int = 3, at: tuple[float, float] = (29.052, 106.662)
                ) -> dict[str, Any]:
    event = f.case(case_id, items=[f.item(kind="service", need="physiotherapy", quantity=1,
                                          unit="sessions", start=12, end=18, urgency=urgency)])
    event["payload"]["beneficiary"]["location"] = {"lat": at[0], "lon": at[1]}
    return event


def runner_ups_of(db: Engine) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """case id -> (chosen offer, runner-ups) of each proposal."""
    return {p["case_id"]: (p["offer_id"], Explanation.model_validate(
        p["explanation"]).model_dump()["runner_ups"]) for p in proposed(db)}


def test_runner_ups_are_other_offers_each_once_saying_how_much_farther(db: Engine) -> None:
    engine = engine_on(db)
    feed(engine, physio_offer("s-near", "p1", 4, place=(29.052, 106.662)),
         physio_offer("s-mid", "p2", 4, place=(29.06, 106.67)),
         physio_offer("s-far", "p2", 4, place=(29.07, 106.68)), physio_case("c1"))
    engine.match_shard(f.CENTRE)
    chosen, runner_ups = runner_ups_of(db)["c1"]
    assert chosen == "s-near"
    offers = [r["offer_id"] for r in runner_ups]
    assert offers == ["s-mid", "s-far"]  # one each, though each has four slots
    assert all(r["lost_on"] == "travel" for r in runner_ups)
    assert 0 < runner_ups[0]["km_further"] < runner_ups[1]["km_further"]
    assert "km farther" in runner_ups[0]["why_lost"]


def test_a_runner_up_whose_place_went_to_a_more_urgent_case_says_so(db: Engine) -> None:
    engine = engine_on(db)
    # The urgent case reaches only the near place; the calm one, a little farther on, both.
    feed(engine, physio_offer("s-near", "p1", 1, place=(29.052, 106.662)),
         physio_offer("s-far", "p2", 1, place=(29.09, 106.70)),
         physio_case("urgent", urgency=5), physio_case("calm", urgency=2, at=(29.06, 106.67)))
    engine.match_shard(f.CENTRE)
    chosen, runner_ups = runner_ups_of(db)["calm"]
    assert chosen == "s-far"
    lost = {r["offer_id"]: r for r in runner_ups}["s-near"]
    assert (lost["lost_on"], lost["competing_urgency"]) == ("urgency", 5)
    assert "more urgent case (urgency 5)" in lost["why_lost"]


@given(offers=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 3)), min_size=1, max_size=5),
       cases=st.lists(st.integers(1, 5), min_size=1, max_size=5))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_runner_ups_never_repeat_and_never_name_the_chosen_offer(
        tmp_path_factory: Any, offers: list[tuple[int, int]], cases: list[int]) -> None:
    db = open_engine(f"sqlite:///{tmp_path_factory.mktemp('prop') / 'm.db'}")
    migrate(db)
    engine = engine_on(db)
    feed(engine, *(physio_offer(f"s{n}", "p1", slots, place=(29.052 + 0.004 * shift, 106.662))
                   for n, (slots, shift) in enumerate(offers)),
         *(physio_case(f"c{n}", urgency) for n, urgency in enumerate(cases)))
    engine.match_shard(f.CENTRE)
    for chosen, runner_ups in runner_ups_of(db).values():
        names = [r["offer_id"] for r in runner_ups]
        assert len(names) == len(set(names))
        assert chosen not in names
        assert all(r["why_lost"] and r["lost_on"] for r in runner_ups)
    db.dispose()


# --- who took it, kept and shown in the reader's words -------------------------------------------


def test_who_took_the_capacity_is_kept_with_the_item(db: Engine) -> None:
    engine = engine_on(db)
    feed(engine, f.goods_offer("g1", "p1", quantity=5), rice_case("urgent", urgency=5),
         rice_case("calm", urgency=2))
    engine.match_shard(f.CENTRE)
    with unit_of_work(db) as store:
        taken = dict(store.conn.execute(select(need_items.c.case_id,
                                               need_items.c.unmatched_taken_by)).all())
    assert taken == {"urgent": None, "calm": "more_urgent_cases"}


def test_the_console_says_who_took_the_capacity_in_chinese() -> None:
    speak("zh-CN")
    assert unmatched_words("capacity_taken", "rice", "more_urgent_cases") == (
        "大米：合适的资源已被占用，用于更紧急的个案")
    assert unmatched_words("out_of_reach", "rice") == "大米：附近没有足够近的资源"
    lost = runner_up_words(SimpleNamespace(urgency=2), {
        "offer_id": "s-near", "score": 60.0, "why_lost": "...", "lost_on": "urgency",
        "competing_urgency": 5}, None)
    assert lost.why == "被更紧急的个案（紧急程度 5）优先使用"
    speak("en")
    assert unmatched_words("capacity_taken", "rice", "earlier_commitments") == (
        "rice: the suitable offers are already taken, used for matches made earlier")
