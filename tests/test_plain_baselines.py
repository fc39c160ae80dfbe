"""The benchmarks' own plain reading of the district: greedy baselines and the judge.

Small cases checked by hand, and a property: whatever the stream, a baseline's allocations
break no rule the judge checks (so the judge's violations of the engine mean something).
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import factories as f

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import plain

NOW = f.DAY + timedelta(hours=8)  # after the factories' events (07:00), before their windows


def world(*events: dict[str, Any], opened: dict[str, float] | None = None) -> plain.World:
    """A world fed the hierarchy, two partners and the events (cases opened at given hours)."""
    w = plain.World()
    for event in [*f.hierarchy(), f.partner("p1"), f.partner("p2", home=f.WS, kind="merchant"),
                  *events]:
        case_id = event["payload"].get("case_id")
        if opened and case_id in opened:
            event = {**event, "occurred_at": f.at(opened[case_id])}
        w.apply(f.parse(event))
    return w


def served(greedy: plain.Greedy) -> dict[str, float]:
    totals: dict[str, float] = {}
    for g in greedy.ledger.given:
        totals[g.case_id] = totals.get(g.case_id, 0.0) + g.amount
    return totals


def two_cases_for_one_volunteer() -> plain.World:
    """One volunteer with 3 hours; two cases each need 2 hours in one go; the later one is
    the more urgent."""
    whole = [f.item(quantity=2, start=9, end=12, splittable=False)]
    urgent = [f.item(quantity=2, start=9, end=12, splittable=False, urgency=5)]
    return world(f.volunteer_offer("o1", "p1", start=9, end=12, hours=3),
                 f.case("c-early", items=whole, vulnerability=1),
                 f.case("c-late", items=urgent, vulnerability=5),
                 opened={"c-early": 6, "c-late": 7})


def test_first_come_first_served_even_when_a_later_case_is_more_urgent() -> None:
    greedy = plain.Greedy("fcfs", two_cases_for_one_volunteer(), plain.fcfs_order)
    greedy.batch(NOW)
    assert served(greedy) == {"c-early": 2.0}


def test_urgency_first_serves_the_more_urgent_later_case() -> None:
    greedy = plain.Greedy("urgency", two_cases_for_one_volunteer(), plain.urgency_order)
    greedy.batch(NOW)
    assert served(greedy) == {"c-late": 2.0}


def test_a_splittable_item_takes_from_several_offers_until_served() -> None:
    rice = [f.item(kind="goods", need="rice", quantity=30, unit="kg")]
    greedy = plain.Greedy("fcfs", world(f.goods_offer("g1", "p2", quantity=20),
                                        f.goods_offer("g2", "p2", quantity=20),
                                        f.case("c1", items=rice)), plain.fcfs_order)
    greedy.batch(NOW)
    assert sorted(g.amount for g in greedy.ledger.given) == [10.0, 20.0]


def test_an_unsplittable_item_skips_an_offer_too_small_for_all_of_it() -> None:
    greedy = plain.Greedy("fcfs", world(
        f.volunteer_offer("small", "p1", hours=1.5, lat=29.052, lon=106.662),
        f.volunteer_offer("big", "p1", hours=3, lat=29.07, lon=106.68),
        f.case("c1", items=[f.item(quantity=2, start=9, end=12, splittable=False)])),
        plain.fcfs_order)
    greedy.batch(NOW)
    assert [(g.offer_id, g.amount) for g in greedy.ledger.given] == [("big", 2.0)]


def test_no_volunteer_is_in_two_places_at_once() -> None:
    greedy = plain.Greedy("fcfs", world(
        f.volunteer_offer("o1", "p1", start=9, end=13, hours=6),
        f.case("c1", items=[f.item(quantity=2, start=9, end=11)]),
        f.case("c2", items=[f.item(quantity=2, start=9, end=11)]),
        opened={"c1": 6, "c2": 7}), plain.fcfs_order)
    greedy.batch(NOW)
    assert served(greedy) == {"c1": 2.0}


def test_a_volunteers_week_is_shared_by_all_their_offers() -> None:
    # Two offers of one volunteer on two days, each saying 3 hours a week.
    day2 = {"start": 9 + 24, "end": 12 + 24}
    greedy = plain.Greedy("fcfs", world(
        f.volunteer_offer("mon", "p1", start=9, end=12, hours=3, volunteer_id="vol-1"),
        f.volunteer_offer("tue", "p1", **day2, hours=3, volunteer_id="vol-1"),
        f.case("c1", items=[f.item(quantity=3, start=9, end=12)]),
        f.case("c2", items=[f.item(quantity=3, **day2)]),
        opened={"c1": 6, "c2": 7}), plain.fcfs_order)
    greedy.batch(NOW)
    assert served(greedy) == {"c1": 3.0}


def test_the_judge_counts_what_breaks_a_rule() -> None:
    w = world(f.goods_offer("g1", "p2", quantity=5),
              f.case("c1", items=[f.item(kind="goods", need="rice", quantity=4, unit="kg")]))
    too_much = [plain.Given("c1", "i1", "g1", "goods", 3.0, NOW),
                plain.Given("c1", "i1", "g1", "goods", 3.0, NOW)]
    outcome = plain.judge("x", w, too_much, NOW + timedelta(days=30))
    assert outcome.violations == {"goods_over_quantity": 1, "item_over_served": 1}
    assert outcome.fulfilment == 1.0


def test_fulfilment_counts_only_what_came_by_the_deadline() -> None:
    w = world(f.volunteer_offer("o1", "p1", start=9, end=12, hours=3),
              f.case("c1", items=[f.item(quantity=2, start=9, end=11)]))
    late = NOW + timedelta(days=3)
    given = [plain.Given("c1", "i1", "o1", "volunteer", 2.0, NOW, start=late,
                         end=late + timedelta(hours=2), volunteer_id="v-o1")]
    outcome = plain.judge("late", w, given, NOW + timedelta(days=30))
    assert outcome.fulfilment == 0.0 and outcome.urgent_in_full == 0.0


offers = st.lists(st.tuples(st.sampled_from(["v", "g"]), st.integers(0, 2),
                            st.floats(1, 6), st.integers(7, 14)), min_size=1, max_size=6)
items = st.lists(st.tuples(st.sampled_from(["v", "g"]), st.floats(0.5, 5), st.booleans(),
                           st.integers(1, 5), st.integers(8, 15)), min_size=1, max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offers=offers, items=items, urgency_first=st.booleans())
def test_a_baseline_never_breaks_a_rule_the_judge_checks(
        offers: list[tuple[str, int, float, int]], items: list[tuple[str, float, bool, int, int]],
        urgency_first: bool) -> None:
    events: list[dict[str, Any]] = []
    for number, (kind, volunteer, amount, start) in enumerate(offers):
        if kind == "v":
            events.append(f.volunteer_offer(f"o{number}", "p1", start=start, end=start + 4,
                                            hours=round(amount, 1),
                                            volunteer_id=f"vol-{volunteer}"))
        else:
            events.append(f.goods_offer(f"o{number}", "p2", quantity=round(amount * 4, 1)))
    for number, (kind, quantity, splittable, urgency, start) in enumerate(items):
        item = (f.item(quantity=round(quantity, 1), start=start, end=start + 5,
                       splittable=splittable, urgency=urgency) if kind == "v" else
                f.item(kind="goods", need="rice", quantity=round(quantity, 1), unit="kg",
                       splittable=splittable, urgency=urgency))
        events.append(f.case(f"c{number}", items=[item]))
    w = world(*events)
    greedy = plain.Greedy("g", w, plain.urgency_order if urgency_first else plain.fcfs_order)
    greedy.batch(NOW)
    outcome = plain.judge("g", w, greedy.ledger.given, NOW + timedelta(days=30))
    assert outcome.violations == {}
