"""A real local Apache Kafka broker: one KRaft node on loopback, run from Maven-resolved jars.

No Docker needed: `kafka/pom.xml` resolves the broker jars once into `<kafka_home>/libs-<version>`,
then `kafka.Kafka` runs as a detached JVM whose pid, config, data and logs live in `kafka_home`.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypedDict, TypeVar
from xml.sax.saxutils import quoteattr

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from matcher.kafka_access import (
    KafkaAccess,
    access_from_properties,
    client_config_path,
    read_properties,
    write_properties,
)
from matcher.kafka_principals import (
    ADMIN,
    DISTRICT_PRINCIPALS,
    apply_grants,
    district_grants,
    new_password,
)
from matcher.settings import PROJECT_ROOT, Settings
from schemas.topics import Topics

log = logging.getLogger(__name__)

POM = PROJECT_ROOT / "kafka" / "pom.xml"
LOOPBACK = "127.0.0.1"
NODE_ID = 1
PROGRESS_EVERY_S = 5.0
POLL_S = 0.25
KILL_WAIT_S = 5.0
FORMAT_TIMEOUT_S = 120.0

T = TypeVar("T")

# Brokers started by this process: kept so they are reaped (no zombies) and never GC-warned.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LocalKafkaError(RuntimeError):
    """The local broker could not be prepared, started or stopped."""


class KafkaStatus(TypedDict):
    """What `LocalKafka.status()` reports."""

    running: bool
    answers: bool
    pid: int | None
    bootstrap: str
    version: str
    kafka_home: str
    jars: bool
    formatted: bool
    log: str


# ---------------------------------------------------------------------------- configuration


def server_properties(settings: Settings, data_dir: Path,
                      admin_password: str | None = None) -> dict[str, str]:
    """The broker config: one combined broker+controller node, listening on loopback only.

    With `admin_password`, clients authenticate with SASL/SCRAM-SHA-512 and an ACL authorizer
    denies whatever is not granted; without it, PLAINTEXT with no authentication.
    """
    props = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{LOOPBACK}:{settings.kafka_controller_port}",
        **(_plaintext_listeners(settings) if admin_password is None
           else _sasl_listeners(settings, admin_password)),
        "log.dirs": str(data_dir),
        "num.partitions": str(settings.topic_partitions),
        # One node: every internal topic must fit on it.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        # Tests and the dev loop want consumers assigned at once, not after 3 s.
        "group.initial.rebalance.delay.ms": "0",
        # Topics come from ensure_topics with the intended partitions; typos must fail loudly.
        "auto.create.topics.enable": "false",
    }
    return props


def _plaintext_listeners(settings: Settings) -> dict[str, str]:
    """Client and controller listeners without authentication."""
    client = f"{LOOPBACK}:{settings.kafka_port}"
    controller = f"{LOOPBACK}:{settings.kafka_controller_port}"
    return {
        "listeners": f"PLAINTEXT://{client},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{client}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    }


def _sasl_listeners(settings: Settings, admin_password: str) -> dict[str, str]:
    """SCRAM for clients, PLAIN for the controller, ACLs for everything; admin is super user.

    The controller listener authenticates too (PLAIN, with the admin user defined in its JAAS
    config, because SCRAM users live in the metadata the controller itself serves), so no
    anonymous client on this machine can reach the controller's admin APIs either.
    """
    client = f"{LOOPBACK}:{settings.kafka_port}"
    controller = f"{LOOPBACK}:{settings.kafka_controller_port}"
    secret = _jaas_quote(admin_password)
    return {
        "listeners": f"SASL_PLAINTEXT://{client},CONTROLLER://{controller}",
        "advertised.listeners": f"SASL_PLAINTEXT://{client}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,"
                                          "CONTROLLER:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config":
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{ADMIN}" password="{secret}" user_{ADMIN}="{secret}";',
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN}" password="{secret}";',
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN}",
        "allow.everyone.if.no.acl.found": "false",
    }


def _jaas_quote(value: str) -> str:
    """A value safe inside a JAAS config's double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def log4j2_config(log_file: Path) -> str:
    """A log4j2 XML config sending every broker log line to a size-rolled `log_file`."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- No log4j shutdown hook: it would close the file before Kafka logs its own shutdown. -->
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <RollingFile name="server" fileName={quoteattr(str(log_file))}
                 filePattern={quoteattr(str(log_file) + ".%i")}>
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
  </Loggers>
</Configuration>
"""


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID as 22 characters of unpadded URL-safe base64."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        # One id in 64 starts with "-", which the storage tool's argument parser takes for an
        # option and then reports "-t" as missing its value; Kafka's own Uuid.randomUuid
        # draws again for the same reason.
        if not cluster_id.startswith("-"):
            return cluster_id


# ---------------------------------------------------------------------------- the broker


class LocalKafka:
    """Prepare, start, stop and inspect the local single-node broker of `settings.kafka_home`."""

    def __init__(self, settings: Settings, libs_dir: Path | None = None) -> None:
        self.settings = settings
        self.version = settings.kafka_version
        self.home = settings.kafka_home.expanduser().resolve()
        # libs_dir lets several homes (e.g. tests) share one jar cache.
        self.libs_dir = (libs_dir or self.home / f"libs-{self.version}").expanduser().resolve()
        self.data_dir = self.home / "data"
        self.logs_dir = self.home / "logs"
        self.config_file = self.home / "server.properties"
        self.log4j_file = self.home / "log4j2.xml"
        self.pid_file = self.home / "kafka.pid"
        self.server_log = self.logs_dir / "server.log"
        self.stdout_log = self.logs_dir / "kafka.out"
        self.maven_log = self.logs_dir / "maven.log"
        self._log_start: dict[Path, int] = {}

    @property
    def bootstrap(self) -> str:
        """The client address of the broker."""
        return f"{LOOPBACK}:{self.settings.kafka_port}"

    @property
    def secured(self) -> bool:
        """Whether clients must authenticate (SASL/SCRAM) and are held to ACLs."""
        return self.settings.kafka_local_sasl

    def client_config(self, principal: str) -> Path:
        """The client properties file of one of the district's principals."""
        return client_config_path(self.home, principal)

    def access(self, principal: str = ADMIN) -> KafkaAccess:
        """How `principal` connects to this broker (no credentials when it is not secured)."""
        path = self.client_config(principal)
        if self.secured and path.is_file():
            return access_from_properties(read_properties(path)).with_bootstrap(self.bootstrap)
        return KafkaAccess(bootstrap=self.bootstrap)

    # -- jars

    def jars_present(self) -> bool:
        """Whether the jar cache holds this version's broker jar."""
        return (self.libs_dir / f"kafka_2.13-{self.version}.jar").is_file()

    def ensure_jars(self) -> Path:
        """Resolve the broker jars with Maven into the cache, unless already there."""
        if self.jars_present():
            log.debug("Kafka %s jars already in %s", self.version, self.libs_dir)
            return self.libs_dir
        mvn = _require_tool("mvn", "install Maven 3.8+ (it resolves the Kafka jars)")
        if not POM.is_file():
            raise LocalKafkaError(f"{POM} not found: run from a source checkout of the project")
        # Download beside the cache, then rename: an interrupt never leaves half a cache.
        partial = self.libs_dir.with_name(self.libs_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
               f"-DoutputDirectory={partial}", "-DincludeScope=runtime",
               f"-Dkafka.version={self.version}"]
        log.info("Resolving Kafka %s jars with Maven into %s (first run downloads ~70 MB)",
                 self.version, self.libs_dir)
        code = _run_with_progress(cmd, self.maven_log, "Resolving Kafka jars with Maven")
        if code != 0:
            raise LocalKafkaError(f"Maven failed with exit code {code}; see {self.maven_log}:\n"
                                  f"{_tail(self.maven_log)}")
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        partial.rename(self.libs_dir)
        log.info("Kafka %s jars ready: %d jars in %s", self.version,
                 len(list(self.libs_dir.glob("*.jar"))), self.libs_dir)
        return self.libs_dir

    # -- lifecycle

    def up(self, wait_s: float = 60) -> str:
        """Start the broker unless it runs; return its bootstrap address once it answers."""
        deadline = time.monotonic() + wait_s
        pid = self.running_pid()
        if pid is not None:
            if self._answers():
                log.info("Kafka already running (pid %d) at %s", pid, self.bootstrap)
                self.provision()
                return self.bootstrap
            log.info("Kafka (pid %d) is running but not answering yet; waiting", pid)
            self._wait_ready(pid, deadline)
            return self.bootstrap
        self._check_ports_free()
        self.ensure_jars()
        self._forget_unsecured_storage()
        passwords = self._ensure_credentials()
        self.write_config(passwords.get(ADMIN))
        self._format_storage(passwords)
        pid = self._spawn()
        try:
            self._wait_ready(pid, deadline)
            self.provision()
        except BaseException:
            self._abandon_start(pid)
            raise
        log.info("Kafka %s up (pid %d) at %s%s", self.version, pid, self.bootstrap,
                 f" (SASL/SCRAM, admin config {self.client_config(ADMIN)})"
                 if self.secured else " (PLAINTEXT, no authentication)")
        return self.bootstrap

    def provision(self) -> None:
        """Grant the district's principals what they need (idempotent: kept ACLs stay)."""
        if not self.secured:
            return
        topics = Topics(self.settings.topic_prefix)
        count = apply_grants(self.access(ADMIN),
                             district_grants(topics, self.settings.consumer_group))
        log.info("Kafka ACLs in place: %d grants for %s", count,
                 ", ".join(p for p in DISTRICT_PRINCIPALS if p != ADMIN))

    def down(self, timeout_s: float = 20) -> bool:
        """Stop the broker: SIGTERM, then SIGKILL after `timeout_s`. False when none ran."""
        pid = self.running_pid()
        if pid is None:
            log.info("Kafka is not running (home %s)", self.home)
            return False
        log.info("Stopping Kafka (pid %d)", pid)
        _signal(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout_s):
            log.warning("Kafka (pid %d) did not stop within %.0fs; killing it", pid, timeout_s)
            _signal(pid, signal.SIGKILL)
            if not self._wait_exit(pid, KILL_WAIT_S):
                raise LocalKafkaError(f"Kafka (pid {pid}) survived SIGKILL")
        _CHILDREN.pop(pid, None)
        self.pid_file.unlink(missing_ok=True)
        log.info("Kafka stopped")
        return True

    def status(self) -> KafkaStatus:
        """Whether the broker process runs and answers, and where its files are."""
        pid = self.running_pid()
        return KafkaStatus(
            running=pid is not None,
            answers=self._answers(),
            pid=pid,
            bootstrap=self.bootstrap,
            version=self.version,
            kafka_home=str(self.home),
            jars=self.jars_present(),
            formatted=self.formatted(),
            log=str(self.server_log),
        )

    # -- files

    def write_config(self, admin_password: str | None = None) -> None:
        """Write server.properties and the log4j2 config from the current settings."""
        for directory in (self.home, self.data_dir, self.logs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        props = server_properties(self.settings, self.data_dir,
                                  admin_password if self.secured else None)
        write_properties(self.config_file, props, "Generated by matcher.localkafka; rewritten "
                         "on every `matcher kafka up`. Holds the admin password: mode 0600.")
        self.log4j_file.write_text(log4j2_config(self.server_log), encoding="utf-8")

    def formatted(self) -> bool:
        """Whether the storage directory has been formatted for KRaft."""
        return (self.data_dir / "meta.properties").is_file()

    def running_pid(self) -> int | None:
        """The pid of this home's live broker; a pid file naming anything else is removed."""
        try:
            pid = int(self.pid_file.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            pid = None
        if pid is not None and _alive(pid) and self._is_our_broker(pid):
            return pid
        if self.pid_file.exists():
            log.info("Removing stale Kafka pid file %s", self.pid_file)
            self.pid_file.unlink(missing_ok=True)
        return None

    # -- internals

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        """A java command line running `main` from the jar cache with our log4j2 config."""
        java = _require_tool("java", "install a Java 17+ runtime")
        heap = self.settings.kafka_heap
        return [java, f"-Xmx{heap}", f"-Xms{heap}", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.log4j_file}",
                "-cp", str(self.libs_dir / "*"), main, *args]

    def _ensure_credentials(self) -> dict[str, str]:
        """The district principals' passwords, made once and kept in their client configs."""
        if not self.secured:
            return {}
        passwords: dict[str, str] = {}
        for principal in DISTRICT_PRINCIPALS:
            path = self.client_config(principal)
            if path.is_file():
                password = access_from_properties(read_properties(path)).password
                if password:
                    passwords[principal] = password
                    continue
            passwords[principal] = new_password()
            access = KafkaAccess(bootstrap=self.bootstrap, security_protocol="SASL_PLAINTEXT",
                                 sasl_mechanism="SCRAM-SHA-512", username=principal,
                                 password=passwords[principal])
            write_properties(path, access.properties(),
                             f"Kafka client config of '{principal}' on the local broker "
                             f"(written by matcher kafka up). Keep it secret.")
        return passwords

    def _forget_unsecured_storage(self) -> None:
        """Storage formatted before the broker had SASL users cannot gain them: start anew.

        SCRAM users are created when the storage is formatted; a home formatted without them
        (by an older version, or with kafka_local_sasl off) would refuse every client.
        """
        if self.secured and self.formatted() and not self.client_config(ADMIN).is_file():
            log.warning("Kafka storage in %s has no SASL users; formatting it again (the "
                        "local broker's topics and offsets start empty)", self.data_dir)
            shutil.rmtree(self.data_dir)

    def _format_storage(self, passwords: dict[str, str]) -> None:
        """Format the KRaft storage once; later starts reuse the data and cluster id."""
        if self.formatted():
            return
        cluster_id = new_cluster_id()
        log.info("Formatting Kafka storage in %s (cluster id %s)", self.data_dir, cluster_id)
        # SCRAM users must exist before the first start: the broker authenticates to itself.
        scram = [arg for principal, password in passwords.items() for arg in
                 ("--add-scram", f"SCRAM-SHA-512=[name={principal},password={password}]")]
        # Static quorum (controller.quorum.voters), so no --standalone here.
        cmd = self._java_cmd("kafka.tools.StorageTool", "format", "-t", cluster_id,
                             "-c", str(self.config_file), *scram)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                  timeout=FORMAT_TIMEOUT_S, cwd=self.home)
        except subprocess.TimeoutExpired as exc:
            raise LocalKafkaError(f"formatting Kafka storage took over {exc.timeout}s") from exc
        if done.returncode != 0:
            raise LocalKafkaError(f"formatting Kafka storage failed (exit {done.returncode}):\n"
                                  f"{done.stdout}{done.stderr}")

    def _spawn(self) -> int:
        """Start the broker JVM in its own session, so it outlives this process; record its pid."""
        cmd = self._java_cmd("kafka.Kafka", str(self.config_file))
        log.info("Starting Kafka %s on %s (heap %s)", self.version, self.bootstrap,
                 self.settings.kafka_heap)
        # Error messages quote only what this run logged.
        self._log_start = {path: _size(path) for path in (self.server_log, self.stdout_log)}
        with self.stdout_log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=self.home,
                                    start_new_session=True)
        _CHILDREN[proc.pid] = proc
        self.pid_file.write_text(f"{proc.pid}\n", encoding="utf-8")
        return proc.pid

    def _abandon_start(self, pid: int) -> None:
        """Clean up after a failed (or interrupted) start: never leave a half-started JVM."""
        if _alive(pid):
            self.down(timeout_s=KILL_WAIT_S)
        _CHILDREN.pop(pid, None)
        self.pid_file.unlink(missing_ok=True)

    def _wait_ready(self, pid: int, deadline: float) -> None:
        """Wait until the broker answers a metadata request; fail if it dies or time runs out."""
        started = time.monotonic()
        next_note = started + PROGRESS_EVERY_S
        while True:
            if not _alive(pid):
                raise LocalKafkaError(f"Kafka (pid {pid}) exited during startup{_exit_note(pid)}; "
                                      f"{self._log_hint()}")
            if self._answers():
                return
            now = time.monotonic()
            if now >= deadline:
                raise LocalKafkaError(f"Kafka did not answer on {self.bootstrap} within "
                                      f"{deadline - started:.0f}s; {self._log_hint()}")
            if now >= next_note:
                log.info("Waiting for Kafka on %s (%.0fs, up to %.0fs)", self.bootstrap,
                         now - started, deadline - started)
                next_note = now + PROGRESS_EVERY_S
            time.sleep(POLL_S)

    def _wait_exit(self, pid: int, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for `pid` to exit; True when it did."""
        started = time.monotonic()
        next_note = started + PROGRESS_EVERY_S
        while _alive(pid):
            now = time.monotonic()
            if now - started >= timeout_s:
                return False
            if now >= next_note:
                log.info("Waiting for Kafka (pid %d) to stop (%.0fs)", pid, now - started)
                next_note = now + PROGRESS_EVERY_S
            time.sleep(POLL_S)
        return True

    def _answers(self) -> bool:
        """Whether the client port is open and serves cluster metadata."""
        if not _port_open(self.settings.kafka_port):
            return False
        return metadata_ok(self.access(ADMIN), timeout_s=5.0)

    def _check_ports_free(self) -> None:
        """Fail early and clearly when another process holds one of our ports."""
        for port in (self.settings.kafka_port, self.settings.kafka_controller_port):
            if _port_open(port):
                raise LocalKafkaError(
                    f"{LOOPBACK}:{port} is in use by a process other than the broker of "
                    f"{self.home}; stop it or choose other ports "
                    "(MATCHER_KAFKA_PORT, MATCHER_KAFKA_CONTROLLER_PORT)")

    def _is_our_broker(self, pid: int) -> bool:
        """Whether `pid` is kafka.Kafka with this home's config (guards against pid reuse)."""
        cmdline = Path(f"/proc/{pid}/cmdline")
        try:
            args = cmdline.read_bytes().split(b"\0")
        except FileNotFoundError:
            return not Path("/proc/self").exists()  # no procfs (macOS): trust the pid file
        except OSError:
            return False
        return b"kafka.Kafka" in args and os.fsencode(self.config_file) in args

    def _log_hint(self) -> str:
        """Where to look, with the last lines of the broker logs."""
        return "\n".join(f"last lines of {path}:\n{_tail(path, self._log_start.get(path, 0))}"
                         for path in (self.server_log, self.stdout_log))


# ---------------------------------------------------------------------------- topics


async def ensure_topics_async(access: KafkaAccess, topics: Iterable[str], partitions: int,
                              replication_factor: int = 1) -> list[str]:
    """Create the missing ones of `topics`; return the names created."""
    bootstrap = access.bootstrap
    admin = AIOKafkaAdminClient(**access.aiokafka())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in dict.fromkeys(topics) if topic not in existing]
        if not missing:
            log.debug("All %s topics exist", bootstrap)
            return []
        new = [NewTopic(topic, partitions, replication_factor) for topic in missing]
        response = await admin.create_topics(new)
        created = _created_topics(response.topic_errors)
    finally:
        await admin.close()
    log.info("Created topics %s (%d partitions) on %s", ", ".join(created), partitions, bootstrap)
    return created


async def delete_topics_async(access: KafkaAccess, matching: Callable[[str], bool]
                              ) -> list[str]:
    """Delete every topic whose name is `matching` (a throw-away run's, say); return the
    names deleted. A broker keeps every partition it was ever given, on disk and in its
    metadata: left behind by test and benchmark runs, thousands of them slow it down."""
    admin = AIOKafkaAdminClient(**access.aiokafka())
    await admin.start()
    try:
        doomed = sorted(topic for topic in await admin.list_topics() if matching(topic))
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
    log.debug("Deleted %d topics on %s", len(doomed), access.bootstrap)
    return doomed


class TopicsOnDemand:
    """Topics created the first time something is sent to them (a partner's own topics,
    for a partner registered without `matcher partners add`); remembered once they exist."""

    def __init__(self, access: KafkaAccess, partitions: int) -> None:
        self.access = access
        self.partitions = partitions
        self._known: set[str] = set()

    async def ensure(self, topics: Iterable[str]) -> None:
        missing = [topic for topic in topics if topic not in self._known]
        if missing:
            await ensure_topics_async(self.access, missing, self.partitions)
            self._known.update(missing)


def ensure_topics(access: KafkaAccess, topics: Iterable[str], partitions: int,
                  replication_factor: int = 1) -> list[str]:
    """Blocking `ensure_topics_async`, callable with or without a running event loop."""
    return _run_sync(ensure_topics_async(access, list(topics), partitions, replication_factor))


def _created_topics(topic_errors: Sequence[Sequence[Any]]) -> list[str]:
    """Names created per a CreateTopics response; a topic created meanwhile is fine."""
    created: list[str] = []
    for entry in topic_errors:
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else ""
        if code == 0:
            created.append(topic)
        elif code != TopicAlreadyExistsError.errno:
            raise for_code(code)(f"could not create topic {topic}: {message}")
    return created


# ---------------------------------------------------------------------------- helpers


def metadata_ok(access: KafkaAccess, timeout_s: float) -> bool:
    """Whether the broker authenticates `access` and answers it a metadata request."""
    return _run_sync(_metadata_ok(access, timeout_s))


async def _metadata_ok(access: KafkaAccess, timeout_s: float) -> bool:
    """Whether the broker answers `access` a metadata request listing at least one broker."""
    client = AIOKafkaClient(**access.aiokafka(), request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        return bool(client.cluster.brokers())
    except (TimeoutError, KafkaError, OSError):
        return False
    finally:
        await client.close()


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion; in a thread of its own when this thread already has a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _port_open(port: int, timeout_s: float = 1.0) -> bool:
    """Whether something accepts TCP connections on loopback `port`."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """Whether process `pid` exists (our own exited children are reaped, not left as zombies)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether `pid` has exited but is not yet reaped by its parent (Linux; else False)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _exit_note(pid: int) -> str:
    """' with exit code N' when `pid` is our child and has exited, else ''."""
    child = _CHILDREN.get(pid)
    code = child.poll() if child is not None else None
    return "" if code is None else f" with exit code {code}"


def _signal(pid: int, sig: signal.Signals) -> None:
    """Send `sig` to `pid`; a process already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _require_tool(name: str, advice: str) -> str:
    """The path of executable `name` on PATH, or a clear error."""
    path = shutil.which(name)
    if path is None:
        raise LocalKafkaError(f"`{name}` not found on PATH: {advice}")
    return path


def _run_with_progress(cmd: list[str], output: Path, label: str) -> int:
    """Run `cmd` with output to `output`, logging a heartbeat while it runs; its exit code."""
    started = time.monotonic()
    next_note = started + PROGRESS_EVERY_S
    with output.open("wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                if time.monotonic() >= next_note:
                    log.info("%s… %.0fs", label, time.monotonic() - started)
                    next_note += PROGRESS_EVERY_S
                time.sleep(POLL_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode


def _size(path: Path) -> int:
    """The size of `path` in bytes; 0 when it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _tail(path: Path, start: int = 0, lines: int = 20) -> str:
    """The last `lines` lines of a text file from byte `start` on, or a note why there are none."""
    try:
        with path.open("rb") as file:
            file.seek(start if start <= _size(path) else 0)  # a rolled log starts over
            text = file.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"  ({path} does not exist)"
    tail = text.splitlines()[-lines:]
    return "\n".join("  " + line for line in tail) if tail else "  (nothing logged)"
