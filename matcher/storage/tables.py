"""Relational schema of the engine's durable state (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and always read back time-zone aware, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        """On SQLite, parse the stored UTC text straight into an aware moment: batches read
        hundreds of thousands of them, and parsing then replacing the zone costs four times more."""
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        fallback = super().result_processor(dialect, coltype)

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            try:
                return datetime.fromisoformat(value + "+00:00")  # stored without a zone
            except (TypeError, ValueError):
                return fallback(value) if fallback else value

        return process


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String(80), primary_key=True),
    Column("level", String(16), nullable=False),
    Column("parent_id", String(80), nullable=True),
    Column("name", String(120), nullable=False),
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    # "/centre/ws/st/grid/": a subtree is a prefix match, for jurisdiction and shards.
    Column("path", String(500), nullable=False, index=True),
    # How offers based in the subtree reach people when neither they nor their partner say.
    Column("reach", JSON(none_as_null=True), nullable=True),
)

partners = Table(
    "partners",
    metadata,
    Column("partner_id", String(80), primary_key=True),
    Column("name", String(160), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("home_node_id", String(80), ForeignKey("nodes.node_id"), nullable=False),
    Column("registered_at", UtcDateTime, nullable=False),
    # How the partner's offers reach people when they do not say.
    Column("reach", JSON(none_as_null=True), nullable=True),
)

offers = Table(
    "offers",
    metadata,
    Column("offer_id", String(80), primary_key=True),
    Column("partner_id", String(80), ForeignKey("partners.partner_id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # active | withdrawn
    Column("node_id", String(80), ForeignKey("nodes.node_id"), nullable=False),
    Column("shard", String(80), nullable=False),
    Column("capacity", Float, nullable=False),
    Column("unit", String(20), nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("payload", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # When the offer stops being matchable (last window or slot over, or expired); NULL: never.
    Column("live_until", UtcDateTime, nullable=True),
    # The revision of the write that last changed the row (`write_revision`): a batch
    # reads only the rows changed since its last one.
    Column("revision", BigInteger, nullable=False, server_default="0"),
    Index("ix_offers_shard_status", "shard", "status"),
    Index("ix_offers_shard_status_live", "shard", "status", "live_until"),
    Index("ix_offers_revision", "revision"),
)

cases = Table(
    "cases",
    metadata,
    Column("case_id", String(80), primary_key=True),
    Column("grid_id", String(80), ForeignKey("nodes.node_id"), nullable=False),
    Column("shard", String(80), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # open | closed
    Column("beneficiary", JSON, nullable=False),  # includes sensitive attributes: never log it
    # The beneficiary's pseudonym as a column, so continuity is found by index, not by JSON.
    Column("pseudonym", String(80), nullable=True),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_cases_shard_status", "shard", "status"),
    Index("ix_cases_pseudonym", "pseudonym"),
    # A forecast repeats the cases a shard opened at the same hours a week before.
    Index("ix_cases_shard_opened_at", "shard", "opened_at"),
)

need_items = Table(
    "need_items",
    metadata,
    Column("case_id", String(80), ForeignKey("cases.case_id"), primary_key=True),
    Column("item_id", String(80), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("need", String(60), nullable=False),
    Column("quantity", Float, nullable=False),
    Column("unit", String(20), nullable=False),
    Column("window_start", UtcDateTime, nullable=False),
    Column("window_end", UtcDateTime, nullable=False),
    Column("deadline", UtcDateTime, nullable=False),
    Column("urgency", Integer, nullable=False),
    Column("splittable", Boolean, nullable=False),
    Column("preferences", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # open | closed
    # Last reason the item was left (partly) unmatched; an event is sent only when it changes.
    Column("unmatched_code", String(40), nullable=True),
    Column("unmatched_reason", Text, nullable=True),
    # For capacity_taken: who holds the capacity (more urgent cases, earlier commitments...).
    Column("unmatched_taken_by", String(40), nullable=True),
    # The revision of the write that last changed the item or its case (`write_revision`):
    # a batch reads only the items changed since its last one.
    Column("revision", BigInteger, nullable=False, server_default="0"),
    # Batches read only items whose deadline is still ahead.
    Index("ix_need_items_status_deadline", "status", "deadline"),
    Index("ix_need_items_revision", "revision"),
)

proposals = Table(
    "proposals",
    metadata,
    Column("proposal_id", String(80), primary_key=True),
    Column("case_id", String(80), nullable=False),
    Column("item_id", String(80), nullable=False),
    Column("offer_id", String(80), ForeignKey("offers.offer_id"), nullable=False),
    Column("slot", Integer, nullable=True),  # slot index for service offers
    Column("partner_id", String(80), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount", Float, nullable=False),
    Column("unit", String(20), nullable=False),
    Column("window_start", UtcDateTime, nullable=True),
    Column("window_end", UtcDateTime, nullable=True),
    Column("status", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("explanation", JSON, nullable=False),
    Column("shard", String(80), nullable=False),
    Column("grid_id", String(80), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("decided_at", UtcDateTime, nullable=True),
    Column("decided_by", String(80), nullable=True),
    Column("decision_reason", Text, nullable=True),
    Column("delivered", Float, nullable=True),
    # Who meets whom, kept on the row: a volunteer's diary and a beneficiary's continuity are
    # read by index instead of decoding offers and cases.
    Column("volunteer_id", String(80), nullable=True),
    Column("beneficiary", String(80), nullable=True),
    # The revision of the write that last changed the row (`write_revision`): a batch
    # reads only the rows changed since its last one.
    Column("revision", BigInteger, nullable=False, server_default="0"),
    Index("ix_proposals_item", "case_id", "item_id"),
    Index("ix_proposals_visits", "kind", "status", "window_end"),
    Index("ix_proposals_beneficiary", "beneficiary", "kind"),
    Index("ix_proposals_offer_status", "offer_id", "status"),
    Index("ix_proposals_shard_status", "shard", "status"),
    # The partner door lists a partner's latest proposals.
    Index("ix_proposals_partner_created", "partner_id", "created_at"),
    Index("ix_proposals_revision", "revision"),
)

# One row counting the writes of proposals, offers and need items (their `revision`). A write
# takes the next revision by updating the row, which holds its lock until the transaction ends,
# so revisions become visible in the order they were taken: a reader that sees revision N has
# seen every write up to N.
write_revision = Table(
    "write_revision",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", BigInteger, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    # Unique: the idempotency key. An event id seen before changes nothing.
    Column("event_id", String(64), nullable=False, unique=True),
    Column("event_type", String(40), nullable=False),
    Column("topic", String(120), nullable=False),
    Column("partition", Integer, nullable=True),
    Column("offset", BigInteger, nullable=True),
    Column("producer", String(80), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
    Column("summary", Text, nullable=False),  # human summary without sensitive attributes
)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("topic", String(120), nullable=False),
    Column("key", String(120), nullable=False),
    Column("value", Text, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(40), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("published_at", UtcDateTime, nullable=True, index=True),
)
