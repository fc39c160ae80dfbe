"""Rebalancing: the district-wide lease (one run at a time) and the stored run reports.

The tables join the engine's one `metadata`, so Alembic sees them (revision 0003). The lease
is one row per name, taken with a conditional UPDATE: portable across SQLite and PostgreSQL,
and atomic on both, so two engine instances never both believe they hold it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    String,
    Table,
    and_,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from matcher.storage.tables import UtcDateTime, metadata

DISTRICT_LEASE = "rebalance"

leases = Table(
    "rebalance_leases",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("holder", String(120), nullable=True),  # run id holding it; None when free
    Column("acquired_at", UtcDateTime, nullable=True),
    Column("expires_at", UtcDateTime, nullable=True),
)

runs = Table(
    "rebalance_runs",
    metadata,
    Column("run_id", String(80), primary_key=True),
    Column("trigger", String(20), nullable=False),
    Column("requested_by", String(80), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=False),
    Column("moves", Integer, nullable=False),
    Column("objective_before", Float, nullable=False),
    Column("objective_after", Float, nullable=False),
    # The full report: summary, diff and district figures (no beneficiary attributes).
    Column("report", JSON, nullable=False),
    Index("ix_rebalance_runs_started_at", "started_at"),
)


@dataclass(frozen=True)
class RunRow:
    run_id: str
    trigger: str
    requested_by: str
    status: str
    started_at: datetime
    finished_at: datetime
    moves: int
    objective_before: float
    objective_after: float
    report: dict[str, Any]


class RebalanceStore:
    """The lease and the run reports, on the caller's connection (its transaction)."""

    def __init__(self, connection: Connection) -> None:
        self.conn = connection

    def ensure_lease_row(self) -> None:
        """Create the lease row if missing (a concurrent creator wins harmlessly)."""
        if self.conn.execute(select(leases.c.name).where(leases.c.name == DISTRICT_LEASE)
                             ).first() is not None:
            return
        try:
            with self.conn.begin_nested():
                self.conn.execute(insert(leases).values(name=DISTRICT_LEASE))
        except IntegrityError:
            pass

    def take_lease(self, holder: str, *, now: datetime, until: datetime) -> bool:
        """Take the lease if free, expired or already ours; True when we hold it now."""
        result = self.conn.execute(
            update(leases)
            .where(and_(leases.c.name == DISTRICT_LEASE,
                        or_(leases.c.holder.is_(None), leases.c.expires_at <= now,
                            leases.c.holder == holder)))
            .values(holder=holder, acquired_at=now, expires_at=until)
        )
        return result.rowcount == 1

    def hold_lease(self, holder: str, *, now: datetime, until: datetime) -> bool:
        """Extend the lease only if we still hold it unexpired (the fence before applying)."""
        result = self.conn.execute(
            update(leases)
            .where(and_(leases.c.name == DISTRICT_LEASE, leases.c.holder == holder,
                        leases.c.expires_at > now))
            .values(expires_at=until)
        )
        return result.rowcount == 1

    def release_lease(self, holder: str) -> None:
        """Give the lease back (only if we hold it)."""
        self.conn.execute(
            update(leases).where(and_(leases.c.name == DISTRICT_LEASE, leases.c.holder == holder))
            .values(holder=None, expires_at=None)
        )

    def lease_holder(self, now: datetime) -> str | None:
        """Who holds the lease unexpired, if anyone."""
        row = self.conn.execute(select(leases.c.holder, leases.c.expires_at)
                                .where(leases.c.name == DISTRICT_LEASE)).first()
        if row is None or row.holder is None or row.expires_at is None or row.expires_at <= now:
            return None
        return str(row.holder)

    def save_run(self, *, run_id: str, trigger: str, requested_by: str, status: str,
                 started_at: datetime, finished_at: datetime, moves: int,
                 objective_before: float, objective_after: float,
                 report: dict[str, Any]) -> None:
        """Store the report of a run."""
        self.conn.execute(insert(runs).values(
            run_id=run_id, trigger=trigger, requested_by=requested_by, status=status,
            started_at=started_at, finished_at=finished_at, moves=moves,
            objective_before=objective_before, objective_after=objective_after, report=report))

    def latest_runs(self, limit: int = 10) -> list[RunRow]:
        """The most recent runs, newest first."""
        rows = self.conn.execute(select(runs).order_by(runs.c.started_at.desc(),
                                                       runs.c.run_id.desc()).limit(limit))
        return [RunRow(**r._mapping) for r in rows]

    def last_completed_at(self) -> datetime | None:
        """When the most recent completed run started (None before the first)."""
        started = self.conn.execute(select(func.max(runs.c.started_at))
                                    .where(runs.c.status == "completed")).scalar_one()
        return started if isinstance(started, datetime) else None

    def count_runs(self) -> int:
        """How many runs are stored."""
        return int(self.conn.execute(select(func.count()).select_from(runs)).scalar_one())
