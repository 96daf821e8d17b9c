"""A child's whole plan on the real broker and database: assigned → case → assessment → plan → panel → actions →
review → exit, each step publishing its event; timers; need-to-know."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from services.plans.handlers import ACTION_DUE, REVIEW_DUE
from shared.events.agency import ConsentChanged
from shared.events.assignment import LeadProposed
from shared.events.hub import ConcernScreened
from shared.events.plans import (
    ActionCompleted,
    ActionOverdue,
    AssessmentCompleted,
    CaseClosed,
    CaseOpened,
    ConcernLinked,
    ImplementationStarted,
    PlanEndorsed,
    PlanReviewOverdue,
    PlanSubmittedForReview,
    ReviewRecorded,
)
from shared.events.referral import ConsentWithdrawn, Outcome, ReferralOutcome
from shared.messaging.envelope import Envelope
from shared.messaging.topics import referrals_in
from shared.timers import Timer, TimerRunner
from tests.conftest import eventually
from tests.support.kafka import AgencySystem, TopicReader
from tests.support.referrals import make_referral
from tests.support.services import RunningService, bearer

ADMIN = bearer("admin-1", "childrens-team", "administrator")
PANEL = bearer("panel-1", "childrens-team", "panel_member")

ASSESSMENT = {
    "domains": {
        "child_wellbeing.education": {"strengths": "Loves kapa haka", "needs": "Attendance", "need_identified": True},
        "caregiver_capacity.guidance_and_boundaries": {"needs": "Routines", "need_identified": True},
        "whanau_and_environment.cultural": {"strengths": "Strong marae links"},
    },
    "child_voice": "I want to go to school with my cousins.",
    "whanau_view": "Mum wants help with mornings.",
}


@pytest.fixture
async def plan_events(kafka_bootstrap: str) -> AsyncIterator[TopicReader]:
    async with TopicReader(kafka_bootstrap, "plans.events") as reader:
        yield reader


@pytest.fixture
def everything(
    referral_service: RunningService,
    panel_service: RunningService,
    assignment_service: RunningService,
    plans_service: RunningService,
) -> dict[str, RunningService]:
    return {"panel": panel_service, "assignment": assignment_service, "plans": plans_service}


async def consent_heard(plans: RunningService, child_id: str) -> bool:
    """The plans service has heard the family's consent (it arrives on another topic than the lead's assignment)."""
    async with plans.runtime.sessions() as session:
        return bool(await session.scalar(text("SELECT 1 FROM consents WHERE child_id = :id"), {"id": child_id}))


async def assigned_child(
    services: dict[str, RunningService],
    agency: AgencySystem,
    outcomes: TopicReader,
    kafka_bootstrap: str,
    **overrides: Any,
) -> tuple[Any, str, str, dict[str, str]]:
    """Referral → panel acceptance → manager's confirmation. Returns referral, child id, lead id, lead's token."""
    lead = f"lead-{uuid.uuid4().hex[:8]}"
    body = {
        "name": "Lead Practitioner",
        "agency": "oranga-tamariki",
        "discipline": "social worker",
        "needs": ["education", "parenting_capacity"],
        "max_caseload": 5,
        "manager_id": f"mgr-{lead}",
    }
    assert (await services["assignment"].api.put(f"/practitioners/{lead}", json=body, headers=ADMIN)).status_code == 200
    referral = make_referral(
        involved_practitioners=[
            {"id": lead, "name": "Lead", "role": "social worker", "agency": "oranga-tamariki"},
            {"id": f"counsellor-{lead}", "name": "Counsellor", "role": "school counsellor", "agency": "education-moe"},
            {"id": f"nurse-{lead}", "name": "Nurse", "role": "public health nurse", "agency": "health-nz"},
        ],
        **overrides,
    )
    async with TopicReader(kafka_bootstrap, "assignment.events") as leads:
        await agency.send(referrals_in("health-nz"), referral, agency="health-nz", subject=referral.agency_referral_id)
        [told] = await outcomes.events(
            ReferralOutcome, lambda e: e.event.agency_referral_id == referral.agency_referral_id
        )
        referral_id, child_id = told.event.referral_id, told.event.child_id

        async def queued() -> bool:
            queue = (await services["panel"].api.get("/queue", headers=PANEL)).json()
            return any(item["referral_id"] == referral_id for item in queue)

        await eventually(queued)
        accept = {"decision": "accept", "reason": "Meets threshold", "needs_profile": ["education"]}
        assert (
            await services["panel"].api.post(f"/reviews/{referral_id}/decision", json=accept, headers=PANEL)
        ).status_code == 201
        [proposed] = await leads.events(LeadProposed, lambda e: e.subject == child_id)
    manager = bearer(f"mgr-{lead}", "oranga-tamariki", "manager")
    confirmed = await services["assignment"].api.post(
        f"/proposals/{proposed.event.proposal_id}/confirm", headers=manager
    )
    assert confirmed.status_code == 200
    # Until the plans service has heard the family's consent it refuses anyone outside it (privacy by default).
    await eventually(lambda: consent_heard(services["plans"], child_id))
    return referral, child_id, lead, bearer(lead, "oranga-tamariki", "lead_professional")


async def test_a_childs_journey_from_assigned_lead_to_a_celebrated_exit(
    everything: dict[str, RunningService],
    agency: AgencySystem,
    outcomes: TopicReader,
    plan_events: TopicReader,
    kafka_bootstrap: str,
) -> None:
    plans, panel = everything["plans"], everything["panel"]
    referral, child_id, lead, as_lead = await assigned_child(everything, agency, outcomes, kafka_bootstrap)

    [opened] = await plan_events.events(CaseOpened, lambda e: e.subject == child_id)
    case_id = opened.event.case_id
    case = (await plans.api.get(f"/cases/{case_id}", headers=as_lead)).json()
    assert case["stage"] == "assess"
    # The referral's practitioners join the network when the family's consent covers their agency (the school
    # counsellor); the nurse's agency is outside it, so she waits until consent or a recorded legal basis lets her in.
    assert {(m["member_id"], m["kind"]) for m in case["members"]} == {
        (f"child:{child_id}", "child"),
        (lead, "lead"),
        (f"counsellor-{lead}", "practitioner"),
    }
    assert case["waiting_for_consent"] == [
        {"practitioner_id": f"nurse-{lead}", "agency": "health-nz", "role": "public health nurse"}
    ]

    teacher = {
        "member_id": f"teacher-{case_id[:6]}",
        "kind": "practitioner",
        "name": "Whaea Kiri",
        "agency": "education-moe",
    }
    assert (await plans.api.post(f"/cases/{case_id}/members", json=teacher, headers=as_lead)).status_code == 201
    nan = {"member_id": f"nan-{case_id[:6]}", "kind": "whanau", "name": "Nan"}
    assert (await plans.api.post(f"/cases/{case_id}/members", json=nan, headers=as_lead)).status_code == 201

    # The assessment cannot be completed before the child's voice and the whānau's view are in.
    silent = ASSESSMENT | {"child_voice": "", "whanau_view": ""}
    assert (await plans.api.put(f"/cases/{case_id}/assessment", json=silent, headers=as_lead)).status_code == 200
    early = await plans.api.post(f"/cases/{case_id}/assessment/complete", headers=as_lead)
    assert early.status_code == 409 and "the child's voice" in early.json()["detail"]
    assert (await plans.api.put(f"/cases/{case_id}/assessment", json=ASSESSMENT, headers=as_lead)).status_code == 200
    evidence = {"domain": "child_wellbeing.education", "evidence": "Attendance 62% this term"}
    as_teacher = bearer(teacher["member_id"], "education-moe", "practitioner")
    assert (
        await plans.api.post(f"/cases/{case_id}/assessment/evidence", json=evidence, headers=as_teacher)
    ).status_code == 201
    assert (await plans.api.post(f"/cases/{case_id}/assessment/complete", headers=as_lead)).status_code == 200
    [assessed] = await plan_events.events(AssessmentCompleted, lambda e: e.subject == child_id)
    assert assessed.event.needs == ["caregiver_capacity.guidance_and_boundaries", "child_wellbeing.education"]

    goal = {
        "description": "Tama is at school every day",
        "need": "child_wellbeing.education",
        "set_with_child": True,
        "set_with_whanau": True,
        "actions": [
            {
                "description": "Walking school bus",
                "owner_member_id": teacher["member_id"],
                "due_on": str(date.today() + timedelta(days=14)),
            }
        ],
    }
    wrong_need = goal | {"need": "whanau_and_environment.housing"}
    refused = await plans.api.post(f"/cases/{case_id}/plan", json={"goals": [wrong_need]}, headers=as_lead)
    assert refused.status_code == 422 and "not an assessed need" in refused.json()["detail"]
    written = await plans.api.post(f"/cases/{case_id}/plan", json={"goals": [goal]}, headers=as_lead)
    assert written.status_code == 201, written.text
    too_soon = await plans.api.post(f"/cases/{case_id}/implementation", headers=as_lead)
    assert too_soon.status_code == 409 and "endorsed by the panel" in too_soon.json()["detail"]

    assert (await plans.api.post(f"/cases/{case_id}/plan/submit", headers=as_lead)).status_code == 200
    [submitted] = await plan_events.events(PlanSubmittedForReview, lambda e: e.subject == child_id)
    plan_id = submitted.event.plan_id

    async def waiting_for_panel() -> bool:
        queue = (await panel.api.get("/plan-reviews", headers=PANEL)).json()
        return any(item["plan_id"] == plan_id for item in queue)

    await eventually(waiting_for_panel)
    endorse = {"outcome": "endorsed"}
    assert (await panel.api.post(f"/plan-reviews/{plan_id}", json=endorse, headers=PANEL)).status_code == 201
    await plan_events.events(PlanEndorsed, lambda e: e.subject == child_id)

    assert (await plans.api.post(f"/cases/{case_id}/implementation", headers=as_lead)).status_code == 200
    await plan_events.events(ImplementationStarted, lambda e: e.subject == child_id)
    case = (await plans.api.get(f"/children/{child_id}/case", headers=as_lead)).json()
    [action] = case["plan"]["actions"]
    assert (await plans.api.post(f"/actions/{action['action_id']}/done", headers=as_teacher)).status_code == 200
    await plan_events.events(ActionCompleted, lambda e: e.subject == child_id)

    early_exit = await plans.api.post(
        f"/cases/{case_id}/exit",
        json={"reason": "goals_achieved", "handover_to": ["universal_services"]},
        headers=as_lead,
    )
    assert early_exit.status_code == 409 and "only after a review" in early_exit.json()["detail"]
    review = {"outcome": "close", "notes": "Attending every day for six weeks; mum confident with routines."}
    assert (await plans.api.post(f"/cases/{case_id}/reviews", json=review, headers=as_lead)).status_code == 201
    await plan_events.events(ReviewRecorded, lambda e: e.subject == child_id)
    closing = {"reason": "goals_achieved", "handover_to": ["universal_services"], "celebration": "Whānau hākari"}
    assert (await plans.api.post(f"/cases/{case_id}/exit", json=closing, headers=as_lead)).status_code == 200
    [closed] = await plan_events.events(CaseClosed, lambda e: e.subject == child_id)
    assert (closed.event.reason, closed.event.handover_to) == ("goals_achieved", ["universal_services"])

    told = await outcomes.events(
        ReferralOutcome, lambda e: e.event.agency_referral_id == referral.agency_referral_id, count=4
    )
    assert told[-1].event.outcome is Outcome.CASE_CLOSED

    timeline = (await plans.api.get(f"/children/{child_id}/timeline", headers=as_lead)).json()
    kinds = [row["type"].removeprefix("nz.childrensteams.") for row in timeline]
    for expected in (
        "referral.received.v1",
        "panel.referral_accepted.v1",
        "assignment.lead_assigned.v1",
        "plans.case_opened.v1",
        "plans.plan_endorsed.v1",
        "plans.case_closed.v1",
    ):
        assert expected in kinds

    async def slot_released() -> bool:
        directory = (await everything["assignment"].api.get("/practitioners", headers=ADMIN)).json()
        return bool(next(p for p in directory if p["practitioner_id"] == lead)["caseload"] == 0)

    await eventually(slot_released)


async def test_the_database_holds_one_childs_plan_per_child(
    everything: dict[str, RunningService],
    agency: AgencySystem,
    outcomes: TopicReader,
    kafka_bootstrap: str,
    plan_events: TopicReader,
) -> None:
    _, child_id, _, _ = await assigned_child(everything, agency, outcomes, kafka_bootstrap)
    [opened] = await plan_events.events(CaseOpened, lambda e: e.subject == child_id)
    sessions = everything["plans"].runtime.sessions
    insert = text("INSERT INTO plans (plan_id, case_id, child_id, status) VALUES (:p, :c, :child, 'draft')")
    async with sessions() as session, session.begin():
        await session.execute(insert, {"p": f"first-{child_id}", "c": opened.event.case_id, "child": child_id})
    with pytest.raises(Exception, match="one_active_plan_per_child"):
        async with sessions() as session, session.begin():
            await session.execute(insert, {"p": f"second-{child_id}", "c": opened.event.case_id, "child": child_id})


async def test_withdrawn_consent_stops_an_out_of_scope_member_seeing_the_child_and_refusals_are_audited(
    everything: dict[str, RunningService],
    agency: AgencySystem,
    outcomes: TopicReader,
    plan_events: TopicReader,
    kafka_bootstrap: str,
) -> None:
    plans = everything["plans"]
    referral, child_id, _, as_lead = await assigned_child(everything, agency, outcomes, kafka_bootstrap)
    [opened] = await plan_events.events(CaseOpened, lambda e: e.subject == child_id)
    case_id = opened.event.case_id
    teacher = {
        "member_id": f"teacher-{case_id[:6]}",
        "kind": "practitioner",
        "name": "Whaea",
        "agency": "education-moe",
    }
    assert (await plans.api.post(f"/cases/{case_id}/members", json=teacher, headers=as_lead)).status_code == 201
    police = {"member_id": f"cop-{case_id[:6]}", "kind": "practitioner", "name": "Constable", "agency": "police-nz"}
    outside = await plans.api.post(f"/cases/{case_id}/members", json=police, headers=as_lead)
    assert outside.status_code == 409 and "legal basis" in outside.json()["detail"]

    as_teacher = bearer(teacher["member_id"], "education-moe", "practitioner")
    assert (await plans.api.get(f"/cases/{case_id}", headers=as_teacher)).status_code == 200
    narrower = referral.consent.model_dump() | {"share_with": []}
    change = ConsentChanged(agency_referral_id=referral.agency_referral_id, agency="health-nz", consent=narrower)
    async with TopicReader(kafka_bootstrap, "referral.events") as stream:
        await agency.send(referrals_in("health-nz"), change, agency="health-nz", subject=referral.agency_referral_id)
        await stream.events(ConsentWithdrawn, lambda e: e.subject == child_id)

    async def refused() -> bool:
        return (await plans.api.get(f"/cases/{case_id}", headers=as_teacher)).status_code == 403

    await eventually(refused)
    stranger = bearer("someone-else", "health-nz", "practitioner")
    assert (await plans.api.get(f"/cases/{case_id}", headers=stranger)).status_code == 403
    async with plans.runtime.sessions() as session:
        rows = (
            await session.execute(
                text("SELECT actor, action FROM audit_log WHERE detail->>'case_id' = :id AND action LIKE '%refused'"),
                {"id": case_id},
            )
        ).all()
    assert ("someone-else", "read case refused") in [tuple(r) for r in rows]
    assert (teacher["member_id"], "read case refused") in [tuple(r) for r in rows]


async def test_overdue_actions_and_reviews_are_raised_once_even_when_an_instance_dies_mid_step(
    everything: dict[str, RunningService],
    agency: AgencySystem,
    outcomes: TopicReader,
    plan_events: TopicReader,
    kafka_bootstrap: str,
) -> None:
    plans, panel = everything["plans"], everything["panel"]
    _, child_id, lead, as_lead = await assigned_child(everything, agency, outcomes, kafka_bootstrap)
    [opened] = await plan_events.events(CaseOpened, lambda e: e.subject == child_id)
    case_id = opened.event.case_id
    await plans.api.put(f"/cases/{case_id}/assessment", json=ASSESSMENT, headers=as_lead)
    await plans.api.post(f"/cases/{case_id}/assessment/complete", headers=as_lead)
    goal = {
        "description": "School every day",
        "need": "child_wellbeing.education",
        "set_with_child": True,
        "set_with_whanau": True,
        "actions": [
            {
                "description": "Morning check-in",
                "owner_member_id": lead,
                "due_on": str(date.today() + timedelta(days=3)),
            }
        ],
    }
    assert (await plans.api.post(f"/cases/{case_id}/plan", json={"goals": [goal]}, headers=as_lead)).status_code == 201
    await plans.api.post(f"/cases/{case_id}/plan/submit", headers=as_lead)
    [submitted] = await plan_events.events(PlanSubmittedForReview, lambda e: e.subject == child_id)

    async def waiting() -> bool:
        queue = (await panel.api.get("/plan-reviews", headers=PANEL)).json()
        return any(item["plan_id"] == submitted.event.plan_id for item in queue)

    await eventually(waiting)
    await panel.api.post(f"/plan-reviews/{submitted.event.plan_id}", json={"outcome": "endorsed"}, headers=PANEL)
    await plan_events.events(PlanEndorsed, lambda e: e.subject == child_id)
    assert (await plans.api.post(f"/cases/{case_id}/implementation", headers=as_lead)).status_code == 200
    action_id = (await plans.api.get(f"/cases/{case_id}", headers=as_lead)).json()["plan"]["actions"][0]["action_id"]

    sessions = plans.runtime.sessions
    async with sessions() as session, session.begin():  # the due date passed; one instance claimed it and died
        row = (
            await session.execute(
                text(
                    "UPDATE timers SET due_at = now() - interval '1 hour', fence = fence + 1, "
                    "lease_until = now() + interval '1 second' WHERE kind = :kind AND key = :id AND state = 'pending' "
                    "RETURNING id, kind, key, due_at, payload, fence"
                ),
                {"kind": ACTION_DUE, "id": action_id},
            )
        ).one()
    crashed = Timer(row.id, row.kind, row.key, row.due_at, row.payload, row.fence)
    [overdue] = await plan_events.events(ActionOverdue, lambda e: e.event.action_id == action_id)
    assert (overdue.event.owner_member_id, overdue.event.lead_practitioner_id) == (lead, lead)
    assert await TimerRunner(sessions=sessions, handlers=plans.runtime.timers.handlers)._fire(crashed) == 0
    async with sessions() as session:
        raised = await session.scalar(
            text(
                "SELECT count(*) FROM outbox WHERE headers->>'ce_type' = :type "
                "AND convert_from(body, 'UTF8')::jsonb->>'action_id' = :id"
            ),
            {"type": ActionOverdue.ce_type, "id": action_id},
        )
    assert raised == 1

    # The review date passes too: the lead and their manager are told, once.
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE timers SET due_at = now() - interval '1 minute' WHERE kind = :kind AND key = :id"),
            {"kind": REVIEW_DUE, "id": case_id},
        )
    [late] = await plan_events.events(PlanReviewOverdue, lambda e: e.subject == child_id)
    assert (late.event.case_id, late.event.lead_practitioner_id, late.event.lead_manager_id) == (
        case_id,
        lead,
        f"mgr-{lead}",
    )
    async with sessions() as session:
        states = await session.scalars(
            text("SELECT state FROM timers WHERE kind = :kind AND key = :id"), {"kind": REVIEW_DUE, "id": case_id}
        )
        assert list(states) == ["fired"]


async def test_a_concern_about_a_child_with_an_open_case_is_linked_and_the_lead_told_once(
    everything: dict[str, RunningService],
    agency: AgencySystem,
    outcomes: TopicReader,
    plan_events: TopicReader,
    kafka_bootstrap: str,
) -> None:
    plans = everything["plans"]
    _, child_id, lead, as_lead = await assigned_child(everything, agency, outcomes, kafka_bootstrap)
    [opened] = await plan_events.events(CaseOpened, lambda e: e.subject == child_id)
    concern_id = f"concern-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    async with AgencySystem(kafka_bootstrap) as hub:  # plays the hub on its public stream
        for by_human in (False, True):  # screened at intake, then confirmed by a hub social worker
            screened = Envelope(
                event=ConcernScreened(
                    concern_id=concern_id,
                    child_id=child_id,
                    priority="very_urgent",
                    rules_fired=["physical_harm_reported"],
                    screened_at=now,
                    confirmed_by_human=by_human,
                ),
                source="/services/hub",
                subject=child_id,
            )
            await hub.send_raw("hub.events", screened.body(), key=child_id, headers=screened.headers())

    [linked] = await plan_events.events(ConcernLinked, lambda e: e.event.concern_id == concern_id)
    assert (linked.event.case_id, linked.event.lead_practitioner_id) == (opened.event.case_id, lead)

    async def both_on_the_timeline() -> bool:
        rows = (await plans.api.get(f"/children/{child_id}/timeline", headers=as_lead)).json()
        return bool(sum(r["type"] == ConcernScreened.ce_type for r in rows) == 2)

    await eventually(both_on_the_timeline)
    async with plans.runtime.sessions() as session:
        told = await session.scalar(
            text(
                "SELECT count(*) FROM outbox WHERE headers->>'ce_type' = :type "
                "AND convert_from(body, 'UTF8')::jsonb->>'concern_id' = :id"
            ),
            {"type": ConcernLinked.ce_type, "id": concern_id},
        )
    assert told == 1
