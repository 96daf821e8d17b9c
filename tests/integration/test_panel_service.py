"""The panel on the real broker and database: the queue, decisions with what follows from them, and oversight timers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from services.panel.handlers import REVIEW_OVERDUE
from shared.events.agency import MoreInformationProvided
from shared.events.concerns import ConcernRaised
from shared.events.panel import (
    MoreInformationRequested,
    PlanReviewRecorded,
    ReferralAccepted,
    ReferralDeclined,
    ReferralReconsidered,
    ReviewOverdue,
    SafetyPlanningRequired,
)
from shared.events.plans import PlanSubmittedForReview
from shared.events.referral import Outcome, ReferralInformationProvided, ReferralOutcome
from shared.messaging.envelope import Envelope
from shared.messaging.topics import referrals_in
from shared.timers import Timer, TimerRunner
from tests.conftest import eventually
from tests.support.kafka import AgencySystem, TopicReader
from tests.support.referrals import make_referral
from tests.support.services import RunningService, bearer

MEMBER = bearer("kaiwhakahaere-1", "childrens-team", "panel_member")
CHAIR = bearer("chair-1", "childrens-team", "panel_chair")


@pytest.fixture
async def decisions(kafka_bootstrap: str) -> AsyncIterator[TopicReader]:
    async with TopicReader(kafka_bootstrap, "panel.events") as reader:
        yield reader


async def refer(agency: AgencySystem, outcomes: TopicReader, **overrides: Any) -> tuple[Any, str, str]:
    """An agency refers a child; returns the referral, its referral id and child id."""
    referral = make_referral(**overrides)
    await agency.send(referrals_in("health-nz"), referral, agency="health-nz", subject=referral.agency_referral_id)
    [told] = await outcomes.events(ReferralOutcome, lambda e: e.event.agency_referral_id == referral.agency_referral_id)
    return referral, told.event.referral_id, told.event.child_id


async def queued(panel: RunningService, referral_id: str) -> list[dict[str, Any]] | None:
    queue = (await panel.api.get("/queue", headers=MEMBER)).json()
    return queue if any(item["referral_id"] == referral_id for item in queue) else None


async def test_a_received_referral_joins_the_queue_by_urgency_with_a_working_day_due_date(
    referral_service: RunningService, panel_service: RunningService, agency: AgencySystem, outcomes: TopicReader
) -> None:
    _, routine, _ = await refer(agency, outcomes, reasons=["school_attendance"])
    _, urgent, _ = await refer(agency, outcomes, reasons=["family_violence"])

    queue = await eventually(lambda: queued(panel_service, routine))
    queue = await eventually(lambda: queued(panel_service, urgent))
    order = [item["referral_id"] for item in queue]
    assert order.index(urgent) < order.index(routine)
    item = next(i for i in queue if i["referral_id"] == urgent)
    assert item["urgency"] == "high"
    due = datetime.fromisoformat(item["due_at"])
    assert due > datetime.now(UTC) + timedelta(days=4)  # five working days, never fewer than four calendar days
    assert due.weekday() < 5


async def test_acceptance_with_safety_planning_is_published_and_the_referrer_is_told(
    referral_service: RunningService,
    panel_service: RunningService,
    agency: AgencySystem,
    outcomes: TopicReader,
    decisions: TopicReader,
) -> None:
    referral, referral_id, child_id = await refer(agency, outcomes)
    await eventually(lambda: queued(panel_service, referral_id))

    decision = {
        "decision": "accept",
        "reason": "Attendance and parenting needs meet the threshold",
        "needs_profile": ["education", "parenting_capacity"],
        "safety_planning_required": True,
        "safety_planning_reason": "Past family violence in the home",
        "recommendations_for_lead": ["school_engagement", "parenting_programme"],
    }
    response = await panel_service.api.post(f"/reviews/{referral_id}/decision", json=decision, headers=MEMBER)
    assert response.status_code == 201, response.text

    [accepted] = await decisions.events(ReferralAccepted, lambda e: e.event.referral_id == referral_id)
    assert accepted.subject == child_id
    assert [n.value for n in accepted.event.needs_profile] == ["education", "parenting_capacity"]
    await decisions.events(SafetyPlanningRequired, lambda e: e.event.referral_id == referral_id)
    told = await outcomes.events(
        ReferralOutcome, lambda e: e.event.agency_referral_id == referral.agency_referral_id, count=2
    )
    assert told[-1].event.outcome is Outcome.ACCEPTED

    again = await panel_service.api.post(f"/reviews/{referral_id}/decision", json=decision, headers=MEMBER)
    assert again.status_code == 409
    assert "reconsideration" in again.json()["detail"]
    not_chair = await panel_service.api.post(
        f"/reviews/{referral_id}/reconsideration", json={"reason": "New information"}, headers=MEMBER
    )
    assert not_chair.status_code == 403
    reopened = await panel_service.api.post(
        f"/reviews/{referral_id}/reconsideration", json={"reason": "School reports a new incident"}, headers=CHAIR
    )
    assert reopened.status_code == 201
    await decisions.events(ReferralReconsidered, lambda e: e.event.referral_id == referral_id)
    review = (await panel_service.api.get(f"/reviews/{referral_id}", headers=MEMBER)).json()
    assert [(d["kind"], d["decided_by"]) for d in review["decisions"]] == [
        ("accept", "kaiwhakahaere-1"),
        ("reconsideration", "chair-1"),
    ]


async def test_a_decline_that_finds_serious_risk_raises_a_concern_for_the_hub(
    referral_service: RunningService,
    panel_service: RunningService,
    agency: AgencySystem,
    outcomes: TopicReader,
    decisions: TopicReader,
    kafka_bootstrap: str,
) -> None:
    referral, referral_id, child_id = await refer(agency, outcomes)
    await eventually(lambda: queued(panel_service, referral_id))
    decision = {
        "decision": "decline",
        "reason": "Needs a statutory response, not a Children's Team",
        "decline_reason": "statutory_care_needed",
        "recommendations_to_referrer": ["statutory_referral"],
        "serious_risk": True,
        "risk_categories": ["physical_harm"],
        "risk_details": "Unexplained bruising reported twice this month",
    }
    async with TopicReader(kafka_bootstrap, "concerns.raised") as concerns:
        response = await panel_service.api.post(f"/reviews/{referral_id}/decision", json=decision, headers=MEMBER)
        assert response.status_code == 201, response.text
        [concern] = await concerns.events(ConcernRaised, lambda e: e.subject == child_id)

    assert (concern.event.raised_by, concern.event.immediate_danger) == ("panel", False)
    [declined] = await decisions.events(ReferralDeclined, lambda e: e.event.referral_id == referral_id)
    assert declined.event.serious_risk
    told = await outcomes.events(
        ReferralOutcome, lambda e: e.event.agency_referral_id == referral.agency_referral_id, count=2
    )
    assert told[-1].event.outcome is Outcome.DECLINED
    assert [r.value for r in told[-1].event.recommendations] == ["statutory_referral"]


async def test_more_information_goes_to_the_referrer_and_their_answer_puts_the_referral_back_in_the_queue(
    referral_service: RunningService,
    panel_service: RunningService,
    agency: AgencySystem,
    outcomes: TopicReader,
    decisions: TopicReader,
    kafka_bootstrap: str,
) -> None:
    referral, referral_id, _ = await refer(agency, outcomes)
    await eventually(lambda: queued(panel_service, referral_id))
    ask = {"decision": "more_information", "reason": "Caregiving unclear", "questions": ["Who lives in the home?"]}
    assert (
        await panel_service.api.post(f"/reviews/{referral_id}/decision", json=ask, headers=MEMBER)
    ).status_code == 201
    await decisions.events(MoreInformationRequested, lambda e: e.event.referral_id == referral_id)
    told = await outcomes.events(
        ReferralOutcome, lambda e: e.event.agency_referral_id == referral.agency_referral_id, count=2
    )
    assert told[-1].event.outcome is Outcome.MORE_INFORMATION_NEEDED
    assert told[-1].event.questions == ["Who lives in the home?"]
    assert await queued(panel_service, referral_id) is None  # paused while the referrer answers

    answer = MoreInformationProvided(
        agency_referral_id=referral.agency_referral_id, agency="health-nz", answers=["Mum, Nan and two siblings."]
    )
    async with TopicReader(kafka_bootstrap, "referral.events") as stream:
        await agency.send(referrals_in("health-nz"), answer, agency="health-nz", subject=referral.agency_referral_id)
        await stream.events(ReferralInformationProvided, lambda e: e.event.referral_id == referral_id)
    await eventually(lambda: queued(panel_service, referral_id))


async def test_an_overdue_review_is_raised_once_even_when_the_service_restarts_mid_step(
    referral_service: RunningService, panel_service: RunningService, agency: AgencySystem, outcomes: TopicReader
) -> None:
    _, referral_id, _ = await refer(agency, outcomes)
    await eventually(lambda: queued(panel_service, referral_id))
    sessions = panel_service.runtime.sessions
    # The response window has run out, and an instance claimed the overdue step (fence and lease, as a claim does)
    # and then died before doing it.
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE reviews SET due_at = now() - interval '1 hour' WHERE referral_id = :id"), {"id": referral_id}
        )
        row = (
            await session.execute(
                text(
                    "UPDATE timers SET due_at = now() - interval '1 hour', fence = fence + 1, "
                    "lease_until = now() + interval '1 second' "
                    "WHERE kind = :kind AND key = :id AND state = 'pending' "
                    "RETURNING id, kind, key, due_at, payload, fence"
                ),
                {"kind": REVIEW_OVERDUE, "id": referral_id},
            )
        ).one()
    crashed_claim = Timer(row.id, row.kind, row.key, row.due_at, row.payload, row.fence)

    async def fired() -> int:
        async with sessions() as session:
            return int(
                await session.scalar(
                    text("SELECT count(*) FROM timers WHERE kind = :kind AND key = :id AND state = 'fired'"),
                    {"kind": REVIEW_OVERDUE, "id": referral_id},
                )
                or 0
            )

    await eventually(fired)  # the running instance takes the step over once the lease lapses
    late = TimerRunner(sessions=sessions, handlers=panel_service.runtime.timers.handlers)
    assert await late._fire(crashed_claim) == 0  # the crashed instance's step, if it ever ran, does nothing

    async with sessions() as session:
        raised = await session.scalar(
            text(
                "SELECT count(*) FROM outbox "
                "WHERE headers->>'ce_type' = :type AND convert_from(body, 'UTF8')::jsonb->>'referral_id' = :id"
            ),
            {"type": ReviewOverdue.ce_type, "id": referral_id},
        )
    assert raised == 1


async def test_only_panel_members_see_the_queue_and_refusals_are_audited(panel_service: RunningService) -> None:
    nosy = bearer("kaimahi-9", "childrens-hub", "hub_social_worker")
    response = await panel_service.api.get("/queue", headers=nosy | {"X-Purpose": "browsing"})
    assert response.status_code == 403
    async with panel_service.runtime.sessions() as session:
        row = (
            await session.execute(
                text("SELECT action, purpose FROM audit_log WHERE actor = 'kaimahi-9' ORDER BY id DESC LIMIT 1")
            )
        ).one()
    assert tuple(row) == ("read review queue refused", "browsing")


async def test_a_plan_submitted_for_review_is_endorsed_or_advised(
    panel_service: RunningService, decisions: TopicReader, kafka_bootstrap: str
) -> None:
    plan_id, child_id = f"plan-{datetime.now(UTC).timestamp()}", "child-plan-1"
    submitted = Envelope(
        event=PlanSubmittedForReview(plan_id=plan_id, child_id=child_id, stage="plan", submitted_at=datetime.now(UTC)),
        source="/services/plans",
        subject=child_id,
    )
    async with AgencySystem(kafka_bootstrap) as plans:  # plays the plans service on its public stream
        await plans.send_raw("plans.events", submitted.body(), key=child_id, headers=submitted.headers())

    async def waiting() -> bool:
        queue = (await panel_service.api.get("/plan-reviews", headers=MEMBER)).json()
        return any(item["plan_id"] == plan_id for item in queue)

    await eventually(waiting)
    advice = {"outcome": "advice_given", "advice": ["kaupapa_maori_service"], "note": "Involve the iwi provider"}
    assert (await panel_service.api.post(f"/plan-reviews/{plan_id}", json=advice, headers=MEMBER)).status_code == 201
    [recorded] = await decisions.events(PlanReviewRecorded, lambda e: e.event.plan_id == plan_id)
    assert recorded.correlation_id == submitted.correlation_id
    assert (await panel_service.api.post(f"/plan-reviews/{plan_id}", json=advice, headers=MEMBER)).status_code == 409
