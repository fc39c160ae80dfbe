"""A batch that leaves items open runs again only when another batch could still serve them:
when an item's best K candidates were taken but more eligible offers exist. When every
eligible offer was among its candidates and the plan is proven optimal, the same inputs less
what was proposed give nothing new, and a shard that runs again anyway only costs time."""

from __future__ import annotations

from sqlalchemy import Engine

from matcher.services.engine import Incoming, MatchingEngine
from matcher.services.matching import MatchingConfig
from tests import factories as f
from tests.test_capacity_properties import NIGHT, TOPICS, Clock, feed


def engine_with(db: Engine, candidates_per_item: int) -> MatchingEngine:
    engine = MatchingEngine(db=db, topics=TOPICS, clock=Clock(NIGHT),
                            matching=MatchingConfig(topics=TOPICS,
                                                    candidates_per_item=candidates_per_item))
    feed(engine, *f.hierarchy(), f.partner("p1"))
    return engine


def rice_cases(engine: MatchingEngine, count: int) -> None:
    engine.ingest_batch([Incoming(f.parse(f.case(f"c{n}", items=[
        f.item(kind="goods", need="rice", unit="kg", quantity=4)])), "test")
        for n in range(count)])


def test_an_item_whose_k_candidates_were_taken_is_matched_again(db: Engine) -> None:
    engine = engine_with(db, candidates_per_item=1)
    # Both items rank the nearer lot, which expires sooner, first: with K = 1 that is the only
    # candidate either sees, and it serves one of them.
    feed(engine, f.goods_offer("near", "p1", quantity=4, node_id=f.STUDIO, expires_in_days=2),
         f.goods_offer("far", "p1", quantity=4))
    rice_cases(engine, 2)
    first = engine.match_shard(*engine.due_shards(0.0))
    assert (first.proposals, first.unmatched, first.more_to_find) == (1, 1, 1)
    assert engine.due_shards(0.0) == [f.CENTRE], "the shard runs again"
    second = engine.match_shard(f.CENTRE)
    assert engine.due_shards(0.0) == []
    assert (second.proposals, second.unmatched) == (1, 0)


def test_an_item_that_saw_every_eligible_offer_taken_waits_for_a_change(db: Engine) -> None:
    engine = engine_with(db, candidates_per_item=30)
    feed(engine, f.goods_offer("only", "p1", quantity=4))
    rice_cases(engine, 2)
    first = engine.match_shard(*engine.due_shards(0.0))
    assert (first.proposals, first.unmatched, first.more_to_find) == (1, 1, 0)
    assert engine.due_shards(0.0) == [], "nothing more to find until something changes"
    # A new lot is such a change: the shard is matched again and the item served.
    feed(engine, f.goods_offer("new", "p1", quantity=4))
    assert engine.match_shard(*engine.due_shards(0.0)).proposals == 1
