"""coordinators and proposal escalations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import matcher.storage.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coordinators",
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("display_name", sa.String(length=120), nullable=False),
        sa.Column("node_id", sa.String(length=80), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", matcher.storage.tables.UtcDateTime(timezone=True),
                  nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.node_id"],
                                name=op.f("fk_coordinators_node_id_nodes")),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_coordinators")),
    )
    op.create_table(
        "proposal_escalations",
        sa.Column("proposal_id", sa.String(length=80), nullable=False),
        sa.Column("escalated_to", sa.String(length=80), nullable=False),
        sa.Column("escalated_at", matcher.storage.tables.UtcDateTime(timezone=True),
                  nullable=False),
        sa.ForeignKeyConstraint(["escalated_to"], ["nodes.node_id"],
                                name=op.f("fk_proposal_escalations_escalated_to_nodes")),
        sa.ForeignKeyConstraint(["proposal_id"], ["proposals.proposal_id"],
                                name=op.f("fk_proposal_escalations_proposal_id_proposals")),
        sa.PrimaryKeyConstraint("proposal_id", name=op.f("pk_proposal_escalations")),
    )


def downgrade() -> None:
    op.drop_table("proposal_escalations")
    op.drop_table("coordinators")
