"""The partner guide's examples work as written: its Python snippet sends a valid, keyed
offer, and its topic table names the engine's topics and keys."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest

from matcher.kafka_access import KafkaAccess, write_properties
from matcher.settings import PROJECT_ROOT
from schemas.topics import REGISTRY_KEY, Topics
from tests import factories as f

GUIDE = PROJECT_ROOT / "docs" / "partner-guide.md"


class CapturingProducer:
    """Stands in for aiokafka's producer: keeps what would have been sent."""

    sent: ClassVar[list[tuple[str, bytes, bytes]]] = []

    config: ClassVar[dict[str, Any]] = {}

    def __init__(self, **config: Any) -> None:
        CapturingProducer.config = config

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send_and_wait(self, topic: str, *, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))


def test_the_python_example_sends_a_valid_offer_keyed_by_its_id(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    snippet = re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert snippet
    access = KafkaAccess(bootstrap="127.0.0.1:19092", security_protocol="SASL_PLAINTEXT",
                         sasl_mechanism="SCRAM-SHA-512", username="partner-030", password="pw")
    write_properties(tmp_path / "partner-030.properties", access.properties(), "given")
    monkeypatch.chdir(tmp_path)
    CapturingProducer.config = {}
    fake = types.ModuleType("aiokafka")
    fake.AIOKafkaProducer = CapturingProducer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aiokafka", fake)
    CapturingProducer.sent = []
    exec(compile(snippet.group(1), str(GUIDE), "exec"), {"__name__": "guide"})
    [(topic, key, value)] = CapturingProducer.sent
    event = f.parse(json.loads(value))
    assert topic == Topics().offers_of(event.producer)
    assert key.decode() == event.payload.offer_id  # type: ignore[union-attr]
    # It connects as the partner the file names, which is what the broker believes.
    assert CapturingProducer.config["sasl_plain_username"] == "partner-030"
    assert CapturingProducer.config["security_protocol"] == "SASL_PLAINTEXT"


def test_the_topic_table_matches_the_engine() -> None:
    text = GUIDE.read_text()
    topics = Topics()
    for topic in (topics.offers_of("<id>"), topics.fulfilments_of("<id>"),
                  topics.assignments_of("<id>"), topics.feedback_of("<id>"), topics.needs,
                  topics.decisions, topics.registry, topics.assignments):
        assert f"`{topic}`" in text
    assert f"the constant `{REGISTRY_KEY}`" in text
