"""Shard ownership by Kafka partition ownership: one engine instance matches a shard at a time.

Every change to a shard is announced on the shard-changes topic, keyed by shard id; the
topic's partitions are shared out among the engine instances of one consumer group, so each
shard's key lands with exactly one instance. That instance alone runs the shard's batches,
and two instances never promise the same capacity.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

log = logging.getLogger("matcher.shards")


def partition_of(shard: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives this key (as the Java client does)."""
    return (murmur2(shard.encode()) & 0x7FFFFFFF) % partitions


class ShardOwnership(ConsumerRebalanceListener):
    """Which shards this instance owns, following the shard-changes consumer's assignment."""

    def __init__(self, topic: str, partitions: int,
                 on_gained: Callable[[set[str] | None], Coroutine[Any, Any, None]]) -> None:
        self.topic = topic
        self.partitions = partitions
        self.owned: set[int] = set()
        self._on_gained = on_gained

    def owns(self, shard: str) -> bool:
        """Whether this instance may match the shard now."""
        return partition_of(shard, self.partitions) in self.owned

    def owned_among(self, shards: Iterable[str]) -> set[str]:
        """The shards of a list that this instance owns."""
        return {shard for shard in shards if self.owns(shard)}

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.owned -= {tp.partition for tp in revoked if tp.topic == self.topic}
        log.info("shard partitions revoked", extra={"owned": sorted(self.owned)})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        gained = {tp.partition for tp in assigned if tp.topic == self.topic} - self.owned
        self.owned |= gained
        log.info("shard partitions assigned", extra={"owned": sorted(self.owned)})
        if gained:
            # Catch up: whatever changed while nobody (or another instance) owned them.
            asyncio.get_running_loop().create_task(self._on_gained(None))
