"""Wiring of the plans service: its settings, the events it publishes and handles, its timers and routes."""

from fastapi import FastAPI

from services.plans import handlers
from services.plans.api import router
from shared.service import Subscription, create_service
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service: str = "plans"
    http_port: int = 8104
    # How often a Child's Plan is reviewed while it is being implemented, in days.
    review_interval_days: int = 42


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service(
        settings or Settings(),
        title="Plans service",
        subscriptions=[Subscription(consumer="cases", topics=handlers.HEARS, handlers=handlers.register)],
        timer_handlers=handlers.TIMERS,
        routers=[router],
    )
