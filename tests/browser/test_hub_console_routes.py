"""The console's routes without a browser: the CSRF check, the API's bearer token, and who may watch live updates."""

from __future__ import annotations

import httpx

from shared.security import issue_token
from tests.browser.conftest import ConsoleHub, bearer


async def test_a_form_posted_from_another_site_is_refused_even_with_the_cookie(hub: ConsoleHub) -> None:
    token = issue_token(subject="sw-aroha", agency="childrens-hub", roles=["hub_social_worker"])
    async with httpx.AsyncClient(base_url=hub.url, cookies={"ctp_console": token}, timeout=30) as console:
        decision = {"decision": "confirm", "reason": "forged"}
        forged = await console.post(
            "/console/concerns/no-such-concern/screening", data=decision, headers={"Origin": "https://evil.example"}
        )
        assert forged.status_code == 403
        assert (await console.post("/console/concerns/no-such-concern/screening", data=decision)).status_code == 403
        own = await console.post(
            "/console/concerns/no-such-concern/screening", data=decision, headers={"Origin": hub.url}
        )
        assert own.status_code == 404  # past the CSRF check: the concern does not exist


async def test_the_console_takes_the_apis_bearer_token_and_sends_anyone_else_to_sign_in(hub: ConsoleHub) -> None:
    async with httpx.AsyncClient(base_url=hub.url, timeout=30) as client:
        signed_out = await client.get("/console")
        assert signed_out.status_code == 303 and signed_out.headers["location"] == "/console/sign-in"
        worker = bearer("sw-aroha", "childrens-hub", "hub_social_worker")
        page = await client.get("/console", headers=worker)
        assert page.status_code == 200 and "Concerns to screen" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_only_hub_staff_may_watch_live_updates(hub: ConsoleHub) -> None:
    async with httpx.AsyncClient(base_url=hub.url, timeout=30) as client:
        teacher = bearer("teacher-hemi", "education-moe", "referrer")
        assert (await client.get("/console/events", headers=teacher)).status_code == 403
