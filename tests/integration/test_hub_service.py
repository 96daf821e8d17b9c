"""The hub against the real broker and database: intake, screening, escalation until acknowledged, referral."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from services.hub.api import REFERRALS_IN
from services.hub.handlers import ACKS, RAISED, STREAM, TO_CONTACT_CENTRE, TO_POLICE
from services.hub.watchdog import Watchdog
from shared.events.agency import ReferralSubmitted
from shared.events.concerns import ConcernRaised
from shared.events.hub import (
    ConcernOutcome,
    ConcernScreened,
    ConcernSubmitted,
    ContactCentreAcknowledgement,
    DutyManagerNotified,
    EscalationAcknowledged,
    EscalationExhausted,
    EscalationOverdue,
    EscalationStoodDown,
    EscalationToContactCentre,
    EscalationToPolice,
)
from shared.events.referral import Outcome, ReferralOutcome
from shared.messaging.envelope import Envelope
from shared.messaging.topics import concerns_in, outcomes_out
from tests.support.hub import concern, critical_concern, read_all, run_hub
from tests.support.kafka import AgencySystem, TopicReader
from tests.support.services import RunningService, bearer

WORKER = bearer("sw-1", "childrens-hub", "hub_social_worker")
MANAGER = bearer("dm-1", "childrens-hub", "hub_duty_manager")
AUDITOR = bearer("au-1", "audit-office", "auditor")
TEACHER = bearer("teacher-1", "education-moe", "referrer")


async def _raise(hub: RunningService, report: dict[str, Any]) -> dict[str, Any]:
    response = await hub.api.post("/concerns", json=report, headers=TEACHER)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _of(escalation_id: str) -> Any:
    return lambda e: e.event.escalation_id == escalation_id


async def test_critical_concern_is_escalated_before_screening(kafka_bootstrap: str) -> None:
    async with (
        run_hub(kafka_bootstrap) as hub,
        TopicReader(kafka_bootstrap, TO_CONTACT_CENTRE) as contact_centre,
        TopicReader(kafka_bootstrap, STREAM) as stream,
    ):
        accepted = await _raise(hub, critical_concern())
        assert accepted["priority"] == "critical" and "immediate_danger" in accepted["rules_fired"]

        [sent] = await contact_centre.events(EscalationToContactCentre, _of(accepted["escalation_id"]))
        assert sent.event.step == 0
        assert sent.event.child_name == "Aroha Tane" and sent.event.child_location == "Porirua School office"
        assert sent.event.notification_id == f"{accepted['escalation_id']}/0/contact_centre"
        # Nobody has screened it: the escalation did not wait for a person.
        detail = (await hub.api.get(f"/concerns/{accepted['concern_id']}", headers=WORKER)).json()
        assert detail["status"] == "awaiting_screening" and detail["escalation_status"] == "open"
        assert [e["rule"] for e in detail["explanation"]] == accepted["rules_fired"]
        [screened] = await stream.events(ConcernScreened, lambda e: e.event.concern_id == accepted["concern_id"])
        assert screened.event.priority == "critical" and not screened.event.confirmed_by_human


async def test_a_life_in_danger_goes_to_police_at_once_as_well(kafka_bootstrap: str) -> None:
    async with run_hub(kafka_bootstrap) as hub, TopicReader(kafka_bootstrap, TO_POLICE) as police:
        accepted = await _raise(hub, critical_concern(life_in_danger=True))
        [told] = await police.events(EscalationToPolice, _of(accepted["escalation_id"]))
        assert told.event.step == 0 and told.event.life_in_danger


async def test_no_acknowledgement_re_escalates_then_police_in_order_once_each(kafka_bootstrap: str) -> None:
    async with (
        run_hub(kafka_bootstrap, escalation_step_seconds=0.5, escalation_rounds=1) as hub,
        TopicReader(kafka_bootstrap, STREAM) as stream,
    ):
        accepted = await _raise(hub, critical_concern())
        escalation_id = accepted["escalation_id"]
        await stream.events(EscalationExhausted, _of(escalation_id))

        to_centre = await read_all(kafka_bootstrap, TO_CONTACT_CENTRE, EscalationToContactCentre, _of(escalation_id))
        to_police = await read_all(kafka_bootstrap, TO_POLICE, EscalationToPolice, _of(escalation_id))
        assert [e.event.step for e in to_centre] == [0, 1]
        assert [e.event.step for e in to_police] == [2]
        assert to_centre[1].event.escalated_at < to_police[0].event.escalated_at
        managers = await stream.events(DutyManagerNotified, _of(escalation_id))
        assert [e.event.step for e in managers] == [1]

        view = (await hub.api.get(f"/concerns/{accepted['concern_id']}/escalation", headers=MANAGER)).json()
        assert view["status"] == "exhausted"
        assert [(s["step"], s["targets"]) for s in view["steps"]] == [
            (0, ["contact_centre"]),
            (1, ["contact_centre", "duty_manager"]),
            (2, ["police"]),
        ]


async def test_acknowledgement_stops_the_chain_and_a_second_one_changes_nothing(kafka_bootstrap: str) -> None:
    async with (
        run_hub(kafka_bootstrap, escalation_step_seconds=1.0) as hub,
        TopicReader(kafka_bootstrap, TO_CONTACT_CENTRE) as contact_centre,
        TopicReader(kafka_bootstrap, STREAM) as stream,
        AgencySystem(kafka_bootstrap) as centre,
    ):
        accepted = await _raise(hub, critical_concern())
        # The first step's message (on a slow machine the next step may already be out beside it).
        first = (await contact_centre.events(EscalationToContactCentre, _of(accepted["escalation_id"])))[0]
        assert first.event.step == 0
        ack = ContactCentreAcknowledgement(
            escalation_id=first.event.escalation_id,
            notification_id=first.event.notification_id,
            acknowledged_by="call-taker-7",
            acknowledged_at=datetime.now(UTC),
        )
        for _ in range(2):
            envelope = Envelope(event=ack, source="/external/contact-centre", subject=first.subject)
            await centre.send_raw(ACKS, envelope.body(), key=envelope.subject, headers=envelope.headers())
        [acknowledged] = await stream.events(EscalationAcknowledged, _of(accepted["escalation_id"]))
        assert acknowledged.event.acknowledged_by == "call-taker-7"

        path = f"/concerns/{accepted['concern_id']}/escalation"
        at_ack = (await hub.api.get(path, headers=WORKER)).json()
        assert at_ack["status"] == "acknowledged" and at_ack["acknowledged_by"] == "call-taker-7"
        await asyncio.sleep(3)  # three step deadlines: a chain that had not stopped would have stepped on
        view = (await hub.api.get(path, headers=WORKER)).json()
        assert view["steps"] == at_ack["steps"] and view["next_due_at"] is None
        assert len(await stream.events(EscalationAcknowledged, _of(accepted["escalation_id"]))) == 1


async def test_invalid_concern_gets_422_with_every_reason(kafka_bootstrap: str) -> None:
    async with run_hub(kafka_bootstrap) as hub:
        report = concern(categories=[], seen_at="2024-01-01T10:00:00")
        report["child"] = {"locality": "Porirua"}
        del report["what_was_seen"]
        response = await hub.api.post("/concerns", json=report, headers=TEACHER)
        assert response.status_code == 422
        fields = {".".join(str(p) for p in e["loc"][1:]) for e in response.json()["detail"]}
        assert {"child", "categories", "what_was_seen", "seen_at"} <= fields

        danger = concern(immediate_danger=True)  # where is the child now?
        response = await hub.api.post("/concerns", json=danger, headers=TEACHER)
        assert response.status_code == 422 and "child_location" in response.text

        assert (await hub.api.post("/concerns", json=concern())).status_code == 401


async def test_agency_concern_is_screened_and_a_malformed_one_is_rejected_with_reasons(kafka_bootstrap: str) -> None:
    agency_concern_id = f"moe-{uuid.uuid4().hex[:8]}"
    async with (
        run_hub(kafka_bootstrap) as _hub,
        TopicReader(kafka_bootstrap, outcomes_out("education-moe")) as outcomes,
        AgencySystem(kafka_bootstrap) as moe,
    ):
        submitted = ConcernSubmitted.model_validate(
            {
                "agency_concern_id": agency_concern_id,
                "agency": "education-moe",
                "submitted_at": datetime.now(UTC).isoformat(),
                "concern": critical_concern(),
            }
        )
        await moe.send(concerns_in("education-moe"), submitted, agency="education-moe", subject=agency_concern_id)
        [received] = await outcomes.events(ConcernOutcome, lambda e: e.event.agency_concern_id == agency_concern_id)
        assert received.event.outcome == "received" and received.event.concern_id

        bad_id = f"moe-{uuid.uuid4().hex[:8]}"
        body = submitted.model_dump(mode="json") | {"agency_concern_id": bad_id}
        body["concern"] = body["concern"] | {"categories": ["not-a-category"]}
        envelope = Envelope(event=submitted, source="/agencies/education-moe", subject=bad_id)
        import json

        await moe.send_raw(
            concerns_in("education-moe"), json.dumps(body).encode(), key=bad_id, headers=envelope.headers()
        )
        [rejected] = await outcomes.events(ConcernOutcome, lambda e: e.event.agency_concern_id == bad_id)
        assert rejected.event.outcome == "rejected"
        assert any(p.field.startswith("concern.categories") for p in rejected.event.problems)


async def test_concern_raised_by_a_service_is_screened_and_escalated_when_critical(kafka_bootstrap: str) -> None:
    child_id = str(uuid.uuid4())
    async with (
        run_hub(kafka_bootstrap) as _hub,
        TopicReader(kafka_bootstrap, TO_CONTACT_CENTRE) as contact_centre,
        AgencySystem(kafka_bootstrap) as referral_service,
    ):
        raised = ConcernRaised(
            concern_id=str(uuid.uuid4()),
            child_id=child_id,
            raised_by="referral",
            agency="health-nz",
            child_name="Nikau Hohepa",
            child_location="Wellington Hospital ED",
            categories=["physical_harm"],
            immediate_danger=True,
            details="Immediate danger reported with a referral.",
            raised_at=datetime.now(UTC),
        )
        envelope = Envelope(event=raised, source="/services/referral", subject=child_id)
        await referral_service.send_raw(RAISED, envelope.body(), key=child_id, headers=envelope.headers())
        [sent] = await contact_centre.events(EscalationToContactCentre, lambda e: e.event.child_id == child_id)
        assert sent.event.concern_id == raised.concern_id and sent.event.child_name == "Nikau Hohepa"


async def test_lowering_a_critical_concern_needs_a_duty_manager_and_stands_the_escalation_down(
    kafka_bootstrap: str,
) -> None:
    async with run_hub(kafka_bootstrap) as hub, TopicReader(kafka_bootstrap, STREAM) as stream:
        accepted = await _raise(hub, critical_concern())
        lower = {"decision": "override", "priority": "urgent", "reason": "Child is safe with grandmother tonight"}
        path = f"/concerns/{accepted['concern_id']}/screening"
        assert (await hub.api.post(path, json=lower, headers=WORKER)).status_code == 403
        assert (await hub.api.post(path, json=lower, headers=MANAGER)).status_code == 201

        await stream.events(EscalationStoodDown, _of(accepted["escalation_id"]))
        confirmed = await stream.events(
            ConcernScreened, lambda e: e.event.concern_id == accepted["concern_id"] and e.event.confirmed_by_human
        )
        assert confirmed[0].event.priority == "urgent" and "hub_override" in confirmed[0].event.rules_fired
        detail = (await hub.api.get(f"/concerns/{accepted['concern_id']}", headers=AUDITOR)).json()
        assert [(s["kind"], s["screened_by"]) for s in detail["screenings"]] == [
            ("tool", "hub-screening-tool"),
            ("override", "dm-1"),
        ]


async def test_queue_puts_the_most_urgent_first_and_every_read_needs_a_hub_role_and_is_audited(
    kafka_bootstrap: str,
) -> None:
    async with run_hub(kafka_bootstrap) as hub:
        nfa = await _raise(hub, concern(categories=["other"]))
        urgent = await _raise(hub, concern())
        critical = await _raise(hub, critical_concern())
        assert (nfa["priority"], urgent["priority"]) == ("no_further_action", "urgent")

        queue = (await hub.api.get("/concerns", headers=WORKER)).json()
        ids = [item["concern_id"] for item in queue]
        assert ids.index(critical["concern_id"]) < ids.index(urgent["concern_id"]) < ids.index(nfa["concern_id"])
        ranks = [item["priority"] for item in queue]
        order = ["critical", "very_urgent", "urgent", "childrens_team", "no_further_action"]
        assert ranks == sorted(ranks, key=order.index)

        assert (await hub.api.get("/concerns", headers=TEACHER)).status_code == 403
        assert (await hub.api.get(f"/concerns/{critical['concern_id']}", headers=TEACHER)).status_code == 403
        async with hub.runtime.sessions() as session:
            actions = (
                await session.execute(
                    text("SELECT action FROM audit_log WHERE actor = 'teacher-1' ORDER BY id DESC LIMIT 2")
                )
            ).scalars()
            assert set(actions) == {"read concern queue refused", "read concern refused"}


async def test_a_concern_suited_to_a_childrens_team_becomes_a_referral(
    kafka_bootstrap: str, referral_service: RunningService
) -> None:
    async with (
        run_hub(kafka_bootstrap) as hub,
        TopicReader(kafka_bootstrap, REFERRALS_IN) as referrals_in,
        TopicReader(kafka_bootstrap, outcomes_out("childrens-hub")) as outcomes,
    ):
        # A child the referral service has not met, so the referral is received rather than linked.
        child = {"given_names": "Tama", "family_name": f"Rangi-{uuid.uuid4().hex[:8]}", "date_of_birth": "2015-09-09"}
        report = concern(categories=["other"], support_needs=["housing", "education"], child=child)
        accepted = await _raise(hub, report)
        assert accepted["priority"] == "childrens_team"
        request = {
            "referrer_name": "Hana Wiremu",
            "reasons": ["housing_instability"],
            "needs": ["housing", "education"],
            "consent": {"participation": "not_yet_asked"},
        }
        path = f"/concerns/{accepted['concern_id']}/referral"
        assert (await hub.api.post(path, json=request, headers=TEACHER)).status_code == 403
        response = await hub.api.post(path, json=request, headers=WORKER)
        assert response.status_code == 201, response.text
        agency_referral_id = response.json()["agency_referral_id"]
        assert (await hub.api.post(path, json=request, headers=WORKER)).status_code == 409

        [sent] = await referrals_in.events(ReferralSubmitted, lambda e: e.subject == agency_referral_id)
        assert sent.source == "/agencies/childrens-hub" and sent.event.agency == "childrens-hub"
        [told] = await outcomes.events(
            ReferralOutcome, lambda e: e.event.agency_referral_id == agency_referral_id, within=60
        )
        assert told.event.agency == "childrens-hub" and told.event.outcome == Outcome.RECEIVED

        urgent = await _raise(hub, concern())
        response = await hub.api.post(f"/concerns/{urgent['concern_id']}/referral", json=request, headers=WORKER)
        assert response.status_code == 409


async def test_watchdog_raises_an_alarm_when_the_escalation_scheduler_stalls(kafka_bootstrap: str) -> None:
    # A timer runner that looks once an hour is a stalled scheduler; the watchdog runs apart from it.
    stalled = {"timer_poll_seconds": 3600, "escalation_step_seconds": 0.2}
    watchdog = {"interval_seconds": 0.2, "bound_seconds": 0.3}
    async with run_hub(kafka_bootstrap, **stalled) as hub, TopicReader(kafka_bootstrap, STREAM) as stream:
        # The service's lifespan starts the watchdog beside the timers; run_service starts only the backbone.
        running = asyncio.create_task(Watchdog(sessions=hub.runtime.sessions, **watchdog).run())
        accepted = await _raise(hub, critical_concern())
        [alarm] = await stream.events(EscalationOverdue, _of(accepted["escalation_id"]))
        assert alarm.event.step == 1 and alarm.event.reason == "step_overdue"
        metrics = (await hub.api.get("/metrics")).text
        assert "ctp_escalation_steps_overdue" in metrics

        await asyncio.sleep(1)  # several watchdog passes
        await stream._poll()
        assert len(await stream.events(EscalationOverdue, _of(accepted["escalation_id"]))) == 1
        running.cancel()
