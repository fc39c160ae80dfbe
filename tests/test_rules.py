"""Each hard rule and each soft term: one case where it bites, one where it does not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from matcher.domain import rules, scoring
from matcher.domain.frames import Vocabulary, build_demand, build_supply
from matcher.domain.pairs import Pairs, join_by_need
from matcher.domain.scoring import ScoringContext
from tests import factories as f

NOW = f.DAY.timestamp()


@dataclass(frozen=True)
class NodeStub:
    """A node as matching reads it: where it sits, its parent and its default reach."""

    path: str
    lat: float | None
    lon: float | None
    parent_id: str | None = None
    reach: dict[str, Any] | None = None


NODES = {
    f.CENTRE: NodeStub(f"/{f.CENTRE}/", 29.03, 106.65),
    f.WS: NodeStub(f"/{f.CENTRE}/{f.WS}/", 29.05, 106.66),
    f.STUDIO: NodeStub(f"/{f.CENTRE}/{f.WS}/{f.STUDIO}/", 29.051, 106.661),
    f.GRID: NodeStub(f"/{f.CENTRE}/{f.WS}/{f.STUDIO}/{f.GRID}/", 29.052, 106.662),
    f.GRID2: NodeStub(f"/{f.CENTRE}/{f.WS}/{f.STUDIO}/{f.GRID2}/", 29.055, 106.665),
    f.WS_B: NodeStub(f"/{f.CENTRE}/{f.WS_B}/", 28.95, 106.60),
    f.STUDIO_B: NodeStub(f"/{f.CENTRE}/{f.WS_B}/{f.STUDIO_B}/", 28.951, 106.601),
    f.GRID_B: NodeStub(f"/{f.CENTRE}/{f.WS_B}/{f.STUDIO_B}/{f.GRID_B}/", 28.952, 106.602),
}


def item_row(case_event: dict[str, Any], index: int = 0,
             opened_at: datetime | None = None) -> dict[str, Any]:
    """An item as the store returns it, from a case event written by a partner system."""
    case = case_event["payload"]
    item = case["items"][index]
    kind = item["kind"]
    return {
        "case_id": case["case_id"], "item_id": item["item_id"], "grid_id": case["grid_id"],
        "kind": kind, "need": item["need"], "quantity": item["quantity"],
        "unit": {"volunteer": "hours", "service": "sessions"}.get(kind, item["unit"]),
        "window_start": datetime.fromisoformat(item["window"]["start"]),
        "window_end": datetime.fromisoformat(item["window"]["end"]),
        "deadline": datetime.fromisoformat(item["deadline"]),
        "urgency": item["urgency"], "splittable": item["splittable"] and kind != "service",
        "preferences": item["preferences"], "beneficiary": case["beneficiary"],
        "opened_at": opened_at or f.DAY,
    }


def pairs_of(case_event: dict[str, Any], offer_event: dict[str, Any], *,
             now: float = NOW, held: float = 0.0,
             excluded: set[tuple[str, str, str]] | None = None,
             opened_at: datetime | None = None) -> Pairs:
    """Every joined pair of one item and one offer."""
    vocab = Vocabulary()
    demand = build_demand([item_row(case_event, opened_at=opened_at)], {}, NODES, vocab)
    offer = offer_event["payload"]
    slot = 0 if offer["kind"] == "service" else None
    supply = build_supply([{"offer_id": offer["offer_id"], "payload": offer}],
                          {(offer["offer_id"], slot): held} if held else {}, NODES, vocab)
    d, s = join_by_need(demand, supply)
    return Pairs(demand, supply, d, s, now, excluded or set())


def holds(rule: Any, pairs: Pairs) -> bool:
    result = rule(pairs)
    assert len(result) == 1, "exactly one candidate pair"
    return bool(result[0])


VOLUNTEER_CASE = f.case("c1", items=[f.item(start=9, end=12, quantity=2)])


def test_join_pairs_only_same_kind_and_need() -> None:
    assert len(pairs_of(VOLUNTEER_CASE, f.volunteer_offer("o1", "p1"))) == 1
    assert len(pairs_of(VOLUNTEER_CASE, f.volunteer_offer("o1", "p1", skills=["cooking"]))) == 0
    assert len(pairs_of(VOLUNTEER_CASE, f.goods_offer("g1", "p1", category="companionship"))) == 0


def test_unit_matches() -> None:
    rice = f.case("c1", items=[f.item(kind="goods", need="rice", quantity=5, unit="kg")])
    assert holds(rules.unit_matches, pairs_of(rice, f.goods_offer("g1", "p1", unit="kg")))
    assert not holds(rules.unit_matches, pairs_of(rice, f.goods_offer("g1", "p1", unit="bag")))


def test_within_reach_by_radius_for_volunteers() -> None:
    near = f.volunteer_offer("o1", "p1", lat=29.06, lon=106.67, radius_km=3)
    far = f.volunteer_offer("o1", "p1", lat=29.20, lon=106.80, radius_km=3)
    assert holds(rules.within_reach, pairs_of(VOLUNTEER_CASE, near))
    assert not holds(rules.within_reach, pairs_of(VOLUNTEER_CASE, far))


def test_within_reach_of_a_service_place() -> None:
    physio = f.case("c1", items=[f.item(kind="service", need="physiotherapy", quantity=1)])
    near = f.service_offer("s1", "p1", node_id=f.WS_B)
    far = f.service_offer("s1", "p1", node_id=f.WS_B)
    near["payload"]["place"] = {"lat": 29.06, "lon": 106.67}
    far["payload"]["place"] = {"lat": 29.20, "lon": 106.80}
    assert holds(rules.within_reach, pairs_of(physio, near))
    assert not holds(rules.within_reach, pairs_of(physio, far))


def test_within_reach_by_workstation_for_goods() -> None:
    rice = f.case("c1", items=[f.item(kind="goods", need="rice", quantity=5, unit="kg")])
    assert holds(rules.within_reach, pairs_of(rice, f.goods_offer("g1", "p1", node_id=f.WS)))
    assert holds(rules.within_reach,
                 pairs_of(rice, f.goods_offer("g1", "p1", node_id=f.STUDIO)))
    assert holds(rules.within_reach, pairs_of(rice, f.goods_offer("g1", "p1", node_id=f.CENTRE)))
    assert not holds(rules.within_reach,
                     pairs_of(rice, f.goods_offer("g1", "p1", node_id=f.WS_B)))


def test_deadline_not_passed() -> None:
    offer = f.volunteer_offer("o1", "p1")
    assert holds(rules.deadline_not_passed, pairs_of(VOLUNTEER_CASE, offer))
    late = NOW + 13 * 3600
    assert not holds(rules.deadline_not_passed, pairs_of(VOLUNTEER_CASE, offer, now=late))


def test_time_windows_overlap_for_volunteers() -> None:
    assert holds(rules.time_windows_overlap,
                 pairs_of(VOLUNTEER_CASE, f.volunteer_offer("o1", "p1", start=10, end=12)))
    unsplittable = f.case("c1", items=[f.item(start=9, end=12, quantity=2, splittable=False)])
    assert not holds(rules.time_windows_overlap,
                     pairs_of(unsplittable, f.volunteer_offer("o1", "p1", start=11, end=14)))
    assert not holds(rules.time_windows_overlap,
                     pairs_of(VOLUNTEER_CASE, f.volunteer_offer("o1", "p1", start=13, end=16)))


def test_time_windows_overlap_for_service_slots() -> None:
    physio = f.case("c1", items=[f.item(kind="service", need="physiotherapy", quantity=1,
                                        start=13, end=17)])
    assert holds(rules.time_windows_overlap,
                 pairs_of(physio, f.service_offer("s1", "p1", start=14, end=15)))
    assert not holds(rules.time_windows_overlap,
                     pairs_of(physio, f.service_offer("s1", "p1", start=16, end=18)))


def test_still_good_when_used() -> None:
    milk = f.case("c1", items=[f.item(kind="goods", need="milk", quantity=2, unit="l",
                                      start=30, end=40)])
    fresh = f.goods_offer("g1", "p1", category="milk", unit="l", expires_in_days=3)
    stale = f.goods_offer("g1", "p1", category="milk", unit="l", expires_in_days=1)
    assert holds(rules.still_good_when_used, pairs_of(milk, fresh))
    assert not holds(rules.still_good_when_used, pairs_of(milk, stale))


def test_eligible_beneficiary() -> None:
    physio = f.case("c1", group="disabled",
                    items=[f.item(kind="service", need="physiotherapy", quantity=1)])
    assert holds(rules.eligible_beneficiary,
                 pairs_of(physio, f.service_offer("s1", "p1", eligibility=["disabled"])))
    assert holds(rules.eligible_beneficiary, pairs_of(physio, f.service_offer("s1", "p1")))
    assert not holds(rules.eligible_beneficiary,
                     pairs_of(physio, f.service_offer("s1", "p1", eligibility=["elderly"])))


def test_speaks_required_language() -> None:
    dialect = f.case("c1", items=[f.item(languages=["chongqing_dialect"])])
    speaker = f.volunteer_offer("o1", "p1", languages=["mandarin", "chongqing_dialect"])
    assert holds(rules.speaks_required_language, pairs_of(dialect, speaker))
    assert not holds(rules.speaks_required_language,
                     pairs_of(dialect, f.volunteer_offer("o1", "p1", languages=["mandarin"])))
    assert holds(rules.speaks_required_language,
                 pairs_of(VOLUNTEER_CASE, f.volunteer_offer("o1", "p1", languages=["english"])))


def test_not_turned_down() -> None:
    offer = f.volunteer_offer("o1", "p1")
    assert holds(rules.not_turned_down, pairs_of(VOLUNTEER_CASE, offer))
    assert not holds(rules.not_turned_down,
                     pairs_of(VOLUNTEER_CASE, offer, excluded={("c1", "i1", "o1")}))


def term(name: str, pairs: Pairs, ctx: ScoringContext | None = None) -> float:
    return float(scoring.TERMS[name](pairs, ctx or ScoringContext())[0])


OFFER = f.volunteer_offer("o1", "p1")


@pytest.mark.parametrize(("name", "low_case", "high_case"), [
    ("urgency", f.case("c1", items=[f.item(urgency=1)]), f.case("c1", items=[f.item(urgency=5)])),
    ("vulnerability", f.case("c1", vulnerability=1), f.case("c1", vulnerability=5)),
])
def test_priority_terms_rank_urgent_and_vulnerable_first(name: str, low_case: dict[str, Any],
                                                         high_case: dict[str, Any]) -> None:
    assert term(name, pairs_of(low_case, OFFER)) == 0.0
    assert term(name, pairs_of(high_case, OFFER)) == 1.0


def test_waiting_term_grows_with_time_waited() -> None:
    fresh = pairs_of(VOLUNTEER_CASE, OFFER, opened_at=f.DAY)
    waited = pairs_of(VOLUNTEER_CASE, OFFER, opened_at=f.DAY - timedelta(days=7))
    assert term("waiting", fresh) == 0.0
    assert term("waiting", waited) == 1.0


def test_travel_term_prefers_short_trips() -> None:
    next_door = f.volunteer_offer("o1", "p1", lat=29.052, lon=106.662)
    across = f.volunteer_offer("o1", "p1", lat=29.09, lon=106.70, radius_km=10)
    assert term("travel", pairs_of(VOLUNTEER_CASE, next_door)) > 0.99
    assert term("travel", pairs_of(VOLUNTEER_CASE, across)) < 0.6


def test_skill_fit_prefers_a_volunteers_first_skill() -> None:
    first = f.volunteer_offer("o1", "p1", skills=["companionship", "cooking"])
    second = f.volunteer_offer("o1", "p1", skills=["cooking", "companionship"])
    assert term("skill_fit", pairs_of(VOLUNTEER_CASE, first)) == 1.0
    assert term("skill_fit", pairs_of(VOLUNTEER_CASE, second)) == 0.5


def test_expiry_term_sends_soon_expiring_goods_first() -> None:
    bread = f.case("c1", items=[f.item(kind="goods", need="bread", quantity=2, unit="loaf")])
    soon = f.goods_offer("g1", "p1", category="bread", unit="loaf", expires_in_days=1)
    durable = f.goods_offer("g1", "p1", category="bread", unit="loaf")
    assert term("expiry", pairs_of(bread, soon)) > 0.9
    assert term("expiry", pairs_of(bread, durable)) == 0.0


def test_continuity_prefers_the_volunteer_already_known() -> None:
    recurring = f.case("c1", items=[{**f.item(), "preferences": {"recurring": True}}])
    pairs = pairs_of(recurring, OFFER)
    volunteer_code = int(pairs.supply.volunteer[0])
    known = ScoringContext(history=frozenset({("ben-c1", volunteer_code)}))
    assert term("continuity", pairs, known) == 1.0
    assert term("continuity", pairs) == 0.0


def test_preferred_partner_term() -> None:
    prefers = f.case("c1", items=[{**f.item(), "preferences": {"preferred_partner_ids": ["p1"]}}])
    assert term("preferred_partner", pairs_of(prefers, OFFER)) == 1.0
    assert term("preferred_partner", pairs_of(VOLUNTEER_CASE, OFFER)) == 0.0


def test_workload_balance_prefers_offers_with_more_left() -> None:
    assert term("workload_balance", pairs_of(VOLUNTEER_CASE, OFFER)) == 1.0
    assert term("workload_balance", pairs_of(VOLUNTEER_CASE, OFFER, held=2.0)) == pytest.approx(
        1 / 3)


def test_grid_coverage_prefers_under_served_grids() -> None:
    pairs = pairs_of(VOLUNTEER_CASE, OFFER)
    served_well = ScoringContext(grid_coverage={f.GRID: 0.9})
    served_poorly = ScoringContext(grid_coverage={f.GRID: 0.0})
    assert term("grid_coverage", pairs, served_poorly) == 1.0
    assert term("grid_coverage", pairs, served_well) == pytest.approx(0.1)


def test_every_term_has_a_non_negative_weight() -> None:
    weights = scoring.Weights().as_dict()
    assert set(weights) == set(scoring.TERMS)
    assert np.all(scoring.weight_vector(scoring.Weights()) >= 0)
