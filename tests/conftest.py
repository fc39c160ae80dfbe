"""Shared fixtures: a real database (SQLite, and PostgreSQL when given) and a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Engine, create_engine, text

from matcher.kafka_principals import ADMIN
from matcher.settings import PROJECT_ROOT, Settings
from matcher.storage.database import migrate, open_engine


class TestEnvironment(BaseSettings):
    """What the test run is given from outside (CI sets these)."""

    __test__ = False
    model_config = SettingsConfigDict(extra="ignore")

    ci: bool = Field(default=False, validation_alias="CI")
    kafka_bootstrap_servers: str | None = Field(default=None,
                                                validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    postgres_url: str | None = Field(default=None, validation_alias="MATCHER_TEST_POSTGRES_URL")
    kafka_client_config: Path | None = Field(default=None,
                                             validation_alias="MATCHER_KAFKA_CLIENT_CONFIG")


ENV = TestEnvironment()


def _docker_answers() -> bool:
    """Whether a Docker engine answers (then testcontainers can start Kafka)."""
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS if set, else testcontainers' Kafka, else the local broker."""
    if ENV.kafka_bootstrap_servers:
        with _own_topics_deleted(ENV.kafka_bootstrap_servers):
            yield ENV.kafka_bootstrap_servers
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from matcher.localkafka import LocalKafka

    home = tmp_path_factory.mktemp("kafka")
    settings = Settings(kafka_home=home, kafka_port=_free_port(),
                        kafka_controller_port=_free_port())
    version_cache = PROJECT_ROOT / ".kafka" / f"libs-{settings.kafka_version}"
    broker = LocalKafka(settings, libs_dir=version_cache)
    try:
        bootstrap = broker.up(wait_s=120)
        # Every Settings() and test client of this run acts as the broker's admin principal.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MATCHER_KAFKA_CLIENT_CONFIG", str(broker.client_config(ADMIN)))
            yield bootstrap
    finally:
        broker.down()


# Prefixes the tests give their topics (a few hex digits of a uuid each).
TEST_TOPIC = re.compile(r"^(t|tb|test-)[0-9a-f]{8,10}\.")


@contextlib.contextmanager
def _own_topics_deleted(bootstrap: str) -> Iterator[None]:
    """On a broker that outlives the run, delete the topics the run made when it ends."""
    from matcher.localkafka import delete_topics_async
    from tests.kafka_helpers import client, topic_names

    before = set(asyncio.run(topic_names(bootstrap)))
    try:
        yield
    finally:
        asyncio.run(delete_topics_async(client(bootstrap), lambda topic: topic not in before
                                        and TEST_TOPIC.match(topic) is not None))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_engine() -> Iterator[Engine]:
    """A fresh PostgreSQL database for one test."""
    if not ENV.postgres_url:
        if ENV.ci:
            pytest.fail("CI must provide MATCHER_TEST_POSTGRES_URL (see .ci/run)")
        pytest.skip("set MATCHER_TEST_POSTGRES_URL to run the PostgreSQL path")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(ENV.postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name)
    engine = open_engine(url.render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database: a SQLite file, and a PostgreSQL database when available."""
    if request.param == "sqlite":
        engine = open_engine(f"sqlite:///{tmp_path / 'matcher.db'}")
        migrate(engine)
        yield engine
        engine.dispose()
        return
    for engine in _postgres_engine():
        migrate(engine)
        yield engine


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite database file (for tests that need only one backend)."""
    engine = open_engine(f"sqlite:///{tmp_path / 'matcher.db'}")
    migrate(engine)
    yield engine
    engine.dispose()
