"""cases found by shard and opening time (the forecast of urgent cases expected soon)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 15:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_shard_opened_at", "cases", ["shard", "opened_at"])


def downgrade() -> None:
    op.drop_index("ix_cases_shard_opened_at", table_name="cases")
