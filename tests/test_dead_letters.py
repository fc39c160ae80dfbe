"""Dead letters never stall a partition and never carry beneficiaries' data: too-big records
are cut to a prefix, sensitive or free-text fields are redacted, and the headers say so."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from events.app import build_app
from events.deadletter import PREFIX_BYTES, dead_letter
from matcher.runner import running
from matcher.storage.store import unit_of_work
from schemas.topics import REGISTRY_KEY
from tests import factories as f
from tests.kafka_helpers import client, engine_settings, produce, read_until, wait_for

NEAR_BROKER_LIMIT = 1_048_300  # the broker takes up to 1,048,588 bytes per batch


def record(value: bytes | None, key: bytes | None = b"k",
           headers: list[tuple[str, bytes]] | None = None) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(topic="t.needs", partition=1, offset=7, timestamp=0,
                          timestamp_type=0, key=key, value=value, checksum=None,
                          serialized_key_size=len(key or b""),
                          serialized_value_size=len(value or b""),
                          headers=headers or [])


def headers_of(letter: Any) -> dict[str, bytes]:
    return dict(letter.headers)


def test_a_harmless_refused_record_keeps_its_bytes_and_headers() -> None:
    value = f.encode(f.goods_offer("g1", "p1"))
    letter = dead_letter(record(value, headers=[("origin", b"\xff")]), "stale_version", "old")
    assert letter.value == value and letter.key == b"k"
    headers = headers_of(letter)
    assert headers["origin"] == b"\xff" and headers["dlq.reason_code"] == b"stale_version"
    assert not {"dlq.redacted", "dlq.truncated", "dlq.sha256"} & set(headers)


def test_a_value_too_big_to_resend_is_cut_to_a_prefix_with_its_size_and_hash() -> None:
    value = b"\x00not json" * 120_000
    letter = dead_letter(record(value), "not_json", "message value is not JSON")
    headers = headers_of(letter)
    assert letter.value == value[:PREFIX_BYTES]
    assert headers["dlq.truncated"] == b"true"
    assert headers["dlq.original_size"] == str(len(value)).encode()
    assert headers["dlq.sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["dlq.partition"] == b"1" and headers["dlq.offset"] == b"7"


def test_hostile_headers_too_big_to_resend_are_dropped() -> None:
    letter = dead_letter(record(b"x", key=b"k" * 5000, headers=[("h", b"y" * 1_100_000)]),
                         "not_json", "no")
    headers = headers_of(letter)
    assert "h" not in headers and headers["dlq.headers_dropped"] == b"true"
    assert letter.key == b"k" * 1024
    assert headers["dlq.reason_code"] == b"not_json"


def test_sensitive_and_free_text_fields_are_redacted() -> None:
    case = f.case("c1")
    case["payload"]["items"][0]["quantity"] = "2"
    value = f.encode(case)
    letter = dead_letter(record(value), "schema_violation", "quantity: not a number")
    assert letter.value is not None
    assert b"diabetic" not in letter.value
    redacted = json.loads(letter.value)
    assert redacted["payload"]["beneficiary"]["sensitive"] == "[redacted]"
    assert redacted["payload"]["case_id"] == "c1"  # the rest stays readable
    headers = headers_of(letter)
    assert headers["dlq.redacted"] == b"true"
    assert headers["dlq.sha256"] == hashlib.sha256(value).hexdigest().encode()
    closure = dead_letter(record(f.encode(f.closure("c1"))), "unknown_reference", "?")
    assert closure.value is not None and b"moved away" not in closure.value


def test_text_that_is_not_json_but_names_sensitive_fields_is_withheld() -> None:
    value = b'{"beneficiary": {"sensitive": {"health": "diabetic"}' + b"[" * 100
    letter = dead_letter(record(value), "not_json", "cut short")
    assert letter.value is not None and b"diabetic" not in letter.value
    assert headers_of(letter)["dlq.redacted"] == b"true"
    plain = dead_letter(record(b"hello there"), "not_json", "no")
    assert plain.value == b"hello there"


def test_empty_free_text_is_nothing_to_redact() -> None:
    value = f.encode(f.decision("p1", reason=""))
    assert dead_letter(record(value), "proposal_not_found", "?").value == value


# --- on the real broker -------------------------------------------------------------------------


async def produce_big(bootstrap: str, topic: str, key: bytes, value: bytes,
                      compression: str | None = None) -> None:
    """One record larger than a default client would send."""
    producer = AIOKafkaProducer(**client(bootstrap).aiokafka(), acks="all",
                                max_request_size=8 * 1024 * 1024, compression_type=compression)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


@pytest.mark.kafka
@pytest.mark.slow
async def test_records_at_the_size_limit_are_dead_lettered_and_the_next_event_applied(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    app = build_app(engine_settings(kafka_bootstrap, tmp_path))
    topics = app.topics
    at_limit = b"\x00" + b"not json " * (NEAR_BROKER_LIMIT // 9)
    inflated = b"\x01" + b"z" * 5_000_000  # ~5 KB gzipped, 5 MB once decompressed
    secret_case = f.case("c2")
    secret_case["payload"]["version"] = "1"
    registry = [*f.hierarchy(), f.partner("p1")]

    def registered() -> bool:
        with unit_of_work(app.engine.db) as store:
            return store.count("audit_log") == len(registry)

    async with running(app):
        await produce(kafka_bootstrap, topics.registry,
                      [(REGISTRY_KEY.encode(), f.encode(e)) for e in registry])
        await wait_for(registered, what="registry applied")  # cases need their grid
        await produce_big(kafka_bootstrap, topics.needs, b"c1", at_limit)
        await produce_big(kafka_bootstrap, topics.needs, b"c1", inflated, compression="gzip")
        await produce(kafka_bootstrap, topics.needs,
                      [(b"c2", f.encode(secret_case)), (b"c1", f.encode(f.case("c1")))])
        dead = await read_until(kafka_bootstrap, topics.dead_letter, lambda rs: len(rs) >= 3)

        def applied() -> bool:
            with unit_of_work(app.engine.db) as store:
                return store.case("c1") is not None

        await wait_for(applied, timeout_s=60, what="the case behind the big records applied")
    by_size = {int(dict(r.headers).get("dlq.original_size", b"0")): r for r in dead}
    for original in (at_limit, inflated):
        letter = by_size[len(original)]
        headers = dict(letter.headers)
        assert headers["dlq.truncated"] == b"true"
        assert headers["dlq.reason_code"] == b"not_json"
        assert headers["dlq.sha256"] == hashlib.sha256(original).hexdigest().encode()
        assert headers["dlq.topic"].decode() == topics.needs
        assert letter.value == original[:PREFIX_BYTES] and letter.key == b"c1"
    redacted = next(r for r in dead if r.key == b"c2")
    assert dict(redacted.headers)["dlq.redacted"] == b"true"
    assert b"diabetic" not in redacted.value
