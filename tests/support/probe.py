"""A probe built only from `shared/`: writes pings through the outbox, relays them, consumes them into effect rows.

Tests run its parts as separate OS processes so they can kill them (SIGKILL) and restart them against the real
broker and database:

    python -m tests.support.probe consume --topic T --group G [--delay-ms 5]
    python -m tests.support.probe relay [--crash-after-publish]

Effects land in `probe.effects`; runs whose pings must fail are listed in `probe.failing`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import make_engine, make_sessions
from shared.events.backbone import ProbePinged
from shared.messaging.broker import make_broker
from shared.messaging.consumer import Consumer, RetryPolicy
from shared.messaging.envelope import Envelope
from shared.messaging.errors import InvalidInput
from shared.messaging.outbox import OutboxRelay
from shared.telemetry import setup_logging, setup_tracing

SCHEMA = "probe"

PROBE_DDL = [
    "CREATE TABLE IF NOT EXISTS effects (id bigserial PRIMARY KEY, run text NOT NULL, seq int NOT NULL, "
    "event_id text NOT NULL, trace_id text NOT NULL, handled_at timestamptz NOT NULL DEFAULT clock_timestamp())",
    "CREATE TABLE IF NOT EXISTS failing (run text PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS rejections (id bigserial PRIMARY KEY, sender text NOT NULL, reason text NOT NULL, "
    "fields text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fired (id bigserial PRIMARY KEY, kind text NOT NULL, key text NOT NULL, "
    "fence bigint NOT NULL)",
]


def database_url() -> str:
    port = os.environ.get("PG_PORT", "26432")
    return f"postgresql+asyncpg://ctp_admin:ctp_admin@127.0.0.1:{port}/childrensteams"


def bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:30092")


def ping(run: str, seq: int, key: str) -> Envelope:
    return Envelope(event=ProbePinged(run=run, seq=seq), source="/services/probe", subject=key)


async def record_effect(session: AsyncSession, envelope: Envelope) -> None:
    event = envelope.event
    assert isinstance(event, ProbePinged)
    failing = await session.scalar(text("SELECT 1 FROM failing WHERE run = :run"), {"run": event.run})
    if failing:
        raise RuntimeError(f"probe run told to fail (seq {event.seq})")
    trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
    await session.execute(
        text("INSERT INTO effects (run, seq, event_id, trace_id) VALUES (:run, :seq, :id, :trace)"),
        {"run": event.run, "seq": event.seq, "id": envelope.id, "trace": trace_id},
    )


async def reject(session: AsyncSession, _topic: str, headers: dict[str, str], error: InvalidInput) -> None:
    """What an ingress consumer does with input it cannot read: tell the sender (here: a row standing for the event;
    the probe's topic names no agency, so the row names the sender's ce_source)."""
    await session.execute(
        text("INSERT INTO rejections (sender, reason, fields) VALUES (:sender, :reason, :fields)"),
        {
            "sender": headers.get("ce_source", "unknown"),
            "reason": error.reason,
            "fields": ",".join(sorted(e["field"] for e in error.errors)),
        },
    )


async def consume(topic: str, group: str, delay_ms: int, retry: RetryPolicy, strict: bool) -> None:
    engine = make_engine(database_url(), SCHEMA)
    consumer = Consumer(name=group, sessions=make_sessions(engine), retry=retry, max_records=50)

    @consumer.handles(ProbePinged)
    async def handle(session: AsyncSession, envelope: Envelope) -> None:
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        await record_effect(session, envelope)

    broker = make_broker(bootstrap(), client_id=group)
    consumer.attach(broker, [topic], reject=reject if strict else None)
    await broker.start()
    print("consumer ready", flush=True)
    await _until_terminated()
    await broker.stop()
    await engine.dispose()


class CrashingRelay(OutboxRelay):
    """Dies by SIGKILL after Kafka acknowledged a batch and before the rows are marked sent."""

    async def _publish(self, rows: Sequence[Any]) -> None:
        await super()._publish(rows)
        os.kill(os.getpid(), signal.SIGKILL)


async def relay(crash_after_publish: bool) -> None:
    engine = make_engine(database_url(), SCHEMA)
    broker = make_broker(bootstrap(), client_id="probe-relay")
    relay_class = CrashingRelay if crash_after_publish else OutboxRelay
    outbox_relay = relay_class(
        service=SCHEMA, sessions=make_sessions(engine), broker=broker, database_url=database_url(), idle_seconds=0.5
    )
    await broker.start()
    task = asyncio.create_task(outbox_relay.run())
    print("relay ready", flush=True)
    await _until_terminated()
    task.cancel()
    await broker.stop()
    await engine.dispose()


async def _until_terminated() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.probe")
    commands = parser.add_subparsers(dest="command", required=True)
    consume_args = commands.add_parser("consume")
    consume_args.add_argument("--topic", required=True)
    consume_args.add_argument("--group", required=True)
    consume_args.add_argument("--delay-ms", type=int, default=0)
    consume_args.add_argument("--attempts", type=int, default=3)
    consume_args.add_argument("--retry-base-seconds", type=float, default=0.5)
    consume_args.add_argument("--strict", action="store_true", help="an ingress topic: reject unreadable input")
    relay_args = commands.add_parser("relay")
    relay_args.add_argument("--crash-after-publish", action="store_true")
    args = parser.parse_args()
    setup_logging(f"probe-{args.command}")
    setup_tracing(f"probe-{args.command}")
    if args.command == "consume":
        retry = RetryPolicy(attempts=args.attempts, base_seconds=args.retry_base_seconds, max_delay_seconds=5)
        asyncio.run(consume(args.topic, args.group, args.delay_ms, retry, args.strict))
    else:
        asyncio.run(relay(args.crash_after_publish))


if __name__ == "__main__":
    main()
