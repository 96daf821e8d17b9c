"""The hub and the contact-centre simulator as OS processes on the real stack, and Debian's Chromium via Playwright."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from shared.security import issue_token
from tests.support.hub import HubProcess, SimulatorProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HUB_PORT = 18300  # the browser tests' own range, clear of the other end-to-end tests
# Generous bounds, only so a broken test stops instead of hanging; nothing is timed.
WAIT_MS = 60_000


class ConsoleHub(HubProcess):
    """The hub on a fixed port: the browser is pointed at it by URL."""

    def __init__(self, port: int, **settings: str) -> None:
        super().__init__(**settings)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


def bearer(subject: str, agency: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(subject=subject, agency=agency, roles=list(roles))}"}


@pytest.fixture(scope="module")
async def hub() -> AsyncIterator[ConsoleHub]:
    """Per module: a hub left running would take other tests' escalation steps (its timers share the database).

    Steps far apart: a concern stays at its first step until the simulator acknowledges it.
    """
    process = ConsoleHub(HUB_PORT, escalation_step_seconds="600")
    await process.start()
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture(scope="module")
def contact_centre() -> Iterator[SimulatorProcess]:
    """The contact-centre SIMULATOR, acknowledging each escalation a few seconds after it arrives."""
    simulator = SimulatorProcess("--ack-after", "3", "--group", f"console-browser-{uuid.uuid4().hex[:8]}")
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    assert os.access(CHROMIUM, os.X_OK), "Chromium is missing: `make setup` installs it (deploy/local/stack.sh setup)"
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@contextlib.asynccontextmanager
async def person(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh browser context of its own (its own cookies: one signed-in person)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
async def new_page(browser: Browser) -> AsyncIterator[Page]:
    async with person(browser) as page:
        yield page


async def sign_in(page: Page, hub: HubProcess, who: str) -> None:
    """Sign in the way a developer does: pick a development user on the sign-in page."""
    await page.goto(f"{hub.url}/console/sign-in")
    await page.get_by_label(who).check()
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(lambda url: "/sign-in" not in url)


async def confirm_waiting_critical_concerns(hub: HubProcess) -> None:
    """Hub staff confirm every critical concern still waiting from earlier runs, so the queue's top is free.

    Through the hub's own API (audited like any screening): the queue puts the oldest critical concern first.
    """
    worker = bearer("browser-test-worker", "childrens-hub", "hub_social_worker")
    decision = {"decision": "confirm", "reason": "Cleared before the console's browser test"}
    async with httpx.AsyncClient(base_url=hub.url, headers=worker, timeout=30) as api:
        while True:
            queue = (await api.get("/concerns")).json()
            waiting = [c["concern_id"] for c in queue if c["priority"] == "critical"]
            if not waiting:
                return
            for batch in range(0, len(waiting), 20):
                answers = await asyncio.gather(
                    *(api.post(f"/concerns/{c}/screening", json=decision) for c in waiting[batch : batch + 20])
                )
                assert all(a.status_code == 201 for a in answers), [a.text for a in answers]


def screenshots_folder() -> Path | None:
    """`CTP_CONSOLE_SCREENSHOTS=docs` saves the README's screenshots from the browser test."""
    folder = os.environ.get("CTP_CONSOLE_SCREENSHOTS")
    return Path(folder) if folder else None


@pytest.fixture
async def browser_page(browser: Browser) -> AsyncIterator[Page]:
    """A second person's page, beside `new_page`."""
    async with person(browser) as page:
        yield page
