"""Which approved matches give way to a shrinking update, weeks of the district's calendar,
shared capacity in the solver, and every change of a proposal's fate published."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from matcher.domain.commitments import Held, has_begun, may_release, slot_moves, to_release
from matcher.domain.weeks import week_label, week_of, week_start
from matcher.services import decisions
from matcher.settings import Settings
from matcher.solver import Problem, solve
from matcher.solver.problem import violations
from matcher.storage.store import unit_of_work
from matcher.storage.tables import outbox, proposals
from matcher.web.app import build_web
from schemas.matches import Decision, ProposalStatus
from tests import factories as f
from tests.coordination_world import PASSWORD, build_world, propose
from tests.coordination_world import feed as feed_one
from tests.test_capacity_properties import NIGHT, engine_at
from tests.test_rebalancing import TOPICS, feed

T0 = datetime(2030, 6, 3, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def held(key: str, amount: float, *, releasable: bool = True, minutes: int = 0,
         pending: bool = False) -> Held:
    return Held(key=key, amount=amount, releasable=releasable,
                since=T0 + timedelta(minutes=minutes), pending=pending)


# --- to_release ---------------------------------------------------------------------------------


def test_nothing_is_released_while_the_matches_fit() -> None:
    assert to_release([held("a", 5), held("b", 5)], 10) == []


def test_the_fewest_matches_are_released_largest_first() -> None:
    # 20 held against 15: one match of 6 covers the excess where two of 3 would be needed.
    assert to_release([held("a", 3), held("b", 3), held("c", 6), held("d", 8)], 15) == ["d"]


def test_among_equal_matches_the_latest_approved_gives_way() -> None:
    assert to_release([held("early", 4, minutes=0), held("late", 4, minutes=9)], 4) == ["late"]


def test_pending_proposals_give_way_before_approved_matches() -> None:
    chosen = to_release([held("approved", 4), held("pending", 2, pending=True)], 4)
    assert chosen == ["pending"]


def test_a_match_released_for_nothing_is_kept_after_all() -> None:
    # 11 held against 6: largest first takes 8, which alone suffices; the 1 taken before a
    # bigger one is found would not be needed and stays.
    assert to_release([held("a", 8), held("b", 2), held("c", 1)], 6) == ["a"]
    # 14 against 6: 6 then 5 cover the 8 too many... and the 3 is not needed.
    assert sorted(to_release([held("a", 6), held("b", 5), held("c", 3)], 6)) == ["a", "b"]


def test_begun_matches_are_never_released_even_when_they_alone_exceed() -> None:
    assert to_release([held("done", 8, releasable=False), held("later", 2)], 5) == ["later"]


def test_what_has_begun() -> None:
    start = T0 + timedelta(hours=1)
    assert has_begun(kind="volunteer", status="proposed", window_start=start, now=start)
    assert not has_begun(kind="volunteer", status="approved", window_start=start, now=T0)
    assert has_begun(kind="goods", status="approved", window_start=start, now=T0)
    assert not has_begun(kind="goods", status="proposed", window_start=T0, now=start)
    assert has_begun(kind="service", status="fulfilled", window_start=None, now=T0)
    assert may_release(kind="goods", status="approved", window_start=T0, now=start)
    assert not may_release(kind="volunteer", status="approved", window_start=T0, now=start)


# --- weeks --------------------------------------------------------------------------------------


def test_weeks_turn_at_monday_midnight_in_the_district() -> None:
    sunday_night = datetime(2030, 6, 9, 23, 59, tzinfo=SHANGHAI)
    monday = datetime(2030, 6, 10, 0, 0, tzinfo=SHANGHAI)
    assert week_of(monday) == week_of(sunday_night) + 1
    assert week_label(week_of(monday)) == "2030-W24"
    assert week_start(week_of(sunday_night)) == datetime(2030, 6, 3, tzinfo=SHANGHAI)
    # 23:30 UTC on Sunday is already Monday in Chongqing.
    assert week_of(datetime(2030, 6, 9, 16, 30, tzinfo=UTC)) == week_of(monday)


# --- the solver's shared capacity ---------------------------------------------------------------


def two_offers_of_one_person(group_capacity: int) -> Problem:
    return Problem(
        need_ids=["a", "b"], demand=[8, 8], splittable=[True, False], required=[False, False],
        offer_ids=["monday", "tuesday"], capacity=[8, 8], arc_need=[0, 1], arc_offer=[0, 1],
        arc_utility=[1.0, 2.0], arc_use=[1, 1], offer_group=[0, 0],
        group_capacity=[group_capacity])


@pytest.mark.parametrize("method", ["auto", "cp_sat", "flow_repair"])
def test_a_shared_group_caps_what_its_offers_give_together(method: str) -> None:
    problem = two_offers_of_one_person(10)
    solution = solve(problem, method=method)
    assert violations(problem, solution.amount) == []
    assert int(solution.amount.sum()) == 10  # the whole need (8) and 2 of the other


def test_a_group_with_room_for_both_does_not_bind() -> None:
    solution = solve(two_offers_of_one_person(16))
    assert solution.amount.tolist() == [8, 8]


def test_a_plan_over_a_group_is_a_violation() -> None:
    assert violations(two_offers_of_one_person(10), np.asarray([8, 8])) == [
        "offer group 0 loaded 16 > capacity 10"]


# --- every change of a proposal's fate is an event ----------------------------------------------


def events(db: Engine, event_type: str) -> list[dict[str, object]]:
    with unit_of_work(db) as store:
        rows = store.conn.execute(select(outbox.c.key, outbox.c.value, outbox.c.topic).where(
            outbox.c.event_type == event_type)).all()
    return [{"key": k, "topic": t, **json.loads(v)["payload"]} for k, v, t in rows]


def one_proposal(db: Engine) -> str:
    engine = engine_at(db)
    feed(engine, f.goods_offer("lot", "p1", quantity=10),
         f.case("c1", items=[f.item(kind="goods", need="rice", unit="kg", quantity=4)]))
    engine.match_shard(f.CENTRE)
    with unit_of_work(db) as store:
        [p] = store.proposals_where(proposals.c.status == "proposed")
    return p.proposal_id


def test_goods_proposals_say_when_and_where_to_hand_over(db: Engine) -> None:
    one_proposal(db)
    [proposed] = events(db, "match.proposed")
    assert proposed["window"] is not None and proposed["place"] is not None


@pytest.mark.parametrize("decision", [Decision.REJECT, Decision.REQUEST_ALTERNATIVE])
def test_a_rejection_is_published_on_the_proposals_topic_keyed_by_case(
        db: Engine, decision: Decision) -> None:
    engine = build_world(db)
    with unit_of_work(db) as store:
        propose(store, "p1", "case-a")
        decisions.decide(store, decision=decision, proposal_id="p1", coordinator_id="c-grid",
                         reason="too far", clock=engine.clock, topics=engine.topics)
    with unit_of_work(db) as store:
        rows = store.conn.execute(select(outbox.c.topic, outbox.c.key, outbox.c.value).where(
            outbox.c.event_type == "match.rejected")).all()
    [(topic, key, value)] = rows
    payload = json.loads(value)["payload"]
    assert (topic, key) == (engine.topics.proposals, "case-a")
    assert payload["decided_by"] == "c-grid" and "too far" in payload["reason"]
    assert payload["partner_id"] == "p1"


def test_an_expiry_is_published_on_the_proposals_topic(db: Engine) -> None:
    proposal_id = one_proposal(db)
    settings = Settings(topic_prefix=TOPICS.prefix, proposal_expire_after_s=60,
                        proposal_escalate_after_s=30)
    with unit_of_work(db) as store:
        report = decisions.sweep_pending(store, NIGHT + timedelta(hours=1), settings)
    assert report.expired == [proposal_id]
    [expired] = events(db, "match.expired")
    assert expired["proposal_id"] == proposal_id and expired["key"] == "c1"
    assert expired["topic"] == TOPICS.proposals and expired["reason_code"]


def test_lowering_a_quantity_releases_the_fewest_approved_matches(db: Engine) -> None:
    engine = engine_at(db)
    feed(engine, f.goods_offer("a", "p1", quantity=3), f.goods_offer("b", "p2", quantity=5),
         f.case("c1", items=[f.item(kind="goods", need="rice", unit="kg", quantity=8)]))
    engine.match_shard(f.CENTRE)
    with unit_of_work(db) as store:
        for p in store.proposals_where(proposals.c.status == "proposed"):
            store.set_proposal_status(p.proposal_id, ProposalStatus.APPROVED, at=NIGHT, by="c")
    lowered = f.case("c1", version=2, event_type="case.updated", items=[
        f.item(kind="goods", need="rice", unit="kg", quantity=4)])
    feed(engine, lowered)
    [released] = events(db, "match.released")
    # Releasing the 5 kg match alone brings 8 down to 3 <= 4; releasing 3 kg would not do.
    assert (released["offer_id"], released["reason_code"]) == ("b", "quantity_reduced")
    assert released["partner_id"] == "p2" and released["key"] == "c1"
    with unit_of_work(db) as store:
        row = store.proposal(str(released["proposal_id"]))
    assert row is not None and row.status == "revoked" and row.decision_reason


def test_shrinking_a_lot_below_its_approved_matches_releases_them(db: Engine) -> None:
    engine = engine_at(db)
    feed(engine, f.goods_offer("lot", "p1", quantity=20),
         *(f.case(f"c{n}", items=[f.item(kind="goods", need="rice", unit="kg", quantity=q)])
           for n, q in enumerate([5, 5, 10])))
    engine.match_shard(f.CENTRE)
    with unit_of_work(db) as store:
        for p in store.proposals_where(proposals.c.status == "proposed"):
            store.set_proposal_status(p.proposal_id, ProposalStatus.APPROVED, at=NIGHT, by="c")
    payload = dict(f.goods_offer("lot", "p1", quantity=15)["payload"], version=2)
    feed(engine, f.envelope("offer.updated", "p1", payload))
    [released] = events(db, "match.released")
    assert released["case_id"] == "c2", "one match of 10 rather than two of 5"
    with unit_of_work(db) as store:
        held_now = store.held_by_offer()
    assert held_now[("lot", None)] <= 15


def test_a_release_shows_in_the_console_beside_the_proposal_state(db: Engine) -> None:
    engine = build_world(db)
    with unit_of_work(db) as store:
        propose(store, "p1", "case-a", amount=1.0)
        store.set_proposal_status("p1", ProposalStatus.APPROVED, at=NIGHT, by="c-grid")
    feed_one(engine, f.envelope("offer.updated", "p1", dict(
        f.goods_offer("o-a", "p1", quantity=1000)["payload"], version=2, quantity=0.5)))
    client = TestClient(build_web(engine, Settings(session_secret="s")),
                        headers={"Accept-Language": "en"})
    assert client.post("/api/session", json={"username": "c-grid",
                                             "password": PASSWORD}).status_code == 200
    shown = client.get("/api/proposals/p1").json()
    assert shown["status"] == "revoked" and "less than was approved" in shown["decision_reason"]
    assert any(h["event_type"] == "match.released" for h in shown["history"])
    page = client.get("/console/proposals/p1")
    assert page.status_code == 200 and "less than was approved" in page.text


# --- pending proposals across updates --------------------------------------------------------


def pending(db: Engine) -> dict[str, tuple[str, str, float]]:
    """Pending proposals: id -> (case, item, amount)."""
    with unit_of_work(db) as store:
        return {p.proposal_id: (p.case_id, p.item_id, p.amount)
                for p in store.proposals_where(proposals.c.status == "proposed")}


def test_a_case_update_keeps_the_pending_proposals_of_items_it_leaves_alone(
        db: Engine) -> None:
    engine = engine_at(db)
    rice = f.item("i1", kind="goods", need="rice", unit="kg", quantity=4)
    oil = f.item("i2", kind="goods", need="cooking_oil", unit="kg", quantity=2)
    feed(engine, f.goods_offer("g1", "p1", quantity=10), f.case("c1", items=[rice]))
    engine.match_shard(f.CENTRE)
    [before] = pending(db)
    # More urgent, and a second item asked for: the rice proposal still holds as it was.
    feed(engine, f.case("c1", version=2, event_type="case.updated",
                        items=[{**rice, "urgency": 5}, oil]))
    assert before in pending(db)
    # The quantity asked changes: that item's proposal is made again.
    feed(engine, f.case("c1", version=3, event_type="case.updated",
                        items=[{**rice, "urgency": 5, "quantity": 6}, oil]))
    assert before not in pending(db)
    [revoked] = events(db, "match.revoked")
    assert revoked["proposal_id"] == before and revoked["reason_code"] == "case_updated"


def test_an_offer_update_of_capacity_alone_keeps_what_still_fits(db: Engine) -> None:
    engine = engine_at(db)
    feed(engine, f.goods_offer("lot", "p1", quantity=20),
         *(f.case(f"c{n}", items=[f.item(kind="goods", need="rice", unit="kg", quantity=q)])
           for n, q in enumerate([5, 5, 10])))
    engine.match_shard(f.CENTRE)
    assert len(pending(db)) == 3
    grown = dict(f.goods_offer("lot", "p1", quantity=30)["payload"], version=2)
    feed(engine, f.envelope("offer.updated", "p1", grown))
    assert len(pending(db)) == 3 and events(db, "match.revoked") == []
    shrunk = dict(f.goods_offer("lot", "p1", quantity=15)["payload"], version=3)
    feed(engine, f.envelope("offer.updated", "p1", shrunk))
    # The fewest taken back: the one of 10 rather than two of 5.
    assert sorted(case for case, _, _ in pending(db).values()) == ["c0", "c1"]
    [revoked] = events(db, "match.revoked")
    assert (revoked["case_id"], revoked["reason_code"]) == ("c2", "capacity_reduced")


def test_an_offer_update_beyond_capacity_makes_its_pending_proposals_again(
        db: Engine) -> None:
    engine = engine_at(db)
    feed(engine, f.goods_offer("lot", "p1", quantity=20),
         f.case("c1", items=[f.item(kind="goods", need="rice", unit="kg", quantity=5)]))
    engine.match_shard(f.CENTRE)
    [before] = pending(db)
    # A use-by date now: whom the lot can serve may change, so the proposal is made again.
    dated = dict(f.goods_offer("lot", "p1", quantity=20, expires_in_days=5)["payload"],
                 version=2)
    feed(engine, f.envelope("offer.updated", "p1", dated))
    assert pending(db) == {}
    [revoked] = events(db, "match.revoked")
    assert (revoked["proposal_id"], revoked["reason_code"]) == (before, "offer_updated")


def test_removing_a_slot_keeps_the_matches_of_the_slots_after_it(db: Engine) -> None:
    engine = engine_at(db)
    service = f.service_offer("physio", "p1", places=1, start=10, end=11)
    service["payload"]["slots"] += [{"window": {"start": f.at(h), "end": f.at(h + 1)},
                                     "places": 1} for h in (12, 14)]
    # Each person can come at one hour only, so each slot goes to one of them.
    feed(engine, service, *(f.case(f"c{h}", items=[f.item(
        kind="service", need="physiotherapy", unit="sessions", quantity=1, start=h,
        end=h + 1)]) for h in (10, 12, 14)))
    engine.match_shard(f.CENTRE)
    with unit_of_work(db) as store:
        for p in store.proposals_where(proposals.c.status == "proposed"):
            store.set_proposal_status(p.proposal_id, ProposalStatus.APPROVED, at=NIGHT, by="c")
    before = {case: slot for case, slot in _slots_held(db)}
    assert before == {"c10": 0, "c12": 1, "c14": 2}
    payload = dict(service["payload"], version=2, slots=service["payload"]["slots"][1:])
    feed(engine, f.envelope("offer.updated", "p1", payload))
    [released] = events(db, "match.released")
    assert (released["case_id"], released["reason_code"]) == ("c10", "slot_changed")
    # The other two follow their slots to their new places in the list.
    assert dict(_slots_held(db)) == {"c12": 0, "c14": 1}
    with unit_of_work(db) as store:
        assert store.held_by_offer() == {("physio", 0): 1.0, ("physio", 1): 1.0}


def test_a_removed_slot_that_has_begun_is_not_counted_against_the_slot_that_took_its_place(
        db: Engine) -> None:
    engine = engine_at(db)
    service = f.service_offer("physio", "p1", places=1, start=10, end=11)
    service["payload"]["slots"].append({"window": {"start": f.at(12), "end": f.at(13)},
                                        "places": 1})
    feed(engine, service, *(f.case(f"c{h}", items=[f.item(
        kind="service", need="physiotherapy", unit="sessions", quantity=1, start=h,
        end=h + 1)]) for h in (10, 12)))
    engine.match_shard(f.CENTRE)
    with unit_of_work(db) as store:
        for p in store.proposals_where(proposals.c.status == "proposed"):
            store.set_proposal_status(p.proposal_id, ProposalStatus.APPROVED, at=NIGHT, by="c")
    assert dict(_slots_held(db)) == {"c10": 0, "c12": 1}
    # At 10:30 the partner drops the session that is under way from its list: it has begun,
    # so it stays, and the 12:00 session's match must not give way to it.
    payload = dict(service["payload"], version=2, slots=service["payload"]["slots"][1:])
    update = f.envelope("offer.updated", "p1", payload)
    update["occurred_at"] = f.at(10.5)
    feed(engine, update)
    assert events(db, "match.released") == [] and events(db, "match.revoked") == []
    held_now = dict(_slots_held(db))
    assert held_now["c12"] == 0, "the 12:00 match follows its slot"
    assert held_now["c10"] != 0, "the begun match no longer points at a slot of the list"
    with unit_of_work(db) as store:
        assert store.held_by_offer(now=datetime.fromisoformat(f.at(10.5)))[("physio", 0)] == 1.0


def _slots_held(db: Engine) -> list[tuple[str, int]]:
    with unit_of_work(db) as store:
        return [(p.case_id, p.slot) for p in store.holding_for_offer("physio")]


def test_slots_are_followed_by_their_window_not_their_place() -> None:
    def offer(*hours: int) -> dict[str, object]:
        return {"slots": [{"window": {"start": f.at(h), "end": f.at(h + 1)}, "places": 1}
                          for h in hours]}
    assert slot_moves(offer(10, 12, 14), offer(12, 14)) == {0: None, 1: 0, 2: 1}
    assert slot_moves(offer(10, 12), offer(10, 12, 14)) == {}
    assert slot_moves(offer(10, 12), offer(12, 10)) == {0: 1, 1: 0}
    # Two slots at one time keep their order; the same moment written in UTC is the same.
    assert slot_moves(offer(10, 10, 12), offer(9, 10, 10)) == {0: 1, 1: 2, 2: None}
    utc = {"slots": [{"window": {
        "start": datetime.fromisoformat(f.at(12)).astimezone(UTC).isoformat(),
        "end": datetime.fromisoformat(f.at(13)).astimezone(UTC).isoformat()}, "places": 1}]}
    assert slot_moves(offer(10, 12), utc) == {0: None, 1: 0}
