"""The production ACLs (deploy/production/render.py) on the local broker: applied as rendered, then tried over SASL_SSL
by real clients, each signed in as the principal an agency's system or a service has in production."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest
from aiokafka.structs import ConsumerRecord, RecordMetadata

from deploy.production import render
from shared.messaging.broker import client_security
from shared.messaging.topics import concerns_in, outcomes_out, referrals_in
from shared.settings import ServiceSettings
from tests.conftest import ROOT, eventually
from tests.support.kafka import sasl_settings

HEALTH, POLICE, REFERRAL = "agency.health-nz", "agency.police-nz", "svc.referral"
# What `render commands --agency health-nz --agency police-nz` connects (it always adds childrens-hub).
CONNECTED = ["health-nz", "police-nz", "childrens-hub"]
# Records this test writes land on real topics of the stack; whoever lists them (a dead-letter list) sees what they are.
RECORD = b"written by tests/integration/test_kafka_acls.py to try an ACL; not an event"

# Kafka's codes for the parts of an ACL (org.apache.kafka.common.resource and .acl); ANY only in filters.
ANY, ALLOW = 1, 3
RESOURCE_TYPE = {"topic": 2, "group": 3}
PATTERN_TYPE = {"literal": 3, "prefixed": 4}
OPERATION = {"READ": 3, "WRITE": 4, "DESCRIBE": 8}
SECURITY_DISABLED = 54  # what a broker without an authorizer answers to any ACL request

Binding = tuple[int, str, int, str, int]  # resource type, name, pattern type, principal, operation


def add_users(passwords: dict[str, str]) -> None:
    stack = os.environ.get("STACK", "test")
    done = subprocess.run(
        [str(ROOT / "deploy" / "local" / "stack.sh"), "kafka-users", *(f"{n}={p}" for n, p in passwords.items())],
        env=os.environ | {"STACK": stack},
        capture_output=True,
        text=True,
    )
    if done.returncode:
        pytest.fail(f"STACK={stack} deploy/local/stack.sh kafka-users failed:\n{done.stderr}")


def bindings(grants: Iterable[render.Grant]) -> set[Binding]:
    return {
        (RESOURCE_TYPE[g.resource], g.name, PATTERN_TYPE[g.pattern], g.principal, OPERATION[op])
        for g in grants
        for op in g.operations
    }


def assert_accepted(answers: Iterable[tuple[int, str | None]]) -> None:
    """Every (error code, message) an ACL request answered is a success; a broker without an authorizer says how to
    get one."""
    errors = [(code, message) for code, message in answers if code]
    if any(code == SECURITY_DISABLED for code, _ in errors):
        stack = os.environ.get("STACK", "test")
        pytest.fail(
            "the broker has no authorizer: it was started before stack.sh enabled ACLs. Restart Kafka: "
            f"STACK={stack} deploy/local/stack.sh kafka-stop, then STACK={stack} deploy/local/stack.sh start"
        )
    assert not errors, errors


async def apply(admin: AIOKafkaAdminClient, principals: list[str], wanted: set[Binding]) -> None:
    """Gives `principals` exactly the `wanted` ACLs: those of an earlier run (or an older render) go first. aiokafka's
    admin client has no ACL methods but sends any request of its protocol; one ACL to a CreateAcls request."""
    filters = [DeleteAclsRequest(ANY, None, ANY, p, None, ANY, ANY) for p in principals]
    deleted = await asyncio.gather(*(admin._send_request(f) for f in filters))
    assert_accepted((r["error_code"], r["error_message"]) for d in deleted for r in d.to_object()["filter_responses"])
    created = await asyncio.gather(
        *(admin._send_request(CreateAclsRequest(t, n, pt, p, "*", op, ALLOW)) for t, n, pt, p, op in wanted)
    )
    assert_accepted((r["error_code"], r["error_message"]) for c in created for r in c.to_object()["creation_responses"])

    # The controller has committed them; the broker's authorizer, which DescribeAcls reads, has them a moment later.
    async def held() -> bool:
        filters = [DescribeAclsRequest(ANY, None, ANY, p, None, ANY, ANY) for p in principals]
        described = [r.to_object() for r in await asyncio.gather(*(admin._send_request(f) for f in filters))]
        assert_accepted((d["error_code"], d["error_message"]) for d in described)
        return wanted == {
            (r["resource_type"], r["resource_name"], r["resource_pattern_type"], acl["principal"], acl["operation"])
            for d in described
            for r in d["resources"]
            for acl in r["acls"]
        }

    await eventually(held, within=10)


@pytest.fixture(scope="module")
async def sign_in() -> dict[str, ServiceSettings]:
    """SCRAM users for two agencies and the referral service, holding the rendered grants; their settings by name."""
    # New passwords each run: a user's old one stops working, so nothing else can be signed in as these.
    passwords = {name: secrets.token_urlsafe(18) for name in (HEALTH, POLICE, REFERRAL)}
    add_users(passwords)
    principals = [f"User:{name}" for name in passwords]
    wanted = bindings(g for g in render.acls(CONNECTED) if g.principal in principals)
    # Applied by the stack's admin user, a super user, as production's admin principal applies them.
    admin_settings = sasl_settings()
    admin = AIOKafkaAdminClient(bootstrap_servers=admin_settings.kafka_bootstrap, **client_security(admin_settings))
    await admin.start()
    try:
        await apply(admin, principals, wanted)
    finally:
        await admin.close()
    return {name: sasl_settings(name, password) for name, password in passwords.items()}


@asynccontextmanager
async def producer(settings: ServiceSettings) -> AsyncIterator[AIOKafkaProducer]:
    # As the platform's producers are: acks=all and idempotent, which needs WRITE on some topic, no cluster right.
    kafka = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True, **client_security(settings)
    )
    await kafka.start()
    try:
        yield kafka
    finally:
        await kafka.stop()


class StartAt(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped in aiokafka
    """Starts the group at one record: what a member reads is then known, however busy the topic."""

    def __init__(self, consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int) -> None:
        self.consumer, self.partition, self.offset = consumer, partition, offset

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.partition in assigned:
            self.consumer.seek(self.partition, self.offset)


async def read_in_group(settings: ServiceSettings, written: RecordMetadata, *, group: str) -> ConsumerRecord:
    """Joins `group` on the topic `written` went to, reads that record and commits past it, as a consumer does."""
    partition = TopicPartition(written.topic, written.partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        **client_security(settings),
    )
    consumer.subscribe([written.topic], listener=StartAt(consumer, partition, written.offset))
    try:
        await consumer.start()
        record = await asyncio.wait_for(consumer.getone(partition), timeout=30)
        await consumer.commit({partition: record.offset + 1})
        return record
    finally:
        await consumer.stop()


async def join(settings: ServiceSettings, topic: str, *, group: str) -> None:
    """Joins `group` on `topic` and reads; raises what the broker refuses."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, group_id=group, **client_security(settings)
    )
    try:
        await consumer.start()  # where aiokafka raises a refusal: its metadata, or its group's coordinator, says so
        await asyncio.wait_for(consumer.getmany(timeout_ms=10_000), timeout=30)
    finally:
        await consumer.stop()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def test_an_agency_sends_only_on_its_own_ingress_topics(sign_in: dict[str, ServiceSettings]) -> None:
    async with producer(sign_in[HEALTH]) as health:
        await health.send_and_wait(referrals_in("health-nz"), RECORD)
        await health.send_and_wait(concerns_in("health-nz"), RECORD)
        # A referral in Police's name, or an event on a platform stream, is refused.
        with pytest.raises(TopicAuthorizationFailedError):
            await health.send_and_wait(referrals_in("police-nz"), RECORD)
        with pytest.raises(TopicAuthorizationFailedError):
            await health.send_and_wait("referral.events", RECORD)


async def test_an_agency_reads_only_its_own_outcomes_in_its_own_consumer_groups(
    sign_in: dict[str, ServiceSettings],
) -> None:
    # The referral service writes an outcome for Health NZ ...
    async with producer(sign_in[REFERRAL]) as referral:
        written = await referral.send_and_wait(outcomes_out("health-nz"), RECORD)
    # ... which Health NZ's system reads in a group of its own.
    record = await read_in_group(sign_in[HEALTH], written, group=unique("agency.health-nz.outcomes-"))
    assert record.value == RECORD

    with pytest.raises(TopicAuthorizationFailedError):  # Police's outcomes, even in its own group
        await join(sign_in[HEALTH], outcomes_out("police-nz"), group=unique("agency.health-nz.outcomes-"))
    with pytest.raises(GroupAuthorizationFailedError):  # its own outcomes, but in Police's group
        await join(sign_in[HEALTH], outcomes_out("health-nz"), group=unique("agency.police-nz.outcomes-"))


async def test_the_referral_service_takes_in_referrals_and_publishes_only_its_own_stream_and_outcomes(
    sign_in: dict[str, ServiceSettings],
) -> None:
    async with producer(sign_in[POLICE]) as police:
        sent = await police.send_and_wait(referrals_in("police-nz"), RECORD)
    received = await read_in_group(sign_in[REFERRAL], sent, group=unique("referral.intake-test-"))
    assert received.value == RECORD

    async with producer(sign_in[REFERRAL]) as referral:
        await referral.send_and_wait("referral.events", RECORD)
        await referral.send_and_wait(outcomes_out("health-nz"), RECORD)
        with pytest.raises(TopicAuthorizationFailedError):  # it reads plans.events; only plans writes it
            await referral.send_and_wait("plans.events", RECORD)
