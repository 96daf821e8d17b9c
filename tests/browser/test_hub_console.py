"""The hub console as hub staff use it, in Chromium, against the hub, the broker and the database."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.async_api import Page, expect
from sqlalchemy import text

from deploy.local import database_url
from services.hub.api import REFERRALS_IN
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
DUTY_MANAGER = "Tane, hub duty manager"
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


async def expect_field_messages(page: Page, expected: dict[str, str]) -> None:
    """The form's problem summary lists every message, and each message also stands beside its field."""
    summary = page.get_by_role("alert")
    await expect(summary).to_contain_text("There is a problem")
    for field, message in expected.items():
        await expect(summary).to_contain_text(message)
        await expect(page.locator(f"#{field}-error")).to_contain_text(message)


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

    await expect_field_messages(
        page,
        {
            "child_given_names": "Enter the child's given names",
            "categories": "Choose at least one kind of concern",
            "what_was_seen": "Describe what you saw or heard",
            "reporter_name": "Enter your name",
        },
    )
    for field in ("child_given_names", "what_was_seen", "reporter_name"):
        control = page.locator(f"#{field}")
        await expect(control).to_have_attribute("aria-invalid", "true")
        await expect(control).to_have_attribute("aria-describedby", re.compile(f"{field}-error"))
    # A message in the summary takes the keyboard to its field.
    await page.get_by_role("alert").get_by_role("link", name=re.compile("Describe what you saw")).click()
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


async def raise_childrens_team_concern(page: Page) -> str:
    """A concern about a family's needs, no harm and no danger: the tool screens it as suited to a Children's Team."""
    await page.get_by_role("link", name="Raise a concern").click()
    await page.get_by_label("Child's given names").fill("Tama")
    await page.get_by_label("Child's family name").fill(f"Rangi-{uuid.uuid4().hex[:8]}")  # a child never met before
    await page.get_by_label("Child's date of birth").fill("2015-09-09")
    await page.get_by_label("Other", exact=True).check()
    await page.get_by_label("What you saw or heard").fill("The family has lost its housing; the children miss school.")
    await page.locator("#immediate_danger-no").check()
    await page.get_by_label("Housing", exact=True).check()
    await page.get_by_label("Education", exact=True).check()
    await page.get_by_label("Your name").fill("Mere Smith")
    await page.get_by_role("button", name="Raise the concern").click()
    await page.wait_for_url(re.compile(r"/console/concerns/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


async def fill_referral_not_yet_asked(page: Page, referrer: str) -> None:
    await page.get_by_label("Housing instability").check()
    await page.get_by_label("Not asked yet").check()
    await page.get_by_label("Your name").fill(referrer)


async def test_a_childrens_team_concern_from_the_form_is_referred_from_its_page_once(
    hub: ConsoleHub, new_page: Page, browser_page: Page
) -> None:
    worker, manager = new_page, browser_page
    await sign_in(worker, hub, WORKER)
    concern_id = await raise_childrens_team_concern(worker)
    referral_form = f"{hub.url}/console/concerns/{concern_id}/referral"
    await expect(worker.locator(".summary .priority").first).to_have_text(re.compile("CHILDRENS TEAM"))

    # Only the role the API allows sees the button; a duty manager who sends the form anyway is refused, audited.
    await sign_in(manager, hub, DUTY_MANAGER)
    await manager.goto(f"{hub.url}/console/concerns/{concern_id}")
    await expect(manager.locator(".referral")).to_contain_text("a hub social worker can refer it")
    await expect(manager.get_by_role("link", name="Refer to the Children's Team")).to_have_count(0)
    await manager.goto(referral_form)
    await fill_referral_not_yet_asked(manager, "Tane Parata")
    await manager.get_by_role("button", name="Send the referral").click()
    await expect(manager.get_by_role("heading", name="You cannot do this")).to_be_visible()
    await expect(manager.get_by_text("this needs one of the roles: hub_social_worker")).to_be_visible()

    # A second tab of the worker's holds the form open: it will be the second attempt.
    stale = await worker.context.new_page()
    await stale.goto(referral_form)

    await worker.get_by_role("link", name="Refer to the Children's Team").click()
    await expect(worker.get_by_label("Housing", exact=True)).to_be_checked()  # the needs the concern named
    # The family said yes, but not who answered or when; no reason and no name: each message beside its field.
    await worker.get_by_label("Yes, they agreed to take part").check()
    await worker.get_by_role("button", name="Send the referral").click()
    await expect_field_messages(
        worker,
        {
            "reasons": "Choose at least one reason",
            "consent_given_by": "Enter who gave the family's answer",
            "consent_given_at": "Enter when the family answered",
            "referrer_name": "Enter your name",
        },
    )
    await expect(worker.locator("#referrer_name")).to_have_attribute("aria-invalid", "true")
    await expect(worker.get_by_label("Yes, they agreed to take part")).to_be_checked()  # answers are kept
    if folder := screenshots_folder():
        await worker.screenshot(path=str(folder / "hub-console-referral-form.png"), full_page=True)

    await worker.get_by_label("Housing instability").check()
    await worker.get_by_label("Who gave the family's answer").fill("Mere Rangi")
    await worker.get_by_label("Their relationship to the child").fill("Mother")
    answered = datetime.now(ZoneInfo("Pacific/Auckland")) - timedelta(hours=1)
    await worker.get_by_label("When they answered").fill(answered.strftime("%Y-%m-%dT%H:%M"))
    await worker.get_by_label("Your name").fill("Aroha Ngata")
    await worker.get_by_role("button", name="Send the referral").click()

    agency_referral_id = f"hub-{concern_id}"
    sent = worker.locator("#referral-made")
    await expect(sent).to_contain_text("Referral sent to the Children's Team")
    await expect(sent).to_contain_text(agency_referral_id)
    await expect(sent).to_contain_text(re.compile(r"sent \w{3} \d{2} \w{3} \d{4}, \d{2}:\d{2}:\d{2}"))
    if folder := screenshots_folder():
        await worker.screenshot(path=str(folder / "hub-console-referred.png"))
    await worker.reload()  # the form's answer was a redirect: reloading the page sends nothing again
    # The concern itself keeps it: status referred, the agency referral id and when, and no button.
    await worker.goto(f"{hub.url}/console/concerns/{concern_id}")
    await expect(worker.locator(".summary")).to_contain_text("Referred")
    await expect(worker.locator("#agency-referral-id")).to_have_text(agency_referral_id)
    await expect(worker.locator("#referred-at")).to_have_text(re.compile(r"\w{3} \d{2} \w{3} \d{4}, \d{2}:\d{2}:\d{2}"))
    await expect(worker.get_by_role("link", name="Refer to the Children's Team")).to_have_count(0)

    # The tab still showing the form sends it again: the API's 409, in words, and nothing is sent twice.
    await fill_referral_not_yet_asked(stale, "Aroha Ngata")
    await stale.get_by_role("button", name="Send the referral").click()
    refusal = stale.get_by_role("alert")
    await expect(refusal).to_contain_text("This referral was not sent")
    await expect(refusal).to_contain_text("This concern is already a referral")
    await stale.get_by_role("link", name="Back to the concern").first.click()
    await expect(stale.locator("#agency-referral-id")).to_have_text(agency_referral_id)

    engine = make_engine(database_url("hub"), "hub")
    try:
        async with engine.connect() as connection:
            referrals = await connection.execute(
                text("SELECT count(*) FROM outbox WHERE topic = :topic AND key = :key"),
                {"topic": REFERRALS_IN, "key": agency_referral_id},
            )
            assert referrals.scalar_one() == 1
            refusals = await connection.execute(
                text("SELECT action FROM audit_log WHERE actor = 'dm-tane' AND detail->>'concern_id' = :concern"),
                {"concern": concern_id},
            )
            assert "refer concern to the Children's Team refused" in list(refusals.scalars())
    finally:
        await engine.dispose()
