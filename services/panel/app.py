"""Wiring of the panel service: its settings, the events it publishes and handles, its routes."""

from fastapi import FastAPI

from shared.service import create_service
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service: str = "panel"
    http_port: int = 8102


def create_app() -> FastAPI:
    return create_service(Settings(), title="Panel service")
