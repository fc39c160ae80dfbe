"""Properties of rebalancing on random small districts: approved matches stay, the objective
never drops, a second run changes nothing, capacity is never over-committed, one lease holder
at a time, and an interrupted run applies nothing."""

from __future__ import annotations

import random
import tempfile
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from matcher.services import rebalancing
from matcher.services.engine import MatchingEngine
from matcher.services.rebalance_report import latest_reports
from matcher.storage.database import migrate, open_engine
from matcher.storage.rebalance_tables import RebalanceStore
from matcher.storage.store import unit_of_work
from matcher.storage.tables import proposals
from schemas.matches import ProposalStatus
from tests import factories as f
from tests.coordination_world import Clock
from tests.test_rebalancing import NOW, TOPICS, feed, options

pytestmark = pytest.mark.slow
EXAMPLES = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


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


def district(db: Engine, seed: int) -> MatchingEngine:
    """Goods and volunteers, cases in three grids, matched in two waves, some approved."""
    rng = random.Random(seed)
    engine = MatchingEngine(db=db, topics=TOPICS, clock=Clock(NOW))
    feed(engine, *f.hierarchy(), f.partner("p1"), f.partner("p2"))
    offers = [f.goods_offer(f"g{i}", rng.choice(["p1", "p2"]), quantity=rng.choice([5, 10, 20]),
                            expires_in_days=rng.choice([None, 2, 5, 40]))
              for i in range(rng.randint(1, 4))]
    offers += [f.volunteer_offer(f"v{i}", rng.choice(["p1", "p2"]), start=8, end=18,
                                 hours=rng.choice([2, 4, 8]), lat=29.05 + rng.uniform(-0.02, 0.02),
                                 lon=106.66 + rng.uniform(-0.02, 0.02), radius_km=6)
               for i in range(rng.randint(1, 4))]
    cases = []
    for j in range(rng.randint(2, 9)):
        if rng.random() < 0.5:
            item = f.item(kind="goods", need="rice", unit="kg", quantity=rng.choice([2, 5, 10]),
                          urgency=rng.randint(1, 5), splittable=rng.random() < 0.7)
        else:
            item = f.item(quantity=rng.choice([1, 2, 3]), urgency=rng.randint(1, 5),
                          splittable=rng.random() < 0.5)
        case = f.case(f"c{j}", grid=rng.choice([f.GRID, f.GRID2]), items=[item],
                      vulnerability=rng.randint(1, 5))
        case["occurred_at"] = (NOW - timedelta(days=rng.uniform(0, 8))).isoformat()
        cases.append(case)
    rng.shuffle(offers)
    half = len(offers) // 2
    feed(engine, *offers[:half], *cases[: len(cases) // 2])
    engine.match_shard(f.CENTRE)
    with unit_of_work(db) as store:
        for p in store.proposals_where(proposals.c.status == "proposed"):
            if rng.random() < 0.4:
                store.set_proposal_status(p.proposal_id, ProposalStatus.APPROVED, at=NOW, by="c")
    feed(engine, *offers[half:], *cases[len(cases) // 2:])
    engine.match_shard(f.CENTRE)
    return engine


def state(db: Engine) -> dict[str, tuple[str, str, str, float, str]]:
    """Every holding proposal: id -> (case, item, offer, amount, status)."""
    with unit_of_work(db) as store:
        rows = store.proposals_where(proposals.c.status.in_(["proposed", "approved"]))
    return {p.proposal_id: (p.case_id, p.item_id, p.offer_id, p.amount, p.status) for p in rows}


def over_commitments(db: Engine) -> list[str]:
    """Offers (and slots) or items holding more than they have, in words."""
    problems = []
    with unit_of_work(db) as store:
        held = store.held_by_offer()
        served = store.served_by_item()
        capacity = {o.offer_id: o for o in store.active_offers()}
        quantity = {(i["case_id"], i["item_id"]): i["quantity"] for i in store.open_items()}
    for (offer_id, _slot), amount in held.items():
        offer = capacity[offer_id]
        total = offer.payload.get("quantity") if offer.kind == "goods" else min(
            offer.payload["weekly_hour_limit"], 10)
        if amount > float(total) + 1e-6:
            problems.append(f"{offer_id} holds {amount} > {total}")
    for key, amount in served.items():
        if amount > quantity.get(key, 0.0) + 1e-6:
            problems.append(f"{key} served {amount} > {quantity.get(key)}")
    return problems


@EXAMPLES
@given(seed=st.integers(0, 10_000), penalty=st.sampled_from([0.0, 1.0, 5.0, 20.0]))
def test_a_rebalance_keeps_approved_matches_never_loses_value_and_never_over_commits(
        seed: int, penalty: float) -> None:
    with fresh_db() as db:
        engine = district(db, seed)
        approved = {k: v for k, v in state(db).items() if v[4] == "approved"}
        rebalancing.rebalance(engine, options(penalty=penalty))
        after = state(db)
        assert {k: after.get(k) for k in approved} == approved, "approved matches unchanged"
        objective = latest_reports(db)[0]["objective"]
        assert objective["stability_adjusted_after"] >= \
            objective["stability_adjusted_before"] - 1e-6
        if penalty == 0.0:
            assert objective["after"] >= objective["before"] - 1e-6
        assert over_commitments(db) == []


@EXAMPLES
@given(seed=st.integers(0, 10_000), penalty=st.sampled_from([0.0, 2.0, 10.0]))
def test_running_twice_in_a_row_changes_nothing_the_second_time(seed: int, penalty: float
                                                                 ) -> None:
    with fresh_db() as db:
        engine = district(db, seed)
        rebalancing.rebalance(engine, options(penalty=penalty))
        first = state(db)
        second = rebalancing.rebalance(engine, options(penalty=penalty))
        assert state(db) == first
        assert (second.new, second.moved, second.revoked, second.released) == (0, 0, 0, 0)


@EXAMPLES
@given(seed=st.integers(0, 10_000), cap=st.integers(0, 3))
def test_the_move_cap_is_never_exceeded(seed: int, cap: int) -> None:
    with fresh_db() as db:
        engine = district(db, seed)
        summary = rebalancing.rebalance(engine, options(penalty=0.0, max_moves=cap))
        assert summary.moved + summary.revoked - _forced(summary) <= cap
        assert over_commitments(db) == []


def _forced(summary: Any) -> int:
    """Revocations of proposals that became impossible (not counted against the cap)."""
    return sum(1 for c in summary.changes if c.change == "revoked"
               and c.reason_code != "capacity_reallocated")


@EXAMPLES
@given(seed=st.integers(0, 10_000), crash_at=st.integers(0, 6))
def test_an_interrupted_run_leaves_nothing_applied(seed: int, crash_at: int) -> None:
    with fresh_db() as db:
        engine = district(db, seed)
        before = state(db)
        with unit_of_work(db) as store:
            outbox_before = store.count("outbox")
        calls = defaultdict(int)
        real_revoke, real_propose = rebalancing._revoke, rebalancing.record_proposals

        def counted(real: Any, name: str) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                calls[name] += 1
                # Crash at the given call, or at the last step of the apply at the latest.
                if sum(calls.values()) > crash_at or name == "announce":
                    raise RuntimeError("killed half-way")
                return real(*args, **kwargs)
            return wrapper

        with mock.patch.object(rebalancing, "_revoke", counted(real_revoke, "revoke")), \
                mock.patch.object(rebalancing, "record_proposals",
                                  counted(real_propose, "propose")), \
                mock.patch.object(rebalancing, "_announce",
                                  counted(rebalancing._announce, "announce")), \
                pytest.raises(RuntimeError):
            rebalancing.rebalance(engine, options(penalty=0.0))
        assert state(db) == before
        with unit_of_work(db) as store:
            assert store.count("outbox") == outbox_before
            assert RebalanceStore(store.conn).count_runs() == 0


def test_the_lease_admits_exactly_one_of_many_simultaneous_runs(db: Engine) -> None:
    start = threading.Barrier(8)
    won: list[str] = []

    def contend(name: str) -> None:
        start.wait()
        with unit_of_work(db) as store:
            if RebalanceStore(store.conn).take_lease(name, now=NOW,
                                                     until=NOW + timedelta(minutes=5)):
                won.append(name)

    threads = [threading.Thread(target=contend, args=(f"run-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
