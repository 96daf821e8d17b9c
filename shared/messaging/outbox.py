"""Transactional outbox: events are rows written with the state change; a relay publishes them in order per key."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import zlib
from collections.abc import Sequence
from typing import Any

import asyncpg
from faststream.kafka import KafkaBroker
from opentelemetry import context as otel_context
from opentelemetry.propagate import extract, inject
from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.messaging.envelope import Envelope
from shared.messaging.tables import notify_channel, outbox

log = logging.getLogger(__name__)

BUCKETS = 16

# Buckets another relay holds are skipped. Ordering by id with a limit takes a prefix of each locked bucket's rows,
# so a key's events always leave in the order they were written.
_CLAIM = text(
    """
    WITH mine AS (
        SELECT bucket FROM (SELECT DISTINCT bucket FROM outbox WHERE sent_at IS NULL) pending
        WHERE pg_try_advisory_xact_lock(:space, bucket)
    )
    , claimed AS (
        SELECT id FROM outbox
        WHERE sent_at IS NULL AND bucket IN (SELECT bucket FROM mine)
        ORDER BY id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE outbox SET sent_at = now() WHERE id IN (SELECT id FROM claimed)
    RETURNING id, topic, key, headers, body
    """
)

OUTBOX_BACKLOG = Gauge("ctp_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge("ctp_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row", ["service"])


def bucket_of(key: str) -> int:
    return zlib.crc32(key.encode()) % BUCKETS


async def add_to_outbox(session: AsyncSession, envelope: Envelope, *, topic: str) -> None:
    """Queue an event in the caller's transaction: it is published if, and only if, the transaction commits."""
    headers = envelope.headers()
    # Remember the trace the event was born in, so the relay's publish continues it.
    inject(headers)
    await session.execute(
        outbox.insert().values(
            event_id=envelope.id,
            topic=topic,
            key=envelope.subject,
            bucket=bucket_of(envelope.subject),
            headers=headers,
            body=envelope.body(),
        )
    )


class OutboxRelay:
    """Publishes committed outbox rows to Kafka and marks them sent. Any number of instances may run at once."""

    def __init__(
        self,
        *,
        service: str,
        sessions: async_sessionmaker[AsyncSession],
        broker: KafkaBroker,
        database_url: str,
        batch_size: int = 500,
        idle_seconds: float = 1.0,
    ) -> None:
        self.service = service
        self.sessions = sessions
        self.broker = broker
        self.database_url = database_url
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self._wake = asyncio.Event()
        # Advisory locks are database-wide: namespace them by schema so services never contend.
        self._lock_space = zlib.crc32(f"outbox:{service}".encode()) & 0x7FFFFFFF

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen(), name=f"outbox-listen-{self.service}")
        failures = 0
        try:
            while True:
                self._wake.clear()
                try:
                    published = await self.publish_pending()
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    # Kafka or the database is away: the rows stay unsent and are retried; back off, don't spin.
                    failures += 1
                    delay = min(30.0, 0.5 * 2 ** min(failures, 6)) * random.uniform(0.8, 1.2)
                    log.warning("outbox relay failed (%s); retrying in %.1fs", type(error).__name__, delay)
                    await asyncio.sleep(delay)
                    continue
                if published < self.batch_size:
                    # Caught up: a pass right away would most likely find nothing. Rows committed meanwhile have
                    # already set the wake-up (it is cleared before the pass), so nothing waits for the idle timer.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.idle_seconds)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def publish_pending(self) -> int:
        """One pass: lock every bucket with unsent rows that no other relay holds, publish their oldest rows in
        order, mark them sent, all in one transaction. Returns how many rows this instance published."""
        async with self.sessions() as session, session.begin():
            claimed = await session.execute(_CLAIM, {"space": self._lock_space, "limit": self.batch_size})
            rows = sorted(claimed.all(), key=lambda row: row.id)  # RETURNING has no order; a key's events need theirs
            if rows:
                await self._publish(rows)  # raises, rolling the marks back, unless Kafka acknowledged every row
        return len(rows)

    async def _publish(self, rows: Sequence[Any]) -> None:
        # Send every row before waiting for any acknowledgement: the idempotent producer keeps per-partition order.
        pending = []
        for row in rows:
            headers: dict[str, str] = dict(row.headers)
            token = otel_context.attach(extract(headers))
            try:
                pending.append(
                    await self.broker.publish(
                        row.body,
                        topic=row.topic,
                        key=row.key.encode(),
                        headers=headers,
                        correlation_id=headers.get("ce_correlationid"),
                        no_confirm=True,
                    )
                )
            finally:
                otel_context.detach(token)
        await asyncio.wait_for(asyncio.gather(*pending), timeout=60)

    async def _listen(self) -> None:
        url = make_url(self.database_url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        channel = notify_channel(self.service)
        while True:
            try:
                connection = await asyncpg.connect(dsn)
                try:
                    await self._listen_on(connection, channel)
                finally:
                    await connection.close()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("outbox listener lost its connection (%s)", type(error).__name__)
                await asyncio.sleep(self.idle_seconds)

    async def _listen_on(self, connection: asyncpg.Connection, channel: str) -> None:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda *_: lost.set())
        await connection.add_listener(channel, lambda *_: self._wake.set())
        self._wake.set()  # rows may have arrived while we were not listening
        await lost.wait()

    async def measure_backlog(self) -> None:
        """Export the backlog size and oldest age as gauges (called by the metrics scrape loop)."""
        async with self.sessions() as session:
            row = (
                await session.execute(
                    text(
                        "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) "
                        "FROM outbox WHERE sent_at IS NULL"
                    )
                )
            ).one()
        OUTBOX_BACKLOG.labels(self.service).set(row[0])
        OUTBOX_OLDEST_AGE.labels(self.service).set(float(row[1]))
