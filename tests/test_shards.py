"""Shard ownership follows the partitions of the shard-changes topic."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

from events.shards import ShardOwnership, partition_of

SHARDS = [f"ws-{n}" for n in range(40)]


def test_partition_of_agrees_with_the_kafka_default_partitioner() -> None:
    partitioner = DefaultPartitioner()
    for shard in SHARDS:
        assert partition_of(shard, 3) == partitioner(shard.encode(), [0, 1, 2], [0, 1, 2])


async def test_an_instance_owns_exactly_the_shards_of_its_partitions() -> None:
    gained: list[object] = []

    async def on_gained(shards: set[str] | None) -> None:
        gained.append(shards)

    first = ShardOwnership("t.shard-changes", 3, on_gained)
    second = ShardOwnership("t.shard-changes", 3, on_gained)
    await first.on_partitions_assigned([TopicPartition("t.shard-changes", 0),
                                        TopicPartition("t.shard-changes", 2)])
    await second.on_partitions_assigned([TopicPartition("t.shard-changes", 1)])
    for shard in SHARDS:
        assert first.owns(shard) != second.owns(shard), "each shard has exactly one owner"
    await first.on_partitions_revoked([TopicPartition("t.shard-changes", 2)])
    assert not any(first.owns(s) for s in SHARDS if partition_of(s, 3) == 2)
    assert first.owned_among(SHARDS) == {s for s in SHARDS if partition_of(s, 3) == 0}
