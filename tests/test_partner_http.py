"""The partner door over HTTP, on the real broker: a key proves the partner, what it sends is
the same event a Kafka client would publish on its own topic, refused the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from events.app import build_app
from matcher.runner import running
from matcher.services.partner_door import issue_key
from matcher.storage.database import migrate
from matcher.storage.store import unit_of_work
from schemas.topics import REGISTRY_KEY
from tests import factories as f
from tests.kafka_helpers import engine_settings, produce, read_until, wait_for


def goods(offer_id: str, **changes: Any) -> dict[str, Any]:
    """A goods offer payload as a partner's form or client would send it."""
    payload = dict(f.goods_offer(offer_id, "p1")["payload"])
    payload.pop("partner_id")
    return {**payload, **changes}


async def test_without_a_live_key_the_partner_api_answers_401(tmp_path: Path) -> None:
    app = build_app(engine_settings("127.0.0.1:9", tmp_path))
    migrate(app.engine.db)  # the service migrates at start-up; this test does not start it
    transport = httpx.ASGITransport(app=app.services.web)
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as http:
        for headers in ({}, {"Authorization": "Bearer pk_not-a-key"},
                        {"Authorization": "Basic Y29vcmQ6cHc="}):
            response = await http.post("/api/partner/offers", json=goods("g1"), headers=headers)
            assert response.status_code == 401, response.text
        with unit_of_work(app.engine.db) as store:
            key = issue_key(store, "p1", at=f.DAY)
            newer = issue_key(store, "p1", at=f.DAY)
        response = await http.get("/api/partner/overview",
                                  headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 401  # a new key replaces the old one
        response = await http.get("/api/partner/overview",
                                  headers={"Authorization": f"Bearer {newer}"})
        assert response.status_code == 200 and response.json()["partner_id"] == "p1"


@pytest.mark.kafka
@pytest.mark.slow
async def test_http_events_land_on_the_partners_topic_and_are_applied_or_refused(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = engine_settings(kafka_bootstrap, tmp_path, kafka_metadata_max_age_ms=1000)
    app = build_app(settings)
    migrate(app.engine.db)  # keys are issued before the service starts
    topics = app.topics
    registry = [*f.hierarchy(), f.partner("p1"), f.partner("p2")]
    with unit_of_work(app.engine.db) as store:
        keys = {p: issue_key(store, p, at=f.DAY) for p in ("p1", "p2")}

    def as_partner(partner: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[partner]}"}

    def offer_status(offer_id: str) -> str | None:
        with unit_of_work(app.engine.db) as store:
            row = store.offer(offer_id)
            return None if row is None else f"{row.partner_id}:{row.status}"

    def registered() -> bool:
        with unit_of_work(app.engine.db) as store:
            return store.count("audit_log") == len(registry)

    base = f"http://{settings.http_host}:{settings.http_port}"
    async with running(app), httpx.AsyncClient(base_url=base, timeout=30) as http:
        await produce(kafka_bootstrap, topics.registry,
                      [(REGISTRY_KEY.encode(), f.encode(e)) for e in registry])
        await wait_for(registered, what="registry applied")
        sent = await http.post("/api/partner/offers", json=goods("g1"), headers=as_partner("p1"))
        assert sent.status_code == 202, sent.text
        assert sent.json()["topic"] == topics.offers_of("p1") and sent.json()["key"] == "g1"
        await wait_for(lambda: offer_status("g1") == "p1:active", what="p1's offer applied")

        # Refused at the door, with the field or the rule at fault:
        coerced = await http.post("/api/partner/offers", json=goods("g2", quantity="2"),
                                  headers=as_partner("p1"))
        assert coerced.status_code == 422 and "quantity" in coerced.json()["reason"]
        someone_else = await http.post("/api/partner/offers",
                                       json={**goods("g3"), "partner_id": "p2"},
                                       headers=as_partner("p1"))
        assert someone_else.status_code == 403
        assert someone_else.json()["error"] == "not_owner"

        # Accepted at the door, refused by the engine as any Kafka record would be, and told
        # to that partner only:
        grab = await http.post("/api/partner/offers/g1/withdrawal",
                               json={"version": 2, "reason": "mine now"},
                               headers=as_partner("p2"))
        assert grab.status_code == 202, grab.text
        await read_until(kafka_bootstrap, topics.feedback_of("p2"), lambda rs: len(rs) >= 1)
        refused = (await http.get("/api/partner/refusals", headers=as_partner("p2"))).json()
        assert refused[0]["reason_code"] == "not_owner"
        assert refused[0]["event_id"] == grab.json()["event_id"]
        assert (await http.get("/api/partner/refusals", headers=as_partner("p1"))).json() == []
        assert offer_status("g1") == "p1:active"

        withdrawn = await http.post("/api/partner/offers/g1/withdrawal",
                                    json={"version": 2, "reason": "lot spoiled"},
                                    headers=as_partner("p1"))
        assert withdrawn.status_code == 202
        await wait_for(lambda: offer_status("g1") == "p1:withdrawn", what="withdrawal applied")
        overview = (await http.get("/api/partner/overview", headers=as_partner("p1"))).json()
    assert [(o["offer_id"], o["status"]) for o in overview["offers"]] == [("g1", "withdrawn")]
    on_topic = await read_until(kafka_bootstrap, topics.offers_of("p1"),
                                lambda rs: len(rs) >= 2)
    assert [json.loads(r.value)["producer"] for r in on_topic] == ["p1", "p1"]
