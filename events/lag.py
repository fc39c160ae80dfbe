"""How far a consumer group is behind: used to know when a fed stream has been consumed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from matcher.kafka_access import KafkaAccess


async def partitions_of(access: KafkaAccess, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of the topics (missing topics have none)."""
    admin = AIOKafkaAdminClient(**access.aiokafka())
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return [TopicPartition(topic["topic"], partition["partition"])
            for topic in described if not topic.get("error_code")
            for partition in topic["partitions"]]


async def end_offsets(access: KafkaAccess, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """Next offset to be written, per partition of the topics."""
    partitions = await partitions_of(access, topics)
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(**access.aiokafka(), enable_auto_commit=False)
    try:
        await consumer.start()
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def consumer_lag(access: KafkaAccess, groups: Mapping[str, str]) -> int:
    """Records written to the topics that their groups have not committed yet.

    `groups` maps each topic to the consumer group that reads it.
    """
    return sum((await lag_by_topic(access, groups)).values())


async def lag_by_topic(access: KafkaAccess, groups: Mapping[str, str]) -> dict[str, int]:
    """Per topic, records written that its group has not committed yet (missing topics: 0)."""
    ends = await end_offsets(access, list(groups))
    admin = AIOKafkaAdminClient(**access.aiokafka())
    await admin.start()
    committed = {}
    try:
        for group in set(groups.values()):
            committed.update(await admin.list_consumer_group_offsets(group))
    finally:
        await admin.close()
    lag = dict.fromkeys(groups, 0)
    for tp, end in ends.items():
        done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0
        lag[tp.topic] += max(0, end - done)
    return lag
