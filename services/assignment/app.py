"""Wiring of the assignment service: its settings, the events it publishes and handles, its timers and routes."""

from fastapi import FastAPI

from services.assignment import handlers
from services.assignment.api import router
from shared.service import Subscription, create_service
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service: str = "assignment"
    http_port: int = 8103
    # How long a manager has to confirm or decline a proposed lead, in NZ working days.
    confirmation_window_working_days: int = 2


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    matcher = handlers.Matcher(confirmation_days=settings.confirmation_window_working_days)
    app = create_service(
        settings,
        title="Assignment service",
        subscriptions=[Subscription(consumer="matching", topics=handlers.HEARS, handlers=matcher.register)],
        timer_handlers=matcher.timers,
        routers=[router],
    )
    app.state.matcher = matcher
    return app
