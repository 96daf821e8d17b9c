"""The five services and the contact-centre simulator as separate OS processes, started the way `make run` starts
them (same command, same environment), so an end-to-end test can SIGKILL one and start it again and a benchmark can
drive whole journeys through them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import httpx

from deploy.local import SERVICES
from deploy.local.run import ROOT, service_env

# Shorter idle waits than production, so a test is not waiting on a relay's or timer runner's nap.
QUICK = {"CTP_RELAY_IDLE_SECONDS": "0.2", "CTP_TIMER_POLL_SECONDS": "0.2", "CTP_RETRY_BASE_SECONDS": "0.2"}


class Fleet:
    def __init__(self, port_base: int, log_dir: Path, *, ack_after: float = 0.5) -> None:
        self.port_base = port_base
        self.ack_after = ack_after
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, IO[bytes]] = {}

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port_base + SERVICES.index(service) + 1}"

    def start(self, service: str) -> None:
        log = self.logs.setdefault(service, (self.log_dir / f"{service}.log").open("ab"))
        if service == "simulator":
            command = [sys.executable, "-m", "deploy.contactcentre_simulator", "--ack-after", str(self.ack_after)]
            env = os.environ | {"PYTHONPATH": str(ROOT)}
        else:
            command = [sys.executable, "-m", f"services.{service}"]
            port = self.port_base + SERVICES.index(service) + 1
            env = service_env(service, port) | {"OTEL_TRACES_EXPORTER": "none"} | QUICK
        self.processes[service] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def start_all(self) -> None:
        for service in (*SERVICES, "simulator"):
            self.start(service)

    async def ready(self, *services: str) -> bool:
        """Every named service (all five by default) answers its readiness probe."""
        async with httpx.AsyncClient(timeout=2) as client:
            for service in services or SERVICES:
                process = self.processes[service]
                assert process.poll() is None, f"{service} exited with code {process.returncode}:\n{self.tail(service)}"
                try:
                    if (await client.get(f"{self.url(service)}/health/ready")).status_code != 200:
                        return False
                except httpx.TransportError:
                    return False
        return True

    def kill(self, service: str) -> None:
        """SIGKILL, as a crash or an out-of-memory kill would: no shutdown hooks run."""
        process = self.processes[service]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs.values():
            log.close()

    def tail(self, service: str, chars: int = 3000) -> str:
        path = self.log_dir / f"{service}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""
