"""default reach of partners and hierarchy nodes; who took an unmatched item's capacity

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows registered before keep the engine's old reach until their owner says.
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reach", sa.JSON(none_as_null=True), nullable=True))
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reach", sa.JSON(none_as_null=True), nullable=True))
    with op.batch_alter_table("need_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unmatched_taken_by", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("need_items", schema=None) as batch_op:
        batch_op.drop_column("unmatched_taken_by")
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.drop_column("reach")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("reach")
