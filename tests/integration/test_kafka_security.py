"""The platform's Kafka clients over SASL_SSL (SCRAM-SHA-512, verified TLS), through the local broker's own listener."""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.conn import create_conn
from aiokafka.errors import SaslAuthenticationFailed
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from shared.messaging.broker import client_security, kafka_security, make_broker
from shared.messaging.envelope import Envelope, decode_headers
from shared.settings import ServiceSettings
from tests.support import probe
from tests.support.kafka import sasl_settings as stack_sasl_settings

TOPIC = "backbone.probe"


@pytest.fixture(scope="module")
def sasl_settings() -> ServiceSettings:
    """A service's settings for the SASL_SSL listener, as a production deployment sets them (CTP_KAFKA_*)."""
    settings = stack_sasl_settings()
    host, port = settings.kafka_bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        pytest.fail(
            f"nothing listens on {host}:{port} ({error}): a broker started before stack.sh had the SASL_SSL listener? "
            "Restart it: STACK=test deploy/local/stack.sh kafka-stop, then make test"
        )
    return settings


async def connect(settings: ServiceSettings) -> None:
    """One connection to the listener with the clients' security: TLS handshake, then SCRAM. Raises what refuses it.

    aiokafka's producers and consumers log the reason and raise only "Unable to bootstrap"; its connection says why."""
    host, port = settings.kafka_bootstrap.rsplit(":", 1)
    connection = await create_conn(host, int(port), request_timeout_ms=10_000, **client_security(settings))
    connection.close()


async def test_an_event_published_over_sasl_ssl_is_read_back_over_sasl_ssl(sasl_settings: ServiceSettings) -> None:
    sent = probe.ping(run=uuid.uuid4().hex, seq=0, key=f"sasl-{uuid.uuid4().hex}")
    broker = make_broker(
        sasl_settings.kafka_bootstrap,
        client_id="probe-sasl-ssl",
        security=kafka_security(sasl_settings),
        registry=CollectorRegistry(),
    )
    await broker.start()
    try:
        written = await broker.publish(sent.body(), topic=TOPIC, key=sent.key, headers=sent.headers())
    finally:
        await broker.stop()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=sasl_settings.kafka_bootstrap, enable_auto_commit=False, **client_security(sasl_settings)
    )
    await consumer.start()
    try:
        partition = TopicPartition(TOPIC, written.partition)
        consumer.assign([partition])
        consumer.seek(partition, written.offset)
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()

    assert record.key == sent.key
    received = Envelope.decode(decode_headers(record.headers), record.value or b"", topic=TOPIC)
    assert (received.id, received.event) == (sent.id, sent.event)


async def test_a_wrong_password_is_refused(sasl_settings: ServiceSettings) -> None:
    await connect(sasl_settings)  # the right one is let in
    wrong = sasl_settings.model_copy(update={"kafka_sasl_password": SecretStr("not-the-password")})
    with pytest.raises(SaslAuthenticationFailed):
        await connect(wrong)


async def test_a_client_that_does_not_trust_the_stacks_ca_is_refused(sasl_settings: ServiceSettings) -> None:
    await connect(sasl_settings)  # trusting the stack's CA, it is let in
    # No CA file: the system's CAs, none of which signed the local broker's certificate.
    untrusting = sasl_settings.model_copy(update={"kafka_ssl_cafile": None})
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(untrusting)
