"""GET /api/nodes: any signed-in coordinator reads the whole hierarchy (ids, levels, names,
parents), so partners can be told which node ids to put on their events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from matcher.settings import Settings
from matcher.web.app import build_web
from tests import factories as f
from tests.coordination_world import PASSWORD, build_world

SETTINGS = Settings(session_secret="test-secret")


@pytest.fixture
def web(db: Engine) -> Iterator[TestClient]:
    with TestClient(build_web(build_world(db), SETTINGS)) as client:
        yield client


def test_a_grid_coordinator_sees_the_whole_hierarchy_parents_first(web: TestClient) -> None:
    assert web.post("/api/session", json={"username": "c-grid-b",
                                          "password": PASSWORD}).status_code == 200
    response = web.get("/api/nodes")
    assert response.status_code == 200
    listed = response.json()
    expected = {(n["payload"]["node_id"], n["payload"]["level"], n["payload"]["parent_id"])
                for n in f.hierarchy()}
    assert {(n["node_id"], n["level"], n["parent_id"]) for n in listed} == expected
    assert all(n["name"] for n in listed)
    position = {n["node_id"]: i for i, n in enumerate(listed)}
    assert all(position[n["parent_id"]] < position[n["node_id"]]
               for n in listed if n["parent_id"] is not None)


def test_the_node_list_needs_a_sign_in(web: TestClient) -> None:
    assert web.get("/api/nodes").status_code == 401
