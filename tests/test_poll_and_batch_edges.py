"""Ingest and batch edges: a poll reads the nodes and partners its events name at once (the
registry rows it writes itself, and those it finds missing, must still be seen by the events
after them), and a batch's report counts all of its time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from matcher.services.engine import Incoming, MatchingEngine, Refused
from matcher.storage.store import unit_of_work
from tests import factories as f
from tests.test_capacity_properties import engine_at


def poll(engine: MatchingEngine, *events: dict[str, Any]) -> list[Any]:
    return engine.ingest_batch([Incoming(f.parse(e), "test") for e in events])


def test_a_partner_registered_in_a_poll_may_publish_later_in_the_same_poll(db: Engine) -> None:
    engine = engine_at(db)
    too_early, registered, published = poll(
        engine, f.goods_offer("early", "p-new"), f.partner("p-new"),
        f.goods_offer("lot", "p-new"))
    assert isinstance(too_early, Refused) and too_early.error.code == "unknown_partner"
    assert not isinstance(registered, Refused) and not isinstance(published, Refused)
    with unit_of_work(db) as store:
        assert store.offer("early") is None
        offer = store.offer("lot")
    assert offer is not None and offer.partner_id == "p-new"


def test_a_node_registered_in_a_poll_is_a_place_for_offers_after_it(db: Engine) -> None:
    engine = engine_at(db)
    at_new_studio = f.goods_offer("lot", "p1", node_id="ws-wenlong-st-new")
    before, node, after = poll(
        engine, dict(at_new_studio, event_id="00000000-0000-4000-8000-000000000001"),
        f.node("ws-wenlong-st-new", "studio", f.WS, 29.06, 106.67),
        dict(at_new_studio, event_id="00000000-0000-4000-8000-000000000002"))
    assert isinstance(before, Refused) and "ws-wenlong-st-new" in before.error.reason
    assert not isinstance(node, Refused) and not isinstance(after, Refused)
    with unit_of_work(db) as store:
        offer = store.offer("lot")
    assert offer is not None and offer.payload["node_id"] == "ws-wenlong-st-new"


def test_a_batch_report_counts_the_reading_of_its_inputs_in_its_time(db: Engine) -> None:
    engine = engine_at(db)
    poll(engine, f.goods_offer("lot", "p1"),
         f.case("c1", items=[f.item(kind="goods", need="rice", unit="kg", quantity=4)]))
    report = engine.match_shard(f.CENTRE)
    assert report.proposals == 1
    assert report.read_s > 0 and report.total_s >= report.read_s + report.solve_s
