"""Fixtures for tests against the real local test stack (`make test` starts it and exports its addresses)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.agencies import AGENCIES
from shared.db import make_engine, make_sessions
from shared.messaging.outbox import add_to_outbox
from shared.messaging.topics import dlq_topic, outcomes_out, retry_topic
from shared.migrations import create_backbone
from tests.support import probe
from tests.support.kafka import AgencySystem, TopicReader
from tests.support.services import RunningService, run_service

ROOT = Path(__file__).resolve().parent.parent

# Services run inside the test process send their spans nowhere unless a test asks for Zipkin.
os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")


async def eventually(check: Callable[[], Awaitable[Any]], *, within: float = 60.0, every: float = 0.1) -> Any:
    """Poll until `check` returns something truthy. The bound only stops a broken test hanging; nothing is timed."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s (last result: {result!r})")
        await asyncio.sleep(every)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return probe.bootstrap()


@pytest.fixture(scope="session")
async def probe_engine() -> AsyncIterator[AsyncEngine]:
    """A fresh `probe` schema with the backbone tables, as a service's first migration would make them."""
    engine = make_engine(probe.database_url(), probe.SCHEMA)
    async with engine.begin() as connection:
        await connection.execute(text(f"DROP SCHEMA IF EXISTS {probe.SCHEMA} CASCADE"))
        await connection.execute(text(f"CREATE SCHEMA {probe.SCHEMA}"))
        await connection.run_sync(create_backbone)
        for statement in probe.PROBE_DDL:
            await connection.execute(text(statement))
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(probe_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessions(probe_engine)


@pytest.fixture
async def topic(kafka_bootstrap: str) -> str:
    """A fresh topic with its retry and dead-letter companions, so tests never see each other's messages."""
    name = f"test.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 3, 1) for n in (name, retry_topic(name), dlq_topic(name))])
    finally:
        await admin.close()
    return name


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex


def tracing_env(traced: bool) -> dict[str, str]:
    """Spans go to the test stack's Zipkin when a test wants to look at them, nowhere otherwise."""
    if not traced:
        return {"OTEL_TRACES_EXPORTER": "none"}
    zipkin = os.environ.get("ZIPKIN_URL", "http://127.0.0.1:30411")
    return {
        "OTEL_TRACES_EXPORTER": "zipkin",
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT": f"{zipkin}/api/v2/spans",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


class Processes:
    """Probe processes started by a test; whatever is left running is killed at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str, traced: bool = False) -> subprocess.Popen[str]:
        env = os.environ | {"PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"} | tracing_env(traced)
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.probe", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "ready" in line, f"probe {args[0]} did not start (exit code {process.poll()})"
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def processes() -> Iterator[Processes]:
    running = Processes()
    yield running
    running.stop_all()


async def write_pings(
    sessions: async_sessionmaker[AsyncSession], *, topic: str, run: str, count: int, keys: int = 7, start: int = 0
) -> list[str]:
    """Commit `count` pings through the outbox in one transaction; returns their event ids."""
    ids = []
    async with sessions() as session, session.begin():
        for seq in range(start, start + count):
            envelope = probe.ping(run, seq, key=f"child-{seq % keys}")
            await add_to_outbox(session, envelope, topic=topic)
            ids.append(envelope.id)
    return ids


async def effects(sessions: async_sessionmaker[AsyncSession], run: str) -> list[Any]:
    async with sessions() as session:
        result = await session.execute(
            text("SELECT seq, event_id, trace_id, handled_at FROM effects WHERE run = :run ORDER BY id"), {"run": run}
        )
        return list(result.all())


async def consumer_lag(bootstrap: str, group: str, topic: str) -> int:
    """Messages in `topic` that `group` has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        ends = await consumer.end_offsets(list(consumer.assignment()))
        return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())
    finally:
        await consumer.stop()
        await admin.close()


async def messages_in(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets(list(consumer.assignment()))).values())
    finally:
        await consumer.stop()


async def unsent(sessions: async_sessionmaker[AsyncSession], event_ids: list[str]) -> int:
    async with sessions() as session:
        count = await session.scalar(
            text("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND event_id = ANY(:ids)"), {"ids": event_ids}
        )
        return int(count or 0)


KEY_FILE = str(ROOT / ".local" / "keys" / "dev-issuer.pub.pem")


@pytest.fixture(scope="module")
async def referral_service(kafka_bootstrap: str) -> AsyncIterator[RunningService]:
    from services.referral.app import Settings, create_app

    async with run_service(Settings, create_app, kafka_bootstrap=kafka_bootstrap, key_file=KEY_FILE) as service:
        yield service


@pytest.fixture(scope="module")
async def panel_service(kafka_bootstrap: str) -> AsyncIterator[RunningService]:
    from services.panel.app import Settings, create_app

    async with run_service(
        Settings, create_app, kafka_bootstrap=kafka_bootstrap, key_file=KEY_FILE, timer_lease_seconds=1
    ) as service:
        yield service


@pytest.fixture(scope="module")
async def assignment_service(kafka_bootstrap: str) -> AsyncIterator[RunningService]:
    from services.assignment.app import Settings, create_app

    async with run_service(
        Settings, create_app, kafka_bootstrap=kafka_bootstrap, key_file=KEY_FILE, timer_lease_seconds=1
    ) as service:
        yield service


@pytest.fixture(scope="module")
async def plans_service(kafka_bootstrap: str) -> AsyncIterator[RunningService]:
    from services.plans.app import Settings, create_app

    async with run_service(
        Settings, create_app, kafka_bootstrap=kafka_bootstrap, key_file=KEY_FILE, timer_lease_seconds=1
    ) as service:
        yield service


@pytest.fixture
async def agency(kafka_bootstrap: str) -> AsyncIterator[AgencySystem]:
    """Plays an agency's system on the real broker."""
    async with AgencySystem(kafka_bootstrap) as system:
        yield system


EVERY_OUTCOMES_TOPIC = [outcomes_out(agency) for agency in sorted(AGENCIES)]


@pytest.fixture
async def outcomes(kafka_bootstrap: str) -> AsyncIterator[TopicReader]:
    """What agencies read: outcomes of their referrals (every agency's), from the moment the test starts."""
    async with TopicReader(kafka_bootstrap, *EVERY_OUTCOMES_TOPIC) as reader:
        yield reader
