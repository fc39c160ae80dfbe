"""Nightly rebalancing: moves only when they pay, approved matches stay unless impossible, the
expiry and waiting terms bite, one run at a time, all or nothing, reported and announced."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from matcher.services import rebalancing
from matcher.services.engine import MatchingEngine
from matcher.services.matching import MatchingConfig
from matcher.services.rebalance_inputs import RebalanceConfig
from matcher.services.rebalance_report import latest_reports
from matcher.services.rebalancing import RunOptions, next_run_at, rebalance
from matcher.storage.rebalance_tables import RebalanceStore
from matcher.storage.store import unit_of_work
from matcher.storage.tables import outbox, proposals
from schemas.matches import ProposalStatus
from schemas.rebalance import ChangeKind, RebalanceSummary, RunStatus
from schemas.topics import Topics
from tests import factories as f
from tests.coordination_world import Clock

# 02:00 on the factories' day in Chongqing, the nightly hour: the day's visits lie ahead.
NOW = datetime(2030, 6, 2, 18, 0, tzinfo=UTC)
TOPICS = Topics("t")


def build(db: Engine) -> MatchingEngine:
    """An engine on the factories' hierarchy with two partners."""
    engine = MatchingEngine(db=db, topics=TOPICS, clock=Clock(NOW))
    feed(engine, *f.hierarchy(), f.partner("p1"), f.partner("p2"))
    return engine


def feed(engine: MatchingEngine, *events: dict[str, Any]) -> None:
    for event in events:
        engine.ingest(f.parse(event), topic="test")


def match(engine: MatchingEngine) -> None:
    engine.match_shard(f.CENTRE)


def options(penalty: float = 10.0, max_moves: int | None = None,
            report_dir: Path | None = None, event_id: str | None = None) -> RunOptions:
    config = RebalanceConfig(matching=MatchingConfig(topics=TOPICS), change_penalty=penalty,
                             max_moves=max_moves)
    return RunOptions(trigger="test", requested_by="tester", config=config,
                      report_dir=report_dir, event_id=event_id)


def run(engine: MatchingEngine, **kwargs: Any) -> RebalanceSummary:
    return rebalance(engine, options(**kwargs))


def holding(db: Engine) -> dict[str, tuple[str, str, str]]:
    """proposal id -> (case, offer, status) of proposals that hold capacity."""
    with unit_of_work(db) as store:
        rows = store.proposals_where(proposals.c.status.in_(["proposed", "approved",
                                                            "fulfilled"]))
    return {p.proposal_id: (p.case_id, p.offer_id, p.status) for p in rows}


def offers_of(db: Engine, case_id: str) -> set[str]:
    return {o for c, o, _ in holding(db).values() if c == case_id}


def events_on(db: Engine, topic: str, event_type: str) -> list[dict[str, Any]]:
    with unit_of_work(db) as store:
        rows = store.conn.execute(select(outbox.c.value).where(
            outbox.c.topic == topic, outbox.c.event_type == event_type)).scalars()
        return [json.loads(v)["payload"] for v in rows]


def approve(db: Engine, case_id: str) -> str:
    with unit_of_work(db) as store:
        proposal = store.proposals_where(proposals.c.case_id == case_id,
                                         proposals.c.status == "proposed")[0]
        store.set_proposal_status(proposal.proposal_id, ProposalStatus.APPROVED, at=NOW,
                                  by="c-grid")
    return proposal.proposal_id


def far_then_near(db: Engine, cases: int = 1) -> MatchingEngine:
    """Cases matched to a far volunteer; a nearer one offers herself afterwards."""
    engine = build(db)
    feed(engine, f.volunteer_offer("far", "p1", lat=29.07, lon=106.68, radius_km=8, hours=12,
                                   start=8, end=18))
    feed(engine, *(f.case(f"c{i}") for i in range(cases)))
    match(engine)
    feed(engine, f.volunteer_offer("near", "p2", lat=29.052, lon=106.662, hours=12,
                                   start=8, end=18))
    match(engine)
    assert all(offers_of(db, f"c{i}") == {"far"} for i in range(cases))
    return engine


# --- moves -------------------------------------------------------------------------------------


def test_a_pending_proposal_stays_when_the_gain_does_not_beat_the_change_penalty(
        db: Engine) -> None:
    engine = far_then_near(db)
    summary = run(engine, penalty=5.0)  # the nearer volunteer gains about 2.7 points
    assert (summary.moved, summary.kept, summary.new) == (0, 1, 0)
    assert offers_of(db, "c0") == {"far"}


def test_a_pending_proposal_moves_when_the_gain_beats_the_penalty_and_the_move_is_linked(
        db: Engine) -> None:
    engine = far_then_near(db)
    summary = run(engine, penalty=1.0)
    assert (summary.moved, summary.kept) == (1, 0)
    assert offers_of(db, "c0") == {"near"}
    [change] = summary.changes
    assert change.change is ChangeKind.MOVED
    assert (change.old_offer_id, change.new_offer_ids) == ("far", ["near"])
    assert change.score_after > change.score_before
    assert change.new_proposal_ids and change.new_proposal_ids[0] in holding(db)
    [revoked] = events_on(db, TOPICS.proposals, "match.revoked")
    assert revoked["proposal_id"] == change.old_proposal_id
    assert revoked["reason_code"] == "rebalanced_moved" and "near" in revoked["reason"]
    proposed = events_on(db, TOPICS.proposals, "match.proposed")
    assert proposed[-1]["proposal_id"] == change.new_proposal_ids[0]


def test_the_move_cap_keeps_the_lowest_gain_moves_as_they_were(db: Engine) -> None:
    engine = far_then_near(db, cases=3)
    summary = run(engine, penalty=0.0, max_moves=1)
    assert (summary.moved, summary.moves_capped) == (1, 2)
    assert sum(offers_of(db, f"c{i}") == {"near"} for i in range(3)) == 1


def test_running_twice_changes_nothing_the_second_time(db: Engine) -> None:
    engine = far_then_near(db, cases=3)
    run(engine, penalty=1.0)
    before = holding(db)
    second = run(engine, penalty=1.0)
    assert (second.new, second.moved, second.revoked, second.released) == (0, 0, 0, 0)
    assert holding(db) == before


# --- approved matches ----------------------------------------------------------------------------


def test_an_approved_match_is_kept_even_when_a_better_offer_appears(db: Engine) -> None:
    engine = far_then_near(db)
    approved = approve(db, "c0")
    summary = run(engine, penalty=0.0)
    assert summary.moved == 0 and summary.released == 0
    assert holding(db)[approved] == ("c0", "far", "approved")


def test_an_approved_match_an_update_made_impossible_is_released_and_served_again(
        db: Engine) -> None:
    engine = far_then_near(db)
    approved = approve(db, "c0")
    # The far volunteer now comes only in the evening, after the case's window: the update
    # itself releases the approved visit and says why.
    feed(engine, f.volunteer_offer("far", "p1", lat=29.07, lon=106.68, radius_km=8, hours=12,
                                   start=19, end=21, version=2, event_type="offer.updated"))
    assert holding(db).get(approved) is None
    [released] = [e for e in events_on(db, TOPICS.proposals, "match.released")
                  if e["proposal_id"] == approved]
    assert released["reason_code"] == "volunteer_unavailable"
    assert released["partner_id"] == "p1"
    run(engine, penalty=10.0)
    assert offers_of(db, "c0") == {"near"}, "the item is served again"


def test_approved_goods_stay_committed_when_the_lot_expires_after_approval(db: Engine) -> None:
    engine = build(db)
    goods = f.goods_offer("g1", "p1", quantity=20, expires_in_days=1)
    feed(engine, goods, f.case("c1", items=[f.item(kind="goods", need="rice", quantity=5,
                                                   unit="kg")]))
    match(engine)
    approved = approve(db, "c1")
    engine.clock = Clock(NOW + timedelta(days=2))
    summary = run(engine)
    # Handed out (or promised for handover) before the lot expired: nothing to take back.
    assert summary.released == 0
    assert holding(db)[approved][2] == "approved"


# --- the score terms bite ------------------------------------------------------------------------


def rice(quantity: float = 10) -> list[dict[str, Any]]:
    return [f.item(kind="goods", need="rice", quantity=quantity, unit="kg")]


def test_goods_close_to_expiry_are_given_out_first_and_reported_saved(db: Engine,
                                                                     tmp_path: Path) -> None:
    engine = build(db)
    feed(engine, f.goods_offer("g-late", "p1", quantity=10, expires_in_days=60),
         f.case("c1", items=rice()))
    match(engine)
    feed(engine, f.goods_offer("g-soon", "p2", quantity=10, expires_in_days=2))
    summary = rebalance(engine, options(penalty=1.0, report_dir=tmp_path))
    assert summary.moved == 1 and offers_of(db, "c1") == {"g-soon"}
    report = latest_reports(db)[0]
    assert report["goods_near_expiry"]["kg"]["saved"] == pytest.approx(10)


def test_goods_far_from_expiry_give_no_reason_to_move(db: Engine) -> None:
    engine = build(db)
    feed(engine, f.goods_offer("g-a", "p1", quantity=10, expires_in_days=60),
         f.case("c1", items=rice()))
    match(engine)
    feed(engine, f.goods_offer("g-b", "p2", quantity=10, expires_in_days=50))
    assert run(engine, penalty=1.0).moved == 0


def waiting_world(db: Engine, old_days: float) -> MatchingEngine:
    """One scarce volunteer given to a fresh case; a case open for `old_days` arrives after."""
    engine = build(db)
    feed(engine, f.volunteer_offer("v1", "p1", hours=2), f.case("fresh"))
    match(engine)
    late = f.case("old")
    late["occurred_at"] = (NOW - timedelta(days=old_days)).isoformat()
    feed(engine, late)
    match(engine)
    assert offers_of(db, "fresh") == {"v1"} and offers_of(db, "old") == set()
    return engine


def test_a_long_waiting_case_takes_scarce_capacity_from_a_fresh_one(db: Engine) -> None:
    engine = waiting_world(db, old_days=6)
    summary = run(engine, penalty=2.0)
    assert offers_of(db, "old") == {"v1"} and offers_of(db, "fresh") == set()
    kinds = {c.change for c in summary.changes}
    assert kinds == {ChangeKind.REVOKED, ChangeKind.NEW}
    revoked = next(c for c in summary.changes if c.change is ChangeKind.REVOKED)
    assert "old" in revoked.reason


def test_a_case_that_waited_only_a_little_does_not_displace_a_pending_one(db: Engine) -> None:
    engine = waiting_world(db, old_days=0.5)
    run(engine, penalty=2.0)
    assert offers_of(db, "fresh") == {"v1"}


def test_an_under_served_grid_takes_scarce_capacity_from_a_well_served_one(db: Engine) -> None:
    engine = build(db)
    feed(engine, f.goods_offer("g-big", "p1", quantity=4),
         f.case("served", grid=f.GRID, items=rice(4)))
    match(engine)
    approve(db, "served")  # GRID is now fully served by committed matches
    feed(engine, f.goods_offer("g-one", "p2", quantity=5), f.case("a", grid=f.GRID,
                                                                   items=rice(5)))
    match(engine)
    assert offers_of(db, "a") == {"g-one"}
    feed(engine, f.case("b", grid=f.GRID2, items=rice(5)))
    run(engine, penalty=1.0)
    assert offers_of(db, "b") == {"g-one"} and offers_of(db, "a") == set()


# --- one run at a time, all or nothing ------------------------------------------------------------


def test_the_lease_admits_one_holder_until_it_expires(db: Engine) -> None:
    with unit_of_work(db) as store:
        leases = RebalanceStore(store.conn)
        leases.ensure_lease_row()
        assert leases.take_lease("a", now=NOW, until=NOW + timedelta(minutes=5))
        assert not leases.take_lease("b", now=NOW, until=NOW + timedelta(minutes=5))
        assert leases.take_lease("b", now=NOW + timedelta(minutes=6),
                                 until=NOW + timedelta(minutes=11))
        assert not leases.hold_lease("a", now=NOW + timedelta(minutes=6),
                                     until=NOW + timedelta(minutes=11))
        leases.release_lease("b")
        assert leases.lease_holder(NOW) is None


def test_a_run_is_refused_while_another_holds_the_lease(db: Engine) -> None:
    engine = far_then_near(db)
    with unit_of_work(db) as store:
        RebalanceStore(store.conn).ensure_lease_row()
        RebalanceStore(store.conn).take_lease("other-run", now=NOW,
                                              until=NOW + timedelta(minutes=15))
    summary = run(engine, penalty=0.0)
    assert summary.status is RunStatus.BUSY
    assert offers_of(db, "c0") == {"far"}
    assert events_on(db, TOPICS.rebalance_reports, "rebalance.completed")[0]["status"] == "busy"


def test_an_interrupted_run_leaves_nothing_applied(db: Engine, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    engine = far_then_near(db, cases=2)
    before = holding(db)
    with unit_of_work(db) as store:
        outbox_before = store.count("outbox")

    def crash(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("power cut half-way through the apply")

    monkeypatch.setattr(rebalancing, "record_unmatched", crash)
    with pytest.raises(RuntimeError):
        run(engine, penalty=0.0)
    assert holding(db) == before
    with unit_of_work(db) as store:
        assert store.count("outbox") == outbox_before
        assert RebalanceStore(store.conn).count_runs() == 0
        assert RebalanceStore(store.conn).lease_holder(NOW) is None, "lease given back"


def test_a_plan_made_stale_by_a_decision_is_planned_again(db: Engine,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    engine = far_then_near(db)
    real_plan = rebalancing._plan_snapshots
    calls: list[int] = []

    def plan_then_decide(*args: Any, **kwargs: Any) -> Any:
        plans = real_plan(*args, **kwargs)
        if not calls:
            approve(db, "c0")  # a coordinator approves while the plan is being made
            with unit_of_work(db) as store:  # ... which the audit log records
                store.record_applied(event_id="decision-1", event_type="match.decided",
                                     topic="http", producer="c-grid", occurred_at=NOW,
                                     applied_at=NOW, summary="approved")
        calls.append(1)
        return plans

    monkeypatch.setattr(rebalancing, "_plan_snapshots", plan_then_decide)
    summary = run(engine, penalty=0.0)
    assert len(calls) == 2 and summary.moved == 0
    assert {s for _, _, s in holding(db).values()} == {"approved"}


def test_a_request_event_is_run_once(db: Engine) -> None:
    engine = far_then_near(db)
    first = rebalance(engine, options(penalty=0.0, event_id="req-1"))
    again = rebalance(engine, options(penalty=0.0, event_id="req-1"))
    assert first.status is RunStatus.COMPLETED and first.moved == 1
    assert again.status is RunStatus.BUSY and again.note == "request already run"


# --- report and schedule ------------------------------------------------------------------------


def test_each_run_is_stored_written_and_announced(db: Engine, tmp_path: Path) -> None:
    engine = far_then_near(db)
    folder = tmp_path / "reports"
    summary = rebalance(engine, options(penalty=0.0, report_dir=folder))
    names = sorted(p.suffix for p in folder.iterdir())
    assert names == [".json", ".md", ".png"]
    report = latest_reports(db)[0]
    assert report["summary"]["run_id"] == summary.run_id
    assert report["objective"]["after"] > report["objective"]["before"]
    assert set(report["fulfilment_by_kind"]) == {"volunteer"}
    assert report["fulfilment_by_grid"][f.GRID]["after"] == 1.0
    assert report["partner_utilisation"]["partners"] == 2
    assert "moved" in (folder / f"{summary.run_id}.md").read_text()
    [event] = events_on(db, TOPICS.rebalance_reports, "rebalance.completed")
    assert event["run_id"] == summary.run_id and event["moved"] == 1
    assert event["changes"][0]["new_proposal_ids"]


def test_the_nightly_run_is_at_two_in_the_morning_shanghai_time() -> None:
    evening = datetime(2030, 6, 3, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    due = next_run_at(evening, "02:00", "Asia/Shanghai")
    assert due.astimezone(UTC) == datetime(2030, 6, 3, 18, 0, tzinfo=UTC)
    assert next_run_at(due, "02:00", "Asia/Shanghai") == due + timedelta(days=1)


def test_the_options_follow_the_settings() -> None:
    from matcher.settings import Settings

    settings = Settings(rebalance_change_penalty=3.5, rebalance_max_moves=None,
                        database_url="sqlite://")
    engine = MatchingEngine(db=None, topics=TOPICS)  # type: ignore[arg-type]
    chosen = rebalancing.options_from(settings, engine, trigger="cli", requested_by="me")
    assert (chosen.config.change_penalty, chosen.config.max_moves) == (3.5, None)
    assert replace(chosen, trigger="x").trigger == "x"
