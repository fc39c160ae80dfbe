"""Queue statistics and impact figures of one coordinator's jurisdiction."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from statistics import median
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from matcher.services.jurisdiction import Coordinator
from matcher.storage.coordination import escalations
from matcher.storage.store import Store
from matcher.storage.tables import nodes, proposals
from schemas.matches import ProposalStatus

# Waiting-time buckets of the queue chart: (label, upper bound in hours).
WAIT_BUCKETS: tuple[tuple[str, float], ...] = (
    ("< 1 h", 1), ("1-4 h", 4), ("4-12 h", 12), ("12-24 h", 24), ("> 24 h", float("inf")),
)


class Impact(BaseModel):
    """What fulfilled matches gave: people served, hours, sessions and goods by unit."""

    people_served: int
    matches_fulfilled: int
    hours_given: float
    sessions_given: float
    goods_delivered: dict[str, float]
    no_shows: int
    cancelled: int


class QueueStats(BaseModel):
    """How the queue stands: pending by grid, by kind, waiting times, decisions so far."""

    pending: int
    pending_by_grid: dict[str, int]
    pending_by_kind: dict[str, int]
    waiting_buckets: dict[str, int]
    oldest_wait_s: float
    median_wait_s: float
    escalated: int
    decided: dict[str, int]
    impact: Impact


def queue_stats(store: Store, coordinator: Coordinator, *, now: datetime) -> QueueStats:
    """Statistics of every proposal whose case lies in the jurisdiction."""
    rows = [r for r in store.conn.execute(
        select(proposals.c.proposal_id, proposals.c.grid_id, proposals.c.kind,
               proposals.c.status, proposals.c.created_at, proposals.c.case_id,
               proposals.c.delivered, proposals.c.unit, nodes.c.path,
               escalations.c.escalated_to)
        .join(nodes, nodes.c.node_id == proposals.c.grid_id)
        .outerjoin(escalations, escalations.c.proposal_id == proposals.c.proposal_id)
        .where(nodes.c.path.startswith(coordinator.node_path, autoescape=True))
    ) if coordinator.covers(r.path)]
    pending = [r for r in rows if r.status == ProposalStatus.PROPOSED]
    waits = [max((now - r.created_at).total_seconds(), 0.0) for r in pending]
    return QueueStats(
        pending=len(pending),
        pending_by_grid=dict(sorted(Counter(r.grid_id for r in pending).items())),
        pending_by_kind=dict(sorted(Counter(r.kind for r in pending).items())),
        waiting_buckets=_bucket(waits),
        oldest_wait_s=max(waits, default=0.0),
        median_wait_s=median(waits) if waits else 0.0,
        escalated=sum(1 for r in pending if r.escalated_to is not None),
        decided=dict(sorted(Counter(r.status for r in rows
                                    if r.status != ProposalStatus.PROPOSED).items())),
        impact=_impact(rows),
    )


def _bucket(waits: list[float]) -> dict[str, int]:
    """How many pending proposals fall in each waiting-time bucket."""
    counts = dict.fromkeys((label for label, _ in WAIT_BUCKETS), 0)
    for wait in waits:
        label = next(label for label, bound in WAIT_BUCKETS if wait / 3600 < bound)
        counts[label] += 1
    return counts


def _impact(rows: list[Any]) -> Impact:
    """Impact figures from the outcomes partners reported."""
    fulfilled = [r for r in rows if r.status == ProposalStatus.FULFILLED]
    goods: dict[str, float] = defaultdict(float)
    for r in fulfilled:
        if r.kind == "goods":
            goods[r.unit] += r.delivered or 0.0
    return Impact(
        people_served=len({r.case_id for r in fulfilled}),
        matches_fulfilled=len(fulfilled),
        hours_given=sum(r.delivered or 0.0 for r in fulfilled
                        if r.kind == "volunteer"),
        sessions_given=sum(r.delivered or 0.0 for r in fulfilled
                           if r.kind == "service"),
        goods_delivered=dict(goods),
        no_shows=sum(1 for r in rows if r.status == ProposalStatus.NO_SHOW),
        cancelled=sum(1 for r in rows if r.status == ProposalStatus.CANCELLED),
    )
