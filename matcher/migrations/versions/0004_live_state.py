"""live state: what a batch can still match is found by index, not by reading history

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:20:00
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import matcher.storage.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _json(value: Any) -> Any:
    """A JSON column's value as the driver returns it (text on SQLite, parsed on PostgreSQL)."""
    return json.loads(value) if isinstance(value, str) else value


def _latest(*moments: str | None) -> datetime | None:
    """The latest of ISO moments, None when there are none."""
    parsed = [datetime.fromisoformat(m) for m in moments if m]
    return max(parsed) if parsed else None


def _live_until(payload: dict[str, Any]) -> datetime | None:
    """When an offer stops being matchable: its last window or slot ends, or it expires."""
    kind = payload.get("kind")
    if kind == "volunteer":
        end = _latest(*(w["end"] for w in payload.get("availability", [])))
    elif kind == "service":
        end = _latest(*(s["window"]["end"] for s in payload.get("slots", [])))
    else:
        end = None
    expires = _latest(payload.get("expires_at"))
    if end is None or (expires is not None and expires < end):
        return expires
    return end


def upgrade() -> None:
    with op.batch_alter_table("offers") as batch:
        batch.add_column(sa.Column("live_until", matcher.storage.tables.UtcDateTime(timezone=True),
                                   nullable=True))
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("pseudonym", sa.String(length=80), nullable=True))
    with op.batch_alter_table("proposals") as batch:
        batch.add_column(sa.Column("volunteer_id", sa.String(length=80), nullable=True))
        batch.add_column(sa.Column("beneficiary", sa.String(length=80), nullable=True))

    conn = op.get_bind()
    offers = sa.table("offers", sa.column("offer_id"), sa.column("payload"),
                      sa.column("live_until", matcher.storage.tables.UtcDateTime()))
    for offer_id, payload in conn.execute(sa.select(offers.c.offer_id, offers.c.payload)):
        conn.execute(offers.update().where(offers.c.offer_id == offer_id)
                     .values(live_until=_live_until(_json(payload))))
    cases = sa.table("cases", sa.column("case_id"), sa.column("beneficiary"),
                     sa.column("pseudonym"))
    pseudonyms = {}
    for case_id, beneficiary in conn.execute(sa.select(cases.c.case_id, cases.c.beneficiary)):
        pseudonyms[case_id] = _json(beneficiary).get("pseudonym")
        conn.execute(cases.update().where(cases.c.case_id == case_id)
                     .values(pseudonym=pseudonyms[case_id]))
    proposals = sa.table("proposals", sa.column("proposal_id"), sa.column("case_id"),
                         sa.column("offer_id"), sa.column("kind"), sa.column("volunteer_id"),
                         sa.column("beneficiary"))
    volunteers = {
        offer_id: _json(payload).get("volunteer_id")
        for offer_id, payload in conn.execute(
            sa.select(offers.c.offer_id, offers.c.payload))
    }
    for proposal_id, case_id, offer_id, kind in conn.execute(
            sa.select(proposals.c.proposal_id, proposals.c.case_id, proposals.c.offer_id,
                      proposals.c.kind)):
        conn.execute(proposals.update().where(proposals.c.proposal_id == proposal_id).values(
            beneficiary=pseudonyms.get(case_id),
            volunteer_id=volunteers.get(offer_id) if kind == "volunteer" else None))

    op.create_index("ix_offers_shard_status_live", "offers", ["shard", "status", "live_until"])
    op.create_index("ix_need_items_status_deadline", "need_items", ["status", "deadline"])
    op.create_index("ix_cases_pseudonym", "cases", ["pseudonym"])
    op.create_index("ix_proposals_visits", "proposals", ["kind", "status", "window_end"])
    op.create_index("ix_proposals_beneficiary", "proposals", ["beneficiary", "kind"])


def downgrade() -> None:
    op.drop_index("ix_proposals_beneficiary", "proposals")
    op.drop_index("ix_proposals_visits", "proposals")
    op.drop_index("ix_cases_pseudonym", "cases")
    op.drop_index("ix_need_items_status_deadline", "need_items")
    op.drop_index("ix_offers_shard_status_live", "offers")
    with op.batch_alter_table("proposals") as batch:
        batch.drop_column("beneficiary")
        batch.drop_column("volunteer_id")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("pseudonym")
    with op.batch_alter_table("offers") as batch:
        batch.drop_column("live_until")
