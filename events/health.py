"""Liveness and readiness over HTTP: `/health` says the process answers, `/ready` says the
database and the broker do too (what a load balancer or orchestrator should wait for)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from faststream.asgi.types import ASGIApp, Receive, Scope, Send
from faststream.kafka import KafkaBroker
from sqlalchemy import Engine, text
from starlette.responses import JSONResponse

__all__ = ["Check", "broker_check", "database_check", "liveness", "readiness"]

OK = "ok"
# A readiness probe must answer quickly even when a dependency hangs.
CHECK_TIMEOUT_S = 3.0

Check = Callable[[], Awaitable[None]]


async def liveness(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 200 `{"status": "ok"}` without touching any dependency."""
    await JSONResponse({"status": OK})(scope, receive, send)


def database_check(db: Engine) -> Check:
    """A check that runs `SELECT 1` on the database (in a thread: the driver blocks)."""
    def select_one() -> None:
        with db.connect() as conn:
            conn.execute(text("SELECT 1"))

    async def check() -> None:
        await asyncio.to_thread(select_one)
    return check


def broker_check(broker: KafkaBroker, timeout_s: float = CHECK_TIMEOUT_S) -> Check:
    """A check that pings the broker through FastStream."""
    async def check() -> None:
        if not await broker.ping(timeout_s):
            raise ConnectionError("broker did not answer a ping")
    return check


async def run_check(check: Check, timeout_s: float = CHECK_TIMEOUT_S) -> str:
    """'ok', or 'error: ...' naming what went wrong."""
    try:
        await asyncio.wait_for(check(), timeout_s)
    except TimeoutError:
        return f"error: no answer within {timeout_s:g} s"
    except Exception as failed:  # any failure means not ready; the text says which
        return f"error: {type(failed).__name__}: {failed}"[:300]
    return OK


def readiness(checks: dict[str, Check]) -> ASGIApp:
    """An ASGI app answering each check's result and `ready`, with 200 or 503."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        names = list(checks)
        results = await asyncio.gather(*(run_check(checks[name]) for name in names))
        body: dict[str, str | bool] = dict(zip(names, results, strict=True))
        ready = all(result == OK for result in results)
        body["ready"] = ready
        await JSONResponse(body, status_code=200 if ready else 503)(scope, receive, send)
    return app
