"""partners' HTTP credentials (API keys, partner page sessions); proposals by partner

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import matcher.storage.tables

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "partner_credentials",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("partner_id", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("created_at", matcher.storage.tables.UtcDateTime(timezone=True),
                  nullable=False),
        sa.Column("expires_at", matcher.storage.tables.UtcDateTime(timezone=True),
                  nullable=True),
        sa.Column("revoked_at", matcher.storage.tables.UtcDateTime(timezone=True),
                  nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_partner_credentials")),
    )
    with op.batch_alter_table("partner_credentials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_partner_credentials_partner_id"), ["partner_id"],
                              unique=False)
    with op.batch_alter_table("proposals", schema=None) as batch_op:
        batch_op.create_index("ix_proposals_partner_created", ["partner_id", "created_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("proposals", schema=None) as batch_op:
        batch_op.drop_index("ix_proposals_partner_created")
    with op.batch_alter_table("partner_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_partner_credentials_partner_id"))
    op.drop_table("partner_credentials")
