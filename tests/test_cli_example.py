"""`matcher example`: whole messages a partner can send as printed, valid today, on ids the
demo's district registers; an offer and a case from it end in a proposal."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from typer.testing import CliRunner

from matcher.cli import app
from matcher.cli_example import (
    DEMO_SEED,
    case_example,
    decision_example,
    offer_example,
    pending_proposal,
)
from matcher.services.engine import MatchingEngine
from matcher.simulator.day import registry_events
from matcher.simulator.district import build_district
from matcher.storage.store import unit_of_work
from schemas.topics import Topics
from tests import factories as f

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=SHANGHAI)


def printed(*args: str) -> tuple[str, str, dict[str, object]]:
    """(topic, key, message) as the command prints them."""
    result = CliRunner().invoke(app, ["example", *args])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    topic, key = lines[0].removeprefix("# topic: "), lines[1].removeprefix("# key: ")
    return topic, key, json.loads("\n".join(lines[2:]))


def test_the_printed_offer_and_case_are_whole_valid_and_keyed() -> None:
    for kind, id_field in (("offer", "offer_id"), ("case", "case_id")):
        topic, key, message = printed(kind)
        f.parse(message)  # the engine's own validation at its edge
        expected = (Topics().offers_of(message["producer"]) if kind == "offer"  # type: ignore[index]
                    else Topics().needs)
        assert topic == expected
        assert message["payload"][id_field] == key  # type: ignore[index]


def test_the_examples_are_dated_tomorrow_in_beijing_time() -> None:
    offer = offer_example(Topics(), SHANGHAI, NOW).value
    window = offer["payload"]["availability"][0]
    assert window["start"] == "2026-12-03T09:00:00+08:00"
    case = case_example(Topics(), SHANGHAI, NOW).value
    assert case["payload"]["items"][0]["deadline"] == "2026-12-03T12:00:00+08:00"
    _, _, printed_case = printed("case")
    deadline = datetime.fromisoformat(printed_case["payload"]["items"][0]["deadline"])  # type: ignore[index]
    assert timedelta(0) < deadline - datetime.now(SHANGHAI) < timedelta(days=2)


def test_the_ids_are_the_demo_districts() -> None:
    district = build_district(seed=DEMO_SEED)
    offer = offer_example(Topics(), SHANGHAI, NOW, district).value["payload"]
    case = case_example(Topics(), SHANGHAI, NOW, district).value["payload"]
    assert offer["partner_id"] in district.partner_by_id
    assert offer["node_id"] in district.node_by_id
    assert case["grid_id"] in district.node_by_id


def test_the_offer_and_the_case_make_a_proposal_on_the_demo_registry(sqlite_db: Engine) -> None:
    district = build_district(seed=DEMO_SEED)
    now = datetime.now(SHANGHAI)
    engine = MatchingEngine(db=sqlite_db, topics=Topics("t"))
    for event in registry_events(district, now - timedelta(hours=1)):
        engine.ingest(f.parse(event.model_dump(mode="json")), topic="t.registry")
    for example in (offer_example(Topics("t"), SHANGHAI, now, district),
                    case_example(Topics("t"), SHANGHAI, now, district)):
        engine.ingest(f.parse(example.value), topic=example.topic)
    for shard in engine.all_shards():
        engine.match_shard(shard)
    with unit_of_work(sqlite_db) as store:
        assert store.count("proposals") == 1
    proposal_id = pending_proposal(str(sqlite_db.url))
    assert proposal_id is not None
    decision = decision_example(Topics("t"), now, proposal_id)
    assert decision.key == proposal_id and decision.topic == "t.decisions"
    f.parse(decision.value)


def test_a_decision_without_a_pending_proposal_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["example", "decision", "--database",
                                      str(tmp_path / "none.db")])
    assert result.exit_code != 0
    assert "matcher demo" in result.output


def test_the_kcat_form_is_one_keyed_line() -> None:
    result = CliRunner().invoke(app, ["example", "offer", "--kcat"])
    key, _, value = result.output.strip().partition("\t")
    assert "\n" not in result.output.strip()
    assert json.loads(value)["payload"]["offer_id"] == key
