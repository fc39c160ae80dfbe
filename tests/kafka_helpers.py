"""Acting as a partner system on a real broker: raw bytes in, records read back."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from matcher.kafka_access import KafkaAccess, access_from_properties, read_properties
from matcher.settings import Settings


def client(bootstrap: str) -> KafkaAccess:
    """How this test run's clients reach `bootstrap`: as the principal of
    MATCHER_KAFKA_CLIENT_CONFIG (the local broker's admin), else without authentication."""
    path = os.environ.get("MATCHER_KAFKA_CLIENT_CONFIG")
    if not path:
        return KafkaAccess(bootstrap=bootstrap)
    return access_from_properties(read_properties(Path(path))).with_bootstrap(bootstrap)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def engine_settings(bootstrap: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings of an engine isolated from other tests: own topics, group, database, port."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "topic_prefix": prefix,
        "consumer_group": f"{prefix}-engine",
        "database_url": f"sqlite:///{tmp_path / 'engine.db'}",
        "http_port": free_port(),
        "batch_window_s": 0.2,
        "log_json": True,
        **overrides,
    }
    return Settings(**values)


async def produce(bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes | None]]
                  | Sequence[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]) -> None:
    """Send (key, value[, headers]) records in order and wait for the broker to have them."""
    producer = AIOKafkaProducer(**client(bootstrap).aiokafka(), acks="all")
    await producer.start()
    try:
        for message in messages:
            key, value = message[0], message[1]
            headers = message[2] if len(message) > 2 else []
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def read_until(bootstrap: str, topic: str,
                     done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
                     timeout_s: float = 60.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the start until `done` holds for what was read (or time runs out)."""
    consumer = AIOKafkaConsumer(topic, **client(bootstrap).aiokafka(),
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=None)
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        await consumer.start()
        while not done(records):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: condition not met; read {len(records)} records")
            batch = await consumer.getmany(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0,
                   what: str = "condition") -> None:
    """Poll until condition() holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def topic_names(bootstrap: str) -> list[str]:
    """Every topic the broker has."""
    admin = AIOKafkaAdminClient(**client(bootstrap).aiokafka())
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()
