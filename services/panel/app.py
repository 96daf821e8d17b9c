"""Wiring of the panel service: its settings, the events it publishes and handles, its timers and routes."""

from functools import partial

from fastapi import FastAPI

from services.panel import handlers
from services.panel.api import router
from shared.service import Subscription, create_service
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service: str = "panel"
    http_port: int = 8102
    # How long the panel has to decide on a referral, in NZ working days (public holidays excluded).
    response_window_working_days: int = 5


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    return create_service(
        settings,
        title="Panel service",
        subscriptions=[
            Subscription(
                consumer="reviews",
                topics=handlers.HEARS,
                handlers=partial(handlers.register, response_window_days=settings.response_window_working_days),
            )
        ],
        timer_handlers=handlers.TIMERS,
        routers=[router],
    )
