"""The coordinators' desk: the decision service and read models over a running engine.

Used by the HTTP doors (API and console) and the sweep loop. Writes take the engine's write
lock, so they never interleave with the Kafka consumer or a matching batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from matcher.domain.errors import DomainError
from matcher.services import decisions
from matcher.services.coordinators import (
    authenticate,
    close_session,
    open_session,
    session_username,
)
from matcher.services.decisions import DecisionResult, SweepReport
from matcher.services.engine import MatchingEngine
from matcher.services.jurisdiction import (
    Coordinator,
    active_coordinator,
    require_proposal_in_jurisdiction,
)
from matcher.settings import Settings
from matcher.storage.store import Store, unit_of_work
from schemas.matches import Decision

log = logging.getLogger("matcher.desk")
audit = logging.getLogger("matcher.audit")
T = TypeVar("T")


@dataclass
class Desk:
    """Decisions and reads for coordinators, on the engine's database."""

    engine: MatchingEngine
    settings: Settings
    # argon2 takes ~64 MiB per check: a burst of sign-ins waits here rather than swapping.
    _password_checks: threading.BoundedSemaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._password_checks = threading.BoundedSemaphore(self.settings.password_checks_at_once)

    def read(self, query: Callable[[Store, Coordinator], T], username: str) -> T:
        """Run a read model for a coordinator who must still be active."""
        with unit_of_work(self.engine.db) as store:
            return query(store, active_coordinator(store, username))

    def sign_in(self, username: str, password: str) -> Coordinator | None:
        """The coordinator if the password is right, else None."""
        with self._password_checks, unit_of_work(self.engine.db) as store:
            return authenticate(store, username, password)

    def open_session(self, username: str, kind: str) -> str:
        """A new session secret (kind 'cookie') or API token (kind 'token') for a coordinator."""
        with unit_of_work(self.engine.db) as store:
            return open_session(store, username=username, kind=kind, at=_wall_clock(),
                                lifetime_s=self.settings.session_max_age_s)

    def session_user(self, token: str) -> str | None:
        """Whose live session or token this is (None once signed out or expired)."""
        with unit_of_work(self.engine.db) as store:
            return session_username(store, token, at=_wall_clock())

    def close_session(self, token: str) -> None:
        """Revoke a session or token: copies of it stop working."""
        with unit_of_work(self.engine.db) as store:
            close_session(store, token, at=_wall_clock())

    def decide(self, username: str, proposal_id: str, decision: Decision, reason: str,
               *, channel: str) -> DecisionResult:
        """Apply a coordinator's decision made over HTTP, audited under a fresh id."""
        try:
            with self.engine.writing() as store:
                # Before any other check, so a stale or unknown proposal outside the
                # jurisdiction is refused exactly like one that does not exist.
                require_proposal_in_jurisdiction(store, active_coordinator(store, username),
                                                 proposal_id)
                result = decisions.decide(
                    store, decision=decision, proposal_id=proposal_id, coordinator_id=username,
                    reason=reason, clock=self.engine.clock, topics=self.engine.topics,
                    audit_event_id=str(uuid.uuid4()), channel=channel,
                )
                self.engine.announce(store, result.changed_shards)
        except DomainError as refused:
            # The reason typed by the coordinator may describe the beneficiary: never logged.
            audit.warning("decision refused", extra={
                "username": username, "proposal_id": proposal_id, "decision": decision.value,
                "channel": channel, "code": refused.code})
            raise
        audit.info("decision applied", extra={
            "username": username, "proposal_id": proposal_id, "decision": decision.value,
            "channel": channel, "status": result.status.value})
        self.engine.mark_dirty(set(result.changed_shards))
        return result

    def sweep(self) -> SweepReport:
        """Escalate and expire proposals left pending too long; re-match what was freed."""
        with self.engine.writing() as store:
            report = decisions.sweep_pending(store, self.engine.clock(), self.settings)
            self.engine.announce(store, report.changed_shards)
        self.engine.mark_dirty(report.changed_shards)
        return report

    async def sweep_forever(self, on_change: Callable[[], None] = lambda: None) -> None:
        """Sweep every `sweep_interval_s`; `on_change` wakes the outbox relay."""
        while True:
            try:
                report = await asyncio.to_thread(self.sweep)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep of pending proposals failed; retrying")
            else:
                if report.escalated or report.expired or report.auto_approved:
                    log.info("pending proposals swept", extra={
                        "escalated": len(report.escalated), "expired": len(report.expired),
                        "auto_approved": len(report.auto_approved)})
                    on_change()
            await asyncio.sleep(self.settings.sweep_interval_s)


def _wall_clock() -> datetime:
    """Real time, in UTC: sessions expire by the wall clock, whatever the engine's clock says."""
    return datetime.now(UTC)
