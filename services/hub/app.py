"""Wiring of the hub service: its settings, the events it publishes and handles, its timers, watchdog, routes and
console."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from functools import partial

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.hub import console, handlers
from services.hub.api import router
from services.hub.watchdog import Watchdog
from shared.service import Subscription, create_service, runtime_of
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service: str = "hub"
    http_port: int = 8105
    # The escalation policy frozen into each escalation when it starts: how long the contact centre has to
    # acknowledge before the next step (seconds), and how many times the whole policy runs before it is exhausted.
    escalation_step_seconds: float = 300.0
    escalation_rounds: int = 3
    # The watchdog: how often it looks, and how late a step (or an undelivered escalation message) may be.
    watchdog_interval_seconds: float = 10.0
    watchdog_bound_seconds: float = 60.0


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    escalation = handlers.EscalationSettings(settings.escalation_step_seconds, settings.escalation_rounds)
    app = create_service(
        settings,
        title="Hub service",
        subscriptions=[
            # Each path its own consumer group, so a backlog on one never delays another (acknowledgements least).
            Subscription(
                consumer="acknowledgements", topics=[handlers.ACKS], handlers=handlers.register_acknowledgements
            ),
            Subscription(
                consumer="raised",
                topics=[handlers.RAISED],
                handlers=partial(handlers.register_raised, escalation=escalation),
            ),
            Subscription(
                consumer="intake",
                topics=handlers.AGENCY_CONCERNS,
                handlers=partial(handlers.register_intake, escalation=escalation),
                reject=handlers.reject_concern,
            ),
        ],
        timer_handlers=handlers.TIMERS,
        routers=[router, console.router],
    )
    app.state.escalation = escalation
    app.mount("/console/static", StaticFiles(directory=console.STATIC_DIR), name="console-static")
    app.state.console_development = console.development_sign_in(settings.auth_issuer)
    feed = console.ConsoleFeed(settings.database_url)
    app.state.console_feed = feed
    watchdog = Watchdog(
        sessions=runtime_of(app).sessions,
        interval_seconds=settings.watchdog_interval_seconds,
        bound_seconds=settings.watchdog_bound_seconds,
    )
    app.state.watchdog = watchdog
    service_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The watchdog runs beside the timer runner, not inside it, so a stalled runner cannot silence it.
        async with service_lifespan(app):
            tasks = [
                asyncio.create_task(watchdog.run(), name="escalation-watchdog"),
                asyncio.create_task(feed.run(), name="console-feed"),
            ]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    app.router.lifespan_context = lifespan
    return app
