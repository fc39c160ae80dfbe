"""proposals stamped with the revision of the write that last changed them

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 21:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("proposals", sa.Column("revision", sa.BigInteger(), nullable=False,
                                         server_default="0"))
    op.create_index("ix_proposals_revision", "proposals", ["revision"])
    counter = op.create_table(
        "proposal_revision",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(counter, [{"id": 1, "revision": 0}])


def downgrade() -> None:
    op.drop_table("proposal_revision")
    op.drop_index("ix_proposals_revision", table_name="proposals")
    op.drop_column("proposals", "revision")
