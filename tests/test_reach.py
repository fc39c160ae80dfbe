"""How far offers reach: the offer's word, its partner's, its nodes', else the old rule."""

from __future__ import annotations

import math
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from matcher.cli_partners import describe_reach, parse_reach
from matcher.domain import rules
from matcher.domain.candidates import generate
from matcher.domain.frames import Vocabulary, build_demand, build_supply
from matcher.domain.reach import (
    DELIVERY,
    DISTRICT,
    PICKUP,
    WORKSTATION,
    ReachDefaults,
    resolve_reach,
)
from matcher.domain.scoring import ScoringContext, Weights
from matcher.services.engine import MatchingEngine
from matcher.services.matching import read_live_inputs
from matcher.services.partner_door import OfferReach, partner_overview
from matcher.simulator import build_district
from matcher.storage.database import MIGRATIONS, open_engine
from matcher.storage.store import unit_of_work
from matcher.web.partner_api import overview_json
from schemas.common import Reach, ReachMode
from schemas.topics import Topics
from tests import factories as f
from tests.test_candidates import every_pair, world  # noqa: F401  (a fixture)
from tests.test_rebalancing import events_on
from tests.test_rules import NODES, NodeStub, holds, item_row
from tests.test_rules import pairs_of as rule_pairs

NOW = f.DAY.timestamp()


def goods(reach: dict[str, Any] | None = None, *, partner_id: str = "p1", node_id: str = f.WS,
          pickup: tuple[float, float] | None = None) -> dict[str, Any]:
    """A goods offer payload, with its own reach and pickup point when given."""
    payload = f.goods_offer("g1", partner_id, node_id=node_id)["payload"]
    if reach is not None:
        payload["reach"] = reach
    if pickup is not None:
        payload["pickup"] = {"lat": pickup[0], "lon": pickup[1]}
    return payload


def hierarchy(ws_reach: dict[str, Any] | None = None,
              centre_reach: dict[str, Any] | None = None) -> dict[str, NodeStub]:
    """The factories' hierarchy with parents, and defaults where given."""
    parents = {f.CENTRE: None, f.WS: f.CENTRE, f.STUDIO: f.WS, f.GRID: f.STUDIO,
               f.GRID2: f.STUDIO, f.WS_B: f.CENTRE, f.STUDIO_B: f.WS_B, f.GRID_B: f.STUDIO_B}
    own = {f.WS: ws_reach, f.CENTRE: centre_reach}
    return {node_id: NodeStub(stub.path, stub.lat, stub.lon, parents[node_id],
                                   own.get(node_id))
            for node_id, stub in NODES.items()}


# --- precedence ------------------------------------------------------------------------------

DELIVER_15 = {"mode": "delivery", "km": 15.0}
PICKUP_3 = {"mode": "pickup", "km": 3.0}
EVERYWHERE = {"mode": "district", "km": None}


def test_the_offer_says_first() -> None:
    reach = resolve_reach(goods(PICKUP_3, node_id=f.STUDIO), has_own_place=False,
                          nodes=hierarchy(ws_reach=EVERYWHERE),
                          defaults=ReachDefaults(partners={"p1": DELIVER_15}))
    assert (reach.mode, reach.radius_km) == (PICKUP, 3.0)


def test_the_partner_says_when_the_offer_does_not() -> None:
    reach = resolve_reach(goods(node_id=f.STUDIO), has_own_place=False,
                          nodes=hierarchy(ws_reach=EVERYWHERE),
                          defaults=ReachDefaults(partners={"p1": DELIVER_15}))
    assert (reach.mode, reach.radius_km) == (DELIVERY, 15.0)


def test_the_nearest_node_up_the_hierarchy_says_when_offer_and_partner_do_not() -> None:
    nodes = hierarchy(ws_reach=PICKUP_3, centre_reach=EVERYWHERE)
    from_studio = resolve_reach(goods(node_id=f.STUDIO), has_own_place=False, nodes=nodes,
                                defaults=ReachDefaults())
    from_other_street = resolve_reach(goods(node_id=f.STUDIO_B), has_own_place=False,
                                      nodes=nodes, defaults=ReachDefaults())
    assert (from_studio.mode, from_studio.radius_km) == (PICKUP, 3.0)
    assert (from_other_street.mode, from_other_street.radius_km) == (DISTRICT, math.inf)


def test_where_the_data_says_nothing_the_old_rule_holds() -> None:
    nodes = hierarchy()
    plain_goods = resolve_reach(goods(pickup=(29.05, 106.66)), has_own_place=True, nodes=nodes,
                                defaults=ReachDefaults())
    service = f.service_offer("s1", "p1")["payload"]
    placed = resolve_reach(service, has_own_place=True, nodes=nodes,
                           defaults=ReachDefaults(service_travel_km=7.0))
    unplaced = resolve_reach(service, has_own_place=False, nodes=nodes,
                             defaults=ReachDefaults())
    assert plain_goods.mode == WORKSTATION and math.isnan(plain_goods.radius_km)
    assert (placed.mode, placed.radius_km) == (PICKUP, 7.0)
    assert unplaced.mode == WORKSTATION and math.isnan(unplaced.radius_km)


REACHES = st.one_of(st.none(), st.sampled_from([DELIVER_15, PICKUP_3, EVERYWHERE,
                                                {"mode": "delivery", "km": 8.0}]))


@given(offer=REACHES, partner=REACHES, studio=REACHES, ws=REACHES, centre=REACHES)
@settings(max_examples=200, deadline=None)
def test_the_first_source_that_says_decides(offer: dict[str, Any] | None,
                                            partner: dict[str, Any] | None,
                                            studio: dict[str, Any] | None,
                                            ws: dict[str, Any] | None,
                                            centre: dict[str, Any] | None) -> None:
    nodes = hierarchy(ws_reach=ws, centre_reach=centre)
    nodes[f.STUDIO] = NodeStub(nodes[f.STUDIO].path, 29.051, 106.661, f.WS, studio)
    reach = resolve_reach(goods(offer, node_id=f.STUDIO), has_own_place=False, nodes=nodes,
                          defaults=ReachDefaults(partners={"p1": partner} if partner else {}))
    first = next((r for r in (offer, partner, studio, ws, centre) if r is not None), None)
    if first is None:
        assert reach.mode == WORKSTATION
    else:
        assert reach.mode == first["mode"]
        assert reach.radius_km == (math.inf if first["km"] is None else first["km"])


def test_volunteers_keep_their_own_travel_radius() -> None:
    volunteer = f.volunteer_offer("o1", "p1", radius_km=4.0)["payload"]
    reach = resolve_reach(volunteer, has_own_place=True, nodes=hierarchy(ws_reach=EVERYWHERE),
                          defaults=ReachDefaults(partners={"p1": DELIVER_15}))
    assert reach.radius_km == 4.0


def test_a_reach_reads_its_short_form_and_refuses_what_makes_no_sense() -> None:
    assert Reach.parse("delivery:15") == Reach(mode=ReachMode.DELIVERY, km=15.0)
    assert Reach.parse("pickup:3") == Reach(mode=ReachMode.PICKUP, km=3.0)
    assert Reach.parse("district") == Reach(mode=ReachMode.DISTRICT)
    for wrong in ("delivery", "district:5", "teleport:3", "pickup:-1", "pickup:far"):
        with pytest.raises(ValueError):
            Reach.parse(wrong)


# --- the rule ------------------------------------------------------------------------------------

# The case of the factories lives in workstation A; these points lie in workstation B's street.
NEAR_ACROSS = (29.10, 106.70)  # about 6 km from the beneficiary
FAR_ACROSS = (29.20, 106.80)  # about 19 km from the beneficiary
RICE_CASE = f.case("c1", items=[f.item(kind="goods", need="rice", quantity=5, unit="kg")])


def rice_pairs(reach: dict[str, Any] | None, pickup: tuple[float, float] | None,
               node_id: str = f.WS_B) -> Any:
    offer = f.goods_offer("g1", "p1", node_id=node_id)
    if reach is not None:
        offer["payload"]["reach"] = reach
    if pickup is not None:
        offer["payload"]["pickup"] = {"lat": pickup[0], "lon": pickup[1]}
    return rule_pairs(RICE_CASE, offer)


def test_goods_that_say_nothing_stay_in_their_street() -> None:
    assert not holds(rules.within_reach, rice_pairs(None, NEAR_ACROSS))
    assert holds(rules.within_reach, rice_pairs(None, NEAR_ACROSS, node_id=f.WS))


def test_delivered_goods_cross_the_street_boundary_within_their_radius() -> None:
    assert holds(rules.within_reach, rice_pairs(DELIVER_15, NEAR_ACROSS))
    assert not holds(rules.within_reach, rice_pairs(DELIVER_15, FAR_ACROSS))


def test_a_pickup_radius_is_measured_from_the_pickup_point() -> None:
    assert not holds(rules.within_reach, rice_pairs(PICKUP_3, NEAR_ACROSS))
    assert holds(rules.within_reach, rice_pairs({"mode": "pickup", "km": 8.0}, NEAR_ACROSS))


def test_district_wide_goods_reach_everyone_even_without_a_place() -> None:
    assert holds(rules.within_reach, rice_pairs(EVERYWHERE, FAR_ACROSS))
    assert holds(rules.within_reach, rice_pairs(EVERYWHERE, None))
    unplaced = {key: NodeStub(stub.path, None, None) for key, stub in NODES.items()}
    vocab = Vocabulary()
    demand = build_demand([item_row(RICE_CASE)], {}, unplaced, vocab)
    offer = f.goods_offer("g1", "p1", node_id=f.WS_B)["payload"] | {"reach": EVERYWHERE}
    supply = build_supply([{"offer_id": "g1", "payload": offer}], {}, unplaced, vocab)
    cands = generate(demand, supply, now=NOW, weights=Weights(), context=ScoringContext())
    assert len(cands) == 1


def test_a_service_reaches_as_far_as_the_setting_says_when_nothing_else_does() -> None:
    case = f.case("c1", items=[f.item(kind="service", need="physiotherapy", quantity=1,
                                      unit="sessions", start=13, end=16)])
    offer = f.service_offer("s1", "p1", node_id=f.WS_B)
    offer["payload"]["place"] = {"lat": NEAR_ACROSS[0], "lon": NEAR_ACROSS[1]}
    vocab = Vocabulary()
    demand = build_demand([item_row(case)], {}, NODES, vocab)
    for km, reached in ((5.0, False), (10.0, True)):
        supply = build_supply([{"offer_id": "s1", "payload": offer["payload"]}], {}, NODES,
                              vocab, reach=ReachDefaults(service_travel_km=km))
        cands = generate(demand, supply, now=NOW, weights=Weights(), context=ScoringContext())
        assert (len(cands) == 1) is reached


# --- the reach index agrees with checking every pair ---------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_the_reach_index_changes_nothing_with_every_reach_mode(
        world: dict[str, Any], seed: int) -> None:  # noqa: F811
    rng = random.Random(seed)
    choices = [None, DELIVER_15, PICKUP_3, EVERYWHERE, {"mode": "delivery", "km": 8.0}]
    offers = []
    for offer in world["offers"]:
        payload = dict(offer["payload"])
        reach = rng.choice(choices)
        if payload["kind"] != "volunteer" and reach is not None:
            payload["reach"] = reach
        offers.append({"offer_id": offer["offer_id"], "payload": payload})
    partners = {o["payload"]["partner_id"]: DELIVER_15 for o in offers[::11]}
    vocab = Vocabulary()
    demand = build_demand(world["items"], world["served"], world["places"], vocab)
    supply = build_supply(offers, world["held"], world["places"], vocab,
                          reach=ReachDefaults(partners=partners))
    assert np.isposinf(supply.radius_km).any() and np.isfinite(supply.radius_km).any()
    now = (world["now"] + timedelta(hours=6)).timestamp()
    expected = every_pair(demand, supply, now, ScoringContext(), set(), 30)
    found = generate(demand, supply, now=now, weights=Weights(), context=ScoringContext(),
                     k=30, chunk_pairs=5_000)
    assert len(expected) > 100
    assert np.array_equal(found.pairs.d, expected.pairs.d)
    assert np.array_equal(found.pairs.s, expected.pairs.s)
    assert np.array_equal(found.failed, expected.failed)


# --- through the engine: registry events, storage, matching -------------------------------------


TOPICS = Topics("t")


def test_a_partner_default_from_the_registry_reaches_across_the_street(db: Engine) -> None:
    engine = MatchingEngine(db=db, topics=TOPICS)
    supermarket = f.partner("p1", home=f.WS_B, kind="merchant")
    supermarket["payload"]["default_reach"] = DELIVER_15
    plain = f.partner("p2", home=f.WS_B, kind="merchant")
    for event in (*f.hierarchy(), supermarket, plain):
        engine.ingest(f.parse(event), topic="test")
    for offer_id, partner_id in (("g-delivered", "p1"), ("g-plain", "p2")):
        offer = f.goods_offer(offer_id, partner_id, node_id=f.WS_B)
        offer["payload"]["pickup"] = {"lat": NEAR_ACROSS[0], "lon": NEAR_ACROSS[1]}
        engine.ingest(f.parse(offer), topic="test")
    engine.ingest(f.parse(RICE_CASE), topic="test")
    with unit_of_work(db) as store:
        assert store.partner_reaches() == {"p1": DELIVER_15}
        assert read_live_inputs(store, f.CENTRE, f.DAY).reach.partners == {"p1": DELIVER_15}
    engine.match_shard(f.CENTRE)
    proposed = events_on(db, TOPICS.proposals, "match.proposed")
    assert [p["offer_id"] for p in proposed] == ["g-delivered"]
    assert proposed[0]["place"] is None  # delivered: handed over at the beneficiary's home


def test_a_node_default_from_the_registry_is_kept(db: Engine) -> None:
    engine = MatchingEngine(db=db, topics=TOPICS)
    events = f.hierarchy()
    assert events[5]["payload"]["node_id"] == f.WS_B
    events[5]["payload"]["default_reach"] = EVERYWHERE
    for event in events:
        engine.ingest(f.parse(event), topic="test")
    with unit_of_work(db) as store:
        node = store.node(f.WS_B)
        assert node is not None and node.reach == EVERYWHERE
        assert {n.node_id: n.reach for n in store.all_nodes()}[f.WS] is None


# --- the migration --------------------------------------------------------------------------------


def test_the_migration_adds_reach_to_nodes_and_partners_and_takes_it_back(
        tmp_path: Path) -> None:
    database = open_engine(f"sqlite:///{tmp_path / 'm.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))

    def columns(table: str) -> set[str]:
        return {c["name"] for c in sa.inspect(database).get_columns(table)}

    def to(revision: str, down: bool = False) -> None:
        with database.begin() as connection:
            config.attributes["connection"] = connection
            (command.downgrade if down else command.upgrade)(config, revision)

    to("0006")
    assert "reach" not in columns("nodes") and "reach" not in columns("partners")
    to("0007")
    assert "reach" in columns("nodes") and "reach" in columns("partners")
    assert "unmatched_taken_by" in columns("need_items")
    to("0006", down=True)
    assert "reach" not in columns("nodes") and "reach" not in columns("partners")
    assert "unmatched_taken_by" not in columns("need_items")
    database.dispose()


def test_the_simulated_district_mixes_reach_modes() -> None:
    assert all(p.default_reach is None for p in build_district(seed=3).partners)
    district = build_district(seed=3, reach_mix=True)
    modes = [p.default_reach.mode.value if p.default_reach else None for p in district.partners]
    assert {None, "delivery", "pickup", "district"} <= set(modes)
    delivered = [p.default_reach.km for p in district.partners
                 if p.default_reach and p.default_reach.mode is ReachMode.DELIVERY]
    assert delivered and max(km or 0 for km in delivered) <= 15
    assert modes.count(None) < len(modes)


def test_the_partners_command_reads_a_reach_or_says_what_it_takes() -> None:
    assert parse_reach("delivery:15") == Reach(mode=ReachMode.DELIVERY, km=15.0)
    assert describe_reach(parse_reach("district")) == "district-wide"
    assert describe_reach(parse_reach("pickup:3")) == "pickup within 3 km"
    with pytest.raises(ValueError, match="use delivery:KM, pickup:KM or district"):
        parse_reach("teleport")


def test_a_partner_sees_how_far_each_of_its_offers_reaches_and_whose_setting_it_is(
        db: Engine) -> None:
    engine = MatchingEngine(db=db, topics=TOPICS)
    events = f.hierarchy()
    events[5]["payload"]["default_reach"] = EVERYWHERE  # workstation B: district-wide
    delivering = f.partner("p1", home=f.WS, kind="merchant")
    delivering["payload"]["default_reach"] = DELIVER_15
    for event in (*events, delivering, f.partner("p2", home=f.WS_B, kind="merchant")):
        engine.ingest(f.parse(event), topic="test")
    own = f.goods_offer("g-own", "p1")
    own["payload"]["reach"] = {"mode": "pickup", "km": 3}
    for offer in (own, f.goods_offer("g-default", "p1"),
                  f.goods_offer("g-node", "p2", node_id=f.STUDIO_B),
                  f.service_offer("s-rule", "p2", node_id=f.WS)):
        engine.ingest(f.parse(offer), topic="test")
    with unit_of_work(db) as store:
        first, second = partner_overview(store, "p1"), partner_overview(store, "p2")
    assert first.default_reach == DELIVER_15 and second.default_reach is None
    assert first.reaches == {"g-own": OfferReach("pickup", 3.0, "offer"),
                             "g-default": OfferReach("delivery", 15.0, "partner")}
    assert second.reaches["g-node"] == OfferReach("district", None, "node")
    # Nothing said anywhere: the engine's old rule (a service without a place of its own
    # reaches its workstation's street).
    assert second.reaches["s-rule"].set_by == "rule"
    offers = {o["offer_id"]: o["reach"] for o in overview_json(first)["offers"]}
    assert offers["g-default"] == {"mode": "delivery", "km": 15.0, "set_by": "partner"}
    assert overview_json(first)["default_reach"] == DELIVER_15
