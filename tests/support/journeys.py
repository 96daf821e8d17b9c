"""Checks on finished journeys, read from the real topics and the services' inboxes: every effect happened once, and
each service handled each child's events in the order they sit on their topic."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from deploy.local import SERVICES, database_url
from deploy.local.demo import play
from shared.db import make_engine
from shared.events import Event
from shared.events.assignment import LeadAssigned, LeadProposed
from shared.events.plans import CaseClosed, CaseOpened, MemberJoined
from shared.events.referral import Outcome, ReferralOutcome, ReferralReceived
from shared.messaging.envelope import Envelope, EnvelopeError, decode_headers
from shared.messaging.topics import TOPICS, outcomes_out

OUTCOMES = outcomes_out("health-nz")  # the agency of the demo's sample referral (deploy/local/samples.py)
STREAMS = ("referral.events", "panel.events", "assignment.events", "plans.events", "hub.events")
# What a journey must cause exactly once per child (a redelivered copy has the same event id; a second effect not).
ONCE: tuple[tuple[str, type[Event]], ...] = (
    ("referral.events", ReferralReceived),
    ("assignment.events", LeadProposed),
    ("assignment.events", LeadAssigned),
    ("plans.events", CaseOpened),
    ("plans.events", CaseClosed),
)
EVERY_OUTCOME = (Outcome.RECEIVED, Outcome.ACCEPTED, Outcome.LEAD_PROFESSIONAL_ASSIGNED, Outcome.CASE_CLOSED)


async def play_journeys(
    port_base: int, bootstrap: str, count: int, *, at_once: int, after_step: Callable[[str], Awaitable[None]]
) -> set[str]:
    """`count` sample journeys, `at_once` at a time, each to the contact centre's acknowledgement; their child ids."""
    slots = asyncio.Semaphore(at_once)

    async def one() -> str:
        async with slots:
            played = await play(port_base, bootstrap, echo=lambda _: None, after_step=after_step, poll_seconds=0.1)
        assert played.steps[-1].startswith("escalated at intake to the national contact centre; acknowledged")
        return played.child_id

    return set(await asyncio.gather(*(one() for _ in range(count))))


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    envelope: Envelope

    @property
    def child_id(self) -> str | None:
        return getattr(self.envelope.event, "child_id", None)


async def records_about(bootstrap: str, topics: Iterable[str], children: set[str] | None) -> list[Record]:
    """Every record about these children (None: every record) on these topics, from the beginning to the end offsets
    taken now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[Record] = []
    try:
        declared = {name: t.partitions for t in TOPICS for name in t.names()}
        partitions = [TopicPartition(topic, p) for topic in topics for p in range(declared[topic])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while [p for p in partitions if await consumer.position(p) < ends[p]]:
            batches = await consumer.getmany(*partitions, timeout_ms=500)
            for records in batches.values():
                for record in records:
                    try:
                        envelope = Envelope.decode(decode_headers(record.headers), record.value or b"")
                    except EnvelopeError:
                        continue
                    if children is None or getattr(envelope.event, "child_id", None) in children:
                        found.append(Record(record.topic, record.partition, record.offset, envelope))
    finally:
        await consumer.stop()
    return found


def assert_every_effect_once(records: list[Record], children: set[str]) -> None:
    for child in children:
        about = [r for r in records if r.child_id == child]
        for topic, kind in ONCE:
            ids = {r.envelope.id for r in about if r.topic == topic and isinstance(r.envelope.event, kind)}
            assert len(ids) == 1, f"child {child}: {len(ids)} distinct {kind.__name__} on {topic}"
        joined = {r.envelope.id: r.envelope.event for r in about if isinstance(r.envelope.event, MemberJoined)}
        members = [event.member_id for event in joined.values()]
        assert sorted(members) == sorted(set(members)), f"child {child}: someone joined twice: {members}"
        told = {r.envelope.id: r.envelope.event for r in about if isinstance(r.envelope.event, ReferralOutcome)}
        outcomes = [e.outcome for e in told.values() if not e.resent]
        assert sorted(outcomes) == sorted(set(outcomes)), f"child {child}: an outcome told twice: {outcomes}"
        assert set(EVERY_OUTCOME) <= set(outcomes), f"child {child}: outcomes {outcomes}"


async def assert_handled_in_order(records: list[Record]) -> int:
    """For every service's consumer and every child, the events it handled from one topic were handled in offset order
    (a batch shares one commit time, so equal times are allowed). Returns how many (consumer, child, topic) sequences
    of two or more events were checked."""
    by_id = {r.envelope.id: r for r in records}
    checked = 0
    for service in SERVICES:
        engine = make_engine(database_url(service), service)
        try:
            async with engine.connect() as connection:
                rows = (
                    await connection.execute(
                        text("SELECT consumer, event_id, handled_at FROM inbox WHERE event_id = ANY(:ids)"),
                        {"ids": list(by_id)},
                    )
                ).all()
        finally:
            await engine.dispose()
        sequences: dict[tuple[str, str | None, str], list[tuple[int, datetime]]] = defaultdict(list)
        for consumer, event_id, handled_at in rows:
            record = by_id[event_id]
            sequences[(consumer, record.child_id, record.topic)].append((record.offset, handled_at))
        for (consumer, child, topic), handled in sequences.items():
            times = [at for _, at in sorted(handled)]
            assert times == sorted(times), f"{consumer} handled child {child}'s events from {topic} out of order"
            checked += len(handled) > 1
    return checked
