"""How fast reporting's read model is rebuilt from the streams, beside the raw consume rate of the same topics.

    python -m bench.rebuild [--journeys 2000] [--batch 1000]

One run, on the stack from the environment (`eval "$(STACK=test deploy/local/stack.sh env)"`):

1. Publishes `--journeys` synthetic children's journeys on fresh copies of the five public streams
   (`bench.rebuild.<run>.<service>.events`, 6 partitions each, keyed by child as the services key them): each a
   referral with consent, the panel's decision (85% accepted, 10% declined, 5% withdrawn before a decision), a lead
   proposed and assigned, a case with its Action Network, assessment, plan endorsed, implementation, actions done or
   overdue, a review and an exit with whānau feedback; and a critical concern with its escalation and acknowledgement
   for every third child. About a quarter of the messages are types reporting passes over, as on the real streams.
2. Raw: an aiokafka consumer reads every partition from its start to its end (messages/s), then again decoding every
   envelope reporting would handle (the CloudEvents headers and the pydantic body).
3. Rebuild: `services.reporting.rebuild` into an empty read model (a fresh `bench_reporting` schema with reporting's
   tables), through the live consumer's handlers and inbox, one transaction per batch: messages/s and events/s.

Prints the three rates and writes bench/results/rebuild.json. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.hop import PARTITIONS, RESULTS, Stack, create_topics, delete_topics, machine, rate
from services.reporting import storage
from services.reporting.rebuild import BY_TYPE, empty, partitions_of, replay
from shared.db import make_engine, make_sessions
from shared.events import Event
from shared.events.assignment import LeadAssigned, LeadProposed
from shared.events.codes import NeedDomain, Participation, ReasonCode, SharingPurpose
from shared.events.hub import ConcernScreened, EscalationAcknowledged, EscalationStarted
from shared.events.panel import DeclineReason, ReferralAccepted, ReferralDeclined
from shared.events.plans import (
    ActionCompleted,
    ActionOverdue,
    AssessmentCompleted,
    CaseClosed,
    CaseOpened,
    ImplementationStarted,
    MemberJoined,
    PlanEndorsed,
    ReviewRecorded,
)
from shared.events.referral import ConsentRecorded, ReferralReceived, ReferralWithdrawn, Sharing
from shared.messaging.envelope import H_TYPE, Envelope, decode_headers
from shared.migrations import create_backbone

SCHEMA = "bench_reporting"
STREAMS = ("referral", "panel", "assignment", "plans", "hub")
CONSUMER = "reporting.figures"
DAY = timedelta(days=1)


def journey(n: int, run: str, start: datetime, rng: random.Random) -> Iterator[tuple[str, Event, str, datetime]]:
    """One child's journey as (stream, event, key, time)."""
    child, referral, case = f"child-{run}-{n}", f"ref-{run}-{n}", f"case-{run}-{n}"
    agency = rng.choice(("health-nz", "education-moe", "police", "oranga-tamariki", "whanau-ora-ngo"))
    received = start + timedelta(hours=rng.randint(0, 24 * 365))
    yield (
        "referral",
        ReferralReceived(
            referral_id=referral,
            child_id=child,
            agency=agency,
            received_at=received,
            reasons=rng.sample(list(ReasonCode), 2),
            needs=rng.sample(list(NeedDomain), 2),
            participation=Participation.YES,
            sibling_group_id=f"siblings-{run}-{n // 2}",
            family_preference=False,
        ),
        child,
        received,
    )
    yield (
        "referral",
        ConsentRecorded(
            child_id=child,
            referral_id=referral,
            version=1,
            participation=Participation.YES,
            sharing=[Sharing(agency=agency, purposes=[SharingPurpose.ASSESSMENT])],
            recorded_at=received,
        ),
        child,
        received,
    )
    fate = rng.random()
    decided = received + rng.randint(1, 8) * DAY
    if fate < 0.05:
        yield "referral", ReferralWithdrawn(referral_id=referral, child_id=child, reason="family moved"), child, decided
        return
    if fate < 0.15:
        declined = ReferralDeclined(
            referral_id=referral,
            child_id=child,
            decided_at=decided,
            reason=rng.choice(list(DeclineReason)),
            recommendations_to_referrer=[],
            serious_risk=False,
        )
        yield "panel", declined, child, decided
        return
    accepted = ReferralAccepted(
        referral_id=referral,
        child_id=child,
        decided_at=decided,
        needs_profile=[NeedDomain.EDUCATION],
        safety_planning_required=False,
        recommendations_for_lead=[],
    )
    yield "panel", accepted, child, decided
    lead, manager, assigned = f"lead-{run}-{n % 150}", f"mgr-{run}-{n % 15}", decided + rng.randint(1, 5) * DAY
    proposal = f"proposal-{run}-{n}"
    yield (
        "assignment",
        LeadProposed(
            proposal_id=proposal,
            child_id=child,
            referral_id=referral,
            practitioner_id=lead,
            manager_id=manager,
            score=70,
            basis="score",
            respond_by=assigned,
        ),
        child,
        decided,
    )
    yield (
        "assignment",
        LeadAssigned(
            proposal_id=proposal,
            child_id=child,
            referral_id=referral,
            practitioner_id=lead,
            manager_id=manager,
            assigned_at=assigned,
        ),
        child,
        assigned,
    )
    opened = CaseOpened(
        case_id=case, child_id=child, referral_id=referral, lead_practitioner_id=lead, opened_at=assigned
    )
    yield "plans", opened, child, assigned
    for member in (lead, f"child:{child}"):
        joined = MemberJoined(
            case_id=case, child_id=child, member_id=member, kind="lead", agency=None, legal_basis=None
        )
        yield "plans", joined, child, assigned
    assessed, endorsed = assigned + rng.randint(5, 30) * DAY, assigned + rng.randint(31, 60) * DAY
    yield (
        "plans",
        AssessmentCompleted(case_id=case, child_id=child, needs=["education"], completed_at=assessed),
        child,
        assessed,
    )
    yield (
        "plans",
        PlanEndorsed(plan_id=f"plan-{case}", case_id=case, child_id=child, endorsed_at=endorsed),
        child,
        endorsed,
    )
    started = ImplementationStarted(
        case_id=case, child_id=child, plan_id=f"plan-{case}", next_review_due=endorsed + 42 * DAY
    )
    yield "plans", started, child, endorsed
    for k in range(2):
        action, due = f"action-{case}-{k}", endorsed + 14 * DAY
        if rng.random() < 0.2:
            overdue = ActionOverdue(
                action_id=action,
                case_id=case,
                child_id=child,
                owner_member_id=lead,
                lead_practitioner_id=lead,
                due_on=str(due.date()),
            )
            yield "plans", overdue, child, due + DAY
        done = ActionCompleted(action_id=action, case_id=case, child_id=child, owner_member_id=lead)
        yield "plans", done, child, due + rng.randint(-5, 5) * DAY
    reviewed = endorsed + 42 * DAY
    yield "plans", ReviewRecorded(case_id=case, child_id=child, outcome="close", reviewed_at=reviewed), child, reviewed
    if rng.random() < 0.8:
        closed = CaseClosed(
            case_id=case,
            child_id=child,
            referral_id=referral,
            reason="goals_achieved",
            handover_to=["universal_services"],
            closed_at=reviewed + DAY,
            child_rating=rng.randint(3, 5),
            whanau_rating=rng.randint(2, 5),
            feedback_comments=rng.randint(0, 2),
        )
        yield "plans", closed, child, reviewed + DAY


def concern(n: int, run: str, start: datetime, rng: random.Random) -> Iterator[tuple[str, Event, str, datetime]]:
    concern_id, escalation = f"concern-{run}-{n}", f"esc-{run}-{n}"
    screened = start + timedelta(hours=rng.randint(0, 24 * 365))
    yield (
        "hub",
        ConcernScreened(
            concern_id=concern_id,
            child_id=None,
            priority="critical",
            rules_fired=["immediate_danger"],
            screened_at=screened,
        ),
        concern_id,
        screened,
    )
    targets: Any = ["contact_centre"]
    started = EscalationStarted(
        escalation_id=escalation,
        concern_id=concern_id,
        child_id=None,
        targets=targets,
        steps_in_policy=3,
        started_at=screened,
    )
    yield "hub", started, concern_id, screened
    seconds = rng.uniform(10, 900)
    acknowledged = EscalationAcknowledged(
        escalation_id=escalation,
        concern_id=concern_id,
        child_id=None,
        acknowledged_by="contact-centre-1",
        acknowledged_at=screened + timedelta(seconds=seconds),
        seconds_to_acknowledge=seconds,
    )
    yield "hub", acknowledged, concern_id, screened + timedelta(seconds=seconds)


async def publish(bootstrap: str, topics: dict[str, str], journeys: int, run: str) -> dict[str, int]:
    """Every journey's events on the bench copies of the streams, in order per child; messages per stream."""
    rng = random.Random(20261122)
    start = datetime(2025, 7, 1, tzinfo=UTC)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    sent = dict.fromkeys(STREAMS, 0)
    try:
        pending = []
        for n in range(journeys):
            events = list(journey(n, run, start, rng))
            if n % 3 == 0:
                events += concern(n, run, start, rng)
            for stream, event, key, at in events:
                envelope = Envelope(event=event, source=f"/services/{stream}", subject=key, time=at)
                headers = [(k, v.encode()) for k, v in envelope.headers().items()]
                pending.append(await producer.send(topics[stream], envelope.body(), key=envelope.key, headers=headers))
                sent[stream] += 1
            if len(pending) > 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def settled(bootstrap: str, topics: list[str], expected: int) -> None:
    """Wait until the end offsets (what a reader started now would read to) count every message published."""
    partitions = await partitions_of(bootstrap, topics)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await reader.start()
    try:
        for _ in range(300):
            if sum((await reader.end_offsets(partitions)).values()) >= expected:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("the published messages never all showed in the end offsets")
    finally:
        await reader.stop()


async def consume_raw(bootstrap: str, topics: list[str], *, decode: bool) -> dict[str, Any]:
    """Read every partition from start to end (as the rebuild does), optionally decoding what reporting handles."""
    partitions = await partitions_of(bootstrap, topics)
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
    )
    await reader.start()
    count = decoded = 0
    try:
        started = time.monotonic()
        reader.assign(partitions)
        ends = await reader.end_offsets(partitions)
        starts = await reader.beginning_offsets(partitions)
        for tp in partitions:
            reader.seek(tp, starts[tp])
        waiting = {tp for tp in partitions if ends[tp] > starts[tp]}
        while waiting:
            fetched = await reader.getmany(*waiting, timeout_ms=1000, max_records=1000)
            for records in fetched.values():
                count += len(records)
                if decode:
                    for record in records:
                        headers = decode_headers(record.headers)
                        if headers.get(H_TYPE) in BY_TYPE:
                            Envelope.decode(headers, record.value or b"")
                            decoded += 1
            for tp in list(waiting):
                if await reader.position(tp) >= ends[tp]:
                    waiting.discard(tp)
        seconds = time.monotonic() - started
    finally:
        await reader.stop()
    return {"messages": count, "decoded": decoded, "seconds": round(seconds, 2), "messages_per_s": rate(count, seconds)}


async def prepare_schema(engine: AsyncEngine) -> None:
    """An empty read model: reporting's tables, as its migrations make them, in a schema of the bench's own."""
    async with engine.begin() as connection:
        await connection.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await connection.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        await connection.run_sync(create_backbone)
        await connection.run_sync(storage.metadata.create_all)


async def bench(options: argparse.Namespace) -> dict[str, Any]:
    stack = Stack.from_env()
    run = uuid.uuid4().hex[:8]
    topics = {s: f"bench.rebuild.{run}.{s}.events" for s in STREAMS}
    print(f"bench.rebuild on Kafka {stack.bootstrap}, topics bench.rebuild.{run}.*, schema {SCHEMA}", flush=True)
    began = time.monotonic()
    await create_topics(stack.bootstrap, topics.values())
    engine = make_engine(stack.database_url, SCHEMA)
    try:
        async with asyncio.timeout(options.limit):
            sent = await publish(stack.bootstrap, topics, options.journeys, run)
            print(f"  published {sum(sent.values()):,} messages ({options.journeys:,} journeys)", flush=True)
            await settled(stack.bootstrap, list(topics.values()), sum(sent.values()))
            raw = await consume_raw(stack.bootstrap, list(topics.values()), decode=False)
            print(f"  raw consume: {raw['messages_per_s']:,.0f} messages/s", flush=True)
            decoding = await consume_raw(stack.bootstrap, list(topics.values()), decode=True)
            print(f"  raw consume and decode: {decoding['messages_per_s']:,.0f} messages/s", flush=True)
            await prepare_schema(engine)
            sessions = make_sessions(engine)
            await empty(sessions, CONSUMER)
            done = await replay(
                sessions, stack.bootstrap, consumer=CONSUMER, topics=list(topics.values()), batch=options.batch
            )
            rebuilt = {
                "messages": done.read,
                "events_applied": done.applied,
                "passed_over": done.read - done.applied - done.skipped - done.unreadable - done.failed,
                "failed": done.failed + done.unreadable,
                "seconds": round(done.seconds, 2),
                "messages_per_s": done.per_second,
                "events_per_s": rate(done.applied, done.seconds),
            }
            print(
                f"  rebuild: {rebuilt['messages_per_s']:,.0f} messages/s, {rebuilt['events_per_s']:,.0f} events "
                f"applied/s ({done.applied:,} events in {done.seconds:.1f}s)",
                flush=True,
            )
            async with engine.connect() as connection:
                facts = {
                    t.name: int((await connection.execute(text(f"SELECT count(*) FROM {t.name}"))).scalar_one())
                    for t in storage.FACT_TABLES
                }
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await engine.dispose()
        await delete_topics(stack.bootstrap, topics.values())
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "stack": {"kafka": stack.bootstrap, "postgres_port": os.environ.get("PG_PORT", "26432")},
        "settings": {"journeys": options.journeys, "batch": options.batch, "partitions": PARTITIONS},
        "published": sent,
        "raw": raw,
        "raw_decoding": decoding,
        "rebuild": rebuilt,
        "rebuild_vs_raw": round(rebuilt["messages_per_s"] / raw["messages_per_s"], 3)
        if raw["messages_per_s"]
        else None,
        "facts": facts,
        "duration_s": round(time.monotonic() - began, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rebuild", description=__doc__.split("\n")[0])
    parser.add_argument("--journeys", type=int, default=2000, help="children's journeys to publish (2000)")
    parser.add_argument("--batch", type=int, default=1000, help="events per rebuild transaction (1000)")
    parser.add_argument("--limit", type=float, default=600, help="give up after this many seconds (600)")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    results = asyncio.run(bench(options))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rebuild.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'rebuild.json'}", flush=True)


if __name__ == "__main__":
    main()
