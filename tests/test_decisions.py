"""The decision service through its Kafka door and directly: who may decide, and only once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, select

from matcher.domain.errors import (
    InvalidCommand,
    NotInJurisdiction,
    NotOwner,
    ProposalNotFound,
    StaleProposal,
)
from matcher.services import decisions
from matcher.services.engine import MatchingEngine
from matcher.storage.coordination import CoordinationStore
from matcher.storage.store import unit_of_work
from matcher.storage.tables import audit_log
from schemas.matches import Decision
from tests import factories as f
from tests.coordination_world import (
    MATRIX,
    Clock,
    build_world,
    propose,
    propose_many,
    status_of,
)


@pytest.fixture
def engine(db: Engine) -> MatchingEngine:
    return build_world(db)


def decision_event(proposal_id: str, coordinator: str, decision: str = "approve",
                   reason: str = "", producer: str | None = None) -> dict[str, Any]:
    return f.envelope("match.decided", producer or coordinator, {
        "proposal_id": proposal_id, "decision": decision, "coordinator_id": coordinator,
        "reason": reason,
    })


def fulfilment_event(proposal_id: str, partner: str, outcome: str = "fulfilled",
                     delivered: float = 1) -> dict[str, Any]:
    return f.envelope("match.fulfilled", partner, {
        "proposal_id": proposal_id, "outcome": outcome, "delivered": delivered, "note": "ok",
    })


def ingest(engine: MatchingEngine, event: dict[str, Any]) -> bool:
    return not engine.ingest(f.parse(event), topic="t.decisions").duplicate


def outbox(engine: MatchingEngine, topic: str) -> list[dict[str, Any]]:
    with unit_of_work(engine.db) as store:
        return [json.loads(r.value) for r in store.unpublished() if r.topic == topic]


def audit_summaries(engine: MatchingEngine) -> dict[str, str]:
    with unit_of_work(engine.db) as store:
        rows = store.conn.execute(select(audit_log.c.event_id, audit_log.c.summary))
        return {event_id: summary for event_id, summary in rows}


# --- the authorization matrix -----------------------------------------------------------------


@pytest.mark.parametrize("verb", ["approve", "reject", "request_alternative"])
def test_kafka_decisions_are_accepted_inside_and_refused_outside_the_jurisdiction(
        engine: MatchingEngine, verb: str) -> None:
    ids = propose_many(engine.db, verb)
    for user, case_id, allowed in MATRIX:
        event = decision_event(ids[user, case_id], user, verb, reason="does not fit")
        if allowed:
            assert ingest(engine, event), (user, case_id)
            assert status_of(engine.db, ids[user, case_id]) != "proposed"
        else:
            with pytest.raises(NotInJurisdiction):
                ingest(engine, event)
            assert status_of(engine.db, ids[user, case_id]) == "proposed", (user, case_id)


@pytest.mark.parametrize("decision", list(Decision))
def test_service_verbs_refuse_every_cross_jurisdiction_attempt(
        engine: MatchingEngine, decision: Decision) -> None:
    ids = propose_many(engine.db, f"svc-{decision.value}")
    for user, case_id, allowed in MATRIX:
        with unit_of_work(engine.db) as store:
            try:
                decisions.decide(store, decision=decision, proposal_id=ids[user, case_id],
                                 coordinator_id=user, reason="reason", clock=engine.clock,
                                 topics=engine.topics, audit_event_id=f"audit-{user}-{case_id}")
                accepted = True
            except NotInJurisdiction:
                accepted = False
        assert accepted is allowed, (user, case_id)


def test_an_unregistered_coordinator_is_refused(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    with pytest.raises(NotInJurisdiction, match="not an active registered coordinator"):
        ingest(engine, decision_event("p1", "coord-wenlong"))


def test_an_inactive_coordinator_is_refused(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
        row = CoordinationStore(store.conn).coordinator("c-grid")
        assert row is not None
        CoordinationStore(store.conn).save_coordinator(
            username="c-grid", display_name=row.display_name, node_id=row.node_id,
            password_hash=row.password_hash, active=False, at=engine.clock())
    with pytest.raises(NotInJurisdiction):
        ingest(engine, decision_event("p1", "c-grid"))


def test_a_decision_published_for_someone_else_is_refused(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    with pytest.raises(InvalidCommand, match="cannot decide for"):
        ingest(engine, decision_event("p1", "c-centre", producer="c-grid-b"))
    assert status_of(engine.db, "p1") == "proposed"


# --- effects ------------------------------------------------------------------------------------


def test_approval_queues_an_assignment_for_the_partner_and_is_audited_under_the_event_id(
        engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    event = decision_event("p1", "c-studio", reason="call the grid worker first")
    assert ingest(engine, event)
    assert status_of(engine.db, "p1") == "approved"
    [assignment] = outbox(engine, engine.topics.assignments)
    assert assignment["event_type"] == "match.approved"
    assert assignment["payload"]["partner_id"] == "p1"
    assert assignment["payload"]["beneficiary"] == "ben-case-a"
    assert assignment["payload"]["approved_by"] == "c-studio"
    assert "sensitive" not in json.dumps(assignment)
    summary = audit_summaries(engine)[event["event_id"]]
    assert "approved by c-studio" in summary and "call the grid worker first" in summary
    assert "diabetic" not in summary


def test_rejection_needs_a_reason(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    with pytest.raises(InvalidCommand, match="needs a reason"):
        ingest(engine, decision_event("p1", "c-grid", "reject", reason="   "))
    assert status_of(engine.db, "p1") == "proposed"


def test_rejection_frees_the_item_for_matching_without_that_offer(
        engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    engine.due_shards(0)  # forget the set-up's changes
    assert ingest(engine, decision_event("p1", "c-grid", "reject", reason="too far"))
    assert engine.pending_shards() == 1
    with unit_of_work(engine.db) as store:
        assert ("case-a", "i1", "o-a") in store.excluded_pairs()
        assert store.held_by_offer().get(("o-a", None), 0.0) == 0.0
    assert outbox(engine, engine.topics.assignments) == []


def test_request_for_an_alternative_is_recorded_as_such(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    assert ingest(engine, decision_event("p1", "c-grid", "request_alternative",
                                         reason="prefers a woman volunteer"))
    with unit_of_work(engine.db) as store:
        proposal = store.proposal("p1")
    assert proposal is not None
    assert proposal.status == "rejected"
    assert proposal.decision_reason == "alternative requested: prefers a woman volunteer"


# --- staleness and double submission -----------------------------------------------------------


def test_a_decided_proposal_is_never_decided_again(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    assert ingest(engine, decision_event("p1", "c-grid"))
    with pytest.raises(StaleProposal, match="approved by c-grid already"):
        ingest(engine, decision_event("p1", "c-studio", "reject", reason="changed my mind"))
    assert status_of(engine.db, "p1") == "approved"
    assert len(outbox(engine, engine.topics.assignments)) == 1


def test_a_repeated_decision_event_changes_nothing(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    event = decision_event("p1", "c-grid")
    assert ingest(engine, event) is True
    assert ingest(engine, event) is False
    assert len(outbox(engine, engine.topics.assignments)) == 1


def test_double_submission_over_http_applies_once(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    for attempt in range(2):
        with unit_of_work(engine.db) as store:
            if attempt == 0:
                decisions.approve_match(store, proposal_id="p1", coordinator_id="c-grid",
                                        clock=engine.clock, topics=engine.topics,
                                        audit_event_id="http-1")
            else:
                with pytest.raises(StaleProposal):
                    decisions.approve_match(store, proposal_id="p1", coordinator_id="c-grid",
                                            clock=engine.clock, topics=engine.topics,
                                            audit_event_id="http-2")
    assert set(audit_summaries(engine)) >= {"http-1"}
    assert "http-2" not in audit_summaries(engine)
    assert len(outbox(engine, engine.topics.assignments)) == 1


def test_approval_is_stale_once_the_case_is_closed(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
        store.close_case("case-a", version=2, at=engine.clock())
    with pytest.raises(StaleProposal, match="case 'case-a' is closed"):
        ingest(engine, decision_event("p1", "c-grid"))


def test_approval_is_stale_once_the_offer_is_withdrawn(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
        store.withdraw_offer("o-a", version=2, at=engine.clock())
    with pytest.raises(StaleProposal, match="withdrawn"):
        ingest(engine, decision_event("p1", "c-grid"))


def test_approval_is_stale_when_the_offers_capacity_is_gone(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p-big", "case-a2", offer=("o-a", "p1"), amount=1000)
        propose(store, "p1", "case-a")
    with pytest.raises(StaleProposal, match="no capacity left"):
        ingest(engine, decision_event("p1", "c-grid"))


def test_withdrawing_the_offer_revokes_the_proposal_so_a_late_decision_is_stale(
        engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    feed_event = f.withdrawal("o-a", "p1")
    engine.ingest(f.parse(feed_event), topic="t.offers")
    with pytest.raises(StaleProposal, match="revoked"):
        ingest(engine, decision_event("p1", "c-grid"))


def test_an_unknown_proposal_is_not_found(engine: MatchingEngine) -> None:
    with pytest.raises(ProposalNotFound):
        ingest(engine, decision_event("nope", "c-centre"))


# --- fulfilment ---------------------------------------------------------------------------------


def test_the_offering_partner_closes_the_loop_with_a_fulfilment_report(
        engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
        propose(store, "p2", "case-a", item_id="i2")
    with pytest.raises(StaleProposal, match="not approved"):
        ingest(engine, fulfilment_event("p1", "p1"))
    assert ingest(engine, decision_event("p1", "c-grid"))
    with pytest.raises(NotOwner):
        ingest(engine, fulfilment_event("p1", "p2"))
    assert ingest(engine, fulfilment_event("p1", "p1", delivered=1))
    assert status_of(engine.db, "p1") == "fulfilled"


def test_a_no_show_reopens_the_demand(engine: MatchingEngine) -> None:
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
    assert ingest(engine, decision_event("p1", "c-grid"))
    engine.due_shards(0)
    assert ingest(engine, fulfilment_event("p1", "p1", outcome="no_show", delivered=0))
    assert status_of(engine.db, "p1") == "no_show"
    assert engine.pending_shards() == 1


def test_the_clock_given_is_the_decision_time(db: Engine) -> None:
    clock = Clock()
    engine = build_world(db, clock)
    with unit_of_work(engine.db) as store:
        propose(store, "p1", "case-a")
        result = decisions.reject_match(store, proposal_id="p1", coordinator_id="c-ws",
                                        reason="not needed", clock=clock,
                                        audit_event_id="http-x")
    assert result.summary.endswith(f"at {clock.now.isoformat()}: not needed")
