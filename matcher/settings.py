"""The one settings class: everything configurable, read from the environment (MATCHER_*)."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Relative to the working directory, never to the package: an installed package lives in
# site-packages, which the service's user may not write to.
DEFAULT_DATA_DIR = Path(".data")


class Settings(BaseSettings):
    """Engine configuration. Every field can be set as MATCHER_<NAME> (e.g. MATCHER_DATABASE_URL).

    KAFKA_BOOTSTRAP_SERVERS is also honoured without the prefix, as Kafka tools expect.
    """

    model_config = SettingsConfigDict(env_prefix="MATCHER_", extra="ignore")

    # Kafka
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias="KAFKA_BOOTSTRAP_SERVERS",
        description="Kafka bootstrap servers, comma separated.",
    )
    topic_prefix: str = Field(default="charity", description="Prefix of every topic name.")
    topic_partitions: int = Field(default=3, ge=1, description="Partitions of created topics.")
    consumer_group: str = Field(default="charity-matcher", description="Engine consumer group.")
    batch_max_records: int = Field(default=2000, ge=1, le=10_000,
                                   description="Most events of one poll, applied in one "
                                   "transaction.")
    batch_poll_ms: int = Field(default=100, ge=1, le=10_000,
                               description="How long a poll waits for a batch to fill.")
    gc_young_threshold: int = Field(
        default=20_000, ge=0,
        description="Allocations between young-generation collections in `matcher run` (0: "
        "Python's default, 700). A poll allocates tens of thousands of objects that mostly "
        "live until it is written, so the default collects over and over for nothing.")
    ingest_overlap_polls: int = Field(
        default=1, ge=0, le=4,
        description="Polls of a consumer that may be written while the next is fetched and "
        "validated (0: one after another); each poll's offsets are committed once it is durable.")

    # Kafka security: who the engine is to the broker (see docs/kafka-security.md)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = \
        Field(default=None, description="Protocol to the broker. Default: SASL_PLAINTEXT when "
              "a SASL user is set, else what the client config says, else PLAINTEXT.")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512", description="SASL mechanism of kafka_sasl_username.")
    kafka_sasl_username: str | None = Field(default=None,
                                            description="The engine's SASL user on the broker.")
    kafka_sasl_password: SecretStr | None = Field(default=None,
                                                  description="That user's password.")
    kafka_ssl_cafile: Path | None = Field(default=None,
                                          description="CA bundle trusted for SSL/SASL_SSL.")
    kafka_ssl_certfile: Path | None = Field(default=None,
                                            description="Client certificate for mutual TLS.")
    kafka_ssl_keyfile: Path | None = Field(default=None,
                                           description="Key of kafka_ssl_certfile.")
    kafka_client_config: Path | None = Field(
        default=None, description="A Java-style client properties file (bootstrap.servers, "
        "security.protocol, sasl.mechanism, sasl.username, sasl.password). Default: the local "
        "broker's client-engine.properties when the bootstrap address is that broker's.")
    kafka_metadata_max_age_ms: int = Field(
        default=10_000, ge=1000, description="How often clients refresh metadata, which is "
        "how soon the engine sees a new partner's topics.")

    # Local broker (matcher kafka up)
    kafka_version: str = Field(default="4.1.1", description="Apache Kafka version to run.")
    kafka_home: Path = Field(default=PROJECT_ROOT / ".kafka",
                             description="Jars, config, data and logs of the local broker.")
    kafka_heap: str = Field(default="512m", description="Heap of the local broker JVM.")
    kafka_port: int = Field(default=19092, description="Client port of the local broker.")
    kafka_controller_port: int = Field(default=19093,
                                       description="Controller port of the local broker.")
    kafka_local_sasl: bool = Field(
        default=True, description="Run the local broker with SASL/SCRAM and ACLs (off: "
        "PLAINTEXT without authentication, for experiments only).")

    # Storage
    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        description="Folder of the engine's own files: the default SQLite database "
        "(matcher.db) and rebalance reports (rebalance/). Default: .data in the working "
        "directory.")
    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_DATA_DIR / 'matcher.db'}",
        description="SQLAlchemy URL: sqlite:///path.db or "
        "postgresql+psycopg://user:pass@host/db. Default: matcher.db in data_dir.",
    )

    # Matching
    shard_level: str = Field(default="centre",
                             description="Hierarchy level a matching shard covers: "
                             "'centre' (whole district) or 'workstation'.")
    batch_window_s: float = Field(default=1.0, gt=0, le=60,
                                  description="How long changes gather before a matching batch.")
    solver_time_limit_s: float = Field(default=5.0, gt=0, description="Time limit of a solve.")
    solver_workers: int = Field(default=2, ge=1, description="CP-SAT search workers.")
    candidates_per_item: int = Field(default=30, ge=1,
                                     description="Most candidate offers kept per need item.")
    service_travel_km: float = Field(
        default=5.0, gt=0, le=200,
        description="How far people travel to a service with a place, when neither the offer, "
        "its partner nor a node up the hierarchy says how it reaches people.")
    reserve_share: float = Field(
        default=0.9, ge=0, lt=1,
        description="Capacity a batch keeps for urgent cases expected soon (last week's at the "
        "same hours): what an expected case is worth against a real one; 0 keeps nothing.")
    reserve_min_urgency: int = Field(default=3, ge=1, le=5,
                                     description="How urgent (1-5) an expected case is.")
    reserve_lookahead_h: float = Field(
        default=24.0, gt=0, le=168, description="Cases expected within this many hours.")

    # Service
    http_host: str = Field(default="127.0.0.1", description="Host of the health/metrics server.")
    http_port: int = Field(default=8080, description="Port of the health/metrics server.")
    log_level: str = Field(default="INFO", description="Log level.")
    log_json: bool = Field(default=True, description="Log one JSON object per line.")

    # Coordination (console, API, proposal lifecycle)
    session_secret: str = Field(
        default_factory=lambda: secrets.token_urlsafe(32),
        description="Secret signing console session cookies; random per process unless set "
        "(then sign-ins do not survive a restart).",
    )
    session_https_only: bool = Field(default=False,
                                     description="Send the session cookie over HTTPS only.")
    proposal_escalate_after_s: float = Field(
        default=4 * 3600, gt=0,
        description="A proposal pending this long escalates to the parent node.")
    proposal_expire_after_s: float = Field(
        default=24 * 3600, gt=0,
        description="A proposal pending this long expires (or is approved automatically).")
    auto_approve_kinds: list[str] = Field(
        default_factory=list,
        description="Offer kinds whose expiring proposals are approved automatically, e.g. "
        '["goods"] (JSON list in the environment).')
    sweep_interval_s: float = Field(default=60.0, gt=0,
                                    description="How often pending proposals are swept.")

    # Console and API security: sign-in throttling, sessions, tokens, HTTPS detection
    sign_in_window_s: float = Field(
        default=60.0, gt=0,
        description="Window over which failed sign-ins are counted, per account and address.")
    sign_in_max_failures: int = Field(
        default=10, ge=1, le=10,
        description="Sign-in attempts refused with 429 once this many failed in the window.")
    session_max_age_s: float = Field(default=8 * 3600, gt=0,
                                     description="Lifetime of a console session or API token.")
    basic_cache_ttl_s: float = Field(
        default=60.0, ge=0,
        description="How long a verified HTTP Basic credential is remembered (0: never), "
        "so argon2 does not run on every API call.")
    basic_cache_size: int = Field(default=1024, ge=1,
                                  description="Most HTTP Basic credentials remembered at once.")
    password_checks_at_once: int = Field(
        default=4, ge=1,
        description="Most argon2 verifications running at the same time (each takes ~64 MiB).")
    trust_forwarded_headers: bool = Field(
        default=False,
        description="Believe X-Forwarded-Proto and X-Forwarded-For (only behind a reverse "
        "proxy that sets them).")

    # Start-up: `matcher run` waits for the broker instead of exiting
    startup_retry_initial_s: float = Field(
        default=1.0, gt=0, description="First pause before retrying an unreachable broker.")
    startup_retry_max_s: float = Field(
        default=30.0, gt=0, description="Longest pause between start-up attempts (doubling).")
    startup_retry_attempts: int = Field(
        default=0, ge=0, description="Start-up attempts before giving up (0: keep trying).")

    # Rebalancing: the nightly re-optimisation of the whole district
    rebalance_at: str = Field(default="02:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                              description="Local time (HH:MM) of the nightly rebalancing run.")
    rebalance_timezone: str = Field(default="Asia/Shanghai",
                                    description="Time zone of rebalance_at (IANA name).")
    rebalance_enabled: bool = Field(default=True,
                                    description="Run the nightly rebalancing inside the service.")
    rebalance_change_penalty: float = Field(
        default=10.0, ge=0,
        description="Score points a better match must gain before a pending proposal is moved "
        "(per whole item; 0 re-optimises freely).")
    rebalance_max_moves: int | None = Field(
        default=200, ge=0,
        description="Most pending proposals moved or revoked per run (empty: no cap).")
    rebalance_time_limit_s: float = Field(default=30.0, gt=0,
                                          description="Time limit of each rebalancing solve.")
    rebalance_lease_s: float = Field(
        default=900.0, gt=0,
        description="How long a run holds the district-wide lease before others may take it.")
    rebalance_report_dir: Path = Field(default=DEFAULT_DATA_DIR / "rebalance",
                                       description="Where run reports (JSON, Markdown, PNG) "
                                       "are written. Default: rebalance/ in data_dir.")

    # Language and local time: console pages, rebalance reports, CSV and the CLI
    timezone: str = Field(default="Asia/Shanghai",
                          description="The district's time zone (IANA name): times on pages, "
                          "reports and CSV are shown in it, labelled. Also the zone of "
                          "rebalance_at unless rebalance_timezone is set.")
    default_locale: str = Field(default="zh_CN", pattern=r"^(zh_CN|en)$",
                                description="Console language when the reader chose none and "
                                "the browser asks for none we have: zh_CN or en.")

    @property
    def demo_db(self) -> Path:
        """The SQLite file `matcher demo` leaves behind, in data_dir."""
        return self.data_dir / "demo.db"

    @model_validator(mode="after")
    def _files_in_data_dir(self) -> Settings:
        """The database file and reports live under data_dir unless placed explicitly."""
        self.data_dir = self.data_dir.expanduser().resolve()
        if "database_url" not in self.model_fields_set:
            self.database_url = f"sqlite:///{self.data_dir / 'matcher.db'}"
        if "rebalance_report_dir" not in self.model_fields_set:
            self.rebalance_report_dir = self.data_dir / "rebalance"
        return self

    @model_validator(mode="after")
    def _rebalance_in_district_time(self) -> Settings:
        """One zone for the district: the nightly run follows `timezone` unless told apart."""
        if "rebalance_timezone" not in self.model_fields_set:
            self.rebalance_timezone = self.timezone
        return self


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
