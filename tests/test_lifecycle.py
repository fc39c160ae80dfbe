"""Pending proposals escalate to the parent node, then expire (or are approved automatically
for configured kinds); coordinators are added by function or file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, text

from matcher.domain.errors import UnknownReference
from matcher.services.coordinators import (
    add_coordinator,
    authenticate,
    load_coordinators,
    seed_demo_coordinators,
)
from matcher.services.decisions import SweepReport, escalation_target, sweep_pending
from matcher.services.desk import Desk
from matcher.services.engine import MatchingEngine
from matcher.services.jurisdiction import active_coordinator
from matcher.services.oversight import pending_queue
from matcher.settings import Settings
from matcher.storage.coordination import CoordinationStore
from matcher.storage.store import unit_of_work
from tests import factories as f
from tests.coordination_world import PASSWORD, Clock, build_world, propose, status_of

HOUR = 3600.0
SETTINGS = Settings(proposal_escalate_after_s=4 * HOUR, proposal_expire_after_s=24 * HOUR,
                    topic_prefix="t")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(db: Engine, clock: Clock) -> MatchingEngine:
    return build_world(db, clock)


def sweep(engine: MatchingEngine, settings: Settings = SETTINGS) -> SweepReport:
    with unit_of_work(engine.db) as store:
        return sweep_pending(store, engine.clock(), settings)


def test_a_fresh_proposal_is_left_alone(engine: MatchingEngine, clock: Clock) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    clock.advance(hours=3)
    report = sweep(engine)
    assert (report.escalated, report.expired) == ([], [])


def test_a_proposal_pending_too_long_escalates_once_to_the_parent_node(
        engine: MatchingEngine, clock: Clock) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    clock.advance(hours=5)
    assert sweep(engine).escalated == ["p1"]
    assert sweep(engine).escalated == []  # recorded: not escalated twice
    with unit_of_work(engine.db) as store:
        escalation = CoordinationStore(store.conn).escalation("p1")
        studio = active_coordinator(store, "c-studio")
        queue = pending_queue(store, studio, now=clock.now)
    assert escalation is not None
    assert escalation.escalated_to == f.STUDIO  # the grid is staffed: its parent is asked
    assert [(e.proposal_id, e.escalated_to) for e in queue] == [("p1", f.STUDIO)]
    assert status_of(engine.db, "p1") == "proposed"


def test_escalation_goes_above_the_lowest_staffed_node(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        # case-a2's grid has no coordinator; its studio has one: the workstation is asked.
        assert escalation_target(store, f.GRID2) == f.WS
        assert escalation_target(store, f.GRID) == f.STUDIO
        assert escalation_target(store, f.GRID_B) == f.STUDIO_B


def test_escalated_proposals_lead_the_queue_among_equally_urgent_ones(
        engine: MatchingEngine, clock: Clock) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "old", "case-a")  # urgency 3
    clock.advance(hours=5)
    with unit_of_work(engine.db) as store:
        propose(store, "late", "case-a2", created_at=clock.now)  # urgency 3, not escalated
        propose(store, "fresh", "case-a", item_id="i2", created_at=clock.now)  # urgency 5
    assert sweep(engine).escalated == ["old"]
    with unit_of_work(engine.db) as store:
        queue = pending_queue(store, active_coordinator(store, "c-centre"), now=clock.now)
    assert [e.proposal_id for e in queue] == ["fresh", "old", "late"]


def test_a_proposal_nobody_decided_expires_and_frees_capacity(
        engine: MatchingEngine, clock: Clock) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a", amount=10)
    clock.advance(hours=25)
    engine.due_shards(0)
    report = sweep(engine)
    assert report.expired == ["p1"]
    assert report.changed_shards == {f.CENTRE}
    assert status_of(engine.db, "p1") == "expired"
    with unit_of_work(engine.db) as store:
        assert store.held_by_offer().get(("o-a", None), 0.0) == 0.0


def test_expiry_is_approval_for_kinds_configured_so(engine: MatchingEngine,
                                                     clock: Clock) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    clock.advance(hours=25)
    report = sweep(engine, SETTINGS.model_copy(update={"auto_approve_kinds": ["goods"]}))
    assert report.auto_approved == ["p1"]
    assert status_of(engine.db, "p1") == "approved"
    with unit_of_work(engine.db) as store:
        [row] = [r for r in store.unpublished() if r.topic == "t.assignments"]
        proposal = store.proposal("p1")
    assert json.loads(row.value)["payload"]["approved_by"] == "auto"
    assert proposal is not None and proposal.decided_by == "auto"


def test_auto_approval_of_a_stale_proposal_expires_it_instead(
        engine: MatchingEngine, clock: Clock) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
        store.close_case("case-a", version=2, at=clock.now)
    clock.advance(hours=25)
    report = sweep(engine, SETTINGS.model_copy(update={"auto_approve_kinds": ["goods"]}))
    assert (report.auto_approved, report.expired) == ([], ["p1"])


def test_decided_proposals_are_not_swept(engine: MatchingEngine, clock: Clock) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
        store.conn.execute(text("UPDATE proposals SET status = 'approved'"))  # decided
    clock.advance(hours=48)
    report = sweep(engine)
    assert (report.escalated, report.expired) == ([], [])


def test_the_desk_sweep_marks_freed_shards_for_matching(engine: MatchingEngine,
                                                       clock: Clock) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    clock.advance(hours=25)
    engine.due_shards(0)
    report = Desk(engine=engine, settings=SETTINGS).sweep()
    assert report.expired == ["p1"]
    assert engine.pending_shards() == 1


def test_every_sweep_step_is_audited(engine: MatchingEngine, clock: Clock) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
        before = store.count("audit_log")
    clock.advance(hours=5)
    sweep(engine)
    clock.advance(hours=20)
    sweep(engine)
    with unit_of_work(engine.db) as store:
        assert store.count("audit_log") == before + 2


# --- coordinators -------------------------------------------------------------------------------


def test_a_coordinator_needs_a_known_node(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store, pytest.raises(UnknownReference):
        add_coordinator(store, username="x", display_name="X", node_id="nowhere",
                        password=PASSWORD, clock=engine.clock)


def test_passwords_are_hashed_with_argon2_and_checked(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        add_coordinator(store, username="new", display_name="New", node_id=f.GRID2,
                        password="s3cret-pass", clock=engine.clock)
        row = CoordinationStore(store.conn).coordinator("new")
        assert row is not None and row.password_hash.startswith("$argon2id$")
        assert "s3cret-pass" not in row.password_hash
        assert authenticate(store, "new", "s3cret-pass") is not None
        assert authenticate(store, "new", "wrong") is None
        assert authenticate(store, "nobody", "s3cret-pass") is None


def test_coordinators_load_from_a_json_file(engine: MatchingEngine, tmp_path: Path) -> None:
    path = tmp_path / "coordinators.json"
    path.write_text(json.dumps([
        {"username": "amy", "display_name": "Amy", "node_id": f.WS, "password": "pass-word-1"},
        {"username": "bo", "display_name": "Bo", "node_id": f.GRID_B,
         "password": "pass-word-2", "active": False},
    ]))
    with unit_of_work(engine.db) as store:
        assert load_coordinators(store, path, clock=engine.clock) == ["amy", "bo"]
        assert authenticate(store, "amy", "pass-word-1") is not None
        assert authenticate(store, "bo", "pass-word-2") is None  # inactive


def test_a_bad_coordinators_file_is_refused_whole(engine: MatchingEngine,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "coordinators.json"
    path.write_text(json.dumps([{"username": "amy", "node_id": f.WS, "password": "short"}]))
    with unit_of_work(engine.db) as store, pytest.raises(ValidationError):
        load_coordinators(store, path, clock=engine.clock)


def test_demo_coordinators_cover_one_branch_down_to_the_busiest_grid(
        engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-b")
    seeded = seed_demo_coordinators(engine.db)
    assert [node for _, _, node in seeded] == [f.CENTRE, f.WS_B, f.STUDIO_B, f.GRID_B]
    with unit_of_work(engine.db) as store:
        for username, password, node in seeded:
            me = authenticate(store, username, password)
            assert me is not None and me.node_id == node
