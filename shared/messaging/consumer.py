"""The one way to consume: decode the envelope, handle once (inbox), commit, then retry or dead-letter failures.

Offsets are committed only after the batch's transaction committed and every failed message was handed to its
retry or dead-letter topic, so a crash at any point redelivers rather than loses. A failing message never blocks
its partition: it leaves through `<topic>.retry` and, after the last attempt, `<topic>.dlq`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import trace
from opentelemetry.propagate import extract
from prometheus_client import Counter, Gauge
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import Event
from shared.messaging.envelope import H_ID, H_TYPE, Envelope, EnvelopeError, decode_headers
from shared.messaging.errors import InvalidInput, PermanentError
from shared.messaging.inbox import first_deliveries, first_delivery
from shared.messaging.topics import dlq_topic, retry_topic

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]
# Called in the same transaction when a message on a strict (ingress) topic cannot be read: tells the sender why.
# It gets the topic the message arrived on, which names the sender on an agency's ingress topic.
Rejecter = Callable[[AsyncSession, str, dict[str, str], InvalidInput], Awaitable[None]]

# Headers the retry and dead-letter path adds; the original CloudEvents headers travel unchanged.
H_CONSUMER = "ctp_consumer"
H_ATTEMPTS = "ctp_attempts"
H_NOT_BEFORE = "ctp_not_before_ms"
H_ORIGIN_TOPIC = "ctp_origin_topic"
H_ORIGIN_PARTITION = "ctp_origin_partition"
H_ORIGIN_OFFSET = "ctp_origin_offset"
H_ERROR_TYPE = "ctp_error_type"
H_ERROR_MESSAGE = "ctp_error_message"
H_FAILED_AT = "ctp_failed_at"

RETRIED = Counter("ctp_messages_retried_total", "Messages sent to a retry topic", ["consumer", "topic"])
DEAD_LETTERED = Counter(
    "ctp_messages_dead_lettered_total", "Messages sent to a dead-letter topic", ["consumer", "topic"]
)
HANDLED = Counter("ctp_messages_handled_total", "Events handled (first delivery)", ["consumer", "type"])
LAG = Gauge(
    "ctp_consumer_lag_messages",
    "Records not yet committed by this consumer group on the partitions assigned to this instance",
    ["consumer", "topic"],
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    base_seconds: float = 1.0
    max_delay_seconds: float = 60.0

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt `attempt` (2 is the first retry)."""
        return float(min(self.max_delay_seconds, self.base_seconds * 4 ** (attempt - 2)))


class _HandlerFailed(Exception):
    """A handler raised during a batch's fast path: redo the batch one savepoint per event."""


@dataclass(frozen=True, slots=True)
class _Work:
    record: ConsumerRecord[Any, Any]
    headers: dict[str, str]
    attempt: int
    envelope: Envelope
    handler: Handler


@dataclass(slots=True)
class _Failure:
    record: ConsumerRecord[Any, Any]
    headers: dict[str, str]
    error: BaseException
    attempts: int
    permanent: bool


def _is_infrastructure(error: BaseException) -> bool:
    """The database itself is unreachable: stop and redeliver the batch instead of burning the message's retries."""
    return isinstance(error, OperationalError | InterfaceError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )


def _trusted_headers(record: ConsumerRecord[Any, Any], *, retried: bool) -> dict[str, str]:
    """The record's headers, with where it first arrived in `ctp_origin_*`.

    Only our consumers write retry topics; on a first delivery, `ctp_` headers come from the sender and are dropped, so
    an agency cannot claim its message arrived on another agency's topic.
    """
    headers = decode_headers(record.headers)
    if retried:
        return {
            H_ORIGIN_TOPIC: record.topic.removesuffix(".retry"),
            H_ORIGIN_PARTITION: str(record.partition),
            H_ORIGIN_OFFSET: str(record.offset),
        } | headers
    return {k: v for k, v in headers.items() if not k.startswith("ctp_")} | {
        H_ORIGIN_TOPIC: record.topic,
        H_ORIGIN_PARTITION: str(record.partition),
        H_ORIGIN_OFFSET: str(record.offset),
    }


def _describe(error: BaseException) -> str:
    if isinstance(error, InvalidInput):
        return error.describe()
    # Exception text may quote input; keep it short. Handlers raise messages that name fields, not values.
    return str(error)[:500]


@dataclass
class Consumer:
    """One consumer group of a service: the events it handles on which topics, with one retry and DLQ path."""

    name: str
    sessions: async_sessionmaker[AsyncSession]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_records: int = 200
    _handlers: dict[str, Handler] = field(default_factory=dict)
    _broker: KafkaBroker | None = None
    _subscribers: list[Any] = field(default_factory=list)
    _lag_topics: set[str] = field(default_factory=set)

    def handles(self, model: type[Event]) -> Callable[[Handler], Handler]:
        """Decorator: `@consumer.handles(ReferralReceived)` on `async def f(session, envelope)`."""

        def register(handler: Handler) -> Handler:
            self._handlers[model.ce_type] = handler
            return handler

        return register

    def attach(self, broker: KafkaBroker, topics: Sequence[str], *, reject: Rejecter | None = None) -> None:
        """Consume `topics` and their retry companions on the service's broker.

        With `reject` (ingress topics), a message that cannot be read also gets a rejection event to its sender, and
        every type is this consumer's business; without it, types nobody here handles are passed over.
        """
        self._broker = broker
        self._subscribe(broker, topics, reject=reject)

    def holds_partitions(self) -> bool:
        """Every subscription of this consumer (its topics and their retry topics) has been given partitions."""
        return bool(self._subscribers) and all(
            s.consumer is not None and s.consumer.assignment() for s in self._subscribers
        )

    async def measure_lag(self) -> None:
        """Set `ctp_consumer_lag_messages`: per topic, the records between this group's committed offsets and the
        high-water marks of the partitions this instance holds (what scaling on lag and the lag alert read)."""
        behind: dict[str, int] = {}
        for subscriber in self._subscribers:
            kafka = subscriber.consumer
            partitions = sorted(kafka.assignment()) if kafka is not None else []
            if not partitions:
                continue
            ends = await kafka.end_offsets(partitions)  # asked now: a fetch's high-water mark can be stale
            for partition in partitions:
                committed = await kafka.committed(partition)
                if committed is None:  # nothing committed yet: a restart would read from the earliest offset
                    committed = (await kafka.beginning_offsets([partition]))[partition]
                behind[partition.topic] = behind.get(partition.topic, 0) + max(0, ends[partition] - committed)
        # A topic this instance no longer holds (after a rebalance) reads 0 here, so summed lag is not counted twice.
        for topic in self._lag_topics | behind.keys():
            LAG.labels(self.name, topic).set(behind.get(topic, 0))
        self._lag_topics |= behind.keys()

    def _subscribe(self, broker: KafkaBroker, topics: Sequence[str], *, reject: Rejecter | None) -> None:
        # One Kafka consumer for all the group's topics and one for their retry topics: each consumer that joins a
        # group makes the whole group rebalance, so fewer members settle sooner.
        main = broker.subscriber(
            *topics,
            group_id=self.name,
            batch=True,
            max_records=self.max_records,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            title=f"{self.name}:main",
        )
        retries = broker.subscriber(
            *(retry_topic(topic) for topic in topics),
            group_id=self.name,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            title=f"{self.name}:retry",
        )
        self._subscribers += [main, retries]

        @main
        async def consume(message: KafkaMessage) -> None:
            raw = message.raw_message
            records = raw if isinstance(raw, tuple) else (raw,)
            await self._settle(message, records, retried=False, reject=reject)

        @retries
        async def consume_retry(message: KafkaMessage) -> None:
            record = message.raw_message
            assert not isinstance(record, tuple)
            headers = decode_headers(record.headers)
            if headers.get(H_CONSUMER) != self.name:
                await message.ack()  # another consumer group's retry
                return
            # Wait out the back-off here: only failed messages queue in the retry topic; nothing healthy waits behind.
            wait = int(headers.get(H_NOT_BEFORE, "0")) / 1000 - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._settle(message, (record,), retried=True, reject=reject)

    async def _settle(
        self,
        message: KafkaMessage,
        records: Sequence[ConsumerRecord[Any, Any]],
        *,
        retried: bool,
        reject: Rejecter | None,
    ) -> None:
        """Handle a batch, route its failures, then commit offsets. Never raises: on trouble, redeliver the batch."""
        outage = 0
        while True:
            try:
                failures = await self._handle_batch(records, retried=retried, reject=reject)
                await self._route_failures(failures)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # The database or Kafka is away. Keep the batch (nothing was committed to Kafka) and try again
                # with back-off; redelivery of the part that did commit is absorbed by the inbox.
                outage += 1
                delay = min(30.0, 0.25 * 2 ** min(outage, 7)) * random.uniform(0.8, 1.2)
                log.warning(
                    "consumer %s cannot settle a batch (%s); retrying in %.1fs", self.name, type(error).__name__, delay
                )
                await asyncio.sleep(delay)
                continue
            try:
                await message.ack()
            except Exception as error:
                # Typically a rebalance moved the partition away: its new owner gets the batch again, and the inbox
                # makes that harmless. Retrying the commit here could never succeed.
                log.warning("consumer %s could not commit offsets (%s)", self.name, type(error).__name__)
            return

    async def _handle_batch(
        self, records: Sequence[ConsumerRecord[Any, Any]], *, retried: bool, reject: Rejecter | None
    ) -> list[_Failure]:
        try:
            return await self._run_batch(records, retried=retried, reject=reject, isolate=False)
        except _HandlerFailed:
            # Rare: a handler raised, and the whole batch rolled back. Do it again with a savepoint per event,
            # so that only the failing events leave for the retry topic.
            return await self._run_batch(records, retried=retried, reject=reject, isolate=True)

    async def _run_batch(
        self,
        records: Sequence[ConsumerRecord[Any, Any]],
        *,
        retried: bool,
        reject: Rejecter | None,
        isolate: bool,
    ) -> list[_Failure]:
        failures: list[_Failure] = []
        async with self.sessions() as session, session.begin():
            work: list[_Work] = []
            for record in records:
                headers = _trusted_headers(record, retried=retried)
                attempt = int(headers.get(H_ATTEMPTS, "1")) + 1 if retried else 1
                if reject is None and headers.get(H_TYPE) not in self._handlers:
                    continue  # public streams carry many types; this consumer needs only some
                try:
                    envelope = Envelope.decode(headers, record.value or b"", topic=headers[H_ORIGIN_TOPIC])
                except EnvelopeError as error:
                    await self._reject(session, record, headers, error, reject)
                    failures.append(_Failure(record, headers, error, attempt, permanent=True))
                    continue
                handler = self._handlers.get(envelope.type)
                if handler is None:
                    # Only on an ingress topic (see above): a well-formed event of a type nobody here accepts.
                    refused = EnvelopeError(f"event type {envelope.type!r} is not accepted on {envelope.topic}")
                    await self._reject(session, record, headers, refused, reject)
                    failures.append(_Failure(record, headers, refused, attempt, permanent=True))
                    continue
                work.append(_Work(record, headers, attempt, envelope, handler))

            if not isolate:
                # The common case: one inbox statement for the whole batch and no savepoints.
                fresh = await first_deliveries(session, consumer=self.name, event_ids=[w.envelope.id for w in work])
                for item in work:
                    if item.envelope.id not in fresh:
                        continue  # handled before: a redelivery
                    fresh.discard(item.envelope.id)
                    try:
                        await self._handle_one(session, item)
                    except Exception as error:
                        if _is_infrastructure(error):
                            raise
                        raise _HandlerFailed from error
                return failures

            for item in work:
                try:
                    async with session.begin_nested():
                        if await first_delivery(session, consumer=self.name, event_id=item.envelope.id):
                            await self._handle_one(session, item)
                except InvalidInput as error:
                    # The handler found the input invalid: its sender hears why (in a savepoint of its own).
                    await self._reject(session, item.record, item.headers, error, reject)
                    failures.append(_Failure(item.record, item.headers, error, item.attempt, permanent=True))
                except Exception as error:
                    if _is_infrastructure(error):
                        raise
                    permanent = isinstance(error, PermanentError)
                    failures.append(_Failure(item.record, item.headers, error, item.attempt, permanent=permanent))
        return failures

    async def _handle_one(self, session: AsyncSession, item: _Work) -> None:
        # One span per event, child of the publisher's, so a child's journey stays one trace across services.
        with tracer.start_as_current_span(
            f"handle {item.envelope.type}",
            context=extract(item.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.consumer.group.name": self.name, "cloudevents.event_id": item.envelope.id},
        ):
            await item.handler(session, item.envelope)
        HANDLED.labels(self.name, item.envelope.type).inc()

    async def _reject(
        self,
        session: AsyncSession,
        record: ConsumerRecord[Any, Any],
        headers: dict[str, str],
        error: InvalidInput,
        reject: Rejecter | None,
    ) -> None:
        if reject is None:
            return
        # Unreadable messages may lack a ce_id; their position in the origin topic identifies them instead.
        origin = headers[H_ORIGIN_TOPIC]
        key = headers.get(H_ID) or f"{origin}/{headers[H_ORIGIN_PARTITION]}/{headers[H_ORIGIN_OFFSET]}"
        async with session.begin_nested():
            if await first_delivery(session, consumer=f"{self.name}:rejected", event_id=key):
                await reject(session, origin, headers, error)

    async def _route_failures(self, failures: list[_Failure]) -> None:
        if not failures:
            return
        broker = self._broker
        assert broker is not None, "attach() the consumer to a broker first"
        confirmations = []
        for failure in failures:
            topic = failure.headers[H_ORIGIN_TOPIC]
            headers = {k: v for k, v in failure.headers.items() if not k.startswith("ctp_")}
            headers |= {
                H_CONSUMER: self.name,
                H_ATTEMPTS: str(failure.attempts),
                H_ORIGIN_TOPIC: topic,
                H_ORIGIN_PARTITION: failure.headers[H_ORIGIN_PARTITION],
                H_ORIGIN_OFFSET: failure.headers[H_ORIGIN_OFFSET],
                H_ERROR_TYPE: type(failure.error).__name__,
                H_ERROR_MESSAGE: _describe(failure.error),
                H_FAILED_AT: str(int(time.time() * 1000)),
            }
            if failure.permanent or failure.attempts >= self.retry.attempts:
                destination = dlq_topic(topic)
                DEAD_LETTERED.labels(self.name, topic).inc()
                log.error(
                    "consumer %s dead-lettered a message from %s after %d attempt(s): %s",
                    self.name,
                    topic,
                    failure.attempts,
                    headers[H_ERROR_TYPE],
                )
            else:
                destination = retry_topic(topic)
                headers[H_NOT_BEFORE] = str(int((time.time() + self.retry.delay_before(failure.attempts + 1)) * 1000))
                RETRIED.labels(self.name, topic).inc()
            confirmations.append(
                await broker.publish(
                    failure.record.value or b"",
                    topic=destination,
                    key=failure.record.key,
                    headers=headers,
                    no_confirm=True,
                )
            )
        await asyncio.wait_for(asyncio.gather(*confirmations), timeout=60)
