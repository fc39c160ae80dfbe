"""A batch looks only at what changed since the shard's last batch settled it, and misses
nothing a batch over the whole shard would serve."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

import matcher.services.engine as engine_module
from matcher.replay import ReplayOptions, replay_file, write_stream
from matcher.services.engine import MatchingEngine
from matcher.services.matching import BatchReport, LiveInputs, MatchingConfig
from matcher.services.settled import REVIEW_EVERY
from matcher.storage.store import unit_of_work
from matcher.storage.tables import proposals
from schemas.matches import ProposalStatus
from schemas.topics import Topics
from tests import factories as f
from tests.test_replay import settings_for, small_day


class World:
    """An engine on a clock the test moves, fed with factory events."""

    def __init__(self, db: Engine) -> None:
        self.now = f.DAY
        self.engine = MatchingEngine(db=db, topics=Topics("t"), clock=lambda: self.now,
                                     matching=MatchingConfig(topics=Topics("t"),
                                                             time_limit_s=2))
        self.feed(*f.hierarchy(), f.partner("p1"), f.partner("shop", kind="merchant"))

    def feed(self, *events: dict[str, Any]) -> None:
        for event in events:
            self.engine.ingest(f.parse(event), topic="test")

    def batch(self) -> BatchReport:
        return self.engine.match_shard("centre")

    def proposed(self) -> list[tuple[str, str, float]]:
        with unit_of_work(self.engine.db) as store:
            return sorted((p.case_id, p.offer_id, p.amount) for p in store.proposals_where(
                proposals.c.status == ProposalStatus.PROPOSED.value))


def goods_item(item_id: str = "i1", quantity: float = 10) -> dict[str, Any]:
    return f.item(item_id, kind="goods", need="rice", quantity=quantity, unit="kg")


def test_a_batch_after_nothing_changed_looks_at_nothing(sqlite_db: Engine) -> None:
    world = World(sqlite_db)
    world.feed(f.case("c1"), f.case("c2"))
    assert world.batch().items == 2  # the first batch looks at the whole shard
    again = world.batch()
    assert (again.items, again.proposals, again.status) == (0, 0, "OPTIMAL")


def test_a_new_offer_brings_back_only_the_items_asking_for_what_it_gives(
        sqlite_db: Engine) -> None:
    world = World(sqlite_db)
    world.feed(f.case("c1"), f.case("c2", items=[goods_item()]))
    world.batch()
    world.feed(f.goods_offer("rice", "shop", quantity=10))
    report = world.batch()
    assert (report.items, report.proposals) == (1, 1)
    assert world.proposed() == [("c2", "rice", 10.0)]


def test_goods_a_closed_case_gives_back_go_to_the_next_case(sqlite_db: Engine) -> None:
    world = World(sqlite_db)
    world.feed(f.goods_offer("rice", "shop", quantity=10),
               f.case("c1", items=[goods_item()]), f.case("c2", items=[goods_item()]))
    world.batch()
    first = world.proposed()
    assert len(first) == 1
    taker = first[0][0]
    world.feed(f.closure(taker))
    report = world.batch()
    assert report.proposals == 1
    other = "c2" if taker == "c1" else "c1"
    assert world.proposed() == [(other, "rice", 10.0)]


def test_an_item_served_in_part_is_looked_at_again(sqlite_db: Engine) -> None:
    # An hour and a half wanted. v1 gives its one hour; v2's half hour is shorter than the
    # least part of a visit (an hour), so it fits only what is left once v1 is proposed.
    world = World(sqlite_db)
    world.feed(f.volunteer_offer("v1", "p1", start=9, end=10, hours=1),
               f.volunteer_offer("v2", "p1", start=14, end=14.5, hours=6),
               f.case("c1", items=[f.item(quantity=1.5)]))
    assert world.batch().proposals == 1
    assert world.proposed() == [("c1", "v1", 1.0)]
    report = world.batch()
    assert (report.items, report.proposals) == (1, 1)
    assert world.proposed() == [("c1", "v1", 1.0), ("c1", "v2", 0.5)]


def test_a_volunteer_gives_a_visit_per_batch_until_the_item_is_served(
        sqlite_db: Engine) -> None:
    world = World(sqlite_db)
    # Four hours wanted; the volunteer is free 9-11 and 14-16: one visit a batch, and the
    # batch that filled a window runs again.
    offer = f.volunteer_offer("v1", "p1", hours=6)
    offer["payload"]["availability"] = [{"start": f.at(9), "end": f.at(11)},
                                        {"start": f.at(14), "end": f.at(16)}]
    world.feed(offer, f.case("c1", items=[f.item(quantity=4)]))
    assert world.batch().more_to_find == 1
    assert world.batch().proposals == 1
    assert sum(amount for _, _, amount in world.proposed()) == pytest.approx(4.0)


def test_a_case_that_lost_a_volunteers_window_to_another_visit_gets_the_next_one(
        sqlite_db: Engine) -> None:
    world = World(sqlite_db)
    # Two cases want two hours of a volunteer free 9-11 and 14-16: a batch gives one window,
    # and the case that wanted it too is looked at again, against the diary with that visit.
    offer = f.volunteer_offer("v1", "p1", hours=6)
    offer["payload"]["availability"] = [{"start": f.at(9), "end": f.at(11)},
                                        {"start": f.at(14), "end": f.at(16)}]
    world.feed(offer, f.case("c1", items=[f.item(quantity=2)]),
               f.case("c2", items=[f.item(quantity=2)]))
    first = world.batch()
    assert (first.proposals, first.more_to_find) == (1, 1)
    second = world.batch()
    assert (second.items, second.proposals) == (1, 1)
    assert [case for case, _, _ in world.proposed()] == ["c1", "c2"]


def test_a_new_node_or_an_hour_gone_by_looks_at_everything(sqlite_db: Engine) -> None:
    world = World(sqlite_db)
    world.feed(f.case("c1"), f.case("c2"), f.case("c3", items=[goods_item()]))
    world.batch()
    world.feed(f.node("ws-new-st-g9", "grid", f.STUDIO, 29.06, 106.67))
    assert world.batch().items == 3
    assert world.batch().items == 0
    world.now += REVIEW_EVERY + timedelta(minutes=1)
    assert world.batch().items == 3


def test_a_narrowed_batch_misses_nothing_a_whole_batch_would_serve(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replay a day with decisions, rejections, fulfilment and the nightly run. Before every
    narrowed batch, plan the whole shard too: it serves no item the narrowed batch left out."""
    narrowed_batches: list[tuple[LiveInputs, set[tuple[str, str]]]] = []
    checked: list[int] = []
    real_narrowed, real_plan = engine_module.narrowed, engine_module.plan_batch

    def narrowed(inputs: LiveInputs, keys: Iterable[tuple[str, str]], needs: Any
                 ) -> LiveInputs:
        narrowed_batches.append((inputs, set(keys)))
        return real_narrowed(inputs, keys, needs)

    def plan_batch(inputs: LiveInputs, config: MatchingConfig) -> Any:
        if narrowed_batches and narrowed_batches[-1][0] is not None:
            whole, keys = narrowed_batches[-1]
            narrowed_batches[-1] = (None, keys)  # type: ignore[assignment]
            full = real_plan(whole, config)
            p, demand = full.cands.pairs, full.frames.demand
            left_out = {(demand.case_id[int(p.d[a.arc])], demand.item_id[int(p.d[a.arc])])
                        for a in full.allocations} - keys
            assert not left_out, f"{inputs.now}: a whole batch would serve {left_out}"
            checked.append(len(whole.items) - len(keys))
        return real_plan(inputs, config)

    monkeypatch.setattr(engine_module, "narrowed", narrowed)
    monkeypatch.setattr(engine_module, "plan_batch", plan_batch)
    stream = tmp_path / "day.jsonl"
    write_stream(stream, iter(small_day()))
    summary = replay_file(stream, tmp_path / "out", settings_for(tmp_path),
                          ReplayOptions(approve_share=0.6, approve_delay_min=20, fulfil=True,
                                        seed=2))
    assert summary.published["match.rejected"] > 0
    assert len(checked) > 20 and sum(checked) > 0  # narrowed batches that left items out
