"""Wiring every service shares: broker, database, outbox relay, timers, health, metrics and auth, in one FastAPI app.

A service's app.py declares its settings, consumers, timer handlers and HTTP routes, and calls `create_service`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.db import make_engine, make_sessions
from shared.messaging.broker import kafka_security, make_broker
from shared.messaging.consumer import Consumer, Rejecter, RetryPolicy
from shared.messaging.outbox import OutboxRelay
from shared.security import verifier_from_file
from shared.settings import ServiceSettings
from shared.telemetry import setup_logging, setup_tracing
from shared.timers import TimerHandler, TimerRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subscription:
    """Topics a consumer group reads; `reject` marks ingress topics whose unreadable messages are answered."""

    consumer: str
    topics: Sequence[str]
    handlers: Callable[[Consumer], None]
    reject: Rejecter | None = None


@dataclass
class Runtime:
    """What a running service holds: the pieces handlers and routes reach through `app.state.runtime`."""

    settings: ServiceSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    broker: KafkaBroker
    relay: OutboxRelay
    timers: TimerRunner
    consumers: list[Consumer] = field(default_factory=list)


def build_runtime(
    settings: ServiceSettings,
    subscriptions: Sequence[Subscription] = (),
    timer_handlers: Mapping[str, TimerHandler] | None = None,
) -> Runtime:
    engine = make_engine(settings.database_url, settings.db_schema, pool_size=settings.database_pool_size)
    sessions = make_sessions(engine)
    broker = make_broker(settings.kafka_bootstrap, client_id=settings.service, security=kafka_security(settings))
    retry = RetryPolicy(settings.retry_attempts, settings.retry_base_seconds, settings.retry_max_delay_seconds)
    consumers = []
    for subscription in subscriptions:
        consumer = Consumer(
            name=f"{settings.service}.{subscription.consumer}",
            sessions=sessions,
            retry=retry,
            max_records=settings.consumer_max_records,
        )
        subscription.handlers(consumer)
        consumer.attach(broker, subscription.topics, reject=subscription.reject)
        consumers.append(consumer)
    relay = OutboxRelay(
        service=settings.service,
        sessions=sessions,
        broker=broker,
        database_url=settings.database_url,
        batch_size=settings.relay_batch_size,
        idle_seconds=settings.relay_idle_seconds,
    )
    timer_runner = TimerRunner(
        sessions=sessions,
        handlers=timer_handlers or {},
        poll_seconds=settings.timer_poll_seconds,
        lease_seconds=settings.timer_lease_seconds,
    )
    return Runtime(settings, engine, sessions, broker, relay, timer_runner, consumers)


async def _connect_then_relay(runtime: Runtime) -> None:
    """Connect to Kafka, retrying while it is away, then relay the outbox.

    A service whose broker is down still starts and still accepts work: its writes commit to the outbox and
    are published once Kafka answers.
    """
    attempt = 0
    while True:
        try:
            await runtime.broker.start()
            break
        except Exception as error:
            attempt += 1
            delay = min(10.0, 0.5 * attempt)
            log.warning("Kafka unreachable at start-up (%s); retrying in %.1fs", type(error).__name__, delay)
            with contextlib.suppress(Exception):
                await runtime.broker.stop()  # release the half-started producer before the next try
            await asyncio.sleep(delay)
    log.info("connected to Kafka")
    await runtime.relay.run()


async def _measure_lag(runtime: Runtime) -> None:
    """Keep `ctp_consumer_lag_messages` current in the background: asking Kafka for offsets can take seconds while a
    group rebalances, so a scrape of /metrics only reads the gauge."""
    every = runtime.settings.lag_interval_seconds
    while True:
        await asyncio.sleep(every)
        for consumer in runtime.consumers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.measure_lag(), every)


@contextlib.asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[Runtime]:
    """Start the broker with the relay, the timers and the lag measurement; stop them in reverse on the way out."""
    tasks = [
        asyncio.create_task(_connect_then_relay(runtime), name="broker-and-relay"),
        asyncio.create_task(runtime.timers.run(), name="timers"),
        asyncio.create_task(_measure_lag(runtime), name="consumer-lag"),
    ]
    try:
        yield runtime
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A consumer caught mid-rebalance can take long to leave its group; never let shutdown hang on it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.broker.stop(), 30)
        await runtime.engine.dispose()


async def readiness(runtime: Runtime) -> dict[str, str]:
    """Ready means the database answers, the broker's metadata can be fetched and every consumer holds partitions."""
    checks: dict[str, str] = {}
    try:
        async with runtime.sessions() as session:
            await asyncio.wait_for(session.execute(text("SELECT 1")), 2)
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"unreachable: {type(error).__name__}"
    try:
        checks["kafka"] = "ok" if await runtime.broker.ping(timeout=2) else "unreachable"
    except Exception as error:
        checks["kafka"] = f"unreachable: {type(error).__name__}"
    # Until every consumer group has handed this instance its partitions, events wait (the groups are still
    # rebalancing after start-up). With more instances than partitions a spare instance would wait here for good.
    joined = all(consumer.holds_partitions() for consumer in runtime.consumers)
    checks["consumers"] = "ok" if joined else "joining their groups"
    return checks


def create_service(
    settings: ServiceSettings,
    *,
    title: str,
    subscriptions: Sequence[Subscription] = (),
    timer_handlers: Mapping[str, TimerHandler] | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    setup_logging(settings.service)
    setup_tracing(settings.service)
    runtime = build_runtime(settings, subscriptions, timer_handlers)
    SQLAlchemyInstrumentor().instrument(engine=runtime.engine.sync_engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(runtime):
            log.info("service %s started", settings.service)
            yield

    app = FastAPI(title=title, lifespan=lifespan)
    app.state.runtime = runtime
    app.state.token_verifier = verifier_from_file(
        settings.auth_public_key_file, settings.auth_issuer, settings.auth_audience
    )

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/health/ready", tags=["health"])
    async def ready() -> Response:
        checks = await readiness(runtime)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "not ready", **checks}, status_code=200 if ok else 503)

    @app.get("/health/serving", tags=["health"])
    async def serving() -> Response:
        """Can this instance take work? Only the database matters: with Kafka away, writes wait in the outbox (a
        critical concern is still taken in), so a load balancer must keep sending requests here."""
        checks = await readiness(runtime)
        ok = checks["database"] == "ok"
        return JSONResponse({"status": "serving" if ok else "not serving", **checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        with contextlib.suppress(Exception):
            await runtime.relay.measure_backlog()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    FastAPIInstrumentor.instrument_app(app, excluded_urls="health/.*,metrics")
    return app


def runtime_of(app: Any) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime
