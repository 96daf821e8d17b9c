"""The hub console as hub staff use it, in Chromium, against the hub, the broker and the database."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect
from sqlalchemy import text

from deploy.local import database_url
from shared.db import make_engine
from tests.browser.conftest import (
    WAIT_MS,
    ConsoleHub,
    confirm_waiting_critical_concerns,
    screenshots_folder,
    sign_in,
)
from tests.support.hub import SimulatorProcess

WORKER = "Aroha, hub social worker"
TEACHER = "Hemi, teacher (no hub role)"


async def raise_critical_concern(page: Page) -> str:
    """A hub social worker raises a concern of immediate danger through the form; returns its concern id."""
    await page.get_by_role("link", name="Raise a concern").click()
    await page.get_by_label("Child's given names").fill("Aroha")
    await page.get_by_label("Child's family name").fill("Tane")
    await page.get_by_label("Child's date of birth").fill("2016-04-02")
    await page.get_by_label("Physical harm").check()
    await page.get_by_label("What you saw or heard").fill("Child says a caregiver hit them and is afraid to go home.")
    await page.locator("#immediate_danger").check()  # "Yes"
    await page.get_by_label("Where the child is now").fill("Porirua School office")
    await page.get_by_label("Your name").fill("Mere Smith")
    await page.get_by_role("button", name="Raise the concern").click()
    await page.wait_for_url(re.compile(r"/console/concerns/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


async def never_reloaded(page: Page) -> bool:
    return bool(await page.evaluate("window.__stillTheSamePage === true"))


async def test_a_critical_concern_from_the_form_tops_the_queue_and_its_acknowledgement_shows_without_reload(
    hub: ConsoleHub, contact_centre: SimulatorProcess, new_page: Page, browser_page: Page
) -> None:
    await confirm_waiting_critical_concerns(hub)
    queue_page, form_page = new_page, browser_page
    await sign_in(queue_page, hub, WORKER)
    await expect(queue_page.get_by_role("heading", name="Concerns to screen")).to_be_visible()
    await queue_page.evaluate("window.__stillTheSamePage = true")

    await sign_in(form_page, hub, WORKER)
    concern_id = await raise_critical_concern(form_page)
    await form_page.evaluate("window.__stillTheSamePage = true")
    await expect(form_page.locator(".rules")).to_contain_text("immediate_danger")  # the rule that fired

    # The open queue page learns of the concern by itself: first row, marked critical in words.
    top = queue_page.locator("table.queue tbody tr").first
    await expect(top).to_have_attribute("data-concern-id", concern_id, timeout=WAIT_MS)
    await expect(top.locator(".priority")).to_have_text(re.compile("CRITICAL"))
    # The contact-centre simulator acknowledges; both pages show it without being reloaded.
    await expect(top).to_contain_text("Acknowledged", timeout=WAIT_MS)
    await expect(form_page.locator(".timeline")).to_contain_text(
        "Acknowledged by simulated-call-taker", timeout=WAIT_MS
    )
    await expect(form_page.locator(".timeline")).to_contain_text("National contact centre")
    assert await never_reloaded(queue_page) and await never_reloaded(form_page)

    if folder := screenshots_folder():
        await queue_page.screenshot(path=str(folder / "hub-console-queue.png"))
        await form_page.screenshot(path=str(folder / "hub-console-concern.png"), full_page=True)


async def test_invalid_concern_form_shows_each_problem_beside_its_field(hub: ConsoleHub, new_page: Page) -> None:
    page = new_page
    await sign_in(page, hub, WORKER)
    await page.get_by_role("link", name="Raise a concern").click()
    await page.locator("#immediate_danger").check()  # immediate danger, but not where the child is
    await page.get_by_role("button", name="Raise the concern").click()

    summary = page.get_by_role("alert")
    await expect(summary).to_contain_text("There is a problem")
    expected = {
        "child_given_names": "Enter the child's given names",
        "categories": "Choose at least one kind of concern",
        "what_was_seen": "Describe what you saw or heard",
        "reporter_name": "Enter your name",
    }
    for field, message in expected.items():
        await expect(summary).to_contain_text(message)
        await expect(page.locator(f"#{field}-error")).to_contain_text(message)
    for field in ("child_given_names", "what_was_seen", "reporter_name"):
        control = page.locator(f"#{field}")
        await expect(control).to_have_attribute("aria-invalid", "true")
        await expect(control).to_have_attribute("aria-describedby", re.compile(f"{field}-error"))
    # A message in the summary takes the keyboard to its field.
    await summary.get_by_role("link", name=re.compile("Describe what you saw")).click()
    await expect(page.locator("#what_was_seen")).to_be_focused()


async def test_a_person_without_a_hub_role_cannot_see_the_queue_and_the_refusal_is_audited(
    hub: ConsoleHub, new_page: Page
) -> None:
    engine = make_engine(database_url("hub"), "hub")
    try:
        async with engine.connect() as connection:
            before = (await connection.execute(text("SELECT coalesce(max(id), 0) FROM audit_log"))).scalar_one()
        page = new_page
        await sign_in(page, hub, TEACHER)
        await page.goto(f"{hub.url}/console")
        await expect(page.get_by_role("heading", name="You cannot see this")).to_be_visible()
        await expect(page.get_by_text("this needs one of the roles")).to_be_visible()
        await expect(page.locator("table.queue")).to_have_count(0)
        await expect(page.get_by_role("link", name="Concerns to screen")).to_have_count(0)

        async with engine.connect() as connection:
            refusals = (
                await connection.execute(
                    text("SELECT action FROM audit_log WHERE id > :before AND actor = 'teacher-hemi'"),
                    {"before": before},
                )
            ).scalars()
            assert "read concern queue refused" in list(refusals)
    finally:
        await engine.dispose()
