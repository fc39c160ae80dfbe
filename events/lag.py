"""How far a consumer group is behind: used to know when a fed stream has been consumed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition


async def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """Next offset to be written, per partition of the topics."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # loads cluster metadata, so partitions are known
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return dict(await consumer.end_offsets(partitions)) if partitions else {}
    finally:
        await consumer.stop()


async def consumer_lag(bootstrap: str, groups: Mapping[str, str]) -> int:
    """Records written to the topics that their groups have not committed yet.

    `groups` maps each topic to the consumer group that reads it.
    """
    ends = await end_offsets(bootstrap, list(groups))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    committed = {}
    try:
        for group in set(groups.values()):
            committed.update(await admin.list_consumer_group_offsets(group))
    finally:
        await admin.close()
    return sum(end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0
                      else 0)
               for tp, end in ends.items())
