"""Wiring of the hub service: its settings, the events it publishes and handles, its routes."""

from fastapi import FastAPI

from shared.service import create_service
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service: str = "hub"
    http_port: int = 8105


def create_app() -> FastAPI:
    return create_service(Settings(), title="Hub service")
