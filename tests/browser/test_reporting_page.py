"""The reports page in Chromium: a governance user sees a month's figures as charts with tables beside them, small
counts suppressed; a practitioner is refused. The reporting service runs as an OS process on the real stack."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from playwright.async_api import Browser, expect

from deploy.local import database_url
from shared.db import make_engine, make_sessions
from tests.browser.conftest import WAIT_MS
from tests.conftest import KEY_FILE, ROOT, eventually
from tests.integration.test_reporting_service import Run, Streams, heard_all, seven_journeys_and_six_concerns
from tests.integration.test_reporting_service import run as run  # the fixture
from tests.integration.test_reporting_service import streams as streams  # the fixture
from tests.support.services import bearer

PORT = 18600  # reporting's browser tests' own port, clear of the hub console's
URL = f"http://127.0.0.1:{PORT}"


@pytest.fixture(scope="module")
def reporting_process(kafka_bootstrap: str) -> Iterator[subprocess.Popen[bytes]]:
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "CTP_HTTP_PORT": str(PORT),
        "CTP_DATABASE_URL": database_url("reporting"),
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CTP_AUTH_PUBLIC_KEY_FILE": KEY_FILE,
        "OTEL_TRACES_EXPORTER": "none",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.reporting"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def live(process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, f"the reporting service exited with {process.returncode}"
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{URL}/health/ready")).status_code == 200
    except httpx.TransportError:
        return False


async def test_governance_sees_a_months_figures_as_charts_with_tables(
    reporting_process: subprocess.Popen[bytes], browser: Browser, streams: Streams, run: Run
) -> None:
    await eventually(lambda: live(reporting_process))
    await seven_journeys_and_six_concerns(streams, run)
    governance = bearer(f"lgg-{run.id}", "tairawhiti-lgg", "governance_group")

    engine = make_engine(database_url("reporting"), "reporting")
    try:
        await eventually(lambda: heard_all(make_sessions(engine), run))
    finally:
        await engine.dispose()
    context = await browser.new_context(extra_http_headers=governance)
    try:
        page = await context.new_page()
        response = await page.goto(f"{URL}/reports?from={run.month}&to={run.month}", timeout=WAIT_MS)
        assert response is not None and response.status == 200
        await expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()

        # Each chart is an image with a text alternative, and its table is beside it.
        agencies = page.get_by_role("img", name="Referrals by referring agency and month: Received")
        await expect(agencies).to_be_visible()
        await expect(agencies.locator("text", has_text=f"{run.month} · {run.agency}")).to_have_count(1)
        referrals = page.locator('table[data-table="referrals-by_agency"]')
        ours = referrals.get_by_role("row").filter(has_text=run.agency)
        await expect(ours.get_by_role("cell")).to_have_text([run.month, run.agency, "7", "6", "<5", "0"])
        # The other agency sent two: suppressed in the chart too, in words as well as hatching.
        other = agencies.locator("g.bar-row").filter(has_text=f"other-{run.id}")
        await expect(other.locator("rect.bar-suppressed")).to_have_count(1)
        await expect(other).to_contain_text("<5 (suppressed)")

        exits = page.get_by_role("img", name="Exits by reason, with days in service: Exits")
        await expect(exits).to_contain_text("goals_achieved")
        await expect(page.locator('table[data-table="exits-by_reason"]')).to_contain_text("13.0")
        await expect(page.get_by_role("img", name="Feedback at exit: Mean rating (1-5)")).to_contain_text("4.3")
        for heading in ("Referrals", "Time to help", "Open cases", "Exits", "Children's Hub", "Whānau feedback"):
            await expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        await expect(page.get_by_role("heading", name="Your team")).to_have_count(0)  # governance is not a manager
    finally:
        await context.close()


async def test_a_practitioner_is_refused_the_reports_page(
    reporting_process: subprocess.Popen[bytes], browser: Browser, run: Run
) -> None:
    await eventually(lambda: live(reporting_process))
    context = await browser.new_context(extra_http_headers=bearer(f"prac-{run.id}", "health-nz", "practitioner"))
    try:
        page = await context.new_page()
        response = await page.goto(f"{URL}/reports", timeout=WAIT_MS)
        assert response is not None and response.status == 403
        await expect(page.get_by_role("heading", name="These reports are not available to you")).to_be_visible()
        await expect(page.get_by_role("alert")).to_contain_text("governance_group")
        await expect(page.get_by_role("img")).to_have_count(0)
    finally:
        await context.close()
