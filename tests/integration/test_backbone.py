"""The event backbone against the real broker and database: outbox → relay → Kafka → inbox, retries, dead letters."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events.backbone import ProbePinged
from shared.messaging.broker import make_broker
from shared.messaging.consumer import (
    H_ATTEMPTS,
    H_CONSUMER,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_FAILED_AT,
    Consumer,
    RetryPolicy,
)
from shared.messaging.deadletters import DeadLetter, read_dead_letters, replay
from shared.messaging.envelope import Envelope
from shared.messaging.topics import dlq_topic
from shared.telemetry import setup_tracing
from tests.conftest import Processes, effects, eventually, tracing_env, write_pings
from tests.support import probe

os.environ.update(tracing_env(traced=True))
provider = setup_tracing("tests")
tracer = trace.get_tracer(__name__)


async def test_event_written_through_the_outbox_is_handled_by_another_process_on_the_same_trace(
    sessions: async_sessionmaker[AsyncSession], processes: Processes, topic: str, run_id: str
) -> None:
    processes.start("consume", "--topic", topic, "--group", f"g-{run_id}", traced=True)
    processes.start("relay", traced=True)

    with tracer.start_as_current_span("referral arrives") as span:
        [event_id] = await write_pings(sessions, topic=topic, run=run_id, count=1)
    journey_trace = format(span.get_span_context().trace_id, "032x")

    [effect] = await eventually(lambda: effects(sessions, run_id))
    assert effect.event_id == event_id
    assert effect.trace_id == journey_trace

    # The same journey in Zipkin: one trace, spans from all three processes, each joined to its parent.
    provider.force_flush()
    spans = await eventually(lambda: _zipkin_trace(journey_trace, {"tests", "probe-relay", "probe-consume"}))
    ids = {s["id"] for s in spans}
    roots = [s for s in spans if "parentId" not in s]
    assert [r["name"] for r in roots] == ["referral arrives"]
    assert all(s["parentId"] in ids for s in spans if s not in roots)
    assert any(s["name"] == f"handle {ProbePinged.ce_type}" for s in spans)


async def _zipkin_trace(trace_id: str, services: set[str]) -> list[dict[str, Any]] | None:
    zipkin = os.environ.get("ZIPKIN_URL", "http://127.0.0.1:30411")
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{zipkin}/api/v2/trace/{trace_id}")
    if response.status_code != 200:
        return None
    spans: list[dict[str, Any]] = response.json()
    seen = {s.get("localEndpoint", {}).get("serviceName") for s in spans}
    return spans if services <= seen else None


async def test_the_same_event_delivered_twice_has_one_effect(
    sessions: async_sessionmaker[AsyncSession], processes: Processes, topic: str, run_id: str, kafka_bootstrap: str
) -> None:
    processes.start("consume", "--topic", topic, "--group", f"g-{run_id}")
    first, again, other = probe.ping(run_id, 0, "child-1"), None, probe.ping(run_id, 1, "child-1")
    again = first  # the very same envelope, as a relay that crashed before marking it sent would send it
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for envelope in (first, again, other):
            headers = [(k, v.encode()) for k, v in envelope.headers().items()]
            await producer.send_and_wait(topic, envelope.body(), key=envelope.key, headers=headers)
    finally:
        await producer.stop()

    handled = await eventually(lambda: _at_least(sessions, run_id, 2))
    assert sorted(e.seq for e in handled) == [0, 1]
    assert [e.event_id for e in handled].count(first.id) == 1


async def test_a_message_that_always_fails_is_dead_lettered_with_its_reason_and_does_not_hold_up_the_partition(
    sessions: async_sessionmaker[AsyncSession],
    processes: Processes,
    topic: str,
    run_id: str,
    kafka_bootstrap: str,
) -> None:
    failing_run = f"{run_id}-bad"
    async with sessions() as session, session.begin():
        await session.execute(text("INSERT INTO failing (run) VALUES (:run)"), {"run": failing_run})
    processes.start("consume", "--topic", topic, "--group", f"g-{run_id}", "--attempts", "3")
    processes.start("relay")

    # The poison ping first, then healthy pings on the same key, so the same partition.
    await write_pings(sessions, topic=topic, run=failing_run, count=1, keys=1)
    await write_pings(sessions, topic=topic, run=run_id, count=20, keys=1, start=1)

    letters = await eventually(lambda: read_dead_letters(kafka_bootstrap, dlq_topic(topic)))
    [letter] = letters
    assert letter.headers[H_ATTEMPTS] == "3"
    assert letter.headers[H_CONSUMER] == f"g-{run_id}"
    assert letter.headers[H_ERROR_TYPE] == "RuntimeError"
    assert "told to fail" in letter.headers[H_ERROR_MESSAGE]

    healthy = await eventually(lambda: _at_least(sessions, run_id, 20))
    # Every later ping on the partition was handled before the poison one was given up on.
    given_up_at_ms = int(letter.headers[H_FAILED_AT])
    assert max(e.handled_at.timestamp() * 1000 for e in healthy) < given_up_at_ms

    # An operator fixes the cause and replays the dead letter: it is handled once.
    async with sessions() as session, session.begin():
        await session.execute(text("DELETE FROM failing WHERE run = :run"), {"run": failing_run})
    assert await replay(kafka_bootstrap, letters) == 1
    [recovered] = await eventually(lambda: effects(sessions, failing_run))
    assert recovered.seq == 0


async def _at_least(sessions: async_sessionmaker[AsyncSession], run: str, count: int) -> list[object] | None:
    found = await effects(sessions, run)
    return found if len(found) >= count else None


async def test_unreadable_input_on_an_ingress_topic_is_rejected_to_its_sender_and_dead_lettered_once(
    sessions: async_sessionmaker[AsyncSession], processes: Processes, topic: str, run_id: str, kafka_bootstrap: str
) -> None:
    processes.start("consume", "--topic", topic, "--group", f"g-{run_id}", "--strict")
    good = probe.ping(run_id, 1, "agency-ref-1")
    wrong_body = good.headers() | {"ce_id": "wrong-body", "ce_source": "/agencies/health-nz"}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"\x00 not json at all", key=b"agency-ref-1")
        await producer.send_and_wait(
            topic, b'{"run": "x"}', key=b"agency-ref-1", headers=[(k, v.encode()) for k, v in wrong_body.items()]
        )
        await producer.send_and_wait(
            topic, good.body(), key=good.key, headers=[(k, v.encode()) for k, v in good.headers().items()]
        )
    finally:
        await producer.stop()

    # Bounds only: a fresh consumer group may rebalance a few times before it reads (retry topic joins late).
    await eventually(lambda: effects(sessions, run_id), within=180)  # the valid message behind them is handled
    letters = await eventually(lambda: _at_least_letters(kafka_bootstrap, dlq_topic(topic), 2), within=180)
    assert [letter.headers[H_ERROR_TYPE] for letter in letters] == ["EnvelopeError", "EnvelopeError"]
    assert "missing CloudEvents headers" in letters[0].headers[H_ERROR_MESSAGE]
    assert "seq: Field required" in letters[1].headers[H_ERROR_MESSAGE]
    assert {letter.headers[H_ATTEMPTS] for letter in letters} == {"1"}  # not retried: retrying cannot help

    async with sessions() as session:
        rejections = (await session.execute(text("SELECT sender, reason, fields FROM rejections ORDER BY id"))).all()
    assert [tuple(r) for r in rejections][-2:] == [
        ("unknown", "missing CloudEvents headers: ce_specversion, ce_id, ce_source, ce_type, ce_subject", ""),
        ("/agencies/health-nz", "body does not match nz.childrensteams.backbone.probe_pinged.v1", "seq"),
    ]


async def _at_least_letters(bootstrap: str, topic: str, count: int) -> list[DeadLetter] | None:
    found = await read_dead_letters(bootstrap, topic)
    return found if len(found) >= count else None


async def test_lag_counts_what_a_consumer_group_has_not_yet_committed_and_falls_to_zero_once_it_has(
    sessions: async_sessionmaker[AsyncSession], topic: str, run_id: str, kafka_bootstrap: str
) -> None:
    group = f"lag-{run_id}"
    release = asyncio.Event()
    consumer = Consumer(name=group, sessions=sessions, retry=RetryPolicy(attempts=2, base_seconds=0.1), max_records=10)

    @consumer.handles(ProbePinged)
    async def handle(session: AsyncSession, envelope: Envelope) -> None:
        await release.wait()  # the first batch is held: nothing is committed yet
        await probe.record_effect(session, envelope)

    def lag() -> float | None:
        return REGISTRY.get_sample_value("ctp_consumer_lag_messages", {"consumer": group, "topic": topic})

    async def measured(wanted: float) -> bool:
        await consumer.measure_lag()
        return lag() == wanted

    broker = make_broker(kafka_bootstrap, client_id=group)
    consumer.attach(broker, [topic])
    await broker.start()
    try:
        # Sent once the group is settled: a held batch cannot rejoin a rebalance, which would stall until it returns.
        await eventually(lambda: _settled(consumer), within=120)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for seq in range(30):
                envelope = probe.ping(run_id, seq, f"child-{seq}")
                headers = [(k, v.encode()) for k, v in envelope.headers().items()]
                await producer.send_and_wait(topic, envelope.body(), key=envelope.key, headers=headers)
        finally:
            await producer.stop()

        # Measured once a second, as a scrape would (each measurement asks Kafka for offsets).
        await eventually(lambda: measured(30), within=120, every=1)
        release.set()
        await eventually(lambda: measured(0), within=120, every=1)
    finally:
        await broker.stop()
    assert len(await effects(sessions, run_id)) == 30


async def _settled(consumer: Consumer) -> bool:
    return consumer.holds_partitions()
