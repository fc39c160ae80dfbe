"""Properties of capacity over time, on random small districts: no volunteer beyond their
weekly limit across all their offers; no item served beyond its quantity counting every
allocation ever made; nothing begun is revoked by a rebalance; shrinking updates never
leave capacity over-committed."""

from __future__ import annotations

import random
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from matcher.domain.frames import supply_units
from matcher.domain.weeks import week_of
from matcher.services import rebalancing
from matcher.services.decisions import report_outcome
from matcher.services.engine import MatchingEngine
from matcher.storage.database import migrate, open_engine
from matcher.storage.store import HOLDING, unit_of_work
from matcher.storage.tables import need_items, proposals
from schemas.matches import Outcome, ProposalStatus
from tests import factories as f
from tests.coordination_world import Clock
from tests.test_rebalancing import TOPICS, feed, options

pytestmark = pytest.mark.slow
EXAMPLES = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
# 02:00 on the factories' Monday in Chongqing: every visit of the fortnight lies ahead.
NIGHT = datetime(2030, 6, 2, 18, 0, tzinfo=UTC)
HOLDING_STATUSES = [s.value for s in HOLDING]


@contextmanager
def fresh_db() -> Iterator[Engine]:
    """A migrated SQLite file of its own for one example."""
    with tempfile.TemporaryDirectory() as folder:
        engine = open_engine(f"sqlite:///{Path(folder) / 'm.db'}")
        migrate(engine)
        try:
            yield engine
        finally:
            engine.dispose()


def volunteers_over_a_fortnight(rng: random.Random) -> list[dict[str, Any]]:
    """Two or three people, each publishing an offer for several days of two weeks."""
    offers = []
    for person in range(rng.randint(2, 3)):
        limit = rng.choice([2, 3, 4])
        for day in sorted(rng.sample(range(12), rng.randint(2, 6))):
            offers.append(f.volunteer_offer(
                f"v{person}-d{day}", rng.choice(["p1", "p2"]), start=24 * day + 8,
                end=24 * day + 18, hours=limit, volunteer_id=f"vol-{person}", radius_km=8))
    return offers


def visit_cases(rng: random.Random, count: int, first: int = 0) -> list[dict[str, Any]]:
    """Cases asking for a visit on one day of the fortnight."""
    cases = []
    for n in range(first, first + count):
        day = rng.randrange(12)
        cases.append(f.case(f"c{n}", grid=rng.choice([f.GRID, f.GRID2]), items=[f.item(
            quantity=rng.choice([1, 1.5, 2, 3]), start=24 * day + 8, end=24 * day + 18,
            urgency=rng.randint(1, 5), splittable=rng.random() < 0.5)]))
    return cases


def goods_cases(rng: random.Random, count: int, first: int = 0) -> list[dict[str, Any]]:
    """Cases asking for rice within the first days."""
    return [f.case(f"g{n}", grid=rng.choice([f.GRID, f.GRID2]), items=[f.item(
        kind="goods", need="rice", unit="kg", quantity=rng.choice([2, 5, 10]), start=8,
        end=24 * 5, urgency=rng.randint(1, 5), splittable=rng.random() < 0.6)])
        for n in range(first, first + count)]


def approve_some(db: Engine, rng: random.Random, share: float) -> None:
    """Coordinators approve a share of what is pending."""
    with unit_of_work(db) as store:
        for p in store.proposals_where(proposals.c.status == "proposed"):
            if rng.random() < share:
                store.set_proposal_status(p.proposal_id, ProposalStatus.APPROVED, at=NIGHT,
                                          by="c")


def engine_at(db: Engine, now: datetime = NIGHT) -> MatchingEngine:
    engine = MatchingEngine(db=db, topics=TOPICS, clock=Clock(now))
    feed(engine, *f.hierarchy(), f.partner("p1"), f.partner("p2"))
    return engine


def holding(db: Engine) -> list[Any]:
    """Every allocation that holds (pending, approved, fulfilled), as table rows."""
    with unit_of_work(db) as store:
        return list(store.conn.execute(select(proposals).where(
            proposals.c.status.in_(HOLDING_STATUSES))))


def weeks_over_limit(db: Engine) -> dict[tuple[str, int], float]:
    """(volunteer, week) -> hours beyond the lowest limit the volunteer's offers state now."""
    with unit_of_work(db) as store:
        offers = store.active_offers()
    limits: dict[str, float] = {}
    for o in offers:
        if o.kind == "volunteer":
            v = o.payload["volunteer_id"]
            limits[v] = min(limits.get(v, 99.0), float(o.payload["weekly_hour_limit"]))
    hours: dict[tuple[str, int], float] = defaultdict(float)
    for p in holding(db):
        if p.kind == "volunteer" and p.window_start is not None:
            hours[p.volunteer_id, week_of(p.window_start)] += p.amount
    return {k: h - limits.get(k[0], 99.0) for k, h in hours.items()
            if h > limits.get(k[0], 99.0) + 1e-6}


def overlapping_visits(db: Engine) -> list[tuple[str, str]]:
    """Pairs of one volunteer's visits that overlap in time."""
    visits: dict[str, list[Any]] = defaultdict(list)
    for p in holding(db):
        if p.kind == "volunteer" and p.window_start is not None and p.window_end is not None:
            visits[p.volunteer_id].append(p)
    clashes = []
    for rows in visits.values():
        rows.sort(key=lambda p: p.window_start)
        for a, b in pairwise(rows):
            if b.window_start < a.window_end:
                clashes.append((a.proposal_id, b.proposal_id))
    return clashes


def items_over_served(db: Engine) -> list[str]:
    """Items whose every live allocation ever made (pending, approved, fulfilled) adds up to
    more than the quantity asked now (or than what was already fulfilled, which no update
    can undo), or a whole item served by two offers."""
    with unit_of_work(db) as store:
        asked = {(c, i): (q, s) for c, i, q, s in store.conn.execute(select(
            need_items.c.case_id, need_items.c.item_id, need_items.c.quantity,
            need_items.c.splittable))}
    served: dict[tuple[str, str], float] = defaultdict(float)
    done: dict[tuple[str, str], float] = defaultdict(float)
    offers: dict[tuple[str, str], set[str]] = defaultdict(set)
    for p in holding(db):
        served[p.case_id, p.item_id] += p.amount
        done[p.case_id, p.item_id] += p.amount if p.status == "fulfilled" else 0.0
        offers[p.case_id, p.item_id].add(p.offer_id)
    problems = [f"{k} served {v} > {asked[k][0]}" for k, v in served.items()
                if v > max(asked[k][0], done[k]) + 1e-6]
    problems += [f"whole item {k} served by {sorted(o)}" for k, o in offers.items()
                 if not asked[k][1] and len(o) > 1]
    return problems


def offers_over_committed(db: Engine) -> list[str]:
    """(offer, slot) units holding more than the offer's current version gives."""
    problems = []
    with unit_of_work(db) as store:
        offers = {o.offer_id: o for o in store.active_offers()}
    held: dict[tuple[str, int | None], float] = defaultdict(float)
    for p in holding(db):
        held[p.offer_id, p.slot] += p.amount
    for (offer_id, slot), amount in held.items():
        offer = offers.get(offer_id)
        if offer is None:
            continue
        units = {None if u["slot"] < 0 else u["slot"]: u["capacity"] for u in supply_units(
            {"offer_id": offer_id, "payload": offer.payload})}
        if offer.kind == "volunteer":
            units[None] = sum((datetime.fromisoformat(w["end"])
                               - datetime.fromisoformat(w["start"])).total_seconds() / 3600
                              for w in offer.payload["availability"])
        if amount > units.get(slot, 0.0) + 1e-6:
            problems.append(f"{offer_id}#{slot} holds {amount} > {units.get(slot, 0.0)}")
    return problems


# --- a volunteer's week across offers -----------------------------------------------------------


@EXAMPLES
@given(seed=st.integers(0, 100_000))
def test_no_volunteer_goes_over_their_weekly_limit_across_all_their_offers(seed: int) -> None:
    rng = random.Random(seed)
    with fresh_db() as db:
        engine = engine_at(db)
        offers = volunteers_over_a_fortnight(rng)
        cases = visit_cases(rng, rng.randint(6, 16))
        rng.shuffle(offers)
        for wave in range(3):
            feed(engine, *offers[wave::3], *cases[wave::3])
            engine.match_shard(f.CENTRE)
            approve_some(db, rng, 0.5)
        assert weeks_over_limit(db) == {}
        assert overlapping_visits(db) == []
        assert items_over_served(db) == []


def test_a_volunteer_with_one_offer_a_day_gets_the_weekly_limit_once_a_week(db: Engine) -> None:
    engine = engine_at(db)
    feed(engine, *(f.volunteer_offer(f"v-d{day}", "p1", start=24 * day + 8,
                                     end=24 * day + 18, hours=3, volunteer_id="vol-a")
                   for day in range(4)))
    feed(engine, *(f.case(f"c{day}", items=[f.item(quantity=2, start=24 * day + 8,
                                                   end=24 * day + 18)]) for day in range(4)))
    engine.match_shard(f.CENTRE)
    # 3 h a week across the four offers: one visit of 2 h and 1 h of a second, no more.
    assert sum(p.amount for p in holding(db)) == pytest.approx(3.0)
    assert weeks_over_limit(db) == {}


def test_the_next_week_gives_the_volunteer_their_hours_again(db: Engine) -> None:
    engine = engine_at(db)
    feed(engine, *(f.volunteer_offer(f"v-d{day}", "p1", start=24 * day + 8,
                                     end=24 * day + 18, hours=2, volunteer_id="vol-a")
                   for day in (0, 7)))
    feed(engine, *(f.case(f"c{day}", items=[f.item(quantity=2, start=24 * day + 8,
                                                   end=24 * day + 18)]) for day in (0, 7)))
    engine.match_shard(f.CENTRE)
    assert sorted(p.case_id for p in holding(db)) == ["c0", "c7"]


# --- items across every allocation ever made ----------------------------------------------------


@EXAMPLES
@given(seed=st.integers(0, 100_000))
def test_no_item_is_served_beyond_its_quantity_across_batches_fulfilment_updates_and_rebalance(
        seed: int) -> None:
    rng = random.Random(seed)
    with fresh_db() as db:
        engine = engine_at(db)
        goods = [f.goods_offer(f"lot{n}", rng.choice(["p1", "p2"]),
                               quantity=rng.choice([4, 10, 20]),
                               expires_in_days=rng.choice([None, 1, 3]))
                 for n in range(rng.randint(1, 4))]
        cases = goods_cases(rng, rng.randint(3, 10))
        feed(engine, *volunteers_over_a_fortnight(rng), *goods[:1], *cases)
        engine.match_shard(f.CENTRE)
        approve_some(db, rng, 0.6)
        _fulfil_some(engine, db, rng)
        feed(engine, *goods[1:])
        for case in rng.sample(cases, k=len(cases) // 2):
            lower = dict(case, event_id=f.envelope("x", "x", {})["event_id"],
                         event_type="case.updated")
            item = dict(case["payload"]["items"][0])
            item["quantity"] = max(1, item["quantity"] // 2)
            lower["payload"] = dict(case["payload"], version=2, items=[item])
            feed(engine, lower)
        engine.match_shard(f.CENTRE)
        engine.clock = Clock(NIGHT + timedelta(days=rng.choice([0, 1, 2])))
        rebalancing.rebalance(engine, options())
        engine.match_shard(f.CENTRE)
        assert items_over_served(db) == []


def _fulfil_some(engine: MatchingEngine, db: Engine, rng: random.Random) -> None:
    """Partners report some approved matches fulfilled."""
    with unit_of_work(db) as store:
        for p in store.proposals_where(proposals.c.status == "approved"):
            if rng.random() < 0.5:
                report_outcome(store, proposal_id=p.proposal_id, outcome=Outcome.FULFILLED,
                               delivered=p.amount, note="", reported_by=p.partner_id,
                               clock=engine.clock)


# --- commitments meet time ----------------------------------------------------------------------


@EXAMPLES
@given(seed=st.integers(0, 100_000), hours_later=st.floats(0, 60))
def test_a_rebalance_never_revokes_or_replans_what_has_begun(seed: int,
                                                              hours_later: float) -> None:
    rng = random.Random(seed)
    with fresh_db() as db:
        engine = engine_at(db)
        feed(engine, *volunteers_over_a_fortnight(rng), f.goods_offer("lot", "p1", quantity=20,
                                                                      expires_in_days=1))
        feed(engine, *visit_cases(rng, rng.randint(4, 12)), *goods_cases(rng, 3))
        engine.match_shard(f.CENTRE)
        approve_some(db, rng, 0.5)
        now = NIGHT + timedelta(hours=6 + hours_later)  # from 08:00 on the Monday
        engine.clock = Clock(now)
        # Begun: a visit or session under way or over (approved or not), goods approved for
        # handover. A pending lot has handed nothing over: it may still be re-planned.
        begun = {p.proposal_id: p.status for p in holding(db)
                 if (p.kind == "goods" and p.status == "approved")
                 or (p.kind != "goods" and p.window_start is not None
                     and p.window_start <= now)}
        rebalancing.rebalance(engine, options(penalty=0.0, max_moves=None))
        after = {p.proposal_id: p.status for p in holding(db)}
        assert {k: after.get(k) for k in begun} == begun


# --- shrinking updates ----------------------------------------------------------------------


@EXAMPLES
@given(seed=st.integers(0, 100_000))
def test_shrinking_updates_never_leave_capacity_over_committed(seed: int) -> None:
    rng = random.Random(seed)
    with fresh_db() as db:
        engine = engine_at(db)
        volunteers = volunteers_over_a_fortnight(rng)
        goods = [f.goods_offer(f"lot{n}", "p1", quantity=rng.choice([5, 10, 20]))
                 for n in range(2)]
        service = f.service_offer("physio", "p2", places=3, start=14, end=15)
        service["payload"]["slots"].append({"window": {"start": f.at(15), "end": f.at(16)},
                                            "places": 2})
        physio = [f.case(f"s{n}", items=[f.item(kind="service", need="physiotherapy",
                                                unit="sessions", quantity=1, start=8, end=18)])
                  for n in range(rng.randint(1, 5))]
        feed(engine, *volunteers, *goods, service, *visit_cases(rng, rng.randint(4, 10)),
             *goods_cases(rng, rng.randint(2, 6)), *physio)
        engine.match_shard(f.CENTRE)
        approve_some(db, rng, 0.8)
        for update in _shrinking_updates(rng, volunteers, goods, service):
            feed(engine, update)
            assert offers_over_committed(db) == []
            assert weeks_over_limit(db) == {}
        engine.match_shard(f.CENTRE)
        assert offers_over_committed(db) == []
        assert weeks_over_limit(db) == {}
        assert items_over_served(db) == []


def _shrinking_updates(rng: random.Random, volunteers: list[dict[str, Any]],
                       goods: list[dict[str, Any]], service: dict[str, Any]
                       ) -> list[dict[str, Any]]:
    """New versions giving less: fewer hours a week or a shorter day, smaller lots, fewer
    places, a slot removed."""
    updates = []
    for offer in rng.sample(volunteers, k=min(3, len(volunteers))):
        payload = dict(offer["payload"], version=2)
        if rng.random() < 0.5:
            payload["weekly_hour_limit"] = 1
        else:
            window = payload["availability"][0]
            start = datetime.fromisoformat(window["start"])
            payload["availability"] = [{"start": window["start"],
                                        "end": (start + timedelta(hours=1)).isoformat()}]
        updates.append(dict(f.envelope("offer.updated", offer["producer"], payload)))
    for offer in goods:
        updates.append(f.envelope("offer.updated", offer["producer"], dict(
            offer["payload"], version=2, quantity=rng.choice([1, 2, 3]))))
    slots = [dict(slot, places=1) for slot in service["payload"]["slots"]]
    # The last slot or the first one removed, or none (the later slot then moves up).
    updates.append(f.envelope("offer.updated", service["producer"], dict(
        service["payload"], version=2, slots=rng.choice([slots[:1], slots[1:], slots]))))
    rng.shuffle(updates)
    return updates
