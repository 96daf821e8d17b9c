"""Wiring of the reporting service: its settings, the streams it reads into its facts, and its routes."""

from fastapi import FastAPI

from services.reporting import api, handlers, page
from shared.service import Subscription, create_service
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service: str = "reporting"
    http_port: int = 8106


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service(
        settings or Settings(),
        title="Reporting service",
        subscriptions=[Subscription(consumer=handlers.CONSUMER, topics=handlers.HEARS, handlers=handlers.register)],
        # The page's /reports before the API's /reports/{name}: both are plain paths, so the order is only tidiness.
        routers=[page.router, api.router],
    )
