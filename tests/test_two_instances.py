"""Two engine instances on one PostgreSQL database: each shard is matched by one owner, and
no capacity is ever promised twice."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from events.app import EngineApp, build_app
from matcher.runner import running
from matcher.services.matching import BatchReport
from matcher.storage.store import HOLDING, unit_of_work
from matcher.storage.tables import need_items, offers, proposals
from schemas.topics import REGISTRY_KEY
from tests import factories as f
from tests.kafka_helpers import engine_settings, produce, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

OFFERS_PER_WS = 20
CASES_PER_WS = 40


def record_batches(app: EngineApp, log: list[tuple[str, str, bool]], name: str) -> None:
    """Wrap the engine's batch so the test knows which instance matched which shard, and
    whether that instance owned the shard when the batch began."""
    original = app.engine.match_shard

    def match_shard(shard: str) -> BatchReport:
        log.append((name, shard, app.ownership.owns(shard)))
        return original(shard)

    app.engine.match_shard = match_shard  # type: ignore[method-assign]


Totals = tuple[dict[str, float], dict[str, float], dict[tuple[str, str], float],
               dict[tuple[str, str], float]]


def held_and_capacity(db: Engine) -> Totals:
    """(held per offer, capacity per offer, served per item, quantity per item)."""
    with unit_of_work(db) as store:
        rows = store.conn.execute(
            select(proposals.c.offer_id, proposals.c.case_id, proposals.c.item_id,
                   proposals.c.amount)
            .where(proposals.c.status.in_([s.value for s in HOLDING]))).all()
        capacity = dict(store.conn.execute(select(offers.c.offer_id, offers.c.capacity)).all())
        quantity = {(c, i): q for c, i, q in store.conn.execute(
            select(need_items.c.case_id, need_items.c.item_id, need_items.c.quantity)).all()}
    per_offer: dict[str, float] = defaultdict(float)
    per_item: dict[tuple[str, str], float] = defaultdict(float)
    for offer_id, case_id, item_id, amount in rows:
        per_offer[offer_id] += amount
        per_item[(case_id, item_id)] += amount
    return per_offer, capacity, per_item, quantity


@pytest.mark.parametrize("db", ["postgres"], indirect=True)
async def test_two_instances_split_the_shards_and_never_double_promise(
        kafka_bootstrap: str, tmp_path: Path, db: Engine) -> None:
    base = engine_settings(kafka_bootstrap, tmp_path, shard_level="workstation")
    first = build_app(base, db=db)
    second = build_app(base.model_copy(update={"http_port": base.http_port + 1}), db=db)
    batches: list[tuple[str, str, bool]] = []
    record_batches(first, batches, "first")
    record_batches(second, batches, "second")
    topics = first.topics
    async with running(first), running(second):
        await wait_for(lambda: bool(first.ownership.owned) and bool(second.ownership.owned),
                       timeout_s=60, what="both instances own shard partitions")
        registry = [*f.hierarchy(), f.partner("p1"), f.partner("p2", home=f.WS_B)]
        await produce(kafka_bootstrap, topics.registry,
                      [(REGISTRY_KEY.encode(), f.encode(e)) for e in registry])
        stream: list[tuple[bytes, bytes]] = []
        for n in range(OFFERS_PER_WS):
            for ws, partner in ((f.WS, "p1"), (f.WS_B, "p2")):
                offer = f.goods_offer(f"{ws}-g{n}", partner, quantity=3, node_id=ws)
                stream.append((offer["payload"]["offer_id"].encode(), f.encode(offer)))
        await wait_for(lambda: _count(db, "partners") == 2, what="registry applied")
        await produce(kafka_bootstrap, topics.offers, stream)
        cases: list[tuple[bytes, bytes]] = []
        for n in range(CASES_PER_WS):
            for grid in (f.GRID, f.GRID_B):
                case = f.case(f"{grid}-c{n}", grid=grid,
                              items=[f.item(kind="goods", need="rice", quantity=2, unit="kg")])
                cases.append((case["payload"]["case_id"].encode(), f.encode(case)))
        await produce(kafka_bootstrap, topics.needs, cases)
        await wait_for(lambda: _count(db, "cases") == 2 * CASES_PER_WS, what="cases applied")
        supply = 2 * OFFERS_PER_WS * 3
        await wait_for(lambda: _held_total(db) >= min(supply, 2 * CASES_PER_WS * 2) - 1e-6,
                       timeout_s=90, what="demand matched")
    per_offer, capacity, per_item, quantity = held_and_capacity(db)
    assert all(per_offer[o] <= capacity[o] + 1e-9 for o in per_offer), "no capacity promised twice"
    assert all(per_item[k] <= quantity[k] + 1e-9 for k in per_item), "no demand served twice"
    assert {shard for _, shard, _ in batches} == {f.WS, f.WS_B}
    # Ownership may move during a consumer-group hand-over; what must hold is that no
    # instance starts a batch on a shard it does not own at that moment.
    strays = [(name, shard) for name, shard, owned in batches if not owned]
    assert strays == [], "a batch on a shard its instance did not own"


def _count(db: Engine, table: str) -> int:
    with unit_of_work(db) as store:
        return store.count(table)


def _held_total(db: Engine) -> float:
    per_offer, *_ = held_and_capacity(db)
    return sum(per_offer.values())


