"""The engine's service layer: applying events in batches and running matching batches.

Infrastructure-free apart from the SQLAlchemy engine it is handed; the Kafka edge calls these
methods from worker threads. Writers take turns on a short lock (one SQLite writer at a
time anyway); a matching batch holds it only while recording, never while it solves.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from matcher.domain.errors import DomainError
from matcher.services.ingest import Applied, Context, IncomingEvent, apply_event
from matcher.services.matching import (
    BatchReport,
    MatchingConfig,
    items_left_to_find,
    plan_batch,
    read_live_inputs,
    record_batch,
    with_read_time,
)
from matcher.services.outbound import queue
from matcher.services.settled import Settled, items_to_match, narrowed, needs_of, settle
from matcher.solver import Status
from matcher.storage.holdings import Holdings
from matcher.storage.store import LiveRows, OutboxRow, Store, snapshot, unit_of_work
from schemas.common import Level
from schemas.internal import ShardChange, ShardChanged
from schemas.matches import MatchDecided, MatchFulfilled
from schemas.needs import CaseOpened
from schemas.offers import OfferPublished
from schemas.topics import Topics

Clock = Callable[[], datetime]

# Events whose handlers only add rows through the store and read through its caches: their
# inserts may wait for one statement per table at the end of the poll.
ONLY_NEW_ROWS: frozenset[type] = frozenset({OfferPublished, CaseOpened})

# Events whose handling may be refused after something was written (see `ingest_batch`).
MAY_REFUSE_AFTER_WRITING: frozenset[type] = frozenset({MatchDecided, MatchFulfilled})


def _nodes_named(batch: Sequence[Incoming]) -> list[str]:
    """The node ids a poll's events name: grids and workstations as producers, the places of
    offers, the grids of cases."""
    named = [i.event.producer for i in batch]
    for incoming in batch:
        payload = incoming.event.payload
        named += [value for value in (getattr(payload, "node_id", None),
                                      getattr(payload, "grid_id", None))
                  if isinstance(value, str)]
    return named


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Incoming:
    """One validated event with where it came from."""

    event: IncomingEvent
    topic: str
    partition: int | None = None
    offset: int | None = None


@dataclass(frozen=True)
class Refused:
    """An event the rules turned away; nothing of it was written."""

    error: DomainError


Outcome = Applied | Refused


@dataclass
class MatchingEngine:
    """Durable state plus the rules of changing it; thread-safe."""

    db: Engine
    topics: Topics
    shard_level: Level = Level.CENTRE
    matching: MatchingConfig | None = None
    clock: Clock = utc_now
    _write_lock: threading.Lock = field(default_factory=threading.Lock)
    _dirty: dict[str, float] = field(default_factory=dict)
    _dirty_lock: threading.Lock = field(default_factory=threading.Lock)
    # Each shard's live rows as its last batch read them (only its batches touch them).
    _live_rows: dict[str, LiveRows] = field(default_factory=dict)
    _holdings: dict[str, Holdings] = field(default_factory=dict)
    # What each shard's last batch left settled; its next batch looks only at what changed
    # since (see `settled`).
    _settled: dict[str, Settled] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.matching is None:
            self.matching = MatchingConfig(topics=self.topics)

    @contextmanager
    def writing(self) -> Iterator[Store]:
        """A write transaction, taking turns with this engine's other writers (keep it short)."""
        with self._write_lock, unit_of_work(self.db) as store:
            yield store

    def ingest(self, event: IncomingEvent, *, topic: str, partition: int | None = None,
               offset: int | None = None) -> Applied:
        """Apply one event in its own transaction; raises the DomainError that refused it."""
        outcome = self.ingest_batch([Incoming(event, topic, partition, offset)])[0]
        if isinstance(outcome, Refused):
            raise outcome.error
        return outcome

    def ingest_batch(self, batch: Sequence[Incoming]) -> list[Outcome]:
        """Apply a poll's events in one transaction, each in its own savepoint.

        An event the rules refuse leaves nothing behind and is reported as Refused; the
        others commit together. Registry, offer and case handlers check everything before
        they write; decisions and fulfilment reports go through the decision service, which
        may refuse after a first write, so each of those runs in a savepoint of its own.
        Each event stays idempotent by its event id. Any other error rolls the whole batch
        back and propagates (the caller retries it).
        """
        assert self.matching is not None
        ctx = Context(topics=self.topics, shard_level=self.shard_level,
                      timezone=self.matching.timezone)
        outcomes: list[Outcome] = []
        with self.writing() as store:
            store.look_up_seen([str(incoming.event.event_id) for incoming in batch])
            store.look_up_absent(
                offer_ids=[i.event.payload.offer_id for i in batch
                           if isinstance(i.event, OfferPublished)],
                case_ids=[i.event.payload.case_id for i in batch
                          if isinstance(i.event, CaseOpened)])
            store.look_up_registry(node_ids=_nodes_named(batch),
                                   partner_ids=[i.event.producer for i in batch])
            for incoming in batch:
                if type(incoming.event) not in ONLY_NEW_ROWS:
                    store.flush()  # its handler may read anything held back so far
                savepoint = (store.conn.begin_nested()
                             if type(incoming.event) in MAY_REFUSE_AFTER_WRITING else None)
                try:
                    applied = apply_event(incoming.event, store, ctx, topic=incoming.topic,
                                          partition=incoming.partition, offset=incoming.offset)
                except DomainError as error:
                    if savepoint is not None:
                        savepoint.rollback()
                    outcomes.append(Refused(error))
                    continue
                if savepoint is not None:
                    savepoint.commit()
                outcomes.append(applied)
            self.announce(store, ctx.changed_shards)
        self.mark_dirty(ctx.changed_shards)
        return outcomes

    def announce(self, store: Store, shards: Iterable[str]) -> None:
        """Tell the shards' owners (maybe other instances) that they changed, via the outbox;
        once per shard and batch."""
        now = utc_now()
        queue(store, self.topics, *(
            ShardChanged(event_id=uuid.uuid4(), occurred_at=now, producer="charity-matcher",
                         payload=ShardChange(shard=shard)) for shard in sorted(shards)))

    def mark_dirty(self, shards: Iterable[str]) -> None:
        """Remember that these shards changed, from when (a batch waits for the window)."""
        now = time.monotonic()
        with self._dirty_lock:
            for shard in shards:
                self._dirty.setdefault(shard, now)

    def due_shards(self, window_s: float, *, resting: Container[str] = ()) -> list[str]:
        """Shards whose first unmatched change is at least `window_s` old; taken off the list.

        Shards `resting` stay on it, with the moment of their first change kept, so they are
        due as soon as their rest is over.
        """
        now = time.monotonic()
        with self._dirty_lock:
            due = [s for s, since in self._dirty.items()
                   if now - since >= window_s and s not in resting]
            for shard in due:
                del self._dirty[shard]
        return due

    def pending_shards(self) -> int:
        """How many shards wait for a batch."""
        with self._dirty_lock:
            return len(self._dirty)

    def match_shard(self, shard: str) -> BatchReport:
        """Run one matching batch: read a snapshot, solve outside any lock, record briefly.

        The batch looks only at the items a change since the shard's last batch can serve
        (all of them when that batch did not settle the shard). Allocations whose offer or
        item changed while solving are dropped at recording; the shard is then matched again,
        so what they would have served is not forgotten, as it is when the batch could not
        reach everything eligible (`more_to_find`).
        """
        assert self.matching is not None
        now = self.clock()
        started = time.perf_counter()
        with snapshot(self.db) as store:
            inputs = read_live_inputs(store, shard, now, self.matching.timezone,
                                      self.matching.service_travel_km,
                                      cache=self._live_rows.setdefault(shard, LiveRows()),
                                      reserve=self.matching.reserve,
                                      holdings=self._holdings.setdefault(shard, Holdings()))
        read_s = time.perf_counter() - started
        previous = self._settled.pop(shard, None)
        needs = needs_of(inputs.offers, previous.needs if previous is not None else None)
        keys = items_to_match(previous, inputs, needs)
        reviewed = previous.reviewed_at if previous is not None and keys is not None else now
        if keys is not None and not keys:
            self._settled[shard] = settle(inputs, reviewed, needs)
            return BatchReport.idle(shard, read_s)
        plan = plan_batch(inputs if keys is None else narrowed(inputs, keys, needs),
                          self.matching)
        with self.writing() as store:
            store.lock_shard(shard)  # another instance finishing a batch of it records first
            report = with_read_time(record_batch(store, plan), read_s)
        if report.conflicts or report.more_to_find:
            self.mark_dirty({shard})
        if not report.conflicts and plan.solution.status is Status.OPTIMAL:
            # What the batch left worth another look is all the next one needs to add.
            self._settled[shard] = settle(
                inputs, reviewed, needs, plan.allocations, plan.cands, plan.frames.supply,
                revisit=items_left_to_find(plan) if report.more_to_find else ())
        return report

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
