"""The partner guide's examples work as written: its Python snippet sends a valid, keyed
offer, and its topic table names the engine's topics and keys."""

from __future__ import annotations

import json
import re
import sys
import types
from typing import Any, ClassVar

import pytest

from matcher.settings import PROJECT_ROOT
from schemas.topics import REGISTRY_KEY, Topics
from tests import factories as f

GUIDE = PROJECT_ROOT / "docs" / "partner-guide.md"


class CapturingProducer:
    """Stands in for aiokafka's producer: keeps what would have been sent."""

    sent: ClassVar[list[tuple[str, bytes, bytes]]] = []

    def __init__(self, **_: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send_and_wait(self, topic: str, *, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))


def test_the_python_example_sends_a_valid_offer_keyed_by_its_id(
        monkeypatch: pytest.MonkeyPatch) -> None:
    snippet = re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert snippet
    fake = types.ModuleType("aiokafka")
    fake.AIOKafkaProducer = CapturingProducer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aiokafka", fake)
    CapturingProducer.sent = []
    exec(compile(snippet.group(1), str(GUIDE), "exec"), {"__name__": "guide"})
    [(topic, key, value)] = CapturingProducer.sent
    event = f.parse(json.loads(value))
    assert topic == Topics().offers
    assert key.decode() == event.payload.offer_id  # type: ignore[union-attr]


def test_the_topic_table_matches_the_engine() -> None:
    text = GUIDE.read_text()
    topics = Topics()
    for topic in (topics.offers, topics.fulfilments, topics.assignments, topics.needs,
                  topics.decisions, topics.registry):
        assert f"`{topic}`" in text
    assert f"the constant `{REGISTRY_KEY}`" in text
