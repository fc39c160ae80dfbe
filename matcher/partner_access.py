"""Onboarding a partner system: its own principal, topics, ACLs and registry entry.

`matcher partners add` calls `add_partner`. The partner gets a SCRAM user `partner-<id>`
with a fresh password, its own offers, fulfilments and feedback topics, the ACLs that let it
write the first two and read the third, and a `partner.registered` event on the registry
(sent as the admin principal, the only one the registry accepts). Its client config, in the
Java-style keys kcat and Kafka's tools read, is written to a file readable by its owner only.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiokafka.errors import KafkaError

from matcher.kafka_access import KafkaAccess, kafka_access, write_properties
from matcher.kafka_principals import (
    ADMIN,
    ProvisioningError,
    apply_grants,
    check_partner_id,
    new_password,
    partner_grants,
    partner_principal,
    upsert_scram_user,
)
from matcher.localkafka import ensure_topics, metadata_ok
from matcher.settings import Settings
from matcher.simulator.publish import publish_events
from schemas.common import Reach
from schemas.registry import Partner, PartnerKind, PartnerRegistered
from schemas.topics import Topics

REGISTRAR = "district-admin"
# A new SCRAM credential reaches the broker's authenticator shortly after the controller
# commits it; the file is handed over only once the broker accepts it.
ACCEPT_WAIT_S = 30.0


@dataclass(frozen=True)
class PartnerAccess:
    """What a new partner was given."""

    partner_id: str
    principal: str
    credentials_file: Path
    offers_topic: str
    fulfilments_topic: str
    feedback_topic: str


def add_partner(settings: Settings, *, partner_id: str, node_id: str, name: str,
                kind: PartnerKind, credentials_file: Path,
                reach: Reach | None = None) -> PartnerAccess:
    """Give a partner its principal, topics and ACLs, register it (with the default reach of
    its offers, if given), and write its config."""
    check_partner_id(partner_id)
    admin = kafka_access(settings, role=ADMIN)
    if not admin.uses_sasl:
        raise ValueError("the broker is not secured (no admin SASL credentials): a partner "
                         "principal would prove nothing; see docs/kafka-security.md")
    topics = Topics(settings.topic_prefix)
    user = partner_principal(partner_id)
    password = new_password()
    upsert_scram_user(admin, user, password)
    ensure_topics(admin, topics.partner_topics(partner_id), settings.topic_partitions)
    apply_grants(admin, partner_grants(topics, partner_id))
    partner = Partner(partner_id=partner_id, name=name, kind=kind, home_node_id=node_id,
                      default_reach=reach)
    event = PartnerRegistered(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC),
                              producer=REGISTRAR, payload=partner)
    try:
        asyncio.run(publish_events(admin, topics, [event]))
    except KafkaError as error:
        raise ProvisioningError(
            f"could not publish partner.registered on {topics.registry} "
            f"({type(error).__name__}): is MATCHER_TOPIC_PREFIX '{topics.prefix}' right, and "
            "has the engine created its topics (it does at start)?") from error
    own = KafkaAccess(bootstrap=admin.bootstrap, security_protocol=admin.security_protocol,
                      sasl_mechanism="SCRAM-SHA-512", username=user, password=password,
                      ssl_cafile=admin.ssl_cafile)
    _wait_until_accepted(own)
    write_properties(credentials_file, own.properties(),
                     f"Kafka client config of partner '{partner_id}' ({name}). Keep it "
                     f"secret. Publish offers to {topics.offers_of(partner_id)}, fulfilments "
                     f"to {topics.fulfilments_of(partner_id)}; read refusals from "
                     f"{topics.feedback_of(partner_id)}.")
    return PartnerAccess(partner_id=partner_id, principal=user,
                         credentials_file=credentials_file,
                         offers_topic=topics.offers_of(partner_id),
                         fulfilments_topic=topics.fulfilments_of(partner_id),
                         feedback_topic=topics.feedback_of(partner_id))


def _wait_until_accepted(access: KafkaAccess) -> None:
    """Return once the broker authenticates `access`; fail after ACCEPT_WAIT_S."""
    deadline = time.monotonic() + ACCEPT_WAIT_S
    while not metadata_ok(access, timeout_s=5.0):
        if time.monotonic() > deadline:
            raise ProvisioningError(f"the broker did not accept the new credentials of "
                                    f"'{access.username}' within {ACCEPT_WAIT_S:.0f} s")
        time.sleep(0.5)
