"""Liveness and readiness: /health never depends on anything, /ready tells which dependency
is down and answers 503 until all are up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import Engine

from events.app import build_app
from events.health import database_check, readiness
from matcher.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    # Nothing listens on port 9: the broker is down.
    return Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}",
                    kafka_bootstrap_servers="127.0.0.1:9")


async def _get(app: object, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
        return await client.get(path)


async def test_health_answers_ok_even_when_the_broker_is_down(tmp_path: Path) -> None:
    response = await _get(build_app(_settings(tmp_path)).asgi, "/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_is_503_and_names_the_broker_when_it_is_down(tmp_path: Path) -> None:
    response = await _get(build_app(_settings(tmp_path)).asgi, "/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"].startswith("error: ")
    assert body["ready"] is False


async def test_ready_is_200_when_every_check_passes(sqlite_db: Engine) -> None:
    async def broker_up() -> None:
        return None

    app = readiness({"database": database_check(sqlite_db), "broker": broker_up})
    response = await _get(app, "/ready")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok", "ready": True}


async def test_ready_reports_a_hanging_dependency_as_an_error_quickly() -> None:
    async def hangs() -> None:
        await asyncio.sleep(60)

    async def fails() -> None:
        raise OSError("disk gone")

    app = readiness({"database": fails, "broker": hangs})
    response = await asyncio.wait_for(_get(app, "/ready"), timeout=10)
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "error: OSError: disk gone"
    assert body["broker"].startswith("error: no answer within")
