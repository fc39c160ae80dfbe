"""A small district with coordinators at every level, cases in three grids and proposals
stored directly (so these tests do not depend on the solver)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Engine

from matcher.services.coordinators import hash_password
from matcher.services.engine import MatchingEngine
from matcher.storage.coordination import CoordinationStore
from matcher.storage.store import Store, unit_of_work
from schemas.matches import ProposalStatus
from schemas.topics import Topics
from tests import factories as f

NOW = datetime(2030, 6, 2, 8, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"

# username -> node: one coordinator per level on branch A, two on branch B.
COORDINATORS = {
    "c-centre": f.CENTRE,
    "c-ws": f.WS,
    "c-studio": f.STUDIO,
    "c-grid": f.GRID,
    "c-ws-b": f.WS_B,
    "c-grid-b": f.GRID_B,
}
# case -> grid
CASES = {"case-a": f.GRID, "case-a2": f.GRID2, "case-b": f.GRID_B}
# Which coordinators' subtrees hold each case's grid.
ALLOWED = {
    "case-a": {"c-centre", "c-ws", "c-studio", "c-grid"},
    "case-a2": {"c-centre", "c-ws", "c-studio"},
    "case-b": {"c-centre", "c-ws-b", "c-grid-b"},
}
MATRIX = [(user, case, user in ALLOWED[case]) for user in COORDINATORS for case in CASES]


class Clock:
    """A settable clock for the engine and the services."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def feed(engine: MatchingEngine, event: dict[str, Any]) -> None:
    engine.ingest(f.parse(event), topic="test")


def build_world(db: Engine, clock: Clock | None = None) -> MatchingEngine:
    """Hierarchy, partners, a large goods offer per branch, three cases and coordinators."""
    engine = MatchingEngine(db=db, topics=Topics("t"), clock=clock or Clock())
    events = [*f.hierarchy(), f.partner("p1"), f.partner("p2"), f.partner("pb", home=f.WS_B),
              f.goods_offer("o-a", "p1", quantity=1000),
              f.goods_offer("o-a2", "p2", quantity=1000),
              f.goods_offer("o-b", "pb", quantity=1000, node_id=f.WS_B)]
    for case_id, grid in CASES.items():
        items = [f.item("i1", kind="goods", need="rice", quantity=1, unit="kg", urgency=3),
                 f.item("i2", kind="goods", need="rice", quantity=1, unit="kg", urgency=5)]
        events.append(f.case(case_id, grid=grid, items=items))
    for event in events:
        feed(engine, event)
    with unit_of_work(db) as store:
        for username, node_id in COORDINATORS.items():
            # One argon2 hash for all: hashing is slow by design.
            CoordinationStore(store.conn).save_coordinator(
                username=username, display_name=username.upper(), node_id=node_id,
                password_hash=_password_hash(), active=True, at=engine.clock())
    return engine


@cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


def offer_for(case_id: str) -> tuple[str, str]:
    """(offer, partner) of the branch a case lies on."""
    return ("o-b", "pb") if CASES[case_id] == f.GRID_B else ("o-a", "p1")


def propose(store: Store, proposal_id: str, case_id: str, *, item_id: str = "i1",
            offer: tuple[str, str] | None = None, amount: float = 1.0,
            created_at: datetime = NOW, kind: str = "goods", unit: str = "kg",
            grid_id: str | None = None) -> str:
    """Store a pending proposal as a matching batch would."""
    offer_id, partner_id = offer or offer_for(case_id)
    store.add_proposal(
        proposal_id=proposal_id, case_id=case_id, item_id=item_id, offer_id=offer_id,
        slot=None, partner_id=partner_id, kind=kind, amount=amount, unit=unit,
        window_start=None, window_end=None, status=ProposalStatus.PROPOSED.value, score=42.0,
        explanation={"rules_passed": ["kind_matches", "category_matches"],
                     "score_terms": [{"name": "urgency", "weight": 10.0, "value": 0.6,
                                      "contribution": 6.0}],
                     "runner_ups": [{"offer_id": "o-a2", "score": 30.0,
                                     "why_lost": "lower score: farther away"}],
                     "solver_status": "OPTIMAL"},
        shard=f.CENTRE, grid_id=grid_id or CASES[case_id], created_at=created_at,
    )
    return proposal_id


def propose_many(db: Engine, prefix: str, **options: Any) -> dict[tuple[str, str], str]:
    """One pending proposal per (coordinator, case) of the matrix."""
    ids: dict[tuple[str, str], str] = {}
    with unit_of_work(db) as store:
        for user, case_id, _ in MATRIX:
            ids[user, case_id] = propose(store, f"{prefix}-{user}-{case_id}", case_id,
                                         **options)
    return ids


def status_of(db: Engine, proposal_id: str) -> str:
    with unit_of_work(db) as store:
        proposal = store.proposal(proposal_id)
    assert proposal is not None
    return proposal.status
