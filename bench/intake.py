"""What taking in one agency referral costs, beside raw Kafka on the same broker.

    python -m bench.intake [--rate 50] [--seconds 15] [--flat 3000] [--raw-seconds 10] [--raw-flat 10000] [--profile]

One run, on the stack from the environment (`eval "$(STACK=test deploy/local/stack.sh env)"`), measures:

1. Raw baseline (`bench.hop.measure_raw` on a fresh `bench.raw.*` topic): an aiokafka producer and group consumer
   in this process; latency (receive - send) at the same steady rate as the intake, and messages/s flat out.
2. Referral intake: the referral service running in this process as `run_service` runs it in the tests (its own
   settings, `create_app`, consumers, outbox relay), fed agency referrals the way health-nz's system sends them: on
   its own topic `agency.health-nz.referrals.in`, a CloudEvent from `/agencies/health-nz`, key and subject = the
   agency_referral_id. Every referral has a new agency_referral_id and a new child and caregiver, so each one takes
   the full "received" path (new child, referral, consent, `referral.received`) and none is linked to an earlier one.
   Latency runs from just before the agency's send to the moment this process reads the matching
   `referral.outcome.v1` ("received") on `agency.health-nz.outcomes.out`: that outcome is committed in the same
   transaction as the referral and its `referral.received` event, and leaves through the same outbox relay, so it
   marks "received event committed and published". First at a steady rate (p50/p90/p99/max), then flat out:
   `--flat` referrals sent at once, and referrals/s through the one referral instance until every outcome is read.

To show where the time goes, the intake latency is split into stages (ingress: send -> the consumer's batch
begins; transaction: batch begins -> commits; relay pick-up: commit -> the relay starts publishing the outcome;
publish and read: -> the agency reads it), and for the flat-out phase the consumer's batches, its handler time, the
SQL statements per referral (by statement and table, with the time spent awaiting each) and the CPU of this
process, PostgreSQL and Kafka are reported. These come from wrapping the running service's consumer, relay and
engine in this process; nothing in services/ or shared/ changes. `--profile` adds cProfile of this process during
the flat-out phase (bench/results/intake.prof).

The service reads every agency's `agency.<code>.referrals.in` in its consumer group `referral.intake`, which may hold
a backlog from earlier runs or tests on the stack: outcomes are read only from the end offsets taken at start, only
this run's ids are waited for, and a warm-up that reaches every partition of health-nz's topic drains any backlog
there before measuring (the backlog at start is reported for every agency's). Measuring starts once the service's
consumer groups are Stable with this instance's members only; another referral instance on the stack (a test run)
would take partitions and is reported as a warning. The referrals stay in the stack's
referral schema (agency ids `BENCH-<run>-...`, family name `Bench`).

Prints a table of raw vs intake with the ratios, and writes bench/results/intake.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import logging
import os
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import CacheStats

from bench.hop import (
    RESULTS,
    ROOT,
    CpuMeter,
    Stack,
    all_read,
    create_topics,
    delete_topics,
    latency_ms,
    machine,
    measure_raw,
    paced,
    print_profile,
    rate,
)
from deploy.local import database_url
from deploy.local.samples import sample_referral
from services.referral import handlers
from services.referral.app import SUBSCRIPTIONS, Settings, create_app
from shared.agencies import agency_source
from shared.events.agency import ReferralSubmitted
from shared.events.referral import Outcome, ReferralOutcome
from shared.messaging.envelope import H_TYPE, Envelope
from shared.messaging.topics import outcomes_out, referrals_in
from shared.service import Runtime, running, runtime_of

AGENCY = "health-nz"
# The agency sends on its own ingress topic and hears on its own outcomes topic; the service reads every agency's.
INGRESS, OUTCOMES = referrals_in(AGENCY), outcomes_out(AGENCY)
ALL_INGRESS, DECISIONS = handlers.INGRESS, handlers.DECISIONS
INTAKE_GROUP, DECISIONS_GROUP = "referral.intake", "referral.decisions"
KEY_FILE = ".local/keys/dev-issuer.pub.pem"
WARMUP_ROUND = 12  # warm-up referrals per round, until every ingress partition has had one
WARMUP_LIMIT = 120
WARMUP_WAIT_SECONDS = 90.0  # a backlog in referral.intake is worked off during the warm-up
OTHERS_WAIT_SECONDS = 15.0  # members of a stopped process stay in a group until their session times out
SETTLE_SECONDS = 30.0
BUSY_OTHERS_CORES = 0.3  # CPU taken by other people's work beyond which a warning says so
WAIT_SECONDS = 60.0  # longest wait for a phase's outcomes before the run reports what it has
RUN_LIMIT_SECONDS = 240.0
HOP_RESULTS = RESULTS / "hop.json"
PROCESS = "this_process"  # in the CPU figures: the referral service, with the agency's producer and reader


# ------------------------------------------------------------------------------------------------ referrals


def referral(run: str, label: str, seq: int) -> ReferralSubmitted:
    """A valid health-nz referral (deploy/local/samples.py) for a child and caregiver nobody knows."""
    return sample_referral(
        f"{run}{label}{seq}",
        agency_referral_id=f"BENCH-{run}-{label}-{seq}",
        agency=AGENCY,
        child={"family_name": "Bench"},
    )


@dataclass(frozen=True)
class Message:
    agency_referral_id: str
    key: bytes
    body: bytes
    headers: list[tuple[str, bytes]]


def messages(run: str, label: str, count: int, start: int = 0) -> list[Message]:
    """Ready-to-send CloudEvents, built before a phase so that building them is not timed."""
    out = []
    for seq in range(start, start + count):
        submitted = referral(run, label, seq)
        envelope = Envelope(event=submitted, source=agency_source(AGENCY), subject=submitted.agency_referral_id)
        headers = [(name, value.encode()) for name, value in envelope.headers().items()]
        out.append(Message(submitted.agency_referral_id, envelope.key, envelope.body(), headers))
    return out


# ------------------------------------------------------------------------------------------------ the agency


class Agency:
    """Sends referrals as health-nz's system would, and reads its outcomes from the end offsets taken at start."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1, request_timeout_ms=30_000
        )
        self.reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.sent: dict[str, float] = {}
        self.read: dict[str, float] = {}
        self.other_outcomes: Counter[str] = Counter()
        self.expected: set[str] = set()
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> Agency:
        await self.producer.start()
        await self.reader.start()
        partitions = [TopicPartition(OUTCOMES, p) for p in sorted(await self.partitions(OUTCOMES))]
        self.reader.assign(partitions)
        ends = await self.reader.end_offsets(partitions)
        for partition in partitions:
            self.reader.seek(partition, ends[partition])
        self._task = asyncio.create_task(self._read(), name="agency-outcomes")
        return self

    async def __aexit__(self, *_: object) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.reader.stop()
        await self.producer.stop()

    async def partitions(self, topic: str) -> set[int]:
        partitions = await self.producer.partitions_for(topic)  # fetches the topic's metadata when it has none
        if not partitions:
            raise RuntimeError(f"topic {topic} does not exist: run `make setup` for this stack")
        return set(partitions)

    async def lag(self, admin: AIOKafkaAdminClient, group: str, topics: list[str]) -> int:
        """Messages on `topics` the consumer group has not committed yet."""
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(await self.partitions(t))]
        ends = await self.reader.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        behind = 0
        for partition in partitions:
            done = committed.get(partition)
            behind += ends[partition] - max(0, done.offset if done is not None else 0)
        return behind

    async def drained(self, admin: AIOKafkaAdminClient, group: str, topics: list[str], within: float) -> int:
        """Wait for the group to catch up with `topics`; what it still has to do when `within` runs out."""
        deadline = time.monotonic() + within
        while True:
            behind = await self.lag(admin, group, topics)
            if not behind or time.monotonic() > deadline:
                return behind
            await asyncio.sleep(0.5)

    async def _read(self) -> None:
        outcome_type = ReferralOutcome.ce_type.encode()
        while True:
            batches = await self.reader.getmany(timeout_ms=100, max_records=1000)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    key = (record.key or b"").decode()
                    if key not in self.expected or key in self.read:
                        continue
                    if not any(name == H_TYPE and value == outcome_type for name, value in record.headers):
                        continue
                    told = json.loads(record.value or b"{}")
                    if told.get("agency_referral_id") != key:
                        continue
                    if told.get("outcome") == Outcome.RECEIVED:
                        self.read[key] = now
                    else:
                        self.other_outcomes[str(told.get("outcome"))] += 1
                        self.read[key] = now  # answered, if not as expected: counted and reported
            if batches:
                self._arrived.set()

    async def send(self, message: Message) -> asyncio.Future[Any]:
        self.expected.add(message.agency_referral_id)
        self.sent[message.agency_referral_id] = time.monotonic()
        future: asyncio.Future[Any] = await self.producer.send(
            INGRESS, message.body, key=message.key, headers=message.headers
        )
        return future

    async def wait_for(self, ids: list[str], within: float) -> bool:
        return await all_read(self.read, ids, self._arrived, within)


# ------------------------------------------------------------------------------------------------ instruments


@dataclass
class Batch:
    size: int
    began: float
    committed: float


@dataclass
class Probes:
    """Stamps taken inside the running service, by wrapping its intake consumer, relay and engine in this process."""

    batches: list[Batch] = field(default_factory=list)
    batch_began: dict[str, float] = field(default_factory=dict)
    committed: dict[str, float] = field(default_factory=dict)
    picked_up: dict[str, float] = field(default_factory=dict)  # the relay began publishing the outcome for that id
    handler_seconds: list[float] = field(default_factory=list)
    relay_passes: list[tuple[int, float]] = field(default_factory=list)  # (rows published, seconds)
    statements: Counter[str] = field(default_factory=Counter)
    statement_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    compiled: Counter[str] = field(default_factory=Counter)  # statements SQLAlchemy compiled afresh (no cache hit)

    def reset_counters(self) -> None:
        self.batches.clear()
        self.handler_seconds.clear()
        self.relay_passes.clear()
        self.statements.clear()
        self.statement_seconds.clear()
        self.compiled.clear()


_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+([\w.\"]+)", re.IGNORECASE)


def statement_kind(statement: str) -> str:
    """`SELECT children`, `INSERT outbox`, ...: what a statement does to which table."""
    words = statement.split(None, 1)
    verb = words[0].upper() if words else "?"
    if verb == "WITH" and "outbox" in statement:
        return "relay claim (outbox)"
    table = _TABLE.search(statement)
    return f"{verb} {table.group(1).strip(chr(34)) if table else ''}".strip()


def instrument(runtime: Runtime, probes: Probes) -> None:
    """Wrap the service's intake consumer, its referral handler, its relay and its engine with probes."""
    intake = next(c for c in runtime.consumers if c.name == INTAKE_GROUP)
    run_batch = intake._run_batch

    async def timed_batch(records: Any, **options: Any) -> Any:
        began = time.monotonic()
        keys = [(r.key or b"").decode() for r in records]
        for key in keys:
            probes.batch_began.setdefault(key, began)
        result = await run_batch(records, **options)  # returns once its transaction has committed
        committed = time.monotonic()
        probes.batches.append(Batch(len(records), began, committed))
        for key in keys:
            probes.committed[key] = committed
        return result

    setattr(intake, "_run_batch", timed_batch)  # noqa: B010  (an instance attribute shadows the method)

    handler = intake._handlers[ReferralSubmitted.ce_type]

    async def timed_handler(session: Any, envelope: Envelope) -> None:
        began = time.monotonic()
        try:
            await handler(session, envelope)
        finally:
            probes.handler_seconds.append(time.monotonic() - began)

    intake._handlers[ReferralSubmitted.ce_type] = timed_handler

    relay = runtime.relay
    publish: Callable[[Any], Awaitable[None]] = relay._publish

    async def timed_publish(rows: Any) -> None:
        began = time.monotonic()
        for row in rows:
            if row.topic == OUTCOMES:
                probes.picked_up[row.key] = began
        await publish(rows)
        probes.relay_passes.append((len(rows), time.monotonic() - began))

    setattr(relay, "_publish", timed_publish)  # noqa: B010

    engine = runtime.engine.sync_engine

    @event.listens_for(engine, "before_cursor_execute")
    def _before(connection: Connection, cursor: Any, statement: str, *_: Any) -> None:
        connection.info["bench_began"] = time.monotonic()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(connection: Connection, cursor: Any, statement: str, parameters: Any, context: Any, *_: Any) -> None:
        kind = statement_kind(statement)
        probes.statements[kind] += 1
        probes.statement_seconds[kind] += time.monotonic() - connection.info.pop("bench_began", time.monotonic())
        if getattr(context, "cache_hit", None) is not CacheStats.CACHE_HIT:
            probes.compiled[kind] += 1


def stage_breakdown(ids: list[str], agency: Agency, probes: Probes) -> dict[str, dict[str, float]]:
    """Where each referral's latency went, from the stamps the agency and the probes took."""
    stages: dict[str, list[float]] = defaultdict(list)
    for i in ids:
        stamps = [agency.sent.get(i), probes.batch_began.get(i), probes.committed.get(i), probes.picked_up.get(i)]
        stamps.append(agency.read.get(i))
        if any(s is None for s in stamps):
            continue
        sent, began, committed, picked_up, read = (s for s in stamps if s is not None)
        stages["ingress (send -> batch begins)"].append(began - sent)
        stages["transaction (batch begins -> commit)"].append(committed - began)
        stages["relay pick-up (commit -> publish)"].append(picked_up - committed)
        stages["publish and read (-> outcome read)"].append(read - picked_up)
    return {name: latency_ms(values) for name, values in stages.items()}


def sql_per_referral(probes: Probes, referrals: int) -> list[dict[str, Any]]:
    """Statements the service ran per referral during a phase, most time first."""
    rows = [
        {
            "statement": kind,
            "per_referral": round(count / max(1, referrals), 2),
            "ms_each": round(1000 * probes.statement_seconds[kind] / count, 3),
            "ms_per_referral": round(1000 * probes.statement_seconds[kind] / max(1, referrals), 3),
            "compiled_per_referral": round(probes.compiled[kind] / max(1, referrals), 2),
        }
        for kind, count in probes.statements.items()
    ]
    return sorted(rows, key=lambda row: -row["ms_per_referral"])


# ------------------------------------------------------------------------------------------------ the service


@contextlib.asynccontextmanager
async def referral_service(stack: Stack) -> AsyncIterator[Runtime]:
    """The referral service in this process, as tests/support/services.py runs it, with its production settings."""
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")  # as the tests and bench.hop: no collector to send to
    os.environ.setdefault("LOG_LEVEL", "ERROR")  # rebalances at start-up are expected here
    settings = Settings(
        database_url=database_url("referral"), kafka_bootstrap=stack.bootstrap, auth_public_key_file=KEY_FILE
    )
    runtime = runtime_of(create_app(settings))
    async with running(runtime):
        yield runtime


def own_members() -> dict[str, int]:
    """Members this instance brings to each of its consumer groups: one for its topics, one for their retry topics."""
    return {f"referral.{s.consumer}": 2 for s in SUBSCRIPTIONS}


async def group_state(admin: AIOKafkaAdminClient, group: str) -> tuple[str, list[str]]:
    """The group's state (Stable, PreparingRebalance, Empty...) and its members' ids."""
    try:
        (response,) = await admin.describe_consumer_groups([group])
        described = response.groups[0]
        return str(described[2]), [str(member[0]) for member in described[5]]
    except Exception as error:
        return f"unknown ({type(error).__name__})", []


async def others_gone(admin: AIOKafkaAdminClient, within: float) -> list[str]:
    """Wait for members left in the referral groups (by a process that stopped) to time out; report any that stay."""
    deadline = time.monotonic() + within
    while True:
        present = {group: (await group_state(admin, group))[1] for group in own_members()}
        if not any(present.values()) or time.monotonic() > deadline:
            return [f"{group}: {len(members)} member(s)" for group, members in present.items() if members]
        await asyncio.sleep(1)


@contextlib.asynccontextmanager
async def watching(admin: AIOKafkaAdminClient, group: str, foreign: set[str]) -> AsyncIterator[None]:
    """Note in `foreign` every member that joins `group` while measuring, besides those it has at the start:
    another referral instance (a test run on the same stack) that takes partitions, and referrals, from this one."""
    own = set((await group_state(admin, group))[1])

    async def watch() -> None:
        while True:
            foreign.update(set((await group_state(admin, group))[1]) - own)
            await asyncio.sleep(1)

    task = asyncio.create_task(watch(), name="group-watch")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settled(admin: AIOKafkaAdminClient, within: float) -> list[str]:
    """Wait until every group of the service is Stable with this instance's members only; report those that are not.

    Each subscriber joins its group on its own, so the groups rebalance several times after start-up, and every
    rebalance stops consumption for a moment: measuring before they settle measures start-up.
    """
    deadline = time.monotonic() + within
    while True:
        unsettled = []
        for group, count in own_members().items():
            state, members = await group_state(admin, group)
            if state != "Stable" or len(members) != count:
                unsettled.append(f"{group}: {state} with {len(members)} members (this instance has {count})")
        if not unsettled or time.monotonic() > deadline:
            return unsettled
        await asyncio.sleep(0.5)


# ------------------------------------------------------------------------------------------------ phases


async def warm_up(run: str, agency: Agency, probes: Probes, partitions: int) -> dict[str, Any]:
    """Referrals until every ingress partition has had one, and their outcomes: the group's backlog is behind us."""
    started = time.monotonic()
    covered: set[int] = set()
    ids: list[str] = []
    while len(covered) < partitions and len(ids) < WARMUP_LIMIT:
        batch = messages(run, "warmup", WARMUP_ROUND, start=len(ids))
        acks = [await agency.send(m) for m in batch]
        covered |= {metadata.partition for metadata in await asyncio.gather(*acks)}
        ids += [m.agency_referral_id for m in batch]
    if not await agency.wait_for(ids, WARMUP_WAIT_SECONDS):
        missing = sum(i not in agency.read for i in ids)
        raise RuntimeError(f"{missing} of {len(ids)} warm-up referrals got no outcome in {WARMUP_WAIT_SECONDS:.0f} s")
    print(f"  warm-up: {len(ids)} referrals over {len(covered)} partitions in {time.monotonic() - started:.1f} s")
    probes.reset_counters()
    return {"referrals": len(ids), "seconds": round(time.monotonic() - started, 1)}


async def intake_steady(run: str, agency: Agency, probes: Probes, per_second: float, seconds: float) -> dict[str, Any]:
    batch = messages(run, "steady", int(per_second * seconds))
    ids = [m.agency_referral_id for m in batch]
    cpu = CpuMeter(PROCESS)
    acks = []
    async for seq in paced(len(batch), per_second):
        acks.append(await agency.send(batch[seq]))
    await asyncio.gather(*acks)
    complete = await agency.wait_for(ids, WAIT_SECONDS)
    cores_busy = cpu.stop()
    latency = latency_ms([agency.read[i] - agency.sent[i] for i in ids if i in agency.read])
    print(f"  intake at {per_second:.0f}/s: p50 {latency.get('p50')} ms, p99 {latency.get('p99')} ms", flush=True)
    result = {
        "rate_per_s": per_second,
        "seconds": seconds,
        "complete": complete,
        "handled_elsewhere": sum(i in agency.read and i not in probes.committed for i in ids),
        "latency_ms": latency,
        "stages_ms": stage_breakdown(ids, agency, probes),
        "consumer_batch_mean": round(sum(b.size for b in probes.batches) / max(1, len(probes.batches)), 1),
        "cores_busy": cores_busy,
        "cpu_ms_per_referral": {
            name: round(1000 * cores / per_second, 2)
            for name, cores in cores_busy.items()
            if name not in ("machine", "others")
        },
    }
    probes.reset_counters()
    return result


async def intake_flat_out(
    run: str, agency: Agency, probes: Probes, count: int, profile: cProfile.Profile | None
) -> dict[str, Any]:
    """`count` referrals sent at once; referrals/s through the one instance until every outcome is read."""
    batch = messages(run, "flat", count)
    ids = [m.agency_referral_id for m in batch]
    cpu = CpuMeter(PROCESS)
    if profile:
        profile.enable()
    started = time.monotonic()
    acks = [await agency.send(m) for m in batch]
    await asyncio.gather(*acks)
    produced = time.monotonic()
    complete = await agency.wait_for(ids, WAIT_SECONDS)
    if profile:
        profile.disable()
    cores_busy = cpu.stop()

    read = [agency.read[i] for i in ids if i in agency.read]
    committed = [probes.committed[i] for i in ids if i in probes.committed]
    began = [probes.batch_began[i] for i in ids if i in probes.batch_began]
    batches = probes.batches  # since the steady phase's were cleared
    consuming = max(committed, default=started) - min(began, default=started)
    in_transactions = sum(b.committed - b.began for b in batches)
    handler = probes.handler_seconds
    relayed = sum(rows for rows, _ in probes.relay_passes)
    throughput = {
        "referrals": count,
        "complete": complete,
        "outcomes_read": len(read),
        "handled_elsewhere": sum(i in agency.read and i not in probes.committed for i in ids),
        "end_to_end_per_s": rate(len(read), max(read, default=started) - started),
        "agency_send_seconds": round(produced - started, 2),
        "consumer_per_s": rate(len(committed), consuming),
        "consumer_batches": len(batches),
        "consumer_batch_mean": round(sum(b.size for b in batches) / max(1, len(batches)), 1),
        "consumer_transaction_share": round(in_transactions / consuming, 3) if consuming > 0 else 0.0,
        "transaction_ms_per_referral": round(1000 * in_transactions / max(1, len(committed)), 3),
        "handler_ms_per_referral": round(1000 * sum(handler) / max(1, len(handler)), 3),
        "relay_rows_per_referral": round(relayed / max(1, len(handler)), 2),
        "relay_ms_per_row": round(1000 * sum(s for _, s in probes.relay_passes) / max(1, relayed), 3),
        "relay_rows_per_pass": round(relayed / max(1, len(probes.relay_passes)), 1),
        "latency_ms": latency_ms([agency.read[i] - agency.sent[i] for i in ids if i in agency.read]),
        "sql_per_referral": sql_per_referral(probes, len(handler)),
        "cores_busy": cores_busy,
    }
    print(f"  intake flat out: {throughput['end_to_end_per_s']:,.1f} referrals/s", flush=True)
    return throughput


# ------------------------------------------------------------------------------------------------ report


def foundation() -> dict[str, Any] | None:
    """The platform-hop figures `bench.hop` last wrote, to print beside the intake."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        hop = json.loads(HOP_RESULTS.read_text())
        return {
            "date": hop["date"],
            "rate_per_s": hop["hop"]["steady"]["rate_per_s"],
            "hop_latency_ms": hop["hop"]["steady"]["latency_ms"],
            "hop_events_per_s": hop["hop"]["throughput"]["end_to_end_per_s"],
        }
    return None


def ratios(raw: dict[str, Any], intake: dict[str, Any]) -> dict[str, float]:
    raw_latency, intake_latency = raw["steady"]["latency_ms"], intake["steady"]["latency_ms"]
    return {
        "intake_p50_over_raw_p50": round(intake_latency["p50"] / raw_latency["p50"], 1),
        "intake_p99_over_raw_p99": round(intake_latency["p99"] / raw_latency["p99"], 1),
        "intake_throughput_over_raw": round(
            intake["throughput"]["end_to_end_per_s"] / raw["throughput"]["end_to_end_per_s"], 4
        ),
    }


def print_report(results: dict[str, Any]) -> None:
    raw, intake, ratio = results["raw"], results["intake"], results["ratios"]
    steady, flat = intake["steady"], intake["throughput"]

    def line(label: str, latency: dict[str, float]) -> str:
        if not latency.get("count"):
            return f"{label:<46} (no samples)"
        return (
            f"{label:<46} p50 {latency['p50']:>8.2f}  p90 {latency['p90']:>8.2f}  p99 {latency['p99']:>8.2f}"
            f"  max {latency['max']:>8.2f} ms"
        )

    print()
    print(f"Latency at {steady['rate_per_s']:.0f}/s")
    print(line("  raw aiokafka produce -> consume", raw["steady"]["latency_ms"]))
    print(line("  referral intake (send -> outcome read)", steady["latency_ms"]))
    for stage, latency in steady["stages_ms"].items():
        print(line(f"    {stage}", latency))
    spent = steady["cpu_ms_per_referral"]
    busy = steady["cores_busy"]
    print(
        f"  CPU per referral (ms): {sum(spent.values()):.2f} = "
        + ", ".join(f"{name} {ms}" for name, ms in spent.items())
        + f"  (machine {busy['machine']} cores busy, others {busy['others']})"
    )
    print("Throughput flat out")
    print(f"  raw aiokafka                              {raw['throughput']['end_to_end_per_s']:>10,.0f} msg/s")
    print(f"  referral intake, one instance             {flat['end_to_end_per_s']:>10,.1f} referrals/s")
    print(f"    consumer (first batch -> last commit)   {flat['consumer_per_s']:>10,.1f} referrals/s")
    print(
        f"    {flat['consumer_batches']} batches of {flat['consumer_batch_mean']} on average; "
        f"{flat['consumer_transaction_share']:.0%} of the consumer's time in its transactions, "
        f"{flat['transaction_ms_per_referral']} ms per referral, {flat['handler_ms_per_referral']} ms of it in "
        "the handler"
    )
    print(
        f"    relay: {flat['relay_rows_per_referral']} rows per referral, {flat['relay_rows_per_pass']} rows a pass, "
        f"{flat['relay_ms_per_row']} ms per row"
    )
    print("    cores busy: " + ", ".join(f"{name} {cores}" for name, cores in flat["cores_busy"].items()))
    sql = flat["sql_per_referral"]
    count, awaited = sum(row["per_referral"] for row in sql), sum(row["ms_per_referral"] for row in sql)
    compiled = sum(row["compiled_per_referral"] for row in sql)
    print(
        f"    SQL per referral (the service's and its relay's): {count:.1f} statements, {awaited:.2f} ms awaited, "
        f"{compiled:.2f} compiled afresh (SQLAlchemy cache misses)"
    )
    for row in sql[:16]:
        fresh = f"  ({row['compiled_per_referral']} compiled)" if row["compiled_per_referral"] else ""
        print(
            f"      {row['statement']:<32} {row['per_referral']:>6} x {row['ms_each']:>7.3f} ms"
            f" = {row['ms_per_referral']:>7.3f} ms{fresh}"
        )
    print("Ratios")
    print(
        f"  intake p50 / raw p50 = {ratio['intake_p50_over_raw_p50']}   "
        f"intake p99 / raw p99 = {ratio['intake_p99_over_raw_p99']}"
    )
    print(f"  intake throughput / raw throughput = {ratio['intake_throughput_over_raw']}")
    hop = results.get("foundation_hop")
    if hop:
        print(
            f"Foundation (bench.hop, {hop['date']}): one platform hop at {hop['rate_per_s']:.0f}/s p50 "
            f"{hop['hop_latency_ms']['p50']} ms, p99 {hop['hop_latency_ms']['p99']} ms; "
            f"{hop['hop_events_per_s']:,.0f} events/s through one consumer"
        )
    if results["warnings"]:
        print("Warnings")
        for warning in results["warnings"]:
            print(f"  {warning}")


# ------------------------------------------------------------------------------------------------ main


async def bench(options: argparse.Namespace, profile: cProfile.Profile | None) -> dict[str, Any]:
    stack = Stack.from_env()
    run = uuid.uuid4().hex[:8]
    raw_topic = f"bench.raw.{run}"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"bench.intake on Kafka {stack.bootstrap}, PostgreSQL port {os.environ.get('PG_PORT', '26432')}; "
        f"run {run}; load {load}",
        flush=True,
    )
    started = time.monotonic()
    warnings: list[str] = []
    await create_topics(stack.bootstrap, [raw_topic])
    try:
        async with asyncio.timeout(RUN_LIMIT_SECONDS):
            raw = await measure_raw(
                stack.bootstrap, raw_topic, per_second=options.rate, seconds=options.raw_seconds, flat=options.raw_flat
            )
    finally:
        await delete_topics(stack.bootstrap, [raw_topic])

    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(RUN_LIMIT_SECONDS), Agency(stack.bootstrap) as agency:
            backlog = {
                INTAKE_GROUP: await agency.lag(admin, INTAKE_GROUP, ALL_INGRESS),
                DECISIONS_GROUP: await agency.lag(admin, DECISIONS_GROUP, DECISIONS),
            }
            print(f"  backlog at start: {backlog}", flush=True)
            for other in await others_gone(admin, OTHERS_WAIT_SECONDS):
                warnings.append(f"another referral instance is consuming (it takes some partitions): {other}")
            probes = Probes()
            async with referral_service(stack) as runtime:
                instrument(runtime, probes)
                warmup = await warm_up(run, agency, probes, len(await agency.partitions(INGRESS)))
                # The warm-up went through health-nz's topic only; another agency's backlog would compete with it.
                if behind := await agency.drained(admin, INTAKE_GROUP, ALL_INGRESS, WARMUP_WAIT_SECONDS):
                    warnings.append(f"{behind} referrals on other agencies' topics still waiting when measuring")
                unsettled = await settled(admin, SETTLE_SECONDS)
                warnings += [f"consumer group not settled before measuring: {u}" for u in unsettled]
                foreign: set[str] = set()
                async with watching(admin, INTAKE_GROUP, foreign):
                    steady = await intake_steady(run, agency, probes, options.rate, options.seconds)
                    throughput = await intake_flat_out(run, agency, probes, options.flat, profile)
                if foreign:
                    warnings.append(f"{len(foreign)} other member(s) joined {INTAKE_GROUP} while measuring")
            for name, part in (("steady", steady), ("flat-out", throughput)):
                if not part["complete"]:
                    warnings.append(f"the {name} phase did not read every outcome within {WAIT_SECONDS:.0f} s")
                if part["handled_elsewhere"]:
                    warnings.append(
                        f"{part['handled_elsewhere']} referrals of the {name} phase were taken in by another referral "
                        "instance on this stack: the figures are not those of one instance; run again when it is quiet"
                    )
                busy = part["cores_busy"]
                if busy.get("others", 0) > BUSY_OTHERS_CORES:
                    warnings.append(
                        f"other work kept {busy['others']} of {os.cpu_count()} cores busy during the {name} phase: "
                        "the intake figures are pessimistic"
                    )
            if agency.other_outcomes:
                warnings.append(f"outcomes other than 'received': {dict(agency.other_outcomes)}")
    finally:
        await admin.close()

    intake = {"backlog_at_start": backlog, "warmup": warmup, "steady": steady, "throughput": throughput}
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "stack": {"kafka": stack.bootstrap, "postgres_port": os.environ.get("PG_PORT", "26432")},
        "settings": {
            "rate_per_s": options.rate,
            "seconds": options.seconds,
            "flat_referrals": options.flat,
            "raw_flat_messages": options.raw_flat,
            "telemetry": os.environ.get("OTEL_TRACES_EXPORTER", "none"),
            **Settings().model_dump(
                include={"relay_batch_size", "relay_idle_seconds", "consumer_max_records", "database_pool_size"}
            ),
        },
        "raw": raw,
        "intake": intake,
        "ratios": ratios(raw, intake),
        "foundation_hop": foundation(),
        "warnings": warnings,
        "duration_s": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50, help="steady rate, referrals/s and raw messages/s (50)")
    parser.add_argument("--seconds", type=float, default=15, help="steady phase of the intake, seconds (15)")
    parser.add_argument("--flat", type=int, default=3000, help="referrals sent at once in the flat-out phase (3000)")
    parser.add_argument("--raw-seconds", type=float, default=10, help="steady phase of the raw baseline (10)")
    parser.add_argument("--raw-flat", type=int, default=10_000, help="messages in the raw flat-out phase (10000)")
    parser.add_argument("--profile", action="store_true", help="cProfile this process in the flat-out phase")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)

    RESULTS.mkdir(parents=True, exist_ok=True)
    profile = cProfile.Profile() if options.profile else None
    results = asyncio.run(bench(options, profile))
    print_report(results)
    (RESULTS / "intake.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {(RESULTS / 'intake.json').relative_to(ROOT)} ({results['duration_s']} s)")
    if profile:
        path = RESULTS / "intake.prof"
        profile.dump_stats(path)
        print_profile(path, "this process (service, agency, reader) in the flat-out phase")


if __name__ == "__main__":
    main()
