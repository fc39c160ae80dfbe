"""Overlapping polls: while one poll's transaction is written, the next is fetched and validated.

A batch subscriber's steps (fetch → validate → apply → commit offsets) would otherwise run one
after another, each waiting on the last. Here the handler hands the validated poll to the
consumer's lane and returns, so FastStream fetches and validates the next poll while the lane
writes this one. A lane writes its polls one at a time, in the order they were fetched, so
each partition's events are applied in order; and it commits a poll's offsets, explicitly,
only once that poll's transaction is durable and its refusals are dead-lettered. A lane holds
at most `depth` polls handed over and not yet durable; the handler of the next one waits.

A poll whose writing fails (the database is away, the dead-letter topic cannot be reached) is
written again, in place, until it succeeds: it is never skipped, and nothing after it is
committed before it. Polls still in a lane when the engine stops are not committed: they are
delivered again (each event is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from faststream.kafka.message import FakeConsumer

log = logging.getLogger("matcher.events")

Write = Callable[[], Awaitable[None]]
RETRY_PAUSE_S = 1.0


def offsets_after(records: Iterable[Any]) -> dict[TopicPartition, int]:
    """The offset to commit per partition once these records are durable (last + 1)."""
    after: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        after[tp] = max(after.get(tp, 0), record.offset + 1)
    return after


async def commit(consumer: Any, offsets: dict[TopicPartition, int]) -> None:
    """Commit exactly these offsets (not the consumer's position, which is already further on:
    the next poll has been fetched)."""
    if isinstance(consumer, FakeConsumer):  # FastStream's in-memory test broker: no offsets
        await consumer.commit()
    else:
        await consumer.commit({tp: OffsetAndMetadata(offset, "")
                               for tp, offset in offsets.items()})


@dataclass
class Lane:
    """The polls of one consumer, written one at a time in the order they were fetched."""

    depth: int
    pause_s: float = RETRY_PAUSE_S
    in_flight: deque[asyncio.Task[None]] = field(default_factory=deque)

    async def submit(self, consumer: Any, offsets: dict[TopicPartition, int], write: Write
                     ) -> None:
        """Hand over a poll; returns once it is being written (depth 0: once it is durable)."""
        while len(self._pending()) >= max(self.depth, 1):
            await asyncio.wait([self.in_flight[0]])
        before = self.in_flight[-1] if self.in_flight else None
        task = asyncio.create_task(self._write(before, consumer, offsets, write),
                                   name="write_poll")
        self.in_flight.append(task)
        if self.depth == 0:
            await asyncio.wait([task])

    def _pending(self) -> deque[asyncio.Task[None]]:
        """The polls not yet done (they finish in order, so the done ones lead)."""
        while self.in_flight and self.in_flight[0].done():
            self.in_flight.popleft()
        return self.in_flight

    async def _write(self, before: asyncio.Task[None] | None, consumer: Any,
                     offsets: dict[TopicPartition, int], write: Write) -> None:
        if before is not None:
            # In fetch order: a poll is written only after the one before it is durable.
            await asyncio.wait([before])
            if before.cancelled():
                return  # not written: neither is this one, nor are its offsets committed
        attempt = 0
        while True:
            attempt += 1
            try:
                await write()
                break
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # The traceback once; an outage that lasts would otherwise log one a second.
                log.warning("poll not written; writing it again", exc_info=attempt == 1,
                            extra={"attempt": attempt, "offsets": _described(offsets),
                                   "error": f"{type(error).__name__}: {error}"})
                await asyncio.sleep(self.pause_s)
        try:
            await commit(consumer, offsets)
        except (KafkaError, RuntimeError) as error:
            # Partitions moved to another instance, or the consumer stopped: the poll is
            # durable but will be delivered again, where each event is a duplicate.
            log.warning("offsets not committed; the poll will be delivered again", extra={
                "error": f"{type(error).__name__}: {error}", "offsets": _described(offsets)})

    async def drain(self) -> None:
        """Wait until every poll handed over so far is durable and committed."""
        while self._pending():
            await asyncio.wait([self.in_flight[-1]])

    async def cancel(self) -> None:
        """Stop writing: what is not yet committed will be delivered again."""
        tasks = list(self.in_flight)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass
class Polls:
    """One lane per consumer (each input topic has its own consumer and group)."""

    depth: int = 1
    pause_s: float = RETRY_PAUSE_S
    full: int = 2000
    lanes: dict[int, Lane] = field(default_factory=dict)
    _full_lanes: set[int] = field(default_factory=set)

    async def submit(self, consumer: Any, records: Sequence[Any], write: Write) -> None:
        """Hand over a validated poll: written in order, its offsets committed once durable."""
        lane = self.lanes.get(id(consumer))
        if lane is None:
            lane = self.lanes[id(consumer)] = Lane(self.depth, self.pause_s)
        if len(records) >= self.full:
            self._full_lanes.add(id(consumer))
        else:
            self._full_lanes.discard(id(consumer))
        await lane.submit(consumer, offsets_after(records), write)

    def behind(self) -> bool:
        """Whether more than a full poll is waiting: some consumer's last poll came back full."""
        return bool(self._full_lanes)

    async def drain(self) -> None:
        """Wait until every poll handed over so far, on every lane, is durable and committed."""
        for lane in list(self.lanes.values()):
            await lane.drain()

    async def cancel(self) -> None:
        """Stop every lane (at shutdown, after a drain had its chance)."""
        for lane in list(self.lanes.values()):
            await lane.cancel()


def _described(offsets: dict[TopicPartition, int]) -> str:
    return ",".join(f"{tp.topic}[{tp.partition}]@{offset}"
                    for tp, offset in sorted(offsets.items()))
