"""Coordinators and the oversight of proposals: tables and their repository.

The tables join the engine's one `metadata`, so Alembic sees them (revision 0002).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    ForeignKey,
    String,
    Table,
    and_,
    delete,
    insert,
    select,
    update,
)

from matcher.storage.store import next_revision
from matcher.storage.tables import UtcDateTime, metadata, nodes, proposals
from schemas.matches import ProposalStatus

coordinators = Table(
    "coordinators",
    metadata,
    # The username is also the coordinator_id carried by decision events.
    Column("username", String(80), primary_key=True),
    Column("display_name", String(120), nullable=False),
    Column("node_id", String(80), ForeignKey("nodes.node_id"), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

escalations = Table(
    "proposal_escalations",
    metadata,
    Column("proposal_id", String(80), ForeignKey("proposals.proposal_id"), primary_key=True),
    # The node whose coordinators are now asked to decide (an ancestor of the case's grid).
    Column("escalated_to", String(80), ForeignKey("nodes.node_id"), nullable=False),
    Column("escalated_at", UtcDateTime, nullable=False),
)

# Signed-in sessions (console cookies) and API tokens. Only a sha256 of the secret handed to
# the browser or client is stored, so reading this table does not let anyone sign in.
coordinator_sessions = Table(
    "coordinator_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("username", String(80), ForeignKey("coordinators.username"), nullable=False,
           index=True),
    Column("kind", String(10), nullable=False),  # "cookie" or "token"
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

# A partner's HTTP credentials: long-lived API keys (kind "key", from `matcher partners add`)
# and the partner page's sign-in sessions (kind "cookie"). Only sha256s of the secrets are
# kept. No foreign key to partners: a key may be issued before the registry event is applied.
partner_credentials = Table(
    "partner_credentials",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("partner_id", String(80), nullable=False, index=True),
    Column("kind", String(10), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
)


@dataclass(frozen=True)
class CoordinatorRow:
    username: str
    display_name: str
    node_id: str
    password_hash: str
    active: bool


@dataclass(frozen=True)
class EscalationRow:
    proposal_id: str
    escalated_to: str
    escalated_at: datetime


class CoordinationStore:
    """Typed access to coordinators and escalations, in the caller's transaction."""

    def __init__(self, connection: Connection) -> None:
        self.conn = connection

    def coordinator(self, username: str) -> CoordinatorRow | None:
        """The coordinator with this username, if registered."""
        row = self.conn.execute(
            select(coordinators.c.username, coordinators.c.display_name, coordinators.c.node_id,
                   coordinators.c.password_hash, coordinators.c.active)
            .where(coordinators.c.username == username)
        ).first()
        return CoordinatorRow(**row._mapping) if row else None

    def save_coordinator(self, *, username: str, display_name: str, node_id: str,
                         password_hash: str, active: bool, at: datetime) -> None:
        """Create or replace a coordinator."""
        values = dict(display_name=display_name, node_id=node_id, password_hash=password_hash,
                      active=active)
        if self.coordinator(username) is None:
            self.conn.execute(insert(coordinators).values(username=username, created_at=at,
                                                          **values))
        else:
            self.conn.execute(update(coordinators).where(coordinators.c.username == username)
                              .values(**values))
            # A replaced account (new password, moved, deactivated) starts with no sessions.
            self.revoke_sessions_of(username, at=at)

    def open_session(self, *, token_hash: str, username: str, kind: str, at: datetime,
                     expires_at: datetime) -> None:
        """Record a session or API token (by the hash of its secret); prune expired ones."""
        self.conn.execute(delete(coordinator_sessions)
                          .where(coordinator_sessions.c.expires_at < at))
        self.conn.execute(insert(coordinator_sessions).values(
            token_hash=token_hash, username=username, kind=kind, created_at=at,
            expires_at=expires_at, revoked_at=None))

    def session_username(self, token_hash: str, *, at: datetime) -> str | None:
        """Whose live (unrevoked, unexpired) session this is, if any."""
        return self.conn.execute(
            select(coordinator_sessions.c.username)
            .where(coordinator_sessions.c.token_hash == token_hash,
                   coordinator_sessions.c.revoked_at.is_(None),
                   coordinator_sessions.c.expires_at > at)
        ).scalar_one_or_none()

    def revoke_session(self, token_hash: str, *, at: datetime) -> None:
        """End one session or token: its cookie or bearer token stops working."""
        self.conn.execute(update(coordinator_sessions)
                          .where(coordinator_sessions.c.token_hash == token_hash,
                                 coordinator_sessions.c.revoked_at.is_(None))
                          .values(revoked_at=at))

    def revoke_sessions_of(self, username: str, *, at: datetime) -> None:
        """End every session and token of a coordinator."""
        self.conn.execute(update(coordinator_sessions)
                          .where(coordinator_sessions.c.username == username,
                                 coordinator_sessions.c.revoked_at.is_(None))
                          .values(revoked_at=at))

    def staffed_node_ids(self) -> set[str]:
        """Nodes with at least one active coordinator."""
        return set(self.conn.execute(
            select(coordinators.c.node_id).where(coordinators.c.active.is_(True))
        ).scalars())

    def escalation(self, proposal_id: str) -> EscalationRow | None:
        """Where a proposal was escalated, if it was."""
        row = self.conn.execute(
            select(escalations).where(escalations.c.proposal_id == proposal_id)
        ).first()
        return EscalationRow(**row._mapping) if row else None

    def escalations_for(self, proposal_ids: list[str]) -> dict[str, EscalationRow]:
        """Escalations of these proposals, by proposal id."""
        if not proposal_ids:
            return {}
        rows = self.conn.execute(
            select(escalations).where(escalations.c.proposal_id.in_(proposal_ids))
        )
        return {r.proposal_id: EscalationRow(**r._mapping) for r in rows}

    def escalate(self, proposal_id: str, *, to_node: str, at: datetime) -> None:
        """Record that a proposal now waits for the coordinators of `to_node`."""
        self.conn.execute(insert(escalations).values(proposal_id=proposal_id,
                                                     escalated_to=to_node, escalated_at=at))

    def claim_pending(self, proposal_id: str, status: ProposalStatus, *, at: datetime,
                      by: str | None, reason: str | None) -> bool:
        """Move a still-proposed proposal to `status`; False if someone decided it first."""
        # The status condition makes a decision apply once even under concurrent doors.
        values: dict[str, Any] = {"status": status.value, "decided_at": at,
                                  "decided_by": by, "decision_reason": reason,
                                  "revision": next_revision(self.conn)}
        result = self.conn.execute(
            update(proposals)
            .where(and_(proposals.c.proposal_id == proposal_id,
                        proposals.c.status == ProposalStatus.PROPOSED.value))
            .values(**values)
        )
        return result.rowcount == 1

    def grid_paths(self) -> dict[str, str]:
        """Materialised path of every node, by node id."""
        return {node_id: path for node_id, path in
                self.conn.execute(select(nodes.c.node_id, nodes.c.path))}

    # -- partners' HTTP credentials

    def add_partner_credential(self, *, token_hash: str, partner_id: str, kind: str,
                               at: datetime, expires_at: datetime | None) -> None:
        """Record an API key or page session of a partner (by the hash of its secret)."""
        self.conn.execute(delete(partner_credentials)
                          .where(partner_credentials.c.expires_at < at))
        self.conn.execute(insert(partner_credentials).values(
            token_hash=token_hash, partner_id=partner_id, kind=kind, created_at=at,
            expires_at=expires_at, revoked_at=None))

    def credential_partner(self, token_hash: str, *, at: datetime,
                           kinds: tuple[str, ...]) -> str | None:
        """Whose live credential of one of `kinds` this is, if any."""
        live = partner_credentials.c
        return self.conn.execute(
            select(live.partner_id).where(
                live.token_hash == token_hash, live.kind.in_(kinds), live.revoked_at.is_(None),
                (live.expires_at.is_(None)) | (live.expires_at > at))
        ).scalar_one_or_none()

    def revoke_partner_credential(self, token_hash: str, *, at: datetime) -> None:
        """End one key or page session."""
        self.conn.execute(update(partner_credentials)
                          .where(partner_credentials.c.token_hash == token_hash,
                                 partner_credentials.c.revoked_at.is_(None))
                          .values(revoked_at=at))

    def revoke_partner_keys(self, partner_id: str, *, at: datetime) -> None:
        """End every key and session of a partner (a new key replaces the old ones)."""
        self.conn.execute(update(partner_credentials)
                          .where(partner_credentials.c.partner_id == partner_id,
                                 partner_credentials.c.revoked_at.is_(None))
                          .values(revoked_at=at))
