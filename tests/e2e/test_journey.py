"""The whole journey with every service as a separate process (as `make run` starts them) on the real broker and
database: every step completes, the referrer hears every outcome, and one trace joins every service (reporting's
consumer spans join it as it reads the journey's events)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from opentelemetry import trace

from deploy.local import SERVICES
from deploy.local.demo import play
from shared.telemetry import setup_tracing
from tests.conftest import ROOT, eventually, tracing_env

PORT_BASE = 18200


async def test_a_childs_whole_journey_across_every_service_is_one_trace(tmp_path: Path, kafka_bootstrap: str) -> None:
    log = (tmp_path / "run.log").open("w+")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "deploy.local.run", "--port-base", str(PORT_BASE)],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT), "CONTACT_CENTRE_ACK_AFTER": "0.5"} | tracing_env(traced=True),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    failure: Exception | None = None
    try:
        await eventually(_all_ready, within=120)
        os.environ.update(tracing_env(traced=True))
        provider = setup_tracing("tests")
        journey = await play(PORT_BASE, kafka_bootstrap, echo=lambda _: None)
        provider.force_flush()
    except Exception as error:
        failure = error
    finally:
        launcher.send_signal(signal.SIGINT)
        launcher.wait(timeout=60)
        log.seek(0)
        output = log.read()
    if failure is not None:
        raise AssertionError(f"the journey failed; the services said:\n{output[-6000:]}") from failure

    assert launcher.returncode == 0, output[-3000:]
    assert journey.steps[-1].startswith("escalated at intake to the national contact centre; acknowledged"), (
        journey.steps
    )
    for outcome in ("received", "accepted", "lead_professional_assigned", "case_closed"):
        assert outcome in journey.outcomes
    # Reporting reads the journey's events last of all, and its consumer group (ten subscriptions) may still be
    # settling after start-up: a longer bound, only so a broken run stops.
    spans = await eventually(lambda: _trace_with_every_service(journey.trace_id), within=120)
    assert {s["traceId"] for s in spans} == {journey.trace_id}
    assert trace.get_current_span().get_span_context().trace_id != int(journey.trace_id, 16)  # the journey is over


async def _all_ready() -> bool:
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            answers = [
                await client.get(f"http://127.0.0.1:{PORT_BASE + n}/health/ready") for n in range(1, len(SERVICES) + 1)
            ]
        except httpx.TransportError:
            return False
    return all(a.status_code == 200 for a in answers)


async def _trace_with_every_service(trace_id: str) -> list[dict[str, Any]] | None:
    zipkin = os.environ.get("ZIPKIN_URL", "http://127.0.0.1:30411")
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{zipkin}/api/v2/trace/{trace_id}")
    if response.status_code != 200:
        return None
    spans: list[dict[str, Any]] = response.json()
    services = {s.get("localEndpoint", {}).get("serviceName") for s in spans}
    return spans if set(SERVICES) <= services else None
