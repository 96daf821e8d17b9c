"""How fast a critical concern reaches the contact centre, alone and under background referral load, beside raw Kafka.

    python -m bench.escalation [--rate 20] [--seconds 15] [--load-rate 200] [--raw-rate 200] [--raw-seconds 5]

One run, on the stack from the environment (`eval "$(STACK=dev deploy/local/stack.sh env)"`), measures:

1. Raw baseline (`bench.hop.measure_raw` on a fresh `bench.raw.*` topic, short): an aiokafka producer and group
   consumer in this process, latency (receive - send) at a steady rate, and messages/s flat out.
2. Escalation alone: the hub as a real OS process (`python -m services.hub` on a free port, production settings:
   relay woken by NOTIFY, 1 s idle poll), critical concerns POSTed to `/concerns` over HTTP at `--rate` per second
   for `--seconds`, each request its own task (a slow one does not hold back the next). A reader in this process,
   assigned to every partition of `contactcentre.escalations.out` from its end offsets, stamps the moment it reads
   each `EscalationToContactCentre` and matches it to its concern by `concern_id`. Latency runs from the moment the
   HTTP 201 is received (the concern's acceptance) to that read; it is also given from just before the request.
3. The same under background load: the referral service, also a real OS process (`python -m services.referral`),
   fed health-nz's referrals on `agency.health-nz.referrals.in` (as `bench.intake` sends them) paced at up to
   `--load-rate` per second but never more than `--load-in-flight` referrals without their outcome read, so the load
   is the highest rate the referral service sustains up to `--load-rate` (on a 2-core machine that is well below
   200/s) and no backlog is left behind. The achieved background rate (outcomes read per second while measuring) is
   reported.

Why processes and not the services in this process: on a 2-core machine one event loop holding the hub, the referral
service, the agency, the HTTP client and the reader would measure that loop's queueing, not the hub's path; and the
hub and the referral service run as separate processes in every real deployment, competing for the same cores,
PostgreSQL and Kafka. This process only sends requests and referrals and reads topics.

Where the time goes, per concern, from wall-clock stamps (same machine): request -> `escalated_at` (the step taken in
the intake transaction: HTTP, token, screening, inserts), -> HTTP 201 (rest of the transaction, commit, response),
-> the Kafka record's CreateTime (the hub's relay woken and publishing), -> read here (broker ack and fetch). CPU
of this process, the hub, the referral service, PostgreSQL and Java (Kafka) is read from /proc for each phase.

At the end this process acknowledges every escalation it caused on `contactcentre.acks.in` (as the contact centre
would), and waits for the hub to record the acknowledgements, so no open escalation is left to re-escalate on a
later run of the stack. The concerns and referrals stay in the stack's hub and referral schemas (child family name
`Bench`, agency ids `BENCH-<run>-...`).

Prints raw vs alone vs under load with the ratios and the goal (p99 <= 50 ms under load), and writes
bench/results/escalation.json. With 300 samples a phase, p99.9 is the largest but one or so: read it as indicative.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.hop import (
    RESULTS,
    ROOT,
    CpuMeter,
    Stack,
    all_read,
    create_topics,
    delete_topics,
    machine,
    measure_raw,
    paced,
)
from bench.hop import percentile as nearest_rank
from bench.intake import Agency, Message, messages, settled
from deploy.local import database_url
from services.hub.handlers import ACKS, TO_CONTACT_CENTRE
from shared.events.hub import ContactCentreAcknowledgement, EscalationToContactCentre
from shared.messaging.envelope import H_TYPE, Envelope, EnvelopeError, decode_headers
from shared.security import ensure_dev_keys, issue_token

GOAL_P99_MS = 50.0
KEY_DIR = ROOT / ".local" / "keys"
SOURCE = "/external/bench-contact-centre"
WARMUP_CONCERNS = 20
LOAD_WARMUP_SECONDS = 5.0  # background load runs this long before the concerns start
SETTLE_SECONDS = 30.0  # longest wait for the referral service's consumer groups to be Stable
WAIT_SECONDS = 30.0  # longest wait for a phase's escalations (or the acknowledgements) before reporting what it has
START_SECONDS = 60.0
RUN_LIMIT_SECONDS = 240.0
CHUNK = 50  # background referrals built at a time


def critical_concern(run: str, seq: int) -> dict[str, Any]:
    """A concern that meets a critical rule (physical harm, immediate danger), for a child nobody knows yet."""
    return {
        "child": {
            "given_names": f"Aroha {run}{seq}",
            "family_name": "Bench",
            "date_of_birth": "2016-04-02",
            "locality": "Porirua",
        },
        "reporter": {
            "name": "Mere Smith",
            "agency": "education-moe",
            "role": "teacher",
            "contact": {"phone": "+64 4 555 0101"},
        },
        "categories": ["physical_harm"],
        "what_was_seen": "Child says a caregiver hit them and is afraid to go home tonight.",
        "seen_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
        "immediate_danger": True,
        "child_location": "Porirua School office",
    }


# ------------------------------------------------------------------------------------------------ statistics


def summary(seconds: list[float]) -> dict[str, float]:
    """p50/p99/p99.9/max/mean in milliseconds (nearest rank, as bench.hop)."""
    if not seconds:
        return {"count": 0}
    ms = [s * 1000 for s in seconds]
    return {
        "count": len(ms),
        "p50": round(nearest_rank(ms, 50), 2),
        "p99": round(nearest_rank(ms, 99), 2),
        "p99.9": round(nearest_rank(ms, 99.9), 2),
        "max": round(max(ms), 2),
        "mean": round(sum(ms) / len(ms), 2),
    }


def process_ticks(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        raw = Path(f"/proc/{pid}/stat").read_text()
        fields = raw[raw.rindex(")") + 2 :].split()
        return int(fields[11]) + int(fields[12])
    return 0


class Cpu:
    """Cores busy per part during a phase: this process, the hub, the referral service, postgres, java, others."""

    def __init__(self, hub: int, referral: int | None) -> None:
        self.meter = CpuMeter("bench_process", consumer_pid=hub)
        self.referral = referral
        self.referral_ticks = process_ticks(referral) if referral else 0

    def stop(self) -> dict[str, float]:
        used = self.meter.stop()
        cores = {("hub_process" if k == "consumer_process" else k): v for k, v in used.items()}
        if self.referral:
            per_second = os.sysconf("SC_CLK_TCK") * (time.monotonic() - self.meter.started)
            referral = round((process_ticks(self.referral) - self.referral_ticks) / per_second, 2)
            cores["referral_process"] = referral
            cores["others"] = round(max(0.0, cores.get("others", 0.0) - referral), 2)
        return dict(sorted(cores.items()))


# ------------------------------------------------------------------------------------------------ services


class ServiceProcess:
    """`python -m services.<name>` as an OS process on a free port, with the stack's settings."""

    def __init__(self, service: str, bootstrap: str) -> None:
        self.service = service
        self.bootstrap = bootstrap
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115  (closed in __aexit__)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def __aenter__(self) -> ServiceProcess:
        env = os.environ | {
            "PYTHONPATH": str(ROOT),
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "CTP_HTTP_PORT": str(self.port),
            "CTP_DATABASE_URL": database_url(self.service),
            "CTP_AUTH_PUBLIC_KEY_FILE": str(ensure_dev_keys(KEY_DIR)[1]),
            "OTEL_TRACES_EXPORTER": os.environ.get("OTEL_TRACES_EXPORTER", "none"),
            "LOG_LEVEL": "WARNING",
        }
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"services.{self.service}",
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + START_SECONDS
        async with httpx.AsyncClient(timeout=1) as client:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"{self.service} exited with {self.process.returncode}: {self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/health/live")).status_code == 200:
                        return self
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.service} did not start within {START_SECONDS:.0f} s: {self.tail()}")
                await asyncio.sleep(0.2)

    async def __aexit__(self, *_: object) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.log.close()

    def tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ------------------------------------------------------------------------------------------------ concerns


@dataclass
class Sample:
    """One concern's stamps: monotonic for latency, wall clock (epoch seconds) for the stage split."""

    requested: float
    requested_wall: float
    accepted: float | None = None
    accepted_wall: float | None = None
    status: int | None = None
    escalation_id: str | None = None


@dataclass
class Escalated:
    read: float
    read_wall: float
    created_wall: float  # the Kafka record's CreateTime: when the hub's relay handed it to its producer
    escalated_wall: float  # `escalated_at` in the message: when the step was taken in the intake transaction
    envelope: Envelope


@dataclass
class ContactCentre:
    """Reads `contactcentre.escalations.out` from its end offsets; stamps each step-0 escalation by concern id."""

    bootstrap: str
    read: dict[str, Escalated] = field(default_factory=dict)
    reader: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> ContactCentre:
        self.reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await self.reader.start()
        partitions = [TopicPartition(TO_CONTACT_CENTRE, p) for p in sorted(await self._partitions())]
        self.reader.assign(partitions)
        ends = await self.reader.end_offsets(partitions)
        for partition in partitions:
            self.reader.seek(partition, ends[partition])
        self._task = asyncio.create_task(self._read(), name="contact-centre")
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.reader:
            await self.reader.stop()

    async def _partitions(self) -> set[int]:
        assert self.reader is not None
        for _ in range(50):
            partitions = self.reader.partitions_for_topic(TO_CONTACT_CENTRE)
            if partitions:
                return set(partitions)
            await self.reader._client.force_metadata_update()
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {TO_CONTACT_CENTRE} does not exist: run `make setup` for this stack")

    async def _read(self) -> None:
        assert self.reader is not None
        wanted = EscalationToContactCentre.ce_type.encode()
        while True:
            batches = await self.reader.getmany(timeout_ms=100, max_records=500)
            now, wall = time.monotonic(), time.time()
            for records in batches.values():
                for record in records:
                    if not any(name == H_TYPE and value == wanted for name, value in record.headers):
                        continue
                    try:
                        envelope = Envelope.decode(decode_headers(record.headers), record.value or b"")
                    except EnvelopeError:
                        continue
                    notice = envelope.event
                    if not isinstance(notice, EscalationToContactCentre) or notice.step != 0:
                        continue
                    if notice.concern_id not in self.read:
                        self.read[notice.concern_id] = Escalated(
                            now, wall, record.timestamp / 1000, notice.escalated_at.timestamp(), envelope
                        )
            if batches:
                self._arrived.set()

    async def wait_for(self, concern_ids: list[str], within: float) -> bool:
        return await all_read(self.read, concern_ids, self._arrived, within)


async def raise_concern(api: httpx.AsyncClient, run: str, seq: int, samples: dict[str, Sample]) -> None:
    body = critical_concern(run, seq)
    sample = Sample(time.monotonic(), time.time())
    try:
        response = await api.post("/concerns", json=body)
    except httpx.HTTPError as error:
        samples[f"failed-{run}-{seq}"] = sample
        print(f"  concern {seq}: {type(error).__name__}", flush=True)
        return
    sample.accepted, sample.accepted_wall, sample.status = time.monotonic(), time.time(), response.status_code
    if response.status_code == 201:
        accepted = response.json()
        sample.escalation_id = accepted.get("escalation_id")
        samples[accepted["concern_id"]] = sample
    else:
        samples[f"failed-{run}-{seq}"] = sample


async def concerns_phase(
    api: httpx.AsyncClient, centre: ContactCentre, run: str, *, per_second: float, count: int
) -> tuple[dict[str, Sample], bool]:
    samples: dict[str, Sample] = {}
    tasks = []
    async for seq in paced(count, per_second):
        tasks.append(asyncio.create_task(raise_concern(api, run, seq, samples)))
    await asyncio.gather(*tasks)
    accepted = [c for c, s in samples.items() if s.status == 201]
    complete = await centre.wait_for(accepted, WAIT_SECONDS)
    return samples, complete


def analyse(samples: dict[str, Sample], centre: ContactCentre) -> dict[str, Any]:
    from_acceptance, from_request, http = [], [], []
    stages: dict[str, list[float]] = {
        "request -> step taken (escalated_at)": [],
        "step taken -> HTTP 201 (commit, response)": [],
        "HTTP 201 -> relay publishes (record CreateTime)": [],
        "relay publishes -> read here": [],
    }
    for concern_id, sample in samples.items():
        if sample.accepted is None or sample.accepted_wall is None or sample.status != 201:
            continue
        http.append(sample.accepted - sample.requested)
        seen = centre.read.get(concern_id)
        if seen is None:
            continue
        from_acceptance.append(seen.read - sample.accepted)
        from_request.append(seen.read - sample.requested)
        stages["request -> step taken (escalated_at)"].append(seen.escalated_wall - sample.requested_wall)
        stages["step taken -> HTTP 201 (commit, response)"].append(sample.accepted_wall - seen.escalated_wall)
        stages["HTTP 201 -> relay publishes (record CreateTime)"].append(seen.created_wall - sample.accepted_wall)
        stages["relay publishes -> read here"].append(seen.read_wall - seen.created_wall)
    accepted = sum(s.status == 201 for s in samples.values())
    return {
        "sent": len(samples),
        "accepted": accepted,
        "not_accepted": len(samples) - accepted,
        "escalations_read": len(from_acceptance),
        "acceptance_to_escalation_ms": summary(from_acceptance),
        "request_to_escalation_ms": summary(from_request),
        "http_request_to_201_ms": summary(http),
        "stages_ms": {name: summary(values) for name, values in stages.items()},
    }


# ------------------------------------------------------------------------------------------------ background load


@dataclass
class Load:
    """Agency referrals to the referral service, paced at up to `per_second`, at most `in_flight` unanswered."""

    agency: Agency
    run: str
    per_second: float
    in_flight: int
    seconds: float
    sent: int = 0

    async def drive(self, stop: asyncio.Event) -> None:
        pending: list[asyncio.Future[Any]] = []
        batch: list[Message] = []
        async for seq in paced(int(self.per_second * self.seconds), self.per_second):
            if stop.is_set():
                break
            # the agency's reader updates the count; polling it is simplest
            while self.sent - self.answered() >= self.in_flight and not stop.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            if not batch:  # built a chunk at a time: building all of them first would take seconds
                batch = messages(self.run, "load", CHUNK, start=seq)[::-1]
            pending.append(await self.agency.send(batch.pop()))
            self.sent += 1
        await asyncio.gather(*pending)

    def answered(self) -> int:
        return len(self.agency.read)


# ------------------------------------------------------------------------------------------------ acknowledgements


async def acknowledge_all(stack: Stack, centre: ContactCentre) -> dict[str, Any]:
    """Acknowledge every escalation this run caused, as the contact centre, and wait for the hub to record them."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = []
        for seen in centre.read.values():
            notice = seen.envelope.event
            assert isinstance(notice, EscalationToContactCentre)
            ack = ContactCentreAcknowledgement(
                escalation_id=notice.escalation_id,
                notification_id=notice.notification_id,
                acknowledged_by="bench-call-taker",
                acknowledged_at=datetime.now(UTC),
            )
            envelope = seen.envelope.caused(ack, source=SOURCE)
            headers = [(k, v.encode()) for k, v in envelope.headers().items()]
            futures.append(await producer.send(ACKS, envelope.body(), key=envelope.key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    ids = [seen.envelope.event.escalation_id for seen in centre.read.values()]  # type: ignore[attr-defined]
    engine = create_async_engine(stack.database_url)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            async with engine.connect() as connection:
                still_open = (
                    await connection.execute(
                        text(
                            "SELECT count(*) FROM hub.escalations WHERE status = 'open' AND escalation_id = ANY(:ids)"
                        ),
                        {"ids": ids},
                    )
                ).scalar_one()
            if not still_open or time.monotonic() > deadline:
                return {"acknowledged": len(ids), "still_open": still_open}
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()


# ------------------------------------------------------------------------------------------------ the run


async def bench(options: argparse.Namespace) -> dict[str, Any]:
    stack = Stack.from_env()
    run = uuid.uuid4().hex[:8]
    load_average = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"bench.escalation on Kafka {stack.bootstrap}, PostgreSQL port {os.environ.get('PG_PORT', '26432')}; "
          f"run {run}; load {load_average}", flush=True)  # fmt: skip
    started = time.monotonic()
    warnings: list[str] = []

    raw_topic = f"bench.raw.{run}"
    await create_topics(stack.bootstrap, [raw_topic])
    try:
        async with asyncio.timeout(RUN_LIMIT_SECONDS):
            raw = await measure_raw(
                stack.bootstrap, raw_topic, per_second=options.raw_rate, seconds=options.raw_seconds, flat=2000
            )
    finally:
        await delete_topics(stack.bootstrap, [raw_topic])

    token = issue_token(subject="bench-teacher", agency="education-moe", roles=[])
    count = int(options.rate * options.seconds)
    async with (
        asyncio.timeout(RUN_LIMIT_SECONDS),
        ContactCentre(stack.bootstrap) as centre,
        ServiceProcess("hub", stack.bootstrap) as hub,
        httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api,
    ):
        print(f"  hub process {hub.pid} on {hub.url}", flush=True)
        _, warm = await concerns_phase(api, centre, f"{run}w", per_second=options.rate, count=WARMUP_CONCERNS)
        if not warm:
            raise RuntimeError(f"no escalation read for the warm-up concerns: {hub.tail()}")

        cpu = Cpu(hub.pid, None)
        samples, complete = await concerns_phase(api, centre, f"{run}a", per_second=options.rate, count=count)
        alone = analyse(samples, centre) | {"complete": complete, "cores_busy": cpu.stop()}
        print_phase("alone", alone)

        async with ServiceProcess("referral", stack.bootstrap) as referral, Agency(stack.bootstrap) as agency:
            print(f"  referral process {referral.pid}; background load up to {options.load_rate:.0f}/s", flush=True)
            # Each subscriber joins its group on its own: measuring before the groups settle measures start-up.
            admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
            await admin.start()
            try:
                unsettled = await settled(admin, SETTLE_SECONDS)
            finally:
                await admin.close()
            warnings += [f"referral consumer group not settled before the load: {u}" for u in unsettled]
            load = Load(
                agency, run, options.load_rate, options.load_in_flight, LOAD_WARMUP_SECONDS + options.seconds * 2
            )
            stop = asyncio.Event()
            driver = asyncio.create_task(load.drive(stop), name="background-load")
            await asyncio.sleep(LOAD_WARMUP_SECONDS)
            print(f"  background warm-up: {load.sent} sent, {load.answered()} answered", flush=True)
            cpu = Cpu(hub.pid, referral.pid)
            sent_before, answered_before, window_began = load.sent, load.answered(), time.monotonic()
            samples, complete = await concerns_phase(api, centre, f"{run}l", per_second=options.rate, count=count)
            window = time.monotonic() - window_began
            background = {
                "offered_per_s": options.load_rate,
                "in_flight_limit": options.load_in_flight,
                "sent_per_s": round((load.sent - sent_before) / window, 1),
                "achieved_per_s": round((load.answered() - answered_before) / window, 1),
                "window_s": round(window, 1),
            }
            loaded = analyse(samples, centre) | {
                "complete": complete,
                "cores_busy": cpu.stop(),
                "background": background,
            }
            stop.set()
            await driver
            drained = await agency.wait_for(list(agency.expected), WAIT_SECONDS)
            if not drained:
                warnings.append("some background referrals were not answered before the referral service stopped")
            if agency.other_outcomes:
                warnings.append(f"background outcomes other than 'received': {dict(agency.other_outcomes)}")
            print_phase("under load", loaded)

        acknowledged = await acknowledge_all(stack, centre)
        if acknowledged["still_open"]:
            warnings.append(f"{acknowledged['still_open']} escalations still open after acknowledging them")

    for name, phase in (("alone", alone), ("under load", loaded)):
        if not phase["complete"] or phase["not_accepted"]:
            warnings.append(
                f"{name}: {phase['not_accepted']} concerns not accepted, "
                f"{phase['accepted'] - phase['escalations_read']} escalations not read within {WAIT_SECONDS:.0f} s"
            )
        if phase["cores_busy"].get("others", 0) > 0.3:
            warnings.append(f"{name}: other work kept {phase['cores_busy']['others']} cores busy")
    if loaded["background"]["achieved_per_s"] < options.load_rate * 0.95:
        warnings.append(
            f"the referral service sustained {loaded['background']['achieved_per_s']} referrals/s, not the "
            f"{options.load_rate:.0f}/s asked for: the load is the most one referral instance takes in on this machine"
        )

    p99_loaded = loaded["acceptance_to_escalation_ms"].get("p99")
    raw_latency = raw["steady"]["latency_ms"]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "stack": {"kafka": stack.bootstrap, "postgres_port": os.environ.get("PG_PORT", "26432")},
        "settings": {
            "concerns_per_s": options.rate,
            "seconds": options.seconds,
            "load_per_s": options.load_rate,
            "load_in_flight": options.load_in_flight,
            "raw_per_s": options.raw_rate,
            "raw_seconds": options.raw_seconds,
            "hub": "separate process, production settings",
            "telemetry": os.environ.get("OTEL_TRACES_EXPORTER", "none"),
        },
        "raw": raw,
        "alone": alone,
        "under_load": loaded,
        "ratios": {
            "alone_p50_over_raw_p50": ratio(alone["acceptance_to_escalation_ms"].get("p50"), raw_latency["p50"]),
            "alone_p99_over_raw_p99": ratio(alone["acceptance_to_escalation_ms"].get("p99"), raw_latency["p99"]),
            "load_p50_over_raw_p50": ratio(loaded["acceptance_to_escalation_ms"].get("p50"), raw_latency["p50"]),
            "load_p99_over_raw_p99": ratio(p99_loaded, raw_latency["p99"]),
        },
        "goal": {
            "p99_under_load_ms_at_most": GOAL_P99_MS,
            "p99_under_load_ms": p99_loaded,
            "met": p99_loaded is not None and p99_loaded <= GOAL_P99_MS,
        },
        "acknowledgements": acknowledged,
        "warnings": warnings,
        "duration_s": round(time.monotonic() - started, 1),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 1) if a is not None and b else None


# ------------------------------------------------------------------------------------------------ report


def line(label: str, latency: dict[str, float]) -> str:
    if not latency.get("count"):
        return f"{label:<52} (no samples)"
    p999 = latency.get("p99.9")
    return (
        f"{label:<52} p50 {latency['p50']:>7.2f}  p99 {latency['p99']:>7.2f}  "
        + (f"p99.9 {p999:>7.2f}  " if p999 is not None else "p99.9     n/a  ")
        + f"max {latency['max']:>7.2f} ms  (n={latency['count']})"
    )


def print_phase(name: str, phase: dict[str, Any]) -> None:
    latency = phase["acceptance_to_escalation_ms"]
    print(f"  {name}: p50 {latency.get('p50')} ms, p99 {latency.get('p99')} ms", flush=True)


def print_report(results: dict[str, Any]) -> None:
    raw, alone, loaded = results["raw"], results["alone"], results["under_load"]
    settings, background = results["settings"], loaded["background"]
    print()
    print(f"Critical concern -> contact-centre topic, concerns at {settings['concerns_per_s']:.0f}/s")
    print(
        line(f"  raw aiokafka produce -> consume at {raw['steady']['rate_per_s']:.0f}/s", raw["steady"]["latency_ms"])
    )
    for name, phase in (("alone", alone), (f"under load ({background['achieved_per_s']} referrals/s)", loaded)):
        print(line(f"  {name}: HTTP 201 -> escalation read", phase["acceptance_to_escalation_ms"]))
        print(line("    request sent -> escalation read", phase["request_to_escalation_ms"]))
        print(line("    request sent -> HTTP 201", phase["http_request_to_201_ms"]))
        for stage, latency in phase["stages_ms"].items():
            print(line(f"      {stage}", latency))
        print("    cores busy: " + ", ".join(f"{k} {v}" for k, v in phase["cores_busy"].items()))
    print(
        f"Background load: offered {background['offered_per_s']:.0f}/s (at most {background['in_flight_limit']} "
        f"unanswered), sent {background['sent_per_s']}/s, referral service sustained {background['achieved_per_s']}/s"
    )
    ratios = results["ratios"]
    print(
        f"Ratios: alone p50/raw p50 {ratios['alone_p50_over_raw_p50']}, alone p99/raw p99 "
        f"{ratios['alone_p99_over_raw_p99']}; under load p50/raw p50 {ratios['load_p50_over_raw_p50']}, "
        f"p99/raw p99 {ratios['load_p99_over_raw_p99']}"
    )
    goal = results["goal"]
    verdict = "PASS" if goal["met"] else "MISS"
    print(
        f"Goal: p99 <= {goal['p99_under_load_ms_at_most']:.0f} ms under load: {goal['p99_under_load_ms']} ms  {verdict}"
    )
    if results["warnings"]:
        print("Warnings")
        for warning in results["warnings"]:
            print(f"  {warning}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.escalation", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20, help="critical concerns per second (20)")
    parser.add_argument("--seconds", type=float, default=15, help="seconds of concerns per phase (15)")
    parser.add_argument("--load-rate", type=float, default=200, help="background referrals/s offered (200)")
    parser.add_argument("--load-in-flight", type=int, default=200, help="most background referrals unanswered (200)")
    parser.add_argument("--raw-rate", type=float, default=200, help="raw baseline messages/s (200)")
    parser.add_argument("--raw-seconds", type=float, default=5, help="raw baseline steady phase, seconds (5)")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)

    RESULTS.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(bench(options))
    print_report(results)
    (RESULTS / "escalation.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {(RESULTS / 'escalation.json').relative_to(ROOT)} ({results['duration_s']} s)")


if __name__ == "__main__":
    main()
