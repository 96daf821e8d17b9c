"""The whole journey with things going wrong, all five services as separate processes on the real broker and database:
services SIGKILLed part-way and started again still finish the journey with every effect exactly once, and invalid
messages are answered and dead-lettered while everything else carries on."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from deploy.local.demo import ADMIN, play
from deploy.local.fleet import Fleet
from shared.events.hub import ConcernOutcome, ConcernSubmitted
from shared.events.referral import Outcome, ReferralOutcome
from shared.messaging.consumer import H_CONSUMER, H_ERROR_MESSAGE
from shared.messaging.envelope import Envelope
from shared.messaging.topics import concerns_in, dlq_topic, outcomes_out, referrals_in
from tests.conftest import eventually
from tests.support.hub import critical_concern
from tests.support.journeys import OUTCOMES, STREAMS, assert_every_effect_once, assert_handled_in_order, records_about
from tests.support.kafka import AgencySystem, TopicReader
from tests.support.referrals import make_referral

PORT_BASE = 18400

# Which service is killed, and just after which step of the journey: each while its next piece of work is in flight.
CRASHES = {
    "health-nz referred a child": "referral",  # the agency's referral is on the ingress topic, not yet taken in
    "manager confirmed": "plans",  # the assignment is on assignment.events: the case is to be opened
}


@pytest.fixture(scope="module")
async def fleet(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> AsyncIterator[Fleet]:
    fleet = Fleet(PORT_BASE, tmp_path_factory.mktemp("fleet"))
    fleet.start_all()
    try:
        await eventually(fleet.ready, within=120)
        yield fleet
    finally:
        fleet.stop_all()


async def test_services_killed_mid_journey_and_started_again_finish_it_with_every_effect_once(
    fleet: Fleet, kafka_bootstrap: str
) -> None:
    killed: list[str] = []

    async def crash(step: str) -> None:
        for prefix, service in CRASHES.items():
            if step.startswith(prefix):
                fleet.kill(service)
                killed.append(service)
                fleet.start(service)
                await eventually(lambda service=service: fleet.ready(service), within=120)  # type: ignore[misc]

    journey = await play(PORT_BASE, kafka_bootstrap, echo=lambda _: None, after_step=crash)

    assert killed == ["referral", "plans"]
    assert journey.steps[-1].startswith("escalated at intake to the national contact centre; acknowledged")
    children = {journey.child_id}
    records = await records_about(kafka_bootstrap, (*STREAMS, OUTCOMES), children)
    assert_every_effect_once(records, children)
    assert await assert_handled_in_order(records) > 0

    lead_id = next(s for s in journey.steps if s.startswith("lead professional")).split()[2]
    directory = await _json(fleet, "assignment", "/practitioners")
    assert next(p for p in directory if p["practitioner_id"] == lead_id)["caseload"] == 0  # freed once, not twice


async def test_invalid_messages_are_answered_and_dead_lettered_and_everything_else_carries_on(
    fleet: Fleet, kafka_bootstrap: str
) -> None:
    unique = uuid.uuid4().hex[:8]
    garbage_id, bad_concern_id = f"POL-{unique}", f"MOE-{unique}"
    internal_id = str(uuid.uuid4())
    good = make_referral()
    async with (
        AgencySystem(kafka_bootstrap) as agencies,
        TopicReader(kafka_bootstrap, outcomes_out("police-nz"), outcomes_out("education-moe"), OUTCOMES) as outcomes,
        TopicReader(kafka_bootstrap, dlq_topic(referrals_in("police-nz"))) as referral_letters,
        TopicReader(kafka_bootstrap, dlq_topic(concerns_in("education-moe"))) as concern_letters,
        TopicReader(kafka_bootstrap, "panel.events.dlq") as internal_letters,
    ):
        # Not JSON at all, on the referral ingress topic.
        garbage_headers = {"ce_id": str(uuid.uuid4()), "ce_source": "/agencies/police-nz", "ce_subject": garbage_id}
        await agencies.send_raw(referrals_in("police-nz"), b"{not json", key=garbage_id, headers=garbage_headers)
        # A concern that breaks the published schema.
        concern = ConcernSubmitted.model_validate(
            {
                "agency_concern_id": bad_concern_id,
                "agency": "education-moe",
                "submitted_at": datetime.now(UTC).isoformat(),
                "concern": critical_concern(),
            }
        )
        body = concern.model_dump(mode="json")
        body["concern"]["categories"] = ["not-a-category"]
        envelope = Envelope(event=concern, source="/agencies/education-moe", subject=bad_concern_id)
        await agencies.send_raw(
            concerns_in("education-moe"), json.dumps(body).encode(), key=bad_concern_id, headers=envelope.headers()
        )
        # A broken event on an internal stream, heard by three services.
        internal_headers = {
            "ce_specversion": "1.0",
            "ce_id": internal_id,
            "ce_source": "/services/panel",
            "ce_type": "nz.childrensteams.panel.referral_accepted.v1",
            "ce_subject": str(uuid.uuid4()),
            "ce_time": datetime.now(UTC).isoformat(),
            "content-type": "application/json",
        }
        await agencies.send_raw("panel.events", b'{"referral_id": 7}', key=internal_id, headers=internal_headers)
        # And a good referral behind them all.
        await agencies.send(referrals_in("health-nz"), good, agency="health-nz", subject=good.agency_referral_id)

        [garbage] = await outcomes.events(ReferralOutcome, lambda e: e.event.agency_referral_id == garbage_id)
        assert (garbage.event.agency, garbage.event.outcome) == ("police-nz", Outcome.REJECTED)
        assert garbage.event.problems
        [refused] = await outcomes.events(ConcernOutcome, lambda e: e.event.agency_concern_id == bad_concern_id)
        assert refused.event.outcome == "rejected"
        assert any(p.field.startswith("concern.categories") for p in refused.event.problems)

        letter = await referral_letters.headers_where(lambda h: h.get("ce_id") == garbage_headers["ce_id"])
        assert letter[H_ERROR_MESSAGE]
        letter = await concern_letters.headers_where(lambda h: h.get("ce_id") == envelope.id)
        assert "categories" in letter[H_ERROR_MESSAGE]
        for consumer in ("referral.decisions", "assignment.matching", "plans.cases"):
            letter = await internal_letters.headers_where(
                lambda h, consumer=consumer: (h.get("ce_id"), h.get(H_CONSUMER)) == (internal_id, consumer)  # type: ignore[misc]
            )
            assert letter[H_ERROR_MESSAGE]

        [received] = await outcomes.events(
            ReferralOutcome, lambda e: e.event.agency_referral_id == good.agency_referral_id
        )
        assert received.event.outcome is Outcome.RECEIVED
    assert await fleet.ready()  # nothing crashed


async def _json(fleet: Fleet, service: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=fleet.url(service), timeout=10) as client:
        response = await client.get(path, headers=ADMIN)
        response.raise_for_status()
        return response.json()
