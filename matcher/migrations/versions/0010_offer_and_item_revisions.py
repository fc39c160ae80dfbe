"""offers and need items stamped with the revision of the write that last changed them

The counter of 0009 now counts every write a batch reads back (proposals, offers, need items),
so it is renamed for what it is.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.rename_table("proposal_revision", "write_revision")
    for table in ("offers", "need_items"):
        op.add_column(table, sa.Column("revision", sa.BigInteger(), nullable=False,
                                       server_default="0"))
        op.create_index(f"ix_{table}_revision", table, ["revision"])


def downgrade() -> None:
    for table in ("offers", "need_items"):
        op.drop_index(f"ix_{table}_revision", table_name=table)
        op.drop_column(table, "revision")
    op.rename_table("write_revision", "proposal_revision")
