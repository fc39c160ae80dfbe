"""How a client reaches the broker and proves who it is: address, protocol and SASL credentials.

One `KafkaAccess` is built from the settings (or a Java-style client properties file, the form
kcat and Kafka's own tools read) and handed to every client the project starts: aiokafka
consumers, producers and admin clients, the FastStream broker and confluent-kafka's admin
client, which alone speaks the ACL and SCRAM-credential APIs.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faststream.security import BaseSecurity

    from matcher.settings import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class KafkaAccessError(ValueError):
    """A client configuration that cannot work: unknown protocol, missing password, bad file."""


@dataclass(frozen=True)
class KafkaAccess:
    """Where the broker is and how this client authenticates to it."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        if self.security_protocol not in PROTOCOLS:
            raise KafkaAccessError(f"security.protocol must be one of {', '.join(PROTOCOLS)}, "
                                   f"not '{self.security_protocol}'")
        if self.uses_sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise KafkaAccessError(f"sasl.mechanism must be one of {', '.join(MECHANISMS)},"
                                       f" not '{self.sasl_mechanism}'")
            if not self.username or self.password is None:
                raise KafkaAccessError(f"{self.security_protocol} needs sasl.username and "
                                       "sasl.password")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def principal(self) -> str:
        """The principal the broker sees: User:<name>, or User:ANONYMOUS without SASL."""
        return f"User:{self.username}" if self.uses_sasl else "User:ANONYMOUS"

    def with_bootstrap(self, bootstrap: str) -> KafkaAccess:
        return replace(self, bootstrap=bootstrap)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of SSL and SASL_SSL, trusting `ssl_cafile` (else the system's CAs)."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments of every aiokafka client: address, protocol and credentials."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap,
                                   "security_protocol": self.security_protocol}
        if self.uses_sasl:
            options.update(sasl_mechanism=self.sasl_mechanism,
                           sasl_plain_username=self.username, sasl_plain_password=self.password)
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        return options

    def faststream(self) -> BaseSecurity | None:
        """The FastStream security object of this access (None for PLAINTEXT)."""
        from faststream.security import (
            BaseSecurity,
            SASLPlaintext,
            SASLScram256,
            SASLScram512,
        )

        context = self.ssl_context()
        if not self.uses_sasl:
            return BaseSecurity(ssl_context=context) if context else None
        kinds = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256,
                 "PLAIN": SASLPlaintext}
        kind = kinds[str(self.sasl_mechanism)]
        return kind(username=str(self.username), password=str(self.password),
                    ssl_context=context)

    def properties(self) -> dict[str, str]:
        """The Java-style client properties: what kcat, librdkafka and Kafka's tools read."""
        props = {"bootstrap.servers": self.bootstrap, "security.protocol": self.security_protocol}
        if self.uses_sasl:
            props.update({"sasl.mechanism": str(self.sasl_mechanism),
                          "sasl.username": str(self.username),
                          "sasl.password": str(self.password)})
        for key, value in (("ssl.ca.location", self.ssl_cafile),
                           ("ssl.certificate.location", self.ssl_certfile),
                           ("ssl.key.location", self.ssl_keyfile)):
            if value:
                props[key] = value
        return props


# --- client properties files ---------------------------------------------------------------


def read_properties(path: Path) -> dict[str, str]:
    """A Java properties file as a dict: `key=value` lines, `#` and `!` comments."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise KafkaAccessError(f"cannot read Kafka client config {path}: {error}") from error
    props: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, _, value = line.partition(":")
        props[key.strip()] = value.strip()
    return props


def write_properties(path: Path, props: dict[str, str], comment: str) -> None:
    """Write a client properties file readable by its owner only: it holds a password."""
    write_secret(path, f"# {comment}\n" + "".join(f"{key}={value}\n"
                                                  for key, value in props.items()))


def write_secret(path: Path, text: str) -> None:
    """Write a file only its owner may read (it is never readable by others, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its old mode through O_TRUNC


def access_from_properties(props: dict[str, str]) -> KafkaAccess:
    """The access a client properties file describes."""
    if "bootstrap.servers" not in props:
        raise KafkaAccessError("the Kafka client config has no bootstrap.servers")
    return KafkaAccess(
        bootstrap=props["bootstrap.servers"],
        security_protocol=props.get("security.protocol", "PLAINTEXT").upper(),
        sasl_mechanism=props.get("sasl.mechanism", "SCRAM-SHA-512").upper(),
        username=props.get("sasl.username"),
        password=props.get("sasl.password"),
        ssl_cafile=props.get("ssl.ca.location"),
        ssl_certfile=props.get("ssl.certificate.location"),
        ssl_keyfile=props.get("ssl.key.location"),
    )


def client_config_path(kafka_home: Path, principal: str) -> Path:
    """Where the local broker keeps the client config of one of its principals."""
    return kafka_home.expanduser().resolve() / f"client-{principal}.properties"


# --- from the settings ---------------------------------------------------------------------


def kafka_access(settings: Settings, role: str = "engine") -> KafkaAccess:
    """How a client of `role` connects, most explicit source first.

    1. Credentials in the settings (MATCHER_KAFKA_SASL_USERNAME/_PASSWORD), for a real cluster.
    2. A client config file (MATCHER_KAFKA_CLIENT_CONFIG), e.g. one `matcher partners add`
       or `matcher kafka up` wrote.
    3. The local broker's own file for `role` (`<kafka_home>/client-<role>.properties`), used
       only when the bootstrap address is that broker's, so local secrets never travel.
    4. No credentials: the configured protocol (PLAINTEXT unless set).
    An explicitly set bootstrap address wins over the one in a file.
    """
    bootstrap_set = "kafka_bootstrap_servers" in settings.model_fields_set
    if settings.kafka_sasl_username:
        password = settings.kafka_sasl_password
        return KafkaAccess(
            bootstrap=settings.kafka_bootstrap_servers,
            security_protocol=settings.kafka_security_protocol or "SASL_PLAINTEXT",
            sasl_mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            ssl_cafile=_path_str(settings.kafka_ssl_cafile),
            ssl_certfile=_path_str(settings.kafka_ssl_certfile),
            ssl_keyfile=_path_str(settings.kafka_ssl_keyfile),
        )
    if settings.kafka_client_config is not None:
        access = access_from_properties(read_properties(settings.kafka_client_config))
        return access.with_bootstrap(settings.kafka_bootstrap_servers) if bootstrap_set \
            else access
    local = client_config_path(settings.kafka_home, role)
    if settings.kafka_bootstrap_servers == f"127.0.0.1:{settings.kafka_port}" and local.is_file():
        return access_from_properties(read_properties(local))
    return KafkaAccess(bootstrap=settings.kafka_bootstrap_servers,
                       security_protocol=settings.kafka_security_protocol or "PLAINTEXT",
                       ssl_cafile=_path_str(settings.kafka_ssl_cafile),
                       ssl_certfile=_path_str(settings.kafka_ssl_certfile),
                       ssl_keyfile=_path_str(settings.kafka_ssl_keyfile))


def _path_str(path: Path | None) -> str | None:
    return None if path is None else str(path)
