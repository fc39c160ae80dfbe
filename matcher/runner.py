"""Running the engine service in this process (for `matcher run`, the demo and tests)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import uvicorn
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError
from uvicorn.config import STARTUP_FAILURE

from events.app import EngineApp
from matcher.kafka_access import KafkaAccess, kafka_access
from matcher.settings import Settings

log = logging.getLogger("matcher.runner")
Sleep = Callable[[float], Awaitable[None]]
PROBE_TIMEOUT_MS = 5_000


class BrokerUnreachable(RuntimeError):
    """The broker did not answer within the configured start-up attempts."""


def uvicorn_server(app: EngineApp) -> uvicorn.Server:
    """A uvicorn server for the engine's ASGI app (health, metrics, AsyncAPI; Kafka inside)."""
    config = uvicorn.Config(app.asgi, host=app.settings.http_host, port=app.settings.http_port,
                            log_config=None, access_log=False, lifespan="on")
    return uvicorn.Server(config)


async def serve(app: EngineApp) -> None:
    """Run until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    tune_gc(app.settings)
    server = uvicorn_server(app)
    freezing = asyncio.create_task(freeze_once_started(server), name="freeze_heap")
    try:
        await server.serve()
    finally:
        freezing.cancel()


async def freeze_once_started(server: uvicorn.Server) -> None:
    """What start-up built (modules, schemas, the app) lives as long as the process: kept out
    of the collector's sight, a full collection no longer walks it."""
    while not server.started:
        await asyncio.sleep(0.05)
    gc.collect()
    gc.freeze()


def tune_gc(settings: Settings) -> None:
    """Collect the young generation less often (see `Settings.gc_young_threshold`)."""
    if settings.gc_young_threshold:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(settings.gc_young_threshold, middle, old)


def backoff(settings: Settings) -> Iterator[tuple[int, float]]:
    """(attempt, pause after it): doubling from the initial pause up to the longest one."""
    pause, attempt = settings.startup_retry_initial_s, 1
    while not settings.startup_retry_attempts or attempt <= settings.startup_retry_attempts:
        yield attempt, pause
        pause, attempt = min(pause * 2, settings.startup_retry_max_s), attempt + 1


async def broker_problem(access: KafkaAccess) -> str | None:
    """Why the broker cannot be reached (or refuses our credentials), or None when it answers."""
    client = AIOKafkaClient(**access.aiokafka(), request_timeout_ms=PROBE_TIMEOUT_MS)
    try:
        await client.bootstrap()
    except (KafkaError, OSError) as error:
        return f"{type(error).__name__}: {error}"
    finally:
        await client.close()
    return None


async def wait_for_broker(settings: Settings, sleep: Sleep = asyncio.sleep) -> None:
    """Return once the broker answers; log each failed attempt and retry with backoff."""
    access = kafka_access(settings)
    bootstrap = access.bootstrap
    for attempt, pause in backoff(settings):
        problem = await broker_problem(access)
        if problem is None:
            if attempt > 1:
                log.info("broker reachable", extra={"bootstrap": bootstrap, "attempt": attempt})
            return
        log.warning("broker unreachable at start-up; retrying", extra={
            "bootstrap": bootstrap, "attempt": attempt, "retry_in_s": pause,
            "error": problem})
        await sleep(pause)
    raise BrokerUnreachable(f"broker {bootstrap} unreachable after "
                            f"{settings.startup_retry_attempts} attempts")


async def serve_retrying(build: Callable[[], EngineApp], settings: Settings,
                         sleep: Sleep = asyncio.sleep) -> None:
    """Wait for the broker, then serve; a start-up that fails because the broker went away
    again is retried with a fresh app (other start-up failures exit as before)."""
    for attempt, pause in backoff(settings):
        await wait_for_broker(settings, sleep)
        try:
            await serve(build())
            return
        except SystemExit as stopped:
            # uvicorn exits with STARTUP_FAILURE when the app's start-up raised.
            if stopped.code != STARTUP_FAILURE:
                raise
            problem = await broker_problem(kafka_access(settings))
            if problem is None:
                raise
            log.warning("engine start-up failed: broker unreachable; retrying", extra={
                "attempt": attempt, "retry_in_s": pause, "error": problem})
            await sleep(pause)
    raise BrokerUnreachable("engine start-up kept failing with the broker unreachable")


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
