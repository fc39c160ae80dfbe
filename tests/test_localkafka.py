"""The local Kafka broker: its generated configuration, and one real start/stop cycle."""

from __future__ import annotations

import os
import shutil
import socket
import string
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from matcher.localkafka import (
    LocalKafka,
    ensure_topics,
    log4j2_config,
    new_cluster_id,
    server_properties,
)
from matcher.settings import Settings
from schemas.topics import Topics


def _settings(home: Path, port: int = 29092, controller_port: int = 29093) -> Settings:
    """Settings of a broker in `home` on the given loopback ports."""
    return Settings(kafka_home=home, kafka_port=port, kafka_controller_port=controller_port,
                    topic_partitions=2)


def _read_properties(path: Path) -> dict[str, str]:
    """A Java properties file as a dict (comments skipped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def _free_ports(count: int) -> list[int]:
    """`count` loopback ports that are free right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def test_listeners_are_loopback_only_on_the_configured_ports(tmp_path: Path) -> None:
    props = server_properties(_settings(tmp_path, 29092, 29093), tmp_path / "data")
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert "0.0.0.0" not in "".join(props.values())


def test_one_combined_node_with_single_replicas(tmp_path: Path) -> None:
    props = server_properties(_settings(tmp_path), tmp_path / "data")
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == f"{props['node.id']}@127.0.0.1:29093"
    factors = [value for key, value in props.items() if key.endswith("replication.factor")]
    assert factors and set(factors) == {"1"}
    assert props["num.partitions"] == "2"
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["log.dirs"] == str(tmp_path / "data")


def test_write_config_writes_properties_and_log4j(tmp_path: Path) -> None:
    broker = LocalKafka(_settings(tmp_path))
    broker.write_config()
    assert _read_properties(broker.config_file) == server_properties(broker.settings,
                                                                     broker.data_dir)
    appender = ET.fromstring(broker.log4j_file.read_text(encoding="utf-8")).find(
        "Appenders/RollingFile")
    assert appender is not None
    assert appender.get("fileName") == str(tmp_path / "logs" / "server.log")


def test_log4j_config_escapes_paths() -> None:
    root = ET.fromstring(log4j2_config(Path("/tmp/a&b\"c/server.log")))
    appender = root.find("Appenders/RollingFile")
    assert appender is not None and appender.get("fileName") == "/tmp/a&b\"c/server.log"


def test_cluster_id_is_22_chars_of_url_safe_base64() -> None:
    cluster_id = new_cluster_id()
    assert len(cluster_id) == 22
    assert set(cluster_id) <= set(string.ascii_letters + string.digits + "-_")


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 encodes to "-" in URL-safe base64; the storage tool would read it as an option.
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" + bytes(15))])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    assert new_cluster_id() == "EAAAAAAAAAAAAAAAAAAAAA"


def test_jar_cache_can_be_shared(tmp_path: Path) -> None:
    shared = tmp_path / "shared-libs"
    assert LocalKafka(_settings(tmp_path / "home"), libs_dir=shared).libs_dir == shared
    settings = _settings(tmp_path / "home")
    default = LocalKafka(settings).libs_dir
    assert default == tmp_path / "home" / f"libs-{settings.kafka_version}"


def test_down_is_harmless_when_nothing_runs(tmp_path: Path) -> None:
    broker = LocalKafka(_settings(tmp_path))
    assert broker.down() is False
    assert broker.down() is False
    assert broker.status()["running"] is False


def test_stale_pid_file_is_removed(tmp_path: Path) -> None:
    broker = LocalKafka(_settings(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    broker.pid_file.write_text(f"{dead.pid}\n", encoding="utf-8")
    assert broker.down() is False
    assert not broker.pid_file.exists()


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs procfs to identify the broker")
def test_pid_file_naming_another_process_is_not_killed(tmp_path: Path) -> None:
    broker = LocalKafka(_settings(tmp_path))
    broker.pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
    assert broker.down() is False  # this very test process is alive, and was not signalled
    assert not broker.pid_file.exists()


@pytest.mark.kafka
@pytest.mark.slow
def test_real_broker_up_status_topic_up_again_down(tmp_path: Path) -> None:
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.skip("needs java and mvn on PATH")
    # Jars come from the project's shared cache (downloaded there once), not per test.
    shared_libs = LocalKafka(Settings()).ensure_jars()
    port, controller_port = _free_ports(2)
    broker = LocalKafka(_settings(tmp_path / "kafka", port, controller_port),
                        libs_dir=shared_libs)
    try:
        assert broker.up(wait_s=90) == f"127.0.0.1:{port}"
        state = broker.status()
        assert state["running"] and state["answers"] and state["formatted"]
        pid = state["pid"]

        topics = Topics(f"test-{uuid.uuid4().hex[:8]}").all
        admin = broker.access()
        assert sorted(ensure_topics(admin, topics, partitions=2)) == sorted(topics)
        assert ensure_topics(admin, topics, partitions=2) == []

        assert broker.up(wait_s=10) == broker.bootstrap
        assert broker.status()["pid"] == pid  # the second `up` started nothing
    finally:
        broker.down()
    assert broker.status()["running"] is False
    assert not broker.pid_file.exists()
    assert broker.server_log.stat().st_size > 0
