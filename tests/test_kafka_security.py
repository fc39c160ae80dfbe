"""On the real, secured broker: identity comes from the connection, never from the payload.

Anonymous clients and wrong passwords are refused by the broker; a partner may write only its
own topics; an event on a partner's topic that claims someone else is dead-lettered
`not_owner` and reported on that partner's feedback topic; the engine itself runs as a
principal held to its ACLs.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAuthorizationFailedError

from events.app import build_app
from matcher.kafka_access import KafkaAccess, write_properties
from matcher.kafka_principals import (
    apply_grants,
    cases_grants,
    check_partner_id,
    coordinator_app_grants,
    engine_grants,
    new_password,
    partner_grants,
    partner_principal,
    upsert_scram_user,
)
from matcher.localkafka import ensure_topics
from matcher.runner import running
from matcher.storage.store import unit_of_work
from schemas.topics import REGISTRY_KEY, Topics
from tests import factories as f
from tests.kafka_helpers import client, engine_settings, produce, read_until, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def admin_of(bootstrap: str) -> KafkaAccess:
    admin = client(bootstrap)
    if not admin.uses_sasl:
        pytest.skip("the broker of this run is not secured (no SASL admin config)")
    return admin


def new_user(admin: KafkaAccess, name: str) -> KafkaAccess:
    """A fresh SCRAM user on the broker, and how it connects."""
    password = new_password()
    upsert_scram_user(admin, name, password)
    return KafkaAccess(bootstrap=admin.bootstrap, security_protocol="SASL_PLAINTEXT",
                       sasl_mechanism="SCRAM-SHA-512", username=name, password=password)


async def send(access: KafkaAccess, topic: str, value: bytes, key: bytes = b"k") -> None:
    producer = AIOKafkaProducer(**access.aiokafka(), acks="all", request_timeout_ms=10_000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


def test_partner_ids_that_cannot_name_a_topic_are_refused() -> None:
    check_partner_id("partner-017.qj")
    for bad in ("a:b", "a b", "伙伴", ""):
        with pytest.raises(ValueError, match="cannot name a Kafka topic"):
            check_partner_id(bad)


async def test_anonymous_clients_and_wrong_passwords_are_refused(kafka_bootstrap: str) -> None:
    admin = admin_of(kafka_bootstrap)
    anonymous = KafkaAccess(bootstrap=kafka_bootstrap)
    with pytest.raises(KafkaConnectionError):
        await send(anonymous, Topics().registry, b"{}")
    impostor = KafkaAccess(bootstrap=kafka_bootstrap, security_protocol="SASL_PLAINTEXT",
                           sasl_mechanism="SCRAM-SHA-512", username=str(admin.username),
                           password="not-the-password")
    with pytest.raises(KafkaError):
        await send(impostor, Topics().registry, b"{}")


async def test_a_partner_writes_only_its_own_topics_and_cannot_pass_for_another(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    admin = admin_of(kafka_bootstrap)
    run = uuid.uuid4().hex[:8]
    alice, bob = f"pa{run}", f"pb{run}"
    settings = engine_settings(kafka_bootstrap, tmp_path, kafka_metadata_max_age_ms=1000)
    topics = Topics(settings.topic_prefix)
    for partner in (alice, bob):
        ensure_topics(admin, topics.partner_topics(partner), 1)
    ensure_topics(admin, topics.all, 1)
    partner_access = {partner: new_user(admin, partner_principal(partner))
                      for partner in (alice, bob)}
    for partner in (alice, bob):
        apply_grants(admin, partner_grants(topics, partner))
    # The engine runs as a principal of its own, granted what `matcher kafka up` grants.
    engine = new_user(admin, f"engine-{run}")
    apply_grants(admin, engine_grants(topics, settings.consumer_group,
                                      principal=f"engine-{run}"))
    engine_config = tmp_path / "client-engine.properties"
    write_properties(engine_config, engine.properties(), "test engine")
    app = build_app(settings.model_copy(update={"kafka_client_config": engine_config}))
    assert app.services.kafka.principal == f"User:engine-{run}"

    # The broker refuses what a partner's principal may not write at all.
    for topic in (topics.offers_of(alice), topics.registry, topics.decisions, topics.needs,
                  topics.offers):
        with pytest.raises(TopicAuthorizationFailedError):
            await send(partner_access[bob], topic, f.encode(f.goods_offer("x", bob)))

    registry = [*f.hierarchy(), f.partner(alice), f.partner(bob)]

    def stored(offer_id: str) -> str | None:
        with unit_of_work(app.engine.db) as store:
            row = store.offer(offer_id)
            return None if row is None else row.partner_id

    def registered() -> bool:
        with unit_of_work(app.engine.db) as store:
            return store.count("audit_log") == len(registry)

    async with running(app):
        await produce(kafka_bootstrap, topics.registry,
                      [(REGISTRY_KEY.encode(), f.encode(e)) for e in registry])
        await wait_for(registered, what="registry applied")  # offers need their partner
        await send(partner_access[alice], topics.offers_of(alice),
                   f.encode(f.goods_offer("g-alice", alice)), key=b"g-alice")
        await wait_for(lambda: stored("g-alice") == alice, what="alice's own offer applied")
        # On its own topic, bob claims to be alice, then names alice as the offer's owner,
        # then, as himself, tries to withdraw alice's offer, then to update it.
        claims_alice = f.goods_offer("g-fake", alice)
        names_alice = f.goods_offer("g-fake2", alice)
        names_alice["producer"] = bob
        withdraw = f.withdrawal("g-alice", bob)
        update = f.goods_offer("g-alice", bob, version=2, quantity=1)
        update["event_type"] = "offer.updated"
        for event in (claims_alice, names_alice, withdraw, update):
            await send(partner_access[bob], topics.offers_of(bob), f.encode(event))
        dead = await read_until(kafka_bootstrap, topics.dead_letter, lambda rs: len(rs) >= 4)
        feedback = await read_until(kafka_bootstrap, topics.feedback_of(bob),
                                    lambda rs: len(rs) >= 4)
    codes = [dict(r.headers)["dlq.reason_code"].decode() for r in dead]
    assert codes == ["not_owner"] * 4
    reasons = [dict(r.headers)["dlq.reason"].decode() for r in dead]
    assert "belongs to partner" in reasons[0] and alice in reasons[0]
    assert [json.loads(r.value)["event_id"] for r in feedback] == \
        [json.loads(r.value)["event_id"] for r in dead]
    assert stored("g-alice") == alice  # not withdrawn
    assert stored("g-fake") is None and stored("g-fake2") is None
    # Not even the engine speaks for the registry, the grids or the coordinators.
    for topic in (topics.registry, topics.needs, topics.decisions):
        with pytest.raises(TopicAuthorizationFailedError):
            await send(engine, topic, b"{}")


async def test_the_district_principals_write_only_what_their_role_needs(
        kafka_bootstrap: str) -> None:
    admin = admin_of(kafka_bootstrap)
    run = uuid.uuid4().hex[:8]
    topics = Topics(f"t{run}")
    ensure_topics(admin, topics.all, 1)
    coordinator_app = new_user(admin, f"coordinator-app-{run}")
    cases = new_user(admin, f"cases-{run}")
    apply_grants(admin, coordinator_app_grants(topics, principal=f"coordinator-app-{run}"))
    apply_grants(admin, cases_grants(topics, principal=f"cases-{run}"))
    await send(coordinator_app, topics.decisions, f.encode(f.decision("p1")))
    await send(cases, topics.needs, f.encode(f.case("c1")))
    for access, topic in ((coordinator_app, topics.registry), (coordinator_app, topics.offers),
                          (coordinator_app, topics.needs), (cases, topics.decisions),
                          (cases, topics.registry), (cases, topics.rebalance)):
        with pytest.raises(TopicAuthorizationFailedError):
            await send(access, topic, b"{}")
