"""rebalancing lease and run reports

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import matcher.storage.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    lease = op.create_table(
        "rebalance_leases",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("holder", sa.String(length=120), nullable=True),
        sa.Column("acquired_at", matcher.storage.tables.UtcDateTime(timezone=True),
                  nullable=True),
        sa.Column("expires_at", matcher.storage.tables.UtcDateTime(timezone=True),
                  nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rebalance_leases")),
    )
    # The one lease row exists from the start, so taking it is always a conditional UPDATE.
    op.bulk_insert(lease, [{"name": "rebalance", "holder": None}])
    op.create_table(
        "rebalance_runs",
        sa.Column("run_id", sa.String(length=80), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", matcher.storage.tables.UtcDateTime(timezone=True),
                  nullable=False),
        sa.Column("finished_at", matcher.storage.tables.UtcDateTime(timezone=True),
                  nullable=False),
        sa.Column("moves", sa.Integer(), nullable=False),
        sa.Column("objective_before", sa.Float(), nullable=False),
        sa.Column("objective_after", sa.Float(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_rebalance_runs")),
    )
    with op.batch_alter_table("rebalance_runs", schema=None) as batch_op:
        batch_op.create_index("ix_rebalance_runs_started_at", ["started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rebalance_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_rebalance_runs_started_at")
    op.drop_table("rebalance_runs")
    op.drop_table("rebalance_leases")
