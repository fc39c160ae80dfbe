"""server-side coordinator sessions and API tokens

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import matcher.storage.tables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coordinator_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("created_at", matcher.storage.tables.UtcDateTime(timezone=True),
                  nullable=False),
        sa.Column("expires_at", matcher.storage.tables.UtcDateTime(timezone=True),
                  nullable=False),
        sa.Column("revoked_at", matcher.storage.tables.UtcDateTime(timezone=True),
                  nullable=True),
        sa.ForeignKeyConstraint(["username"], ["coordinators.username"],
                                name=op.f("fk_coordinator_sessions_username_coordinators")),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_coordinator_sessions")),
    )
    with op.batch_alter_table("coordinator_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_coordinator_sessions_username"), ["username"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("coordinator_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coordinator_sessions_username"))
    op.drop_table("coordinator_sessions")
