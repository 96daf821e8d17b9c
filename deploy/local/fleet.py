"""Every service and the contact-centre simulator as separate OS processes, started the way `make run` starts
them (same command, same environment, same ports), so an end-to-end test can SIGKILL one and start it again and a
benchmark can drive whole journeys through them. Instance k of a service is named `service` for k = 0 and
`service#<k+1>` after that; all instances of a service share its consumer groups."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import httpx

from deploy.local import SERVICES
from deploy.local.run import ROOT, instance_port, service_env

# Shorter idle waits than production, so a test is not waiting on a relay's or timer runner's nap.
QUICK = {"CTP_RELAY_IDLE_SECONDS": "0.2", "CTP_TIMER_POLL_SECONDS": "0.2", "CTP_RETRY_BASE_SECONDS": "0.2"}


def instance_name(service: str, instance: int) -> str:
    return service if instance == 0 else f"{service}#{instance + 1}"


class Fleet:
    def __init__(
        self, port_base: int, log_dir: Path, *, ack_after: float = 0.5, instances: dict[str, int] | None = None
    ) -> None:
        self.port_base = port_base
        self.log_dir = log_dir
        self.ack_after = ack_after
        counts = instances or {}
        self.names = [instance_name(s, k) for s in SERVICES for k in range(counts.get(s, 1))]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, IO[bytes]] = {}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._port(name)}"

    def _port(self, name: str) -> int:
        service, _, number = name.partition("#")
        return instance_port(self.port_base, service, int(number or 1) - 1)

    def start(self, name: str) -> None:
        log = self.logs.setdefault(name, (self.log_dir / f"{name}.log").open("ab"))
        if name == "simulator":
            command = [sys.executable, "-m", "deploy.contactcentre_simulator", "--ack-after", str(self.ack_after)]
            env = os.environ | {"PYTHONPATH": str(ROOT)}
        else:
            service = name.partition("#")[0]
            command = [sys.executable, "-m", f"services.{service}"]
            env = service_env(service, self._port(name)) | {"OTEL_TRACES_EXPORTER": "none"} | QUICK
        self.processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def start_all(self) -> None:
        for name in (*self.names, "simulator"):
            self.start(name)

    async def ready(self, *names: str) -> bool:
        """Every named instance (all of them by default) answers its readiness probe."""
        async with httpx.AsyncClient(timeout=2) as client:
            for name in names or self.names:
                process = self.processes[name]
                assert process.poll() is None, f"{name} exited with code {process.returncode}:\n{self.tail(name)}"
                try:
                    if (await client.get(f"{self.url(name)}/health/ready")).status_code != 200:
                        return False
                except httpx.TransportError:
                    return False
        return True

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash or an out-of-memory kill would: no shutdown hooks run."""
        process = self.processes[name]
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

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""
