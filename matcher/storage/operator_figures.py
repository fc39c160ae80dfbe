"""Read-only figures an operator watches: pending proposals, their oldest age, unmatched
items. Cheap COUNT/MIN queries on indexed columns, safe to run every few seconds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, func, select

from matcher.storage.tables import need_items, proposals
from schemas.matches import ProposalStatus


@dataclass(frozen=True)
class OperatorFigures:
    """What the gauges show."""

    pending_proposals: int
    oldest_pending_age_s: float
    unmatched_items: int


def operator_figures(conn: Connection, now: datetime) -> OperatorFigures:
    """Count pending proposals and unmatched open items, and age the oldest pending one."""
    pending, oldest = conn.execute(
        select(func.count(), func.min(proposals.c.created_at))
        .where(proposals.c.status == ProposalStatus.PROPOSED.value)).one()
    unmatched = conn.execute(
        select(func.count()).select_from(need_items)
        .where(and_(need_items.c.status == "open",
                    need_items.c.unmatched_code.is_not(None)))).scalar_one()
    age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
    return OperatorFigures(pending_proposals=int(pending), oldest_pending_age_s=age,
                           unmatched_items=int(unmatched))

