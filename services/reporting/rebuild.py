"""Rebuild the read model from the public streams: `python -m services.reporting.rebuild`.

1. In one transaction: empty the fact tables and forget what the live consumer's inbox says it handled.
2. Take the end offset of every partition of the streams, now.
3. Read every partition from its first offset to that end, through the live consumer's own handlers (`HANDLERS`)
   and inbox, a batch per transaction.

The live service may keep running: what it handles after step 1 is in the facts and in the inbox (so the replay
passes over it), what it handled before is below the end offsets (so the replay does it again), and the handlers do
not care in which order events come. Afterwards the live consumer carries on from its own committed offsets.
Figures after a rebuild equal figures kept up to date live, as long as the topics still hold every event (see
docs/reporting.md on retention).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.reporting import storage
from services.reporting.app import Settings
from services.reporting.handlers import CONSUMER, HANDLERS, HEARS
from shared.db import make_engine, make_sessions, transaction
from shared.messaging.broker import client_security
from shared.messaging.consumer import Handler
from shared.messaging.envelope import H_TYPE, Envelope, EnvelopeError, decode_headers
from shared.messaging.inbox import first_deliveries, first_delivery
from shared.messaging.tables import inbox

log = logging.getLogger(__name__)
BY_TYPE: dict[str, Handler] = {model.ce_type: handler for model, handler in HANDLERS.items()}


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What a rebuild did: messages read, events applied, events passed over as already applied (by the live
    consumer meanwhile), messages that are not readable events and events whose handler failed (the live consumer
    dead-letters both), and how long it took."""

    read: int
    applied: int
    skipped: int
    unreadable: int
    failed: int
    seconds: float

    @property
    def per_second(self) -> float:
        return round(self.read / self.seconds, 1) if self.seconds > 0 else 0.0


async def empty(sessions: async_sessionmaker[AsyncSession], consumer: str) -> None:
    """Step 1: no facts, and no memory of having handled anything."""
    async with transaction(sessions) as session:
        await storage.truncate_facts(session)
        await session.execute(delete(inbox).where(inbox.c.consumer == consumer))


async def apply(
    sessions: async_sessionmaker[AsyncSession], consumer: str, records: Sequence[ConsumerRecord[Any, Any]]
) -> tuple[int, int, int, int]:
    """Apply one batch in one transaction, as the live consumer does; (applied, skipped, unreadable, failed)."""
    envelopes: list[Envelope] = []
    unreadable = failed = 0
    for record in records:
        headers = decode_headers(record.headers)
        if headers.get(H_TYPE) not in BY_TYPE:
            continue
        try:
            envelopes.append(Envelope.decode(headers, record.value or b""))
        except EnvelopeError:
            unreadable += 1
    if not envelopes:
        return 0, 0, unreadable, 0
    try:
        async with transaction(sessions) as session:
            fresh = await first_deliveries(session, consumer=consumer, event_ids=[e.id for e in envelopes])
            applied = 0
            for envelope in envelopes:
                if envelope.id in fresh:
                    fresh.discard(envelope.id)
                    await BY_TYPE[envelope.type](session, envelope)
                    applied += 1
            return applied, len(envelopes) - applied, unreadable, 0
    except Exception:
        log.warning("a rebuild batch failed; applying it one event at a time")
    # Rare: one event's handler failed. Keep the others, each in a savepoint of its own.
    applied = skipped = 0
    async with transaction(sessions) as session:
        for envelope in envelopes:
            try:
                async with session.begin_nested():
                    if await first_delivery(session, consumer=consumer, event_id=envelope.id):
                        await BY_TYPE[envelope.type](session, envelope)
                        applied += 1
                    else:
                        skipped += 1
            except Exception as error:
                log.error("rebuild could not apply %s (%s)", envelope.type, type(error).__name__)
                failed += 1
    return applied, skipped, unreadable, failed


async def partitions_of(
    bootstrap: str, topics: Sequence[str], security: Mapping[str, Any] | None = None
) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(security or {}))
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return sorted(TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"])


async def replay(
    sessions: async_sessionmaker[AsyncSession],
    bootstrap: str,
    *,
    consumer: str,
    topics: Sequence[str] = HEARS,
    batch: int = 1000,
    security: Mapping[str, Any] | None = None,
) -> Rebuilt:
    """Steps 2 and 3: every partition of `topics` from its start to its end as of now, through the handlers."""
    started = time.monotonic()
    partitions = await partitions_of(bootstrap, topics, security)
    # `earliest`: with no group there is nothing committed, and aiokafka's default reset ("latest") can race with a
    # seek and leave a partition at its end, so that the replay silently reads nothing of it.
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        **(security or {}),
    )
    await reader.start()
    read = applied = skipped = unreadable = failed = 0
    try:
        reader.assign(partitions)
        ends = await reader.end_offsets(partitions)
        starts = await reader.beginning_offsets(partitions)
        waiting = {tp for tp in partitions if ends[tp] > starts[tp]}
        for tp in partitions:
            reader.seek(tp, starts[tp])
        for tp in partitions:
            if await reader.position(tp) != starts[tp]:
                raise RuntimeError(f"could not start reading {tp.topic}/{tp.partition} at its first offset")
        while waiting:
            fetched = await reader.getmany(*waiting, timeout_ms=1000, max_records=batch)
            records = []
            for tp, got in fetched.items():
                records += [r for r in got if r.offset < ends[tp]]
            for tp in list(waiting):
                if await reader.position(tp) >= ends[tp]:
                    waiting.discard(tp)
                    reader.pause(tp)
            read += len(records)
            done = await apply(sessions, consumer, records)
            applied, skipped = applied + done[0], skipped + done[1]
            unreadable, failed = unreadable + done[2], failed + done[3]
    finally:
        await reader.stop()
    return Rebuilt(read, applied, skipped, unreadable, failed, time.monotonic() - started)


async def rebuild(settings: Settings, *, topics: Sequence[str] = HEARS, batch: int = 1000) -> Rebuilt:
    """Empty the read model, then replay the streams into it."""
    engine = make_engine(settings.database_url, settings.db_schema)
    sessions = make_sessions(engine)
    consumer = f"{settings.service}.{CONSUMER}"
    security = client_security(settings)
    try:
        # Kafka must answer before anything is emptied: a rebuild that cannot read the streams changes nothing.
        await partitions_of(settings.kafka_bootstrap, topics, security)
        await empty(sessions, consumer)
        return await replay(
            sessions, settings.kafka_bootstrap, consumer=consumer, topics=topics, batch=batch, security=security
        )
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.reporting.rebuild", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000, help="events per transaction (default 1000)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    done = asyncio.run(rebuild(Settings(), batch=args.batch))
    print(
        f"reporting rebuilt: {done.read} messages read, {done.applied} events applied, "
        f"{done.skipped} already applied (duplicates, or handled by the live consumer meanwhile), "
        f"{done.unreadable} unreadable, {done.failed} failed, "
        f"in {done.seconds:.1f}s ({done.per_second:,.0f} messages/s)"
    )


if __name__ == "__main__":
    main()
