"""End to end on a real broker, acting as partner systems: raw JSON bytes in, events out."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from events.app import build_app, consumer_groups
from events.lag import consumer_lag
from matcher.runner import running
from matcher.storage.store import unit_of_work
from schemas.topics import REGISTRY_KEY, Topics
from tests import factories as f
from tests.kafka_helpers import client, engine_settings, produce, read_until, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def keyed(event: dict[str, Any], key: str) -> tuple[bytes, bytes]:
    return key.encode(), f.encode(event)


async def register(bootstrap: str, topics: Topics) -> None:
    """The centre registers the hierarchy and two partners."""
    events = [*f.hierarchy(), f.partner("p1"), f.partner("p2")]
    await produce(bootstrap, topics.registry, [keyed(e, REGISTRY_KEY) for e in events])


async def wait_for_no_lag(bootstrap: str, group: str, topics: Topics) -> None:
    """Until the engine has committed every input record."""
    for _ in range(300):
        if await consumer_lag(client(bootstrap), consumer_groups(group, topics)) == 0:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the engine did not catch up")


def audit_count(app: Any) -> int:
    with unit_of_work(app.engine.db) as store:
        return store.count("audit_log")


def payloads(records: list[Any], event_type: str) -> list[dict[str, Any]]:
    decoded = [json.loads(r.value) for r in records]
    return [d["payload"] for d in decoded if d["event_type"] == event_type]


async def test_offer_and_need_in_proposal_with_explanation_out(kafka_bootstrap: str,
                                                               tmp_path: Path) -> None:
    app = build_app(engine_settings(kafka_bootstrap, tmp_path))
    topics = app.topics
    async with running(app):
        await register(kafka_bootstrap, topics)
        await wait_for(lambda: audit_count(app) == 10, what="registry applied")
        await produce(kafka_bootstrap, topics.offers,
                      [keyed(f.volunteer_offer("o1", "p1", languages=["chongqing_dialect"]),
                             "o1")])
        await produce(kafka_bootstrap, topics.needs,
                      [keyed(f.case("c1", items=[f.item(languages=["chongqing_dialect"])]),
                             "c1")])
        records = await read_until(kafka_bootstrap, topics.proposals,
                                   lambda rs: bool(payloads(rs, "match.proposed")))
    proposal = payloads(records, "match.proposed")[0]
    assert (proposal["case_id"], proposal["item_id"], proposal["offer_id"]) == ("c1", "i1", "o1")
    assert proposal["amount"] == 2
    explanation = proposal["explanation"]
    assert {"kind_and_need_match", "within_reach", "time_windows_overlap",
            "speaks_required_language"} <= set(explanation["rules_passed"])
    terms = {t["name"]: t for t in explanation["score_terms"]}
    assert {"urgency", "vulnerability", "travel"} <= set(terms)
    assert proposal["score"] == pytest.approx(sum(t["contribution"] for t in terms.values()),
                                              abs=0.05)
    assert records[0].key == b"c1"


async def test_bad_events_are_dead_lettered_with_reasons_and_good_ones_applied(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    app = build_app(engine_settings(kafka_bootstrap, tmp_path))
    topics = app.topics
    valid_offer = f.goods_offer("g1", "p1")
    bad = {
        "not_json": b"{this is not json",
        "schema_violation": f.encode({**f.goods_offer("g2", "p1"), "payload": {
            **f.goods_offer("g2", "p1")["payload"], "quantity": -5}}),
        "unknown_partner": f.encode(f.goods_offer("g3", "nobody")),
        "not_owner": f.encode({**f.goods_offer("g4", "p1"), "producer": "p2"}),
        "unknown_reference": f.encode(f.withdrawal("never-seen", "p1")),
        "stale_version": f.encode(f.goods_offer("g1", "p1")),  # g1 exists already
    }
    async with running(app):
        await register(kafka_bootstrap, topics)
        await wait_for(lambda: audit_count(app) == 10, what="registry applied")
        # g1 first, on its own: "stale_version" below republishes it under another key, so
        # on another partition, which the engine may well read first.
        await produce(kafka_bootstrap, topics.offers, [(b"g1", f.encode(valid_offer))])
        await wait_for(lambda: audit_count(app) == 11, what="the valid offer applied")
        stream: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        for value in bad.values():
            stream.append((b"bad", value, [("origin", b"\xff\xfe not utf-8")]))
        stream.append((b"g5", f.encode(f.goods_offer("g5", "p2")), []))
        await produce(kafka_bootstrap, topics.offers, stream)
        dead = await read_until(kafka_bootstrap, topics.dead_letter,
                                lambda rs: len(rs) >= len(bad))
        await wait_for(lambda: audit_count(app) == 12, what="good offers applied")
        with unit_of_work(app.engine.db) as store:
            assert store.count("offers") == 2
            assert store.offer("g1") is not None and store.offer("g5") is not None
    assert len(dead) == len(bad)
    for record, (code, value) in zip(dead, bad.items(), strict=True):
        headers = dict(record.headers)
        assert headers["dlq.reason_code"].decode() == code
        assert headers["dlq.reason"], "a readable reason is given"
        assert headers["dlq.topic"].decode() == topics.offers
        assert headers["origin"] == b"\xff\xfe not utf-8", "original headers kept byte for byte"
        if code == "unknown_reference":  # a withdrawal's reason is a person's own words
            assert headers["dlq.redacted"] == b"true"
            assert json.loads(record.value)["payload"]["reason"] == "[redacted]"
            assert b"fell ill" not in record.value
        else:
            assert record.value == value, "original bytes kept"
            assert "dlq.redacted" not in headers
    reasons = {dict(r.headers)["dlq.reason_code"].decode(): dict(r.headers)["dlq.reason"].decode()
               for r in dead}
    assert "quantity" in reasons["schema_violation"]
    assert "nobody" in reasons["unknown_partner"]


async def test_a_duplicated_event_changes_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    app = build_app(engine_settings(kafka_bootstrap, tmp_path))
    topics = app.topics
    offer = f.volunteer_offer("o1", "p1")
    need = f.case("c1")
    async with running(app):
        await register(kafka_bootstrap, topics)
        await wait_for(lambda: audit_count(app) == 10, what="registry applied")
        await produce(kafka_bootstrap, topics.offers, [keyed(offer, "o1"), keyed(offer, "o1")])
        await produce(kafka_bootstrap, topics.needs, [keyed(need, "c1"), keyed(need, "c1")])
        await read_until(kafka_bootstrap, topics.proposals,
                         lambda rs: bool(payloads(rs, "match.proposed")))
        await produce(kafka_bootstrap, topics.needs, [keyed(need, "c1")])
        await wait_for_no_lag(kafka_bootstrap, app.settings.consumer_group, topics)
        with unit_of_work(app.engine.db) as store:
            assert store.count("cases") == 1
            assert store.count("offers") == 1
            assert store.count("proposals") == 1
            assert store.count("audit_log") == 12
