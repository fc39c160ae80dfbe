"""End to end on a real broker: a small simulated day, a rebalance asked for by an event, the
diff read back from the rebalance-reports topic and its proposals from the proposals topic."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from events.app import build_app
from matcher.runner import running
from matcher.services.rebalance_report import latest_reports
from matcher.simulator import build_district, registry_events, simulate_day
from matcher.simulator.publish import publish_events
from matcher.storage.store import unit_of_work
from schemas.rebalance import RebalanceRequest, RebalanceRequested
from tests.kafka_helpers import client, engine_settings, produce, read_until, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def decoded(records: list[Any], event_type: str) -> list[dict[str, Any]]:
    values = [json.loads(r.value) for r in records]
    return [v["payload"] for v in values if v["event_type"] == event_type]


def audit_count(app: Any) -> int:
    with unit_of_work(app.engine.db) as store:
        return store.count("audit_log")


def proposals_made(app: Any) -> int:
    with unit_of_work(app.engine.db) as store:
        return store.count("proposals")


async def test_a_requested_rebalance_publishes_its_diff_after_a_simulated_day(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = engine_settings(kafka_bootstrap, tmp_path, rebalance_report_dir=tmp_path / "r",
                               rebalance_change_penalty=0.0, rebalance_max_moves=None)
    app = build_app(settings)
    topics = app.topics
    district = build_district()
    day = (datetime.now(UTC) + timedelta(days=1)).date()
    events = simulate_day(district, day, cases=60, volunteer_offers=40, goods_offers=15,
                          service_offers=8)
    async with running(app):
        registry = registry_events(district, datetime.now(UTC) - timedelta(hours=1))
        await publish_events(client(kafka_bootstrap), topics, registry)
        # Topics are consumed independently: the hierarchy must be known before offers arrive.
        await wait_for(lambda: audit_count(app) >= len(registry), timeout_s=60,
                       what="registry applied")
        await publish_events(client(kafka_bootstrap), topics, events)
        await wait_for(lambda: proposals_made(app) > 0, timeout_s=120, what="a day matched")
        await wait_for(lambda: app.engine.pending_shards() == 0, timeout_s=120,
                       what="continuous matching idle")
        request = RebalanceRequested(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC),
                                     producer="coord-centre",
                                     payload=RebalanceRequest(requested_by="coord-centre",
                                                              reason="end-to-end test"))
        await produce(kafka_bootstrap, topics.rebalance,
                      [(b"coord-centre", request.model_dump_json().encode())])
        reports = await read_until(kafka_bootstrap, topics.rebalance_reports,
                                   lambda rs: bool(decoded(rs, "rebalance.completed")),
                                   timeout_s=120)
        [summary] = decoded(reports, "rebalance.completed")
        made = {c for change in summary["changes"] for c in change["new_proposal_ids"]}
        proposals = await read_until(
            kafka_bootstrap, topics.proposals,
            lambda rs: made <= {p["proposal_id"] for p in decoded(rs, "match.proposed")},
            timeout_s=60)
        stored = latest_reports(app.engine.db)
    assert summary["status"] == "completed" and summary["trigger"] == "event"
    assert summary["requested_by"] == "coord-centre"
    assert summary["objective_after"] >= summary["objective_before"] - 1e-6
    assert reports[0].key == summary["run_id"].encode()
    revoked = {p["proposal_id"] for p in decoded(proposals, "match.revoked")}
    for change in summary["changes"]:
        if change["change"] in ("moved", "revoked", "released"):
            assert change["old_proposal_id"] in revoked, "every taken-back proposal announced"
    assert stored[0]["summary"]["run_id"] == summary["run_id"]
    assert sorted(p.suffix for p in (tmp_path / "r").iterdir()) == [".json", ".md", ".png"]
