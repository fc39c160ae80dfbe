"""The simulator builds a realistic, valid and deterministic district and day of events."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

import pytest

from matcher.kafka_access import KafkaAccess
from matcher.simulator import (
    District,
    Event,
    build_district,
    coverage_by_kind,
    day_balance,
    distance_km,
    registry_events,
    simulate_day,
    simulate_month,
)
from matcher.simulator import publish as publish_module
from matcher.simulator.day import ELDERLY_GROUPS, PERISHABLE, SERVICES, TZ
from matcher.simulator.publish import headers_of, publish_events, topic_and_key
from schemas import (
    CaseClosed,
    CaseOpened,
    CaseUpdated,
    Envelope,
    GoodsOffer,
    Level,
    NodeRegistered,
    OfferKind,
    OfferPublished,
    OfferUpdated,
    OfferWithdrawn,
    PartnerKind,
    PartnerRegistered,
    ServiceOffer,
    Topics,
    VolunteerOffer,
)
from schemas.needs import need_event_adapter
from schemas.offers import offer_event_adapter
from schemas.registry import registry_event_adapter
from schemas.topics import REGISTRY_KEY

DAY = date(2026, 11, 30)
LEVEL_DEPTH = {Level.CENTRE: 0, Level.WORKSTATION: 1, Level.STUDIO: 2, Level.GRID: 3}


@pytest.fixture(scope="module")
def district() -> District:
    return build_district()


@pytest.fixture(scope="module")
def day_events(district: District) -> list[Event]:
    return simulate_day(district, DAY)


def _entity_version(event: Event) -> tuple[str, int]:
    """The id of the entity an event is about, and the version it carries."""
    if isinstance(event, OfferPublished | OfferUpdated | OfferWithdrawn):
        return event.payload.offer_id, event.payload.version
    if isinstance(event, CaseOpened | CaseUpdated | CaseClosed):
        return event.payload.case_id, event.payload.version
    raise AssertionError(f"unexpected {type(event).__name__}")


def _on_day(moment: datetime) -> bool:
    return moment.astimezone(TZ).date() == DAY


# ---------------------------------------------------------------- district


def test_district_has_four_levels_and_every_parent_exists(district: District) -> None:
    levels = Counter(node.level for node in district.nodes)
    assert levels == {Level.CENTRE: 1, Level.WORKSTATION: 8, Level.STUDIO: 32, Level.GRID: 160}
    seen: set[str] = set()
    for node in district.nodes:  # parents first, and one level above their children
        if node.parent_id is not None:
            assert node.parent_id in seen
            parent = district.node_by_id[node.parent_id]
            assert LEVEL_DEPTH[node.level] == LEVEL_DEPTH[parent.level] + 1
        seen.add(node.node_id)
    assert len(seen) == len(district.nodes)
    assert "ws-wenlong-st-shuanglong-g1" in district.grid_ids


def test_district_names_are_the_chinese_ones_the_district_registers(district: District) -> None:
    names = {node.node_id: node.name for node in district.nodes}
    assert names["centre"] == "綦江区慈善中心"
    assert names["ws-wenlong"] == "文龙街道慈善工作站"
    assert names["ws-wenlong-st-shuanglong"] == "双龙社区慈善工作室"
    assert names["ws-wenlong-st-shuanglong-g1"] == "双龙社区第1网格"
    for node in district.nodes:  # towns (镇) have villages (村), streets (街道) communities (社区)
        if node.level is Level.STUDIO:
            town = names[node.parent_id or ""].endswith("镇慈善工作站")
            assert node.name.endswith("村慈善工作室" if town else "社区慈善工作室")
    partners = [partner.name for partner in district.partners]
    assert "綦江区民政局" in partners
    latin = [name for name in [*names.values(), *partners]
             if any(char.isascii() and char.isalpha() for char in name)]
    assert not latin
    big = build_district(seed=1, workstations=21, studios_per_ws=8, partners=2000)
    assert len({partner.name for partner in big.partners}) == len(big.partners)
    assert any(partner.name.endswith("（第二分队）") for partner in big.partners)
    assert any(node.name == "双龙二村慈善工作室" or node.name == "双龙二社区慈善工作室"
               for node in big.nodes)


def test_district_distances_are_km_scale(district: District) -> None:
    for studio in district.studio_ids:
        grids = district.children_of[studio]
        for a, b in itertools.combinations(grids, 2):
            assert 0.45 <= distance_km(district.location(a), district.location(b)) <= 2.0
    stations = district.workstation_ids
    for ws in stations:
        nearest = min(distance_km(district.location(ws), district.location(other))
                      for other in stations if other != ws)
        assert 4.5 <= nearest <= 20.0


def test_district_has_200_plus_partners_of_every_kind(district: District) -> None:
    partners = district.partners
    assert len(partners) >= 200
    assert {partner.kind for partner in partners} == set(PartnerKind)
    assert len({partner.partner_id for partner in partners}) == len(partners)
    assert len({partner.name for partner in partners}) == len(partners)
    levels = Counter(district.node_by_id[p.home_node_id].level for p in partners)
    assert levels[Level.WORKSTATION] + levels[Level.STUDIO] > 0.7 * len(partners)
    assert Counter(p.kind for p in partners)[PartnerKind.GOVERNMENT_DEPARTMENT] >= 20


def test_district_is_deterministic() -> None:
    assert build_district(seed=3) == build_district(seed=3)
    assert build_district(seed=3).nodes != build_district(seed=4).nodes


def test_registry_events_put_parents_first_and_round_trip(district: District) -> None:
    at = datetime(2026, 11, 29, 8, 0, tzinfo=TZ)
    events = registry_events(district, at)
    nodes = [e for e in events if isinstance(e, NodeRegistered)]
    partners = [e for e in events if isinstance(e, PartnerRegistered)]
    assert len(nodes) == len(district.nodes) and len(partners) == len(district.partners)
    assert events[: len(nodes)] == nodes  # every node before any partner
    registered: set[str] = set()
    for node in nodes:
        assert node.payload.parent_id is None or node.payload.parent_id in registered
        registered.add(node.payload.node_id)
    for event in events:
        assert registry_event_adapter.validate_json(event.model_dump_json()) == event
    assert registry_events(district, at) == events


# ---------------------------------------------------------------- day


def test_day_is_deterministic_for_a_seed(district: District, day_events: list[Event]) -> None:
    again = simulate_day(district, DAY)
    assert [e.model_dump_json() for e in again] == [e.model_dump_json() for e in day_events]
    other = simulate_day(district, DAY, seed=8)
    assert [e.event_id for e in other] != [e.event_id for e in day_events]


def test_day_has_every_event_type(day_events: list[Event]) -> None:
    types = Counter(type(event) for event in day_events)
    assert types[OfferPublished] == 400 + 150 + 80
    assert types[CaseOpened] == 600
    for rare in (OfferUpdated, OfferWithdrawn, CaseUpdated, CaseClosed):
        assert 0 < types[rare] < 0.2 * len(day_events)
    assert len({event.event_id for event in day_events}) == len(day_events)
    assert {event.correlation_id for event in day_events} == {f"sim-{DAY.isoformat()}"}


def test_day_events_round_trip_through_the_adapters(day_events: list[Event]) -> None:
    for event in day_events:
        raw = event.model_dump_json()
        if isinstance(event, OfferPublished | OfferUpdated | OfferWithdrawn):
            assert offer_event_adapter.validate_json(raw) == event
        else:
            assert need_event_adapter.validate_json(raw) == event


def test_day_is_sorted_on_the_day_in_china_time(day_events: list[Event]) -> None:
    times = [event.occurred_at for event in day_events]
    assert times == sorted(times)
    assert all(t.utcoffset() == timedelta(hours=8) and _on_day(t) for t in times)


def test_every_offer_is_produced_by_its_partner(
    district: District, day_events: list[Event]
) -> None:
    owner: dict[str, str] = {}
    for event in day_events:
        if isinstance(event, OfferPublished | OfferUpdated):
            offer = event.payload
            assert event.producer == offer.partner_id
            home = district.partner_by_id[offer.partner_id].home_node_id
            assert offer.node_id == home or home in district.ancestors(offer.node_id)
            owner[offer.offer_id] = offer.partner_id
        elif isinstance(event, OfferWithdrawn):
            assert event.producer == owner[event.payload.offer_id]


def test_every_case_comes_from_an_existing_grid(
    district: District, day_events: list[Event]
) -> None:
    grid_of: dict[str, str] = {}
    for event in day_events:
        if isinstance(event, CaseOpened | CaseUpdated):
            case = event.payload
            assert district.node_by_id[case.grid_id].level is Level.GRID
            assert event.producer == case.grid_id
            grid_of[case.case_id] = case.grid_id
        elif isinstance(event, CaseClosed):
            assert event.producer == grid_of[event.payload.case_id]


def test_versions_increase_per_entity(day_events: list[Event]) -> None:
    last: dict[str, int] = {}
    ended: set[str] = set()
    for event in day_events:
        entity, version = _entity_version(event)
        assert entity not in ended, "no event after a withdrawal or closure"
        if isinstance(event, OfferPublished | CaseOpened):
            assert entity not in last and version == 1
        else:
            assert version > last[entity]
        last[entity] = version
        if isinstance(event, OfferWithdrawn | CaseClosed):
            ended.add(entity)


def test_offer_details_are_realistic(day_events: list[Event]) -> None:
    offers = [e.payload for e in day_events if isinstance(e, OfferPublished)]
    for offer in offers:
        if isinstance(offer, VolunteerOffer):
            assert all(_on_day(w.start) and _on_day(w.end - timedelta(seconds=1))
                       for w in offer.availability)
        elif isinstance(offer, GoodsOffer):
            if offer.category in PERISHABLE - {"eggs"}:
                assert offer.expires_at is not None
                assert 1 <= (offer.expires_at.date() - DAY).days <= 5
            elif offer.category not in PERISHABLE:
                assert offer.expires_at is None
        elif isinstance(offer, ServiceOffer):
            assert all(_on_day(slot.window.start) for slot in offer.slots)
            usual = set(SERVICES[offer.service_type].eligibility) or set(ELDERLY_GROUPS)
            assert set(offer.eligibility) <= usual
    languages = Counter(lang for o in offers if isinstance(o, VolunteerOffer)
                        for lang in o.languages)
    assert languages["chongqing_dialect"] > 0 and languages["mandarin"] > 0


def test_case_details_are_realistic(day_events: list[Event]) -> None:
    cases = [e.payload for e in day_events if isinstance(e, CaseOpened)]
    items = [item for case in cases for item in case.items]
    for item in items:
        assert _on_day(item.window.start)
        assert item.window.start < item.deadline <= item.window.end
        if item.kind is OfferKind.SERVICE:
            assert not item.splittable
        elif item.kind is OfferKind.GOODS:
            assert item.splittable
    assert any(item.window.end.date() > DAY for item in items), "some windows span days"
    required = Counter(tuple(item.preferences.languages) for item in items)
    assert required[("chongqing_dialect",)] > 0
    assert sum(1 for case in cases if case.beneficiary.sensitive is not None) > len(cases) / 2
    assert len({case.beneficiary.pseudonym for case in cases}) == len(cases)
    assert {case.beneficiary.vulnerability for case in cases} >= {2, 3, 4, 5}


def test_supply_covers_some_but_not_all_demand(day_events: list[Event]) -> None:
    balance = day_balance(day_events)
    coverage = coverage_by_kind(balance)
    assert set(coverage) == set(OfferKind)
    for kind, share in coverage.items():
        assert 0.6 < share < 0.95, (kind, share)
        entries = [entry for entry in balance.values() if entry.kind is kind]
        assert any(entry.supply < entry.demand for entry in entries)
        assert any(entry.supply >= entry.demand > 0 for entry in entries)


def test_month_yields_each_day_with_fresh_ids(district: District) -> None:
    start = date(2026, 12, 4)  # a Friday, so the weekend shows
    days = list(simulate_month(district, start, days=3, cases=60, volunteer_offers=40,
                               goods_offers=15, service_offers=8))
    assert len(days) == 3
    opened = [sum(isinstance(e, CaseOpened) for e in events) for events in days]
    assert opened[1] < opened[0]  # fewer cases on Saturday
    for offset, events in enumerate(days):
        assert all(_on_day_of(e.occurred_at, start + timedelta(days=offset)) for e in events)
    ids = [e.event_id for events in days for e in events]
    assert len(ids) == len(set(ids))
    people = [{e.payload.beneficiary.pseudonym for e in events if isinstance(e, CaseOpened)}
              for events in days]
    assert people[0] & (people[1] | people[2]), "the same households recur across days"


def _on_day_of(moment: datetime, day: date) -> bool:
    return moment.astimezone(TZ).date() == day


# ---------------------------------------------------------------- publish


def test_topic_and_key_route_each_type(district: District, day_events: list[Event]) -> None:
    topics = Topics(prefix="t")
    registry = registry_events(district, datetime(2026, 11, 29, 8, 0, tzinfo=TZ))
    node = next(e for e in registry if isinstance(e, NodeRegistered))
    partner = next(e for e in registry if isinstance(e, PartnerRegistered))
    assert topic_and_key(node, topics) == ("t.registry", REGISTRY_KEY.encode())
    assert topic_and_key(partner, topics) == ("t.registry", REGISTRY_KEY.encode())
    for offer_type in (OfferPublished, OfferUpdated, OfferWithdrawn):
        offer = next(e for e in day_events if isinstance(e, offer_type))
        assert isinstance(offer, OfferPublished | OfferUpdated | OfferWithdrawn)
        assert topic_and_key(offer, topics) == ("t.offers", offer.payload.offer_id.encode())
    for case_type in (CaseOpened, CaseUpdated, CaseClosed):
        case = next(e for e in day_events if isinstance(e, case_type))
        assert isinstance(case, CaseOpened | CaseUpdated | CaseClosed)
        assert topic_and_key(case, topics) == ("t.needs", case.payload.case_id.encode())
    assert topic_and_key(node)[0] == "charity.registry"
    with pytest.raises(ValueError):
        topic_and_key(Envelope(event_id=node.event_id, occurred_at=node.occurred_at,
                               producer="x"), topics)


class _FakeProducer:
    """Stands in for AIOKafkaProducer: records what would be sent."""

    instances: ClassVar[list[_FakeProducer]] = []

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.started = self.flushed = self.stopped = False
        _FakeProducer.instances.append(self)

    async def start(self) -> None:
        self.started = True

    async def send(self, topic: str, value: bytes, key: bytes,
                   headers: list[tuple[str, bytes]]) -> Any:
        self.sent.append((topic, key, value, headers))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def flush(self) -> None:
        self.flushed = True

    async def stop(self) -> None:
        self.stopped = True


async def test_publish_events_sends_every_event_in_order(
    monkeypatch: pytest.MonkeyPatch, day_events: list[Event]
) -> None:
    monkeypatch.setattr(publish_module, "AIOKafkaProducer", _FakeProducer)
    events = day_events[:120]
    calls: list[tuple[int, int]] = []
    count = await publish_events(KafkaAccess(bootstrap="broker:9092"), Topics(), events,
                                 progress=lambda done, total: calls.append((done, total)),
                                 batch_size=50)
    producer = _FakeProducer.instances[-1]
    assert count == 120
    assert producer.config == {"bootstrap_servers": "broker:9092", "acks": "all",
                               "security_protocol": "PLAINTEXT",
                               "enable_idempotence": True}
    assert producer.started and producer.flushed and producer.stopped
    assert calls == [(50, 120), (100, 120), (120, 120)]
    for event, (topic, key, value, headers) in zip(events, producer.sent, strict=True):
        assert (topic, key) == topic_and_key(event)
        assert headers == headers_of(event)
        assert dict(headers)["event_type"] == event.event_type.encode()
        assert value == event.model_dump_json().encode()
