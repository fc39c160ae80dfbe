"""The engine's service layer: applying events and running batches, one writer at a time.

Infrastructure-free apart from the SQLAlchemy engine it is handed; the Kafka edge calls these
methods from worker threads.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from matcher.services.ingest import Applied, Context, IncomingEvent, apply_event
from matcher.services.matching import BatchReport, MatchingConfig, run_batch
from matcher.storage.store import OutboxRow, Store, unit_of_work
from schemas.common import Level
from schemas.internal import ShardChange, ShardChanged
from schemas.topics import Topics

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass
class MatchingEngine:
    """Durable state plus the rules of changing it; thread-safe (one writer at a time)."""

    db: Engine
    topics: Topics
    shard_level: Level = Level.CENTRE
    matching: MatchingConfig | None = None
    clock: Clock = utc_now
    _write_lock: threading.Lock = field(default_factory=threading.Lock)
    _dirty: dict[str, float] = field(default_factory=dict)
    _dirty_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.matching is None:
            self.matching = MatchingConfig(topics=self.topics)

    @contextmanager
    def writing(self) -> Iterator[Store]:
        """A write transaction, serialised with every other writer of this engine."""
        with self._write_lock, unit_of_work(self.db) as store:
            yield store

    def ingest(self, event: IncomingEvent, *, topic: str, partition: int | None = None,
               offset: int | None = None) -> Applied:
        """Apply one event in its own transaction; DomainError leaves state unchanged."""
        ctx = Context(topics=self.topics, shard_level=self.shard_level)
        with self.writing() as store:
            applied = apply_event(event, store, ctx, topic=topic, partition=partition,
                                  offset=offset)
            self.announce(store, ctx.changed_shards)
        self.mark_dirty(ctx.changed_shards)
        return applied

    def announce(self, store: Store, shards: Iterable[str]) -> None:
        """Tell the shards' owners (maybe other instances) that they changed, via the outbox."""
        now = utc_now()
        for shard in sorted(shards):
            event = ShardChanged(event_id=uuid.uuid4(), occurred_at=now,
                                 producer="charity-matcher", payload=ShardChange(shard=shard))
            store.add_outbox(topic=self.topics.shard_changes, key=shard,
                             value=event.model_dump_json(), event_id=str(event.event_id),
                             event_type=event.event_type, at=now)

    def mark_dirty(self, shards: set[str]) -> None:
        """Remember that these shards changed, from when (a batch waits for the window)."""
        now = time.monotonic()
        with self._dirty_lock:
            for shard in shards:
                self._dirty.setdefault(shard, now)

    def due_shards(self, window_s: float) -> list[str]:
        """Shards whose first unmatched change is at least `window_s` old; taken off the list."""
        now = time.monotonic()
        with self._dirty_lock:
            due = [s for s, since in self._dirty.items() if now - since >= window_s]
            for shard in due:
                del self._dirty[shard]
        return due

    def pending_shards(self) -> int:
        """How many shards wait for a batch."""
        with self._dirty_lock:
            return len(self._dirty)

    def match_shard(self, shard: str) -> BatchReport:
        """Run one matching batch for a shard, atomically."""
        assert self.matching is not None
        with self.writing() as store:
            store.lock_shard(shard)
            return run_batch(store, shard, self.matching, self.clock())

    def all_shards(self) -> set[str]:
        """Every shard that has open demand (used at start-up to catch up)."""
        with unit_of_work(self.db) as store:
            return store.shards_with_open_demand()

    def unpublished(self, limit: int = 500) -> list[OutboxRow]:
        """Outgoing events waiting for the broker."""
        with unit_of_work(self.db) as store:
            return store.unpublished(limit)

    def mark_published(self, seqs: list[int]) -> None:
        """Record the broker's confirmation of outgoing events."""
        with self.writing() as store:
            store.mark_published(seqs, utc_now())
