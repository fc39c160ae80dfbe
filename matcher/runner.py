"""Running the engine service in this process (for `matcher run`, the demo and tests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn

from events.app import EngineApp


def uvicorn_server(app: EngineApp) -> uvicorn.Server:
    """A uvicorn server for the engine's ASGI app (health, metrics, AsyncAPI; Kafka inside)."""
    config = uvicorn.Config(app.asgi, host=app.settings.http_host, port=app.settings.http_port,
                            log_config=None, access_log=False, lifespan="on")
    return uvicorn.Server(config)


async def serve(app: EngineApp) -> None:
    """Run until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    await uvicorn_server(app).serve()


@contextlib.asynccontextmanager
async def running(app: EngineApp, start_timeout_s: float = 60.0) -> AsyncIterator[EngineApp]:
    """The engine running in the background of this event loop while the block runs."""
    server = uvicorn_server(app)
    task = asyncio.create_task(server.serve(), name="engine")
    deadline = asyncio.get_running_loop().time() + start_timeout_s
    while not server.started:
        if task.done():
            task.result()  # raises the start-up error
            raise RuntimeError("engine stopped during start-up")
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("engine did not start in time")
        await asyncio.sleep(0.05)
    try:
        yield app
    finally:
        server.should_exit = True
        await task
