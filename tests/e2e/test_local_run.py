"""`make run`'s launcher: five service processes that report ready, expose metrics and stop on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from deploy.local import SERVICES
from tests.conftest import ROOT, eventually

PORT_BASE = 18100


async def test_the_five_services_run_as_processes_report_ready_and_stop_on_ctrl_c(tmp_path: Path) -> None:
    log = (tmp_path / "run.log").open("w+")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "deploy.local.run", "--port-base", str(PORT_BASE)],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT), "OTEL_TRACES_EXPORTER": "none"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    urls = {service: f"http://127.0.0.1:{PORT_BASE + n}" for n, service in enumerate(SERVICES, start=1)}
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def all_ready() -> bool:
                try:
                    answers = await asyncio.gather(*(client.get(f"{url}/health/ready") for url in urls.values()))
                except httpx.TransportError:
                    return False
                return all(a.status_code == 200 for a in answers)

            await eventually(all_ready, within=90)
            for url in urls.values():
                assert (await client.get(f"{url}/health/live")).json() == {"status": "live"}
                ready = (await client.get(f"{url}/health/ready")).json()
                assert ready == {"status": "ready", "database": "ok", "kafka": "ok", "consumers": "ok"}
                metrics = (await client.get(f"{url}/metrics")).text
                assert "ctp_outbox_backlog" in metrics
    finally:
        launcher.send_signal(signal.SIGINT)
        launcher.wait(timeout=60)
        log.seek(0)
        output = log.read()

    assert launcher.returncode == 0, output[-2000:]
    assert "Children's Teams platform is running" in output
    for service in SERVICES:
        assert f"{service:<10} INFO    Finished server process" in output
