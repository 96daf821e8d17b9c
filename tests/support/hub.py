"""Test helpers for the hub: concern reports, the hub as a real OS process, the contact-centre simulator, and
reading escalation topics from the start (a message published while a reader was still opening is not missed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from deploy.local import database_url
from services.hub.app import Settings, create_app
from shared.events import Event
from tests.support.journeys import records_about
from tests.support.services import RunningService, run_service

ROOT = Path(__file__).resolve().parents[2]
KEY_FILE = str(ROOT / ".local" / "keys" / "dev-issuer.pub.pem")


def concern(**overrides: Any) -> dict[str, Any]:
    """A concern as a professional would raise it over HTTP (JSON), not critical unless overridden."""
    report: dict[str, Any] = {
        "child": {"given_names": "Aroha", "family_name": "Tane", "date_of_birth": "2016-04-02", "locality": "Porirua"},
        "reporter": {
            "name": "Mere Smith",
            "agency": "education-moe",
            "role": "teacher",
            "contact": {"phone": "+64 4 555 0101"},
        },
        "categories": ["neglect"],
        "what_was_seen": "Came to school hungry three days running.",
        "seen_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
        "immediate_danger": False,
    }
    return report | overrides


def critical_concern(**overrides: Any) -> dict[str, Any]:
    return concern(
        categories=["physical_harm"],
        what_was_seen="Child says a caregiver hit them and is afraid to go home tonight.",
        immediate_danger=True,
        child_location="Porirua School office",
        **overrides,
    )


@asynccontextmanager
async def run_hub(kafka_bootstrap: str, **overrides: Any) -> AsyncIterator[RunningService]:
    async with run_service(
        Settings, create_app, kafka_bootstrap=kafka_bootstrap, key_file=KEY_FILE, **overrides
    ) as hub:
        yield hub


async def read_all(bootstrap: str, topic: str, kind: type[Event], where: Any = lambda _: True) -> list[Any]:
    """Every message of `kind` on `topic` matching `where`, from the beginning (the test topics are small)."""
    records = await records_about(bootstrap, [topic], None)
    return [r.envelope for r in records if isinstance(r.envelope.event, kind) and where(r.envelope)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class HubProcess:
    """`python -m services.hub` as a real OS process, so SIGKILL and restart are real."""

    def __init__(self, **settings: str) -> None:
        self.port = free_port()
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return (
            os.environ
            | {
                "PYTHONPATH": str(ROOT),
                "CTP_DATABASE_URL": database_url("hub"),
                "CTP_HTTP_PORT": str(self.port),
                "CTP_AUTH_PUBLIC_KEY_FILE": KEY_FILE,
                "OTEL_TRACES_EXPORTER": "none",
                "LOG_LEVEL": "WARNING",
                "CTP_RELAY_IDLE_SECONDS": "0.2",
                "CTP_TIMER_POLL_SECONDS": "0.2",
                "CTP_RETRY_BASE_SECONDS": "0.2",
            }
            | {f"CTP_{k.upper()}": v for k, v in self.settings.items()}
        )

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.hub"],
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        from tests.conftest import eventually

        await eventually(self._live, within=60)

    async def _live(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, f"the hub exited with code {self.process.returncode}"
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                return (await client.get(f"{self.url}/health/live")).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10)


class SimulatorProcess:
    """The contact-centre simulator (`python -m deploy.contactcentre_simulator`) as an OS process."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deploy.contactcentre_simulator", *self.args],
            cwd=ROOT,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert "ready" in line, f"the simulator did not start (exit code {self.process.poll()})"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
