"""Applying events to state: a refusal leaves state unchanged, a repeat changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from matcher.domain.errors import (
    DomainError,
    InvalidHierarchy,
    NotOwner,
    StaleVersion,
    UnknownPartner,
    UnknownReference,
)
from matcher.services.engine import MatchingEngine
from matcher.storage.store import unit_of_work
from schemas.topics import Topics
from tests import factories as f

TABLES = ("audit_log", "nodes", "partners", "offers", "cases", "need_items", "proposals",
          "outbox")


def counts(db: Engine) -> dict[str, int]:
    with unit_of_work(db) as store:
        return {table: store.count(table) for table in TABLES}


@pytest.fixture
def engine(db: Engine) -> MatchingEngine:
    eng = MatchingEngine(db=db, topics=Topics("t"))
    for event in [*f.hierarchy(), f.partner("p1"), f.partner("p2")]:
        feed(eng, event)
    return eng


def feed(engine: MatchingEngine, event: dict[str, Any]) -> bool:
    """Apply an event; True when applied, False when it was a duplicate."""
    return not engine.ingest(f.parse(event), topic="test").duplicate


def test_registered_hierarchy_and_partners_are_stored(engine: MatchingEngine) -> None:
    assert counts(engine.db)["nodes"] == 8
    assert counts(engine.db)["partners"] == 2
    with unit_of_work(engine.db) as store:
        grid = store.node(f.GRID)
    assert grid is not None
    assert grid.path == f"/{f.CENTRE}/{f.WS}/{f.STUDIO}/{f.GRID}/"


def test_a_repeated_event_changes_nothing(engine: MatchingEngine) -> None:
    offer = f.volunteer_offer("o1", "p1")
    assert feed(engine, offer) is True
    before = counts(engine.db)
    assert feed(engine, offer) is False
    assert counts(engine.db) == before


@pytest.mark.parametrize(
    ("make_event", "error"),
    [
        (lambda: f.volunteer_offer("o9", "stranger"), UnknownPartner),
        (lambda: {**f.volunteer_offer("o9", "p1"), "producer": "p2"}, NotOwner),
        (lambda: f.volunteer_offer("o9", "p1", node_id="nowhere"), UnknownReference),
        (lambda: f.withdrawal("never-published", "p1"), UnknownReference),
        (lambda: f.case("c9", grid="no-such-grid"), UnknownReference),
        (lambda: f.case("c9", grid=f.STUDIO, producer=f.STUDIO), InvalidHierarchy),
        (lambda: f.case("c9", producer=f.GRID_B), NotOwner),
        (lambda: f.case("c9", producer="somebody"), UnknownPartner),
        (lambda: f.node("g-x", "grid", f.WS, 29.0, 106.0), InvalidHierarchy),
        (lambda: f.partner("p9", home="nowhere"), UnknownReference),
        (lambda: f.decision("prop-unknown"), DomainError),
    ],
    ids=["unknown-partner", "offer-claimed-by-other-partner", "unknown-node", "unknown-offer",
         "unknown-grid", "case-not-at-grid", "case-outside-producer-subtree",
         "unknown-case-producer", "grid-under-workstation", "partner-unknown-home",
         "unknown-proposal"],
)
def test_refused_events_leave_state_unchanged(engine: MatchingEngine, make_event: Any,
                                              error: type[DomainError]) -> None:
    before = counts(engine.db)
    with pytest.raises(error):
        feed(engine, make_event())
    assert counts(engine.db) == before


def test_offer_updates_need_a_newer_version(engine: MatchingEngine) -> None:
    feed(engine, f.volunteer_offer("o1", "p1", version=2))
    before = counts(engine.db)
    with pytest.raises(StaleVersion):
        feed(engine, f.volunteer_offer("o1", "p1", version=2, event_type="offer.updated"))
    with pytest.raises(StaleVersion):
        feed(engine, f.volunteer_offer("o1", "p1", version=1, event_type="offer.updated"))
    assert counts(engine.db) == before
    assert feed(engine, f.volunteer_offer("o1", "p1", version=3, event_type="offer.updated"))
    with unit_of_work(engine.db) as store:
        stored = store.offer("o1")
    assert stored is not None and stored.version == 3


def test_only_the_owner_may_update_or_withdraw_an_offer(engine: MatchingEngine) -> None:
    feed(engine, f.volunteer_offer("o1", "p1"))
    with pytest.raises(NotOwner):
        feed(engine, f.withdrawal("o1", "p2"))
    hijack = f.volunteer_offer("o1", "p2", version=5, event_type="offer.updated")
    with pytest.raises(NotOwner):
        feed(engine, hijack)
    assert feed(engine, f.withdrawal("o1", "p1"))


def test_case_update_and_closure_follow_versions(engine: MatchingEngine) -> None:
    feed(engine, f.case("c1"))
    with pytest.raises(StaleVersion):
        feed(engine, f.case("c1", event_type="case.updated", version=1))
    feed(engine, f.case("c1", event_type="case.updated", version=2,
                        items=[f.item("i2", quantity=3)]))
    with unit_of_work(engine.db) as store:
        assert store.item_keys("c1") == {"i2"}
    feed(engine, f.closure("c1", version=3))
    with unit_of_work(engine.db) as store:
        assert store.item_keys("c1") == set()
        case = store.case("c1")
    assert case is not None and case.status == "closed"


def test_every_applied_event_is_in_the_audit_log_without_sensitive_data(
        engine: MatchingEngine) -> None:
    feed(engine, f.case("c1"))
    with engine.db.connect() as conn:
        from sqlalchemy import select

        from matcher.storage.tables import audit_log
        rows = conn.execute(select(audit_log.c.event_type, audit_log.c.summary)).all()
    assert [r.event_type for r in rows].count("case.opened") == 1
    assert all("diabetic" not in r.summary for r in rows)
