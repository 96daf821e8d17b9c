"""What one hop through the platform costs, compared with raw Kafka on the same broker.

    python -m bench.hop [--rate 200] [--seconds 15] [--raw-seconds 10] [--flat-events 20000] [--profile] [--bare]

One run measures, on fresh `bench.*` topics and a fresh `bench` schema:

1. Raw baseline: an aiokafka producer (acks=all, idempotent, linger 1 ms, as `make_broker` sets it) and a consumer
   in a group, in this process. Throughput flat out, then per-message latency at a steady rate
   (receive time - send time, both `time.monotonic()`).
2. Platform hop, the way services run it: a state row and an outbox row committed in one transaction per event
   (`add_to_outbox`), the shared `OutboxRelay` as a task of this process (a service runs its relay beside its
   request handlers), Kafka, and the shared `Consumer` in a separate process (the downstream service), whose
   handler writes an effect row in the inbox's transaction. Latency runs from just before the producing
   transaction begins to just after the consumer's transaction commits: the writer stamps `time.monotonic()`
   before `begin`, the consumer process stamps it in SQLAlchemy's `after_commit` hook and reports it on stdout.
   CLOCK_MONOTONIC is system-wide on Linux, so stamps from both processes compare. First at a steady rate,
   then flat out: events pre-written into the outbox with the relay stopped, then released at once.

It prints both, the ratios and the goals (hop p99 <= 5x raw p99; >= 1,000 events/s through one consumer), and
writes every figure to bench/results/hop.json. To show where time goes, latency is also split into stages (write,
relay pick-up, publish, transit, consumer batch), and CPU is read from /proc for each process during each phase
(CPU per event; how busy the machine was, including with other people's work); `--profile` adds cProfile of the
writer/relay and consumer processes (bench/results/*.prof).

Both processes set up telemetry as a service does (OpenTelemetry SDK, SQLAlchemy instrumentation; the exporter is
OTEL_TRACES_EXPORTER, `none` unless set); `--bare` leaves it out to show what it costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import math
import os
import platform
import pstats
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction

from shared.db import make_engine, make_sessions
from shared.events.backbone import ProbePinged
from shared.messaging.broker import make_broker
from shared.messaging.consumer import Consumer
from shared.messaging.envelope import H_ID, Envelope
from shared.messaging.outbox import OutboxRelay, add_to_outbox
from shared.messaging.topics import dlq_topic, retry_topic
from shared.migrations import create_backbone
from shared.settings import ServiceSettings
from shared.telemetry import setup_tracing

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SCHEMA = "bench"
PARTITIONS = 6  # as the services' event topics
KEYS = 1000  # distinct subjects (children): spread over every partition and outbox bucket
TOPIC_RETENTION_MS = 60 * 60 * 1000  # topics are deleted at the end; this bounds what a crashed run leaves
GOAL_P99_RATIO = 5.0
GOAL_EVENTS_PER_S = 1000.0
WARMUP_EVENTS = 50
WAIT_SECONDS = 60.0  # longest wait for a phase to drain before the run gives up on it
RUN_LIMIT_SECONDS = 300.0

BENCH_DDL = [
    "CREATE TABLE pings (run text NOT NULL, seq int NOT NULL, event_id text NOT NULL, "
    "written_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (run, seq))",
    "CREATE TABLE effects (run text NOT NULL, seq int NOT NULL, event_id text NOT NULL, "
    "handled_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (run, seq))",
]

EventKey = tuple[str, int]  # (run, seq): which phase an event belongs to, and its number in it


@dataclass(frozen=True)
class Stack:
    bootstrap: str
    database_url: str

    @classmethod
    def from_env(cls) -> Stack:
        """The stack `deploy/local/stack.sh env` describes; the test stack's ports if nothing is exported."""
        port = os.environ.get("PG_PORT", "26432")
        return cls(
            bootstrap=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:30092"),
            database_url=f"postgresql+asyncpg://ctp_admin:ctp_admin@127.0.0.1:{port}/childrensteams",
        )


def ping(run: str, seq: int) -> Envelope:
    return Envelope(event=ProbePinged(run=run, seq=seq), source="/services/bench", subject=f"child-{seq % KEYS}")


def setup_telemetry(service: str, engine: AsyncEngine | None, bare: bool) -> None:
    """What `create_service` does to every service process, unless --bare."""
    if bare:
        return
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
    setup_tracing(service)
    if engine is not None:
        SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine)


# ------------------------------------------------------------------------------------------------ statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of `values` (which need not be sorted)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    if not seconds:
        return {"count": 0}
    ms = [s * 1000 for s in seconds]
    return {
        "count": len(ms),
        "p50": round(percentile(ms, 50), 2),
        "p90": round(percentile(ms, 90), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2),
        "mean": round(sum(ms) / len(ms), 2),
    }


async def all_read(read: Container[str], ids: Iterable[str], arrived: asyncio.Event, within: float) -> bool:
    """Wait until every id is in `read` (a reader sets `arrived` after each batch); False if `within` s pass first."""
    wanted = list(ids)
    deadline = time.monotonic() + within
    while not all(i in read for i in wanted):
        arrived.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), min(remaining, 1.0))
    return True


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


async def paced(count: int, per_second: float) -> AsyncIterator[int]:
    """Yield 0..count-1 at a steady rate; when late, catch up at once rather than shift the schedule."""
    start = time.monotonic()
    for seq in range(count):
        delay = start + seq / per_second - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield seq


class CpuMeter:
    """Cores kept busy from creation to `stop()`: this process, the consumer, PostgreSQL, Java, others, the machine.

    Read from /proc. PostgreSQL is every `postgres` process and Java every `java` one (Kafka, and Zipkin which
    idles), whichever stack they belong to.
    """

    def __init__(self, this_process: str, consumer_pid: int | None = None) -> None:
        self.this_process = this_process
        self.consumer_pid = consumer_pid
        self.started = time.monotonic()
        self.machine = self._machine_ticks()
        self.processes = self._process_ticks()

    @staticmethod
    def _machine_ticks() -> int:
        with contextlib.suppress(OSError):
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            idle = fields[3] + fields[4]  # idle, iowait
            return sum(fields[:8]) - idle
        return 0

    @staticmethod
    def _process_ticks() -> dict[int, tuple[str, int]]:
        ticks = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                raw = stat.read_text()
                name = raw[raw.index("(") + 1 : raw.rindex(")")]
                fields = raw[raw.rindex(")") + 2 :].split()
                ticks[int(stat.parent.name)] = (name, int(fields[11]) + int(fields[12]))  # utime + stime
        return ticks

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.started
        per_second = os.sysconf("SC_CLK_TCK") * elapsed
        used: dict[str, float] = defaultdict(float)
        for pid, (name, ticks) in self._process_ticks().items():
            before = self.processes.get(pid, (name, 0))[1]
            if pid == os.getpid():
                group = self.this_process
            elif pid == self.consumer_pid:
                group = "consumer_process"
            elif name in ("postgres", "java"):
                group = name
            else:
                continue
            used[group] += (ticks - before) / per_second
        machine = (self._machine_ticks() - self.machine) / per_second
        # Whatever else ran meanwhile (other stacks, tests, builds): a busy machine makes the tail latencies worse.
        used["others"] = max(0.0, machine - sum(used.values()))
        used["machine"] = machine
        return {group: round(cores, 2) for group, cores in sorted(used.items())}


def cpu_ms_per_event(cores_busy: dict[str, float], per_second: float) -> dict[str, float]:
    """CPU milliseconds each part spent per event, from cores busy at a steady rate of events."""
    parts = {name: cores for name, cores in cores_busy.items() if name not in ("machine", "others")}
    return {name: round(1000 * cores / per_second, 2) for name, cores in parts.items()}


# ------------------------------------------------------------------------------------------------ topics


async def create_topics(bootstrap: str, names: Iterable[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"retention.ms": str(TOPIC_RETENTION_MS)}
        await admin.create_topics([NewTopic(name, PARTITIONS, 1, topic_configs=config) for name in names])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    """Best effort: a topic left behind expires with its short retention."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        await admin.delete_topics(list(names))
    except Exception as error:
        print(f"could not delete the bench topics ({type(error).__name__}); they expire in an hour", flush=True)
    finally:
        await admin.close()


# ------------------------------------------------------------------------------------------------ 1. raw baseline


class RawPair:
    """A raw aiokafka producer and group consumer on one topic; `received` maps message id to receive time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1, request_timeout_ms=30_000
        )
        self.consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=f"{topic}.group", auto_offset_reset="earliest"
        )
        self.sent: dict[str, float] = {}
        self.received: dict[str, float] = {}
        self.counts: dict[str, int] = defaultdict(int)
        self._arrived = asyncio.Event()
        # Same headers and body size as a platform event, so both carry the same bytes.
        template = ping("raw", 0)
        self._headers = [(name, value.encode()) for name, value in template.headers().items()]
        self._body = template.body()

    async def __aenter__(self) -> RawPair:
        await self.producer.start()
        await self.consumer.start()
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.consumer.stop()
        await self.producer.stop()

    async def _read(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=200, max_records=200)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    message_id = next(value for name, value in record.headers if name == "bench_id").decode()
                    self.received[message_id] = now
                    self.counts[message_id.split(":")[0]] += 1
            if batches:
                self._arrived.set()

    async def send(self, run: str, seq: int) -> asyncio.Future[Any]:
        """Hand one message to the producer; returns the future of its acknowledgement."""
        message_id = f"{run}:{seq}"
        self.sent[message_id] = time.monotonic()
        future: asyncio.Future[Any] = await self.producer.send(
            self.topic,
            self._body,
            key=f"child-{seq % KEYS}".encode(),
            headers=[*self._headers, ("bench_id", message_id.encode())],
        )
        return future

    async def wait_received(self, run: str, count: int) -> bool:
        deadline = time.monotonic() + WAIT_SECONDS
        while self.counts[run] < count:
            self._arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return True

    def latencies(self, run: str) -> list[float]:
        prefix = f"{run}:"
        return [self.received[i] - t for i, t in self.sent.items() if i.startswith(prefix) and i in self.received]


async def measure_raw(bootstrap: str, topic: str, *, per_second: float, seconds: float, flat: int) -> dict[str, Any]:
    async with RawPair(bootstrap, topic) as pair:
        await asyncio.gather(*[await pair.send("warmup", i) for i in range(WARMUP_EVENTS)])
        if not await pair.wait_received("warmup", WARMUP_EVENTS):
            raise RuntimeError("raw consumer received nothing: is the broker up?")

        started = time.monotonic()
        acks = [await pair.send("flat", i) for i in range(flat)]
        await asyncio.gather(*acks)
        acked = time.monotonic()
        complete = await pair.wait_received("flat", flat)
        received = [pair.received[f"flat:{i}"] for i in range(flat) if f"flat:{i}" in pair.received]
        throughput = {
            "events": flat,
            "complete": complete,
            "produce_per_s": rate(flat, acked - started),
            "end_to_end_per_s": rate(len(received), max(received) - started),
        }
        print(f"  raw flat out: {throughput['end_to_end_per_s']:,.0f} msg/s", flush=True)

        steady = int(per_second * seconds)
        cpu = CpuMeter("raw_process")
        acks = []
        async for seq in paced(steady, per_second):
            acks.append(await pair.send("steady", seq))
        await asyncio.gather(*acks)
        await pair.wait_received("steady", steady)
        cores_busy = cpu.stop()
        latency = latency_ms(pair.latencies("steady"))
        print(f"  raw at {per_second:.0f}/s: p50 {latency['p50']} ms, p99 {latency['p99']} ms", flush=True)
    return {
        "throughput": throughput,
        "steady": {
            "rate_per_s": per_second,
            "seconds": seconds,
            "latency_ms": latency,
            "cores_busy": cores_busy,
            "cpu_ms_per_event": cpu_ms_per_event(cores_busy, per_second),
        },
    }


# ------------------------------------------------------------------------------------------------ 2. consumer process


class StampedSession(Session):
    """A session that reports on stdout, right after its transaction commits, which bench events it made effective."""


@event.listens_for(StampedSession, "after_begin")
def _batch_began(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    session.info.setdefault("began", time.monotonic())


@event.listens_for(StampedSession, "after_commit")
def _batch_committed(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released; the effects are not durable yet
    handled = session.info.pop("handled", None)
    if handled:
        report = {"began": session.info.pop("began"), "committed": time.monotonic(), "events": handled}
        print(json.dumps(report), flush=True)


async def consume(stack: Stack, topic: str, group: str, bare: bool) -> None:
    """The downstream service: the shared Consumer with the services' settings; runs until SIGTERM."""
    settings = ServiceSettings(service=SCHEMA)
    engine = make_engine(stack.database_url, SCHEMA, pool_size=settings.database_pool_size)
    setup_telemetry(f"{SCHEMA}-consumer", engine, bare)
    # As shared.db.make_sessions, plus the commit stamp.
    sessions = async_sessionmaker(engine, expire_on_commit=False, sync_session_class=StampedSession)
    consumer = Consumer(name=group, sessions=sessions, max_records=settings.consumer_max_records)

    @consumer.handles(ProbePinged)
    async def record_effect(session: AsyncSession, envelope: Envelope) -> None:
        event = envelope.event
        assert isinstance(event, ProbePinged)
        await session.execute(
            text("INSERT INTO effects (run, seq, event_id) VALUES (:run, :seq, :id)"),
            {"run": event.run, "seq": event.seq, "id": envelope.id},
        )
        session.info.setdefault("handled", []).append([event.run, event.seq])

    broker = make_broker(stack.bootstrap, client_id=group)
    consumer.attach(broker, [topic])
    await broker.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await broker.stop()
    await engine.dispose()


@dataclass(frozen=True)
class Batch:
    """One transaction of the consumer: when it began (first statement) and committed, and how many events."""

    began: float
    committed: float
    size: int


@dataclass
class ConsumerProcess:
    """The consumer process seen from here: when each event's effect committed, and its batches."""

    process: asyncio.subprocess.Process
    began: dict[EventKey, float] = field(default_factory=dict)
    committed: dict[EventKey, float] = field(default_factory=dict)
    batches: list[Batch] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, topic: str, group: str, *, profile: Path | None, bare: bool) -> ConsumerProcess:
        args = ["-m", "bench.hop", "consume", "--topic", topic, "--group", group]
        if profile:
            args += ["--profile-to", str(profile)]
        if bare:
            args.append("--bare")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=ROOT,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if line.strip() != b"ready":
            raise RuntimeError(f"consumer process did not start (exit code {process.returncode})")
        consumer = cls(process)
        consumer._reader = asyncio.create_task(consumer._read())
        return consumer

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            report = json.loads(line)
            self.batches.append(Batch(report["began"], report["committed"], len(report["events"])))
            for run, seq in report["events"]:
                self.began[(run, seq)] = report["began"]
                self.committed[(run, seq)] = report["committed"]
                self.counts[run] += 1
            self._changed.set()

    async def wait_for(self, run: str, count: int, within: float = WAIT_SECONDS) -> bool:
        """Wait until `count` effects of `run` committed; False if they did not within `within` seconds."""
        deadline = time.monotonic() + within
        while self.counts[run] < count:
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.returncode is not None:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
        return True

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            await self._reader  # ends at end of output


# ------------------------------------------------------------------------------------------------ 2. producing side


class TimedRelay(OutboxRelay):
    """The shared relay, noting when each event's publish began and when Kafka acknowledged it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.publish_began: dict[str, float] = {}
        self.acked: dict[str, float] = {}
        self.batch_sizes: list[int] = []

    async def _publish(self, rows: Sequence[Any]) -> None:
        began = time.monotonic()
        await super()._publish(rows)
        acked = time.monotonic()
        self.batch_sizes.append(len(rows))
        for row in rows:
            self.publish_began[row.headers[H_ID]] = began
            self.acked[row.headers[H_ID]] = acked


@dataclass
class Writer:
    """Writes events as a service handling requests does: a state row and an outbox row in one transaction."""

    sessions: async_sessionmaker[AsyncSession]
    topic: str
    began: dict[EventKey, float] = field(default_factory=dict)
    written: dict[EventKey, float] = field(default_factory=dict)
    event_ids: dict[EventKey, str] = field(default_factory=dict)

    async def write(self, run: str, seqs: Sequence[int]) -> None:
        """Commit the events `seqs` of `run` in one transaction."""
        envelopes = [ping(run, seq) for seq in seqs]
        began = time.monotonic()
        async with self.sessions() as session, session.begin():
            for envelope in envelopes:
                event = envelope.event
                assert isinstance(event, ProbePinged)
                await session.execute(
                    text("INSERT INTO pings (run, seq, event_id) VALUES (:run, :seq, :id)"),
                    {"run": run, "seq": event.seq, "id": envelope.id},
                )
                await add_to_outbox(session, envelope, topic=self.topic)
        written = time.monotonic()
        for seq, envelope in zip(seqs, envelopes, strict=True):
            self.began[(run, seq)] = began
            self.written[(run, seq)] = written
            self.event_ids[(run, seq)] = envelope.id

    async def steady(self, run: str, count: int, per_second: float) -> None:
        """One transaction per event at a steady rate, each on its own task as concurrent requests would be."""
        tasks = []
        async for seq in paced(count, per_second):
            tasks.append(asyncio.create_task(self.write(run, [seq])))
        await asyncio.gather(*tasks)

    async def backlog(self, run: str, count: int, *, per_transaction: int = 200, concurrency: int = 4) -> None:
        """Fill the outbox quickly (the relay is stopped): only the release that follows is measured."""
        chunks = [list(range(i, min(i + per_transaction, count))) for i in range(0, count, per_transaction)]
        for i in range(0, len(chunks), concurrency):
            await asyncio.gather(*[self.write(run, chunk) for chunk in chunks[i : i + concurrency]])


@contextlib.asynccontextmanager
async def relaying(relay: OutboxRelay) -> AsyncIterator[None]:
    task = asyncio.create_task(relay.run(), name="bench-relay")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def prepare_schema(engine: AsyncEngine) -> None:
    """A fresh `bench` schema with the backbone tables, as a service's first migration makes them, plus ours."""
    async with engine.begin() as connection:
        await connection.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await connection.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        await connection.run_sync(create_backbone)
        for statement in BENCH_DDL:
            await connection.execute(text(statement))


def stage_breakdown(
    keys: Sequence[EventKey], writer: Writer, relay: TimedRelay, consumer: ConsumerProcess
) -> dict[str, dict[str, float]]:
    """Where each event's latency went, stage by stage (ms percentiles over the events)."""
    stages: dict[str, list[float]] = defaultdict(list)
    for key in keys:
        event_id = writer.event_ids[key]
        if key not in consumer.committed or event_id not in relay.acked:
            continue
        stages["1 write transaction"].append(writer.written[key] - writer.began[key])
        stages["2 commit -> relay publishes"].append(relay.publish_began[event_id] - writer.written[key])
        stages["3 relay publish -> Kafka ack"].append(relay.acked[event_id] - relay.publish_began[event_id])
        stages["4 relay publish -> consumer batch begins"].append(consumer.began[key] - relay.publish_began[event_id])
        stages["5 consumer batch begins -> commits"].append(consumer.committed[key] - consumer.began[key])
    return {name: latency_ms(values) for name, values in sorted(stages.items())}


@dataclass
class Hop:
    """The pieces of one platform hop under measurement."""

    writer: Writer
    relay: TimedRelay
    consumer: ConsumerProcess


async def measure_hop(
    stack: Stack, topic: str, *, per_second: float, seconds: float, flat: int, profile: bool, bare: bool
) -> dict[str, Any]:
    settings = ServiceSettings(service=SCHEMA)
    engine = make_engine(stack.database_url, SCHEMA, pool_size=settings.database_pool_size)
    await prepare_schema(engine)
    setup_telemetry(f"{SCHEMA}-relay", engine, bare)
    sessions = make_sessions(engine)
    relay = TimedRelay(
        service=SCHEMA,
        sessions=sessions,
        broker=make_broker(stack.bootstrap, client_id=f"{SCHEMA}-relay"),
        database_url=stack.database_url,
        batch_size=settings.relay_batch_size,
        idle_seconds=settings.relay_idle_seconds,
    )
    consumer = await ConsumerProcess.start(
        topic, f"{topic}.consumer", profile=RESULTS / "hop-consumer.prof" if profile else None, bare=bare
    )
    hop = Hop(Writer(sessions, topic), relay, consumer)
    profiler = cProfile.Profile() if profile else None
    try:
        await relay.broker.start()
        if profiler:
            profiler.enable()
        steady = await hop_steady(hop, per_second=per_second, seconds=seconds)
        throughput = await hop_flat_out(hop, flat)
        if profiler:
            profiler.disable()
            profiler.dump_stats(RESULTS / "hop-relay.prof")
    finally:
        await consumer.stop()
        await relay.broker.stop()
        await engine.dispose()
    return {"steady": steady, "throughput": throughput}


async def hop_steady(hop: Hop, *, per_second: float, seconds: float) -> dict[str, Any]:
    """Events at a steady rate, one transaction each, with the relay running: latency per event."""
    count = int(per_second * seconds)
    async with relaying(hop.relay):
        # Warm up: the consumer's partitions assigned, connections opened, statements prepared.
        await hop.writer.steady("warmup", WARMUP_EVENTS, per_second=50)
        if not await hop.consumer.wait_for("warmup", WARMUP_EVENTS):
            raise RuntimeError("the consumer process handled nothing: see its errors above")
        hop.relay.batch_sizes.clear()
        cpu = CpuMeter("writer_relay_process", hop.consumer.process.pid)
        await hop.writer.steady("steady", count, per_second)
        complete = await hop.consumer.wait_for("steady", count)
        cores_busy = cpu.stop()
    keys = [("steady", seq) for seq in range(count)]
    committed = hop.consumer.committed
    latency = latency_ms([committed[k] - hop.writer.began[k] for k in keys if k in committed])
    print(f"  hop at {per_second:.0f}/s: p50 {latency.get('p50')} ms, p99 {latency.get('p99')} ms", flush=True)
    return {
        "rate_per_s": per_second,
        "seconds": seconds,
        "complete": complete,
        "latency_ms": latency,
        "stages_ms": stage_breakdown(keys, hop.writer, hop.relay, hop.consumer),
        "relay_batch_mean": round(sum(hop.relay.batch_sizes) / max(1, len(hop.relay.batch_sizes)), 1),
        "cores_busy": cores_busy,
        "cpu_ms_per_event": cpu_ms_per_event(cores_busy, per_second),
    }


async def hop_flat_out(hop: Hop, count: int) -> dict[str, Any]:
    """A backlog written into the outbox with the relay stopped, then released: events/s through one consumer."""
    started = time.monotonic()
    await hop.writer.backlog("flat", count)
    print(f"  {count:,} events written to the outbox in {time.monotonic() - started:.1f} s; releasing", flush=True)
    hop.relay.batch_sizes.clear()
    batches_before = len(hop.consumer.batches)
    released = time.monotonic()
    cpu = CpuMeter("writer_relay_process", hop.consumer.process.pid)
    async with relaying(hop.relay):
        complete = await hop.consumer.wait_for("flat", count)
    cores_busy = cpu.stop()

    keys = [("flat", seq) for seq in range(count)]
    acked = [hop.relay.acked[i] for i in (hop.writer.event_ids[k] for k in keys) if i in hop.relay.acked]
    committed = [hop.consumer.committed[k] for k in keys if k in hop.consumer.committed]
    began = [hop.consumer.began[k] for k in keys if k in hop.consumer.began]
    batches = hop.consumer.batches[batches_before:]
    consuming = max(committed, default=0) - min(began, default=0)
    in_transactions = sum(b.committed - b.began for b in batches)
    throughput = {
        "events": count,
        "complete": complete,
        "end_to_end_per_s": rate(len(committed), max(committed, default=released) - released),
        "relay_per_s": rate(len(acked), max(acked, default=released) - released),
        "consumer_per_s": rate(len(committed), consuming),
        "relay_batch_mean": round(sum(hop.relay.batch_sizes) / max(1, len(hop.relay.batch_sizes)), 1),
        "consumer_batch_mean": round(sum(b.size for b in batches) / max(1, len(batches)), 1),
        # Of the consumer's time, how much its database transactions took (the rest: fetch, offsets, framework).
        "consumer_transaction_share": round(in_transactions / consuming, 3) if consuming > 0 else 0.0,
        "consumer_transaction_ms_per_event": round(1000 * in_transactions / max(1, len(committed)), 3),
        "cores_busy": cores_busy,
    }
    print(f"  hop flat out: {throughput['end_to_end_per_s']:,.0f} events/s", flush=True)
    return throughput


# ------------------------------------------------------------------------------------------------ report


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {name: metadata.version(name) for name in ("aiokafka", "faststream", "sqlalchemy", "asyncpg")}
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(ROOT)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        if subprocess.run([*git, "status", "--porcelain", "shared"], capture_output=True, text=True).stdout:
            commit += " (shared/ modified)"
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "packages": versions,
        "commit": commit,
    }


def judge(raw: dict[str, Any], hop: dict[str, Any]) -> dict[str, Any]:
    raw_p99 = raw["steady"]["latency_ms"]["p99"]
    hop_p99 = hop["steady"]["latency_ms"]["p99"]
    hop_rate = hop["throughput"]["end_to_end_per_s"]
    raw_rate = raw["throughput"]["end_to_end_per_s"]
    return {
        "ratios": {
            "hop_p99_over_raw_p99": round(hop_p99 / raw_p99, 2),
            "hop_p50_over_raw_p50": round(hop["steady"]["latency_ms"]["p50"] / raw["steady"]["latency_ms"]["p50"], 2),
            "hop_throughput_over_raw": round(hop_rate / raw_rate, 3),
        },
        "goals": {
            "hop_p99_within_5x_raw": {
                "target": f"<= {GOAL_P99_RATIO:g} x raw p99 = {GOAL_P99_RATIO * raw_p99:.1f} ms",
                "value": hop_p99,
                "pass": hop_p99 <= GOAL_P99_RATIO * raw_p99,
            },
            "one_consumer_events_per_s": {
                "target": f">= {GOAL_EVENTS_PER_S:,.0f} events/s",
                "value": hop_rate,
                "pass": hop_rate >= GOAL_EVENTS_PER_S and hop["throughput"]["complete"],
            },
        },
    }


def print_report(results: dict[str, Any]) -> None:
    raw, hop = results["raw"], results["hop"]

    def line(label: str, latency: dict[str, float]) -> str:
        return f"{label:<44} p50 {latency['p50']:>8.2f}  p99 {latency['p99']:>8.2f}  max {latency['max']:>8.2f} ms"

    print()
    print(f"Latency at {raw['steady']['rate_per_s']:.0f}/s")
    print(line("  raw aiokafka produce -> consume", raw["steady"]["latency_ms"]))
    print(line("  platform hop (tx begin -> effect commit)", hop["steady"]["latency_ms"]))
    for stage, latency in hop["steady"]["stages_ms"].items():
        print(line(f"    {stage}", latency))
    print("CPU per event at that rate (ms)")
    for label, part in (("raw", raw), ("hop", hop)):
        spent = part["steady"]["cpu_ms_per_event"]
        parts = ", ".join(f"{name} {ms}" for name, ms in spent.items())
        busy = part["steady"]["cores_busy"]
        machine = f"machine {busy['machine']} cores busy, others {busy['others']}"
        print(f"  {label}: {sum(spent.values()):.2f} = {parts}  ({machine})")
    print("Throughput flat out")
    print(f"  raw aiokafka                         {raw['throughput']['end_to_end_per_s']:>10,.0f} msg/s")
    flat = hop["throughput"]
    print(f"  platform hop, one consumer instance  {flat['end_to_end_per_s']:>10,.0f} events/s")
    print(f"    relay alone (release -> last ack)  {flat['relay_per_s']:>10,.0f} events/s")
    print(f"    consumer (first batch -> last)     {flat['consumer_per_s']:>10,.0f} events/s")
    print(f"    mean batch: relay {flat['relay_batch_mean']}, consumer {flat['consumer_batch_mean']}")
    print(
        f"    consumer: {flat['consumer_transaction_share']:.0%} of its time in database transactions, "
        f"{flat['consumer_transaction_ms_per_event']} ms per event"
    )
    print("    cores busy: " + ", ".join(f"{name} {cores}" for name, cores in flat["cores_busy"].items()))
    ratios = results["ratios"]
    print("Ratios")
    print(
        f"  hop p99 / raw p99 = {ratios['hop_p99_over_raw_p99']}   hop p50 / raw p50 = {ratios['hop_p50_over_raw_p50']}"
    )
    print(f"  hop throughput / raw throughput = {ratios['hop_throughput_over_raw']}")
    print("Goals")
    for name, goal in results["goals"].items():
        verdict = "PASS" if goal["pass"] else "MISS"
        print(f"  {verdict}  {name}: {goal['value']} (target {goal['target']})")


def print_profile(path: Path, title: str, top: int = 25) -> None:
    if not path.exists():
        return
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    print(f"\n=== cProfile, {title} (by own time) -> {path.relative_to(ROOT)}")
    print("\n".join(out.getvalue().splitlines()[: top + 12]))


# ------------------------------------------------------------------------------------------------ main


async def bench(options: argparse.Namespace) -> dict[str, Any]:
    stack = Stack.from_env()
    run_id = uuid.uuid4().hex[:8]
    raw_topic, hop_topic = f"bench.raw.{run_id}", f"bench.hop.{run_id}"
    topics = [raw_topic, hop_topic, retry_topic(hop_topic), dlq_topic(hop_topic)]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"bench.hop on Kafka {stack.bootstrap}, topics bench.*.{run_id}, schema {SCHEMA}; load {load}", flush=True)
    started = time.monotonic()
    await create_topics(stack.bootstrap, topics)
    try:
        # A broker or database that goes away makes the clients retry for ever: bound the whole run instead.
        async with asyncio.timeout(RUN_LIMIT_SECONDS):
            raw = await measure_raw(
                stack.bootstrap,
                raw_topic,
                per_second=options.rate,
                seconds=options.raw_seconds,
                flat=options.flat_events,
            )
            hop = await measure_hop(
                stack,
                hop_topic,
                per_second=options.rate,
                seconds=options.seconds,
                flat=options.flat_events,
                profile=options.profile,
                bare=options.bare,
            )
    finally:
        await delete_topics(stack.bootstrap, topics)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "stack": {"kafka": stack.bootstrap, "postgres_port": os.environ.get("PG_PORT", "26432")},
        "settings": {
            "partitions": PARTITIONS,
            "keys": KEYS,
            "telemetry": "off (--bare)" if options.bare else os.environ.get("OTEL_TRACES_EXPORTER", "none"),
            **ServiceSettings(service=SCHEMA).model_dump(
                include={"relay_batch_size", "relay_idle_seconds", "consumer_max_records", "database_pool_size"}
            ),
        },
        "raw": raw,
        "hop": hop,
        **judge(raw, hop),
        "duration_s": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hop", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    consume_args = commands.add_parser("consume", help="(internal) the consumer process")
    consume_args.add_argument("--topic", required=True)
    consume_args.add_argument("--group", required=True)
    consume_args.add_argument("--profile-to", type=Path)
    consume_args.add_argument("--bare", action="store_true")
    parser.add_argument("--rate", type=float, default=200, help="steady rate, events/s (200)")
    parser.add_argument("--seconds", type=float, default=15, help="steady phase of the hop, seconds (15)")
    parser.add_argument("--raw-seconds", type=float, default=10, help="steady phase of the raw baseline (10)")
    parser.add_argument("--flat-events", type=int, default=20_000, help="events in the flat-out phases (20000)")
    parser.add_argument("--profile", action="store_true", help="cProfile the relay and the consumer process")
    parser.add_argument("--bare", action="store_true", help="without the OpenTelemetry set-up services have")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # Retries right after the topics are created (leaders not elected yet) and rebalances are expected here.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)

    if options.command == "consume":
        profiler = cProfile.Profile() if options.profile_to else None
        if profiler:
            profiler.enable()
        asyncio.run(consume(Stack.from_env(), options.topic, options.group, options.bare))
        if profiler:
            profiler.disable()
            profiler.dump_stats(options.profile_to)
        return

    RESULTS.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(bench(options))
    print_report(results)
    (RESULTS / "hop.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {(RESULTS / 'hop.json').relative_to(ROOT)} ({results['duration_s']} s)")
    if options.profile:
        print_profile(RESULTS / "hop-relay.prof", "writer and relay process (steady + flat phases)")
        print_profile(RESULTS / "hop-consumer.prof", "consumer process (whole life)")


if __name__ == "__main__":
    main()
