"""Coordinator accounts: adding them, loading them from a file, checking passwords."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from sqlalchemy import Engine, func, select

from matcher.domain.errors import InvalidCommand, UnknownReference
from matcher.domain.hierarchy import LEVELS
from matcher.services.jurisdiction import Coordinator, active_coordinator
from matcher.storage.coordination import CoordinationStore
from matcher.storage.store import Store, unit_of_work
from matcher.storage.tables import proposals
from schemas.common import Identifier, Level

Clock = Callable[[], datetime]
_HASHER = PasswordHasher()
# Verifying against this keeps unknown usernames as slow as wrong passwords.
_DUMMY_HASH = _HASHER.hash("not-a-real-password")


class CoordinatorSpec(BaseModel):
    """One coordinator as written in a coordinators file."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    username: Identifier = Field(description="Sign-in name; also the coordinator_id on Kafka.")
    display_name: str = Field(min_length=1, max_length=120, description="Name shown.")
    node_id: Identifier = Field(description="Node whose subtree they coordinate.")
    password: str = Field(min_length=8, max_length=200, description="Initial password.")
    active: bool = Field(default=True, description="Whether they may sign in and decide.")


_SPECS: TypeAdapter[list[CoordinatorSpec]] = TypeAdapter(list[CoordinatorSpec])


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return _HASHER.hash(password)


def add_coordinator(store: Store, *, username: str, display_name: str, node_id: str,
                    password: str, active: bool = True, clock: Clock) -> None:
    """Register (or replace) a coordinator at a known node of the hierarchy."""
    spec = CoordinatorSpec(username=username, display_name=display_name, node_id=node_id,
                           password=password, active=active)
    if store.node(spec.node_id) is None:
        raise UnknownReference(f"node '{spec.node_id}' is not registered")
    CoordinationStore(store.conn).save_coordinator(
        username=spec.username, display_name=spec.display_name, node_id=spec.node_id,
        password_hash=hash_password(spec.password), active=spec.active, at=clock())


def read_coordinators_file(path: Path) -> list[CoordinatorSpec]:
    """Coordinators from a JSON file (a list of objects), or YAML when PyYAML is installed."""
    text = path.read_text(encoding="utf-8")
    data: Any
    if path.suffix.lower() in {".yaml", ".yml"}:
        try:
            import yaml
        except ImportError as missing:
            raise InvalidCommand("reading YAML needs PyYAML (pip install pyyaml); "
                                 "or give the file as JSON") from missing
        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    return _SPECS.validate_python(data)


def load_coordinators(store: Store, path: Path, *, clock: Clock) -> list[str]:
    """Register every coordinator of a file; returns their usernames."""
    specs = read_coordinators_file(path)
    for spec in specs:
        add_coordinator(store, username=spec.username, display_name=spec.display_name,
                        node_id=spec.node_id, password=spec.password, active=spec.active,
                        clock=clock)
    return [spec.username for spec in specs]


def authenticate(store: Store, username: str, password: str) -> Coordinator | None:
    """The active coordinator if the password is theirs, else None (no hint which failed)."""
    row = CoordinationStore(store.conn).coordinator(username)
    try:
        _HASHER.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or not row.active:
        return None
    return active_coordinator(store, username)


def token_hash(token: str) -> str:
    """The sha256 under which a session secret or API token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def open_session(store: Store, *, username: str, kind: str, at: datetime,
                 lifetime_s: float) -> str:
    """A fresh secret for a signed-in coordinator (cookie session or API token)."""
    token = secrets.token_urlsafe(32)
    CoordinationStore(store.conn).open_session(
        token_hash=token_hash(token), username=username, kind=kind, at=at,
        expires_at=at + timedelta(seconds=lifetime_s))
    return token


def session_username(store: Store, token: str, *, at: datetime) -> str | None:
    """The coordinator a live session or token belongs to, else None."""
    return CoordinationStore(store.conn).session_username(token_hash(token), at=at)


def close_session(store: Store, token: str, *, at: datetime) -> None:
    """Revoke a session or token (sign-out)."""
    CoordinationStore(store.conn).revoke_session(token_hash(token), at=at)


def _utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def _busiest_grid_path(store: Store) -> str | None:
    """Path of the grid with the most proposals (the first grid if none has any)."""
    counts = store.conn.execute(
        select(proposals.c.grid_id, func.count()).group_by(proposals.c.grid_id)
        .order_by(func.count().desc(), proposals.c.grid_id).limit(1)
    ).first()
    grids = sorted((n for n in store.all_nodes() if n.level == Level.GRID),
                   key=lambda n: n.node_id)
    chosen = store.node(counts[0]) if counts else (grids[0] if grids else None)
    return chosen.path if chosen else None


def seed_demo_coordinators(db: Engine, *, clock: Clock = _utc_now
                           ) -> list[tuple[str, str, str]]:
    """One demo coordinator per level down to the busiest grid: (username, password, node)."""
    seeded: list[tuple[str, str, str]] = []
    with unit_of_work(db) as store:
        path = _busiest_grid_path(store)
        ids = [part for part in (path or "").split("/") if part]
        for level, node_id in zip(LEVELS, ids, strict=False):
            username, password = f"demo-{level.value}", f"demo-{level.value}-pass"
            add_coordinator(store, username=username, node_id=node_id, password=password,
                            display_name=f"Demo {level.value} coordinator", clock=clock)
            seeded.append((username, password, node_id))
    return seeded
