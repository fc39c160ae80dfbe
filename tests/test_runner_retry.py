"""`matcher run` waits for the broker at start-up: it retries with exponential backoff and
says why on every attempt, instead of exiting with rc 3."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from matcher.runner import BrokerUnreachable, backoff, wait_for_broker
from matcher.settings import Settings
from tests.kafka_helpers import free_port


def test_pauses_double_up_to_the_longest_and_stop_after_the_attempts() -> None:
    settings = Settings(startup_retry_initial_s=1, startup_retry_max_s=5,
                        startup_retry_attempts=5)
    assert list(backoff(settings)) == [(1, 1), (2, 2), (3, 4), (4, 5), (5, 5)]
    forever = backoff(Settings(startup_retry_attempts=0))
    assert len([next(forever) for _ in range(100)]) == 100


async def test_an_unreachable_broker_is_retried_with_a_log_line_per_attempt(
        caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
                        startup_retry_initial_s=0.5, startup_retry_attempts=3)
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    caplog.set_level(logging.WARNING, logger="matcher.runner")
    with pytest.raises(BrokerUnreachable, match="after 3 attempts"):
        await wait_for_broker(settings, sleep)
    assert pauses == [0.5, 1.0, 2.0]
    lines = [r for r in caplog.records if r.name == "matcher.runner"]
    assert [getattr(r, "attempt", None) for r in lines] == [1, 2, 3]
    assert all("KafkaConnectionError" in getattr(r, "error", "") for r in lines)


@contextlib.asynccontextmanager
async def forwarder(port: int, target: str) -> AsyncIterator[None]:
    """A TCP relay from 127.0.0.1:port to the broker (the broker 'comes up' on that port)."""
    host, target_port = target.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(target_port))
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


@pytest.mark.kafka
@pytest.mark.slow
async def test_matcher_run_starts_once_the_broker_appears(kafka_bootstrap: str,
                                                         tmp_path: Path) -> None:
    broker_port, http_port = free_port(), free_port()
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker_port}",
           "MATCHER_HTTP_PORT": str(http_port), "MATCHER_TOPIC_PREFIX": prefix,
           "MATCHER_CONSUMER_GROUP": f"{prefix}-engine",
           "MATCHER_DATABASE_URL": f"sqlite:///{tmp_path / 'engine.db'}",
           "MATCHER_STARTUP_RETRY_INITIAL_S": "0.5", "MATCHER_STARTUP_RETRY_MAX_S": "1",
           "MATCHER_REBALANCE_ENABLED": "false", "MATCHER_LOG_JSON": "true"}
    log_file = tmp_path / "run.log"
    with log_file.open("wb") as out:
        engine = subprocess.Popen([sys.executable, "-m", "matcher.cli", "run"], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        await until(lambda: log_file.read_text().count("broker unreachable at start-up") >= 2,
                    "two logged retries")
        assert engine.poll() is None, "still waiting, not exited"
        async with forwarder(broker_port, kafka_bootstrap):
            await until(lambda: _healthy(http_port), "the engine serving", timeout_s=120)
            engine.send_signal(signal.SIGTERM)
            # uvicorn re-raises the signal it handled once it has shut down cleanly.
            assert engine.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if engine.poll() is None:
            engine.kill()
    attempts = [json.loads(line) for line in log_file.read_text().splitlines()
                if "broker unreachable at start-up" in line]
    assert attempts[0]["attempt"] == 1 and attempts[1]["attempt"] == 2
    assert attempts[0]["retry_in_s"] == 0.5 and attempts[1]["retry_in_s"] == 1
    assert "KafkaConnectionError" in attempts[0]["error"]
    assert "engine stopped" in log_file.read_text()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code < 300
    except httpx.HTTPError:
        return False


async def until(condition: object, what: str, timeout_s: float = 60) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)
