"""Who may do what on the broker: the district's principals, their ACLs and SCRAM users.

Identity comes from the connection. Each partner writes only to topics of its own
(`<prefix>.offers.<partner>` and `<prefix>.fulfilments.<partner>`), which only its principal
`partner-<id>` may write; the engine then checks that what a record claims matches the topic
it came on. Registry events need the admin principal, coordinator decisions the
`coordinator-app` principal, and needs the `cases` principal of the grids' case system.

The grants are plain data (tested as such); `apply_grants` and `upsert_scram_user` send them
to the broker with confluent-kafka's admin client, the one Python client with the ACL and
SCRAM-credential APIs.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from matcher.kafka_access import KafkaAccess
from schemas.topics import Topics

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)

ADMIN = "admin"
ENGINE = "engine"
COORDINATOR_APP = "coordinator-app"
CASES = "cases"
# Created with the local broker; partners are added one by one with `matcher partners add`.
DISTRICT_PRINCIPALS = (ADMIN, ENGINE, COORDINATOR_APP, CASES)
SCRAM_ITERATIONS = 8192
ADMIN_TIMEOUT_S = 30.0
# Kafka topic names allow these characters only; a partner id becomes part of two topic names.
TOPIC_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")

Resource = Literal["topic", "group", "cluster"]
Pattern = Literal["literal", "prefixed"]


class ProvisioningError(RuntimeError):
    """The broker refused or did not answer an ACL or credential change."""


@dataclass(frozen=True)
class Grant:
    """Allow (or deny) `principal` the `operations` on one resource, by name or prefix."""

    principal: str
    resource: Resource
    name: str
    pattern: Pattern
    operations: tuple[str, ...]
    permission: Literal["ALLOW", "DENY"] = "ALLOW"


def partner_principal(partner_id: str) -> str:
    """The SCRAM user of a partner's system."""
    return f"partner-{partner_id}"


def names_a_topic(partner_id: str) -> bool:
    """Whether a partner id can be part of a topic name."""
    return bool(TOPIC_SAFE.match(partner_id))


def check_partner_id(partner_id: str) -> None:
    """A partner id must fit in a topic name: letters, digits, '.', '_' and '-' only."""
    if not names_a_topic(partner_id):
        raise ValueError(f"partner id '{partner_id}' cannot name a Kafka topic: use letters, "
                         "digits, '.', '_' and '-' only (at most 200)")


def new_password() -> str:
    """A random password for a SCRAM user."""
    return secrets.token_urlsafe(24)


# --- the grants ----------------------------------------------------------------------------


def engine_grants(topics: Topics, group: str, principal: str = ENGINE) -> list[Grant]:
    """The engine reads every input, writes every output, creates partner feedback topics.

    It never speaks for the registry, the grids or the coordinators: a deny (which beats any
    allow) keeps a compromised engine from writing those inputs too.
    """
    return [
        Grant(principal, "topic", f"{topics.prefix}.", "prefixed",
              ("READ", "WRITE", "DESCRIBE", "CREATE", "DESCRIBE_CONFIGS")),
        *(Grant(principal, "topic", topic, "literal", ("WRITE",), "DENY")
          for topic in (topics.registry, topics.needs, topics.decisions)),
        Grant(principal, "group", group, "prefixed", ("READ", "DESCRIBE")),
        Grant(principal, "cluster", "kafka-cluster", "literal",
              ("IDEMPOTENT_WRITE", "DESCRIBE")),
    ]


def coordinator_app_grants(topics: Topics, principal: str = COORDINATOR_APP) -> list[Grant]:
    """A coordination app sends decisions and reads the proposals it decides on."""
    return [
        Grant(principal, "topic", topics.decisions, "literal", ("WRITE", "DESCRIBE")),
        Grant(principal, "topic", topics.proposals, "literal", ("READ", "DESCRIBE")),
        Grant(principal, "group", principal, "prefixed", ("READ", "DESCRIBE")),
    ]


def cases_grants(topics: Topics, principal: str = CASES) -> list[Grant]:
    """The grids' case system opens and updates cases and reads what became of them."""
    return [
        Grant(principal, "topic", topics.needs, "literal", ("WRITE", "DESCRIBE")),
        Grant(principal, "topic", topics.proposals, "literal", ("READ", "DESCRIBE")),
        Grant(principal, "topic", topics.unmatched, "literal", ("READ", "DESCRIBE")),
        Grant(principal, "group", principal, "prefixed", ("READ", "DESCRIBE")),
    ]


def partner_grants(topics: Topics, partner_id: str) -> list[Grant]:
    """A partner writes its own offers and fulfilments, reads its own feedback and approvals."""
    user = partner_principal(partner_id)
    return [
        Grant(user, "topic", topics.offers_of(partner_id), "literal", ("WRITE", "DESCRIBE")),
        Grant(user, "topic", topics.fulfilments_of(partner_id), "literal",
              ("WRITE", "DESCRIBE")),
        Grant(user, "topic", topics.feedback_of(partner_id), "literal", ("READ", "DESCRIBE")),
        Grant(user, "topic", topics.assignments_of(partner_id), "literal",
              ("READ", "DESCRIBE")),
        Grant(user, "group", user, "prefixed", ("READ", "DESCRIBE")),
    ]


def district_grants(topics: Topics, group: str) -> list[Grant]:
    """Every grant of the principals a district's broker starts with (admin is super user)."""
    return [*engine_grants(topics, group), *coordinator_app_grants(topics),
            *cases_grants(topics)]


# --- sending them to the broker ------------------------------------------------------------


def apply_grants(admin: KafkaAccess, grants: Sequence[Grant]) -> int:
    """Create the ACLs of `grants` (existing ones are kept as they are); how many were sent."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    # confluent-kafka calls the cluster resource BROKER; its only name is "kafka-cluster".
    resource_types = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
                      "cluster": ResourceType.BROKER}
    bindings = [
        AclBinding(resource_types[grant.resource], grant.name,
                   ResourcePatternType[grant.pattern.upper()], f"User:{grant.principal}", "*",
                   AclOperation[operation], AclPermissionType[grant.permission])
        for grant in grants for operation in grant.operations
    ]
    if not bindings:
        return 0
    client = _admin_client(admin)
    futures = client.create_acls(bindings, request_timeout=ADMIN_TIMEOUT_S)
    _wait_all(futures.values(), "creating ACLs")
    log.debug("ACLs created", extra={"count": len(bindings)})
    return len(bindings)


def upsert_scram_user(admin: KafkaAccess, user: str, password: str,
                      mechanism: str = "SCRAM-SHA-512") -> None:
    """Create the SCRAM user, or set its new password."""
    from confluent_kafka.admin import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    info = ScramCredentialInfo(ScramMechanism[mechanism.replace("-", "_")], SCRAM_ITERATIONS)
    upsert = UserScramCredentialUpsertion(user, info, password.encode("utf-8"))
    client = _admin_client(admin)
    futures = client.alter_user_scram_credentials([upsert], request_timeout=ADMIN_TIMEOUT_S)
    _wait_all(futures.values(), f"setting the password of '{user}'")


def _admin_client(admin: KafkaAccess) -> AdminClient:
    """A confluent-kafka admin client authenticated as `admin`."""
    from confluent_kafka.admin import AdminClient

    config: dict[str, str | int | float | bool] = dict(admin.properties())
    config["log_level"] = "3"  # librdkafka errors only: its chatter is not ours to show
    return AdminClient(config)


def _wait_all(futures: Iterable[object], what: str) -> None:
    """Wait for admin futures; one clear error naming what failed."""
    from confluent_kafka import KafkaException

    for future in futures:
        try:
            future.result(timeout=ADMIN_TIMEOUT_S)  # type: ignore[attr-defined]
        except KafkaException as error:
            raise ProvisioningError(f"{what}: {error.args[0].str()}") from error
        except Exception as error:  # librdkafka times out with a plain exception
            raise ProvisioningError(f"{what}: {error}") from error
