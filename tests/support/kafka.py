"""Test helpers that play an agency's system on the real broker: publish CloudEvents, read what comes back."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from types import TracebackType
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import SecretStr

from shared.agencies import agency_source
from shared.events import Event
from shared.messaging.envelope import Envelope, EnvelopeError, decode_headers
from shared.settings import ServiceSettings

# What `deploy/local/stack.sh env` exports for the broker's SASL_SSL listener; `make test` evals it first.
SASL_ENV = ("KAFKA_SASL_BOOTSTRAP", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE")


def sasl_settings(username: str | None = None, password: str | None = None) -> ServiceSettings:
    """A client's settings for the stack's SASL_SSL listener, as a production deployment sets them (CTP_KAFKA_*):
    as the stack's own user (a super user) unless another is given."""
    missing = [name for name in SASL_ENV if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not set: run the tests in the stack's environment, "
            'eval "$(STACK=test deploy/local/stack.sh env)" (make test does)'
        )
    return ServiceSettings(
        service="probe",
        kafka_bootstrap=os.environ["KAFKA_SASL_BOOTSTRAP"],
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=username or os.environ["KAFKA_SASL_USERNAME"],
        kafka_sasl_password=SecretStr(password or os.environ["KAFKA_SASL_PASSWORD"]),
        kafka_ssl_cafile=os.environ["KAFKA_SSL_CAFILE"],
    )


class AgencySystem:
    """Publishes to an agency's ingress topics as `/agencies/<code>` would."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)

    async def __aenter__(self) -> AgencySystem:
        await self.producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.producer.stop()

    async def send(self, topic: str, event: Event, *, agency: str, subject: str) -> Envelope:
        envelope = Envelope(event=event, source=agency_source(agency), subject=subject)
        await self.send_raw(topic, envelope.body(), key=subject, headers=envelope.headers())
        return envelope

    async def send_raw(self, topic: str, body: bytes, *, key: str, headers: dict[str, str] | None = None) -> None:
        await self.producer.send_and_wait(
            topic, body, key=key.encode(), headers=[(k, v.encode()) for k, v in (headers or {}).items()]
        )


class TopicReader:
    """Reads topics from the moment it was opened, decoding our envelopes."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self.topic = ", ".join(topics)
        self.consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.seen: list[tuple[dict[str, str], Envelope | None]] = []

    async def __aenter__(self) -> TopicReader:
        await asyncio.wait_for(self.consumer.start(), 60)
        partitions = list(self.consumer.assignment())
        ends = await asyncio.wait_for(self.consumer.end_offsets(partitions), 60)
        for partition in partitions:
            self.consumer.seek(partition, ends[partition])
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.consumer.stop(), 30)

    async def _poll(self) -> None:
        batches = await self.consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for record in records:
                headers = decode_headers(record.headers)
                try:
                    envelope: Envelope | None = Envelope.decode(headers, record.value or b"", topic=record.topic)
                except EnvelopeError:
                    envelope = None
                self.seen.append((headers, envelope))

    async def events(
        self,
        kind: type[Event],
        where: Callable[[Any], bool] = lambda _: True,
        *,
        count: int = 1,
        within: float = 60,
    ) -> list[Any]:
        """Wait for `count` events of `kind` matching `where`; return the envelopes of all that match so far.

        Typed loosely on purpose: tests read `.event.<field>` of the kind they asked for.
        """
        deadline = asyncio.get_running_loop().time() + within
        while True:
            found = [e for _, e in self.seen if e is not None and isinstance(e.event, kind) and where(e)]
            if len(found) >= count:
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{len(found)} of {count} {kind.__name__} events on {self.topic} within {within}s")
            await self._poll()

    async def headers_where(self, where: Callable[[dict[str, str]], bool], *, within: float = 60) -> dict[str, str]:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            for headers, _ in self.seen:
                if where(headers):
                    return headers
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no matching message on {self.topic} within {within}s")
            await self._poll()
