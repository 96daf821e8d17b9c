"""Run a service in the test process against the real test stack: its broker, relay, timers and HTTP app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from deploy.local import database_url
from shared.security import issue_token
from shared.service import Runtime, running, runtime_of
from shared.settings import ServiceSettings

TEST_SETTINGS: dict[str, Any] = {
    "retry_base_seconds": 0.2,
    "relay_idle_seconds": 0.2,
    "timer_poll_seconds": 0.2,
}


@dataclass
class RunningService:
    runtime: Runtime
    api: httpx.AsyncClient


@asynccontextmanager
async def run_service(
    settings_class: type[ServiceSettings],
    create_app: Callable[[Any], FastAPI],
    *,
    kafka_bootstrap: str,
    key_file: str,
    **overrides: Any,
) -> AsyncIterator[RunningService]:
    service = settings_class().service
    settings = settings_class(
        database_url=database_url(service),
        kafka_bootstrap=kafka_bootstrap,
        auth_public_key_file=key_file,
        **(TEST_SETTINGS | overrides),
    )
    app = create_app(settings)
    runtime = runtime_of(app)
    transport = httpx.ASGITransport(app=app)
    async with running(runtime), httpx.AsyncClient(transport=transport, base_url=f"http://{service}") as api:
        yield RunningService(runtime, api)


def bearer(subject: str, agency: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(subject=subject, agency=agency, roles=list(roles))}"}
