"""What reporting does with the public streams: each event updates the facts of one journey, concern or escalation.

Handlers only upsert facts keyed by the event's ids, with times taken from the events (never the time of arrival),
so a redelivery, a replay or an event that arrives before its fellows from another stream leaves the same facts.
The live consumer and the rebuild (services/reporting/rebuild.py) both use `HANDLERS`.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.reporting import storage
from services.reporting.domain import STAGE_AFTER_REVIEW
from shared.events import Event
from shared.events.assignment import LeadAssigned
from shared.events.hub import (
    ConcernScreened,
    EscalationAcknowledged,
    EscalationExhausted,
    EscalationStarted,
    EscalationStepTaken,
    EscalationStoodDown,
)
from shared.events.panel import MoreInformationRequested, ReferralAccepted, ReferralDeclined, ReferralReconsidered
from shared.events.plans import (
    ActionCompleted,
    ActionOverdue,
    AssessmentCompleted,
    CaseClosed,
    CaseOpened,
    ImplementationStarted,
    PlanEndorsed,
    PlanReviewOverdue,
    ReviewRecorded,
)
from shared.events.referral import ReferralReceived, ReferralWithdrawn, SiblingGroupChanged
from shared.messaging.consumer import Consumer, Handler
from shared.messaging.envelope import Envelope

HEARS = ["referral.events", "panel.events", "assignment.events", "plans.events", "hub.events"]
CONSUMER = "figures"


# Referral stream ------------------------------------------------------------------------------------------------


async def note_referral(session: AsyncSession, envelope: Envelope) -> None:
    received = envelope.event
    assert isinstance(received, ReferralReceived)
    await storage.put(
        session,
        storage.referrals,
        {"referral_id": received.referral_id},
        {
            "child_id": received.child_id,
            "agency": received.agency,
            "received_at": received.received_at,
            "reasons": [str(r) for r in received.reasons],
        },
    )
    await storage.put(
        session,
        storage.sibling_groups,
        {"child_id": received.child_id},
        {"sibling_group_id": received.sibling_group_id, "at": received.received_at},
        when_newer=("at", ["sibling_group_id"]),
    )


async def note_siblings(session: AsyncSession, envelope: Envelope) -> None:
    changed = envelope.event
    assert isinstance(changed, SiblingGroupChanged)
    for child_id in changed.child_ids:
        await storage.put(
            session,
            storage.sibling_groups,
            {"child_id": child_id},
            {"sibling_group_id": changed.sibling_group_id, "at": envelope.time},
            when_newer=("at", ["sibling_group_id"]),
        )


async def note_withdrawal(session: AsyncSession, envelope: Envelope) -> None:
    withdrawn = envelope.event
    assert isinstance(withdrawn, ReferralWithdrawn)
    await storage.put(
        session,
        storage.referrals,
        {"referral_id": withdrawn.referral_id},
        {"child_id": withdrawn.child_id, "withdrawn_at": envelope.time},
        earliest=["withdrawn_at"],
    )


# Panel stream ---------------------------------------------------------------------------------------------------


async def note_acceptance(session: AsyncSession, envelope: Envelope) -> None:
    accepted = envelope.event
    assert isinstance(accepted, ReferralAccepted)
    await storage.decide(
        session,
        referral_id=accepted.referral_id,
        child_id=accepted.child_id,
        decision="accepted",
        reason=None,
        at=accepted.decided_at,
    )


async def note_decline(session: AsyncSession, envelope: Envelope) -> None:
    declined = envelope.event
    assert isinstance(declined, ReferralDeclined)
    await storage.decide(
        session,
        referral_id=declined.referral_id,
        child_id=declined.child_id,
        decision="declined",
        reason=str(declined.reason),
        at=declined.decided_at,
    )


async def note_questions(session: AsyncSession, envelope: Envelope) -> None:
    asked = envelope.event
    assert isinstance(asked, MoreInformationRequested)
    await storage.put(
        session,
        storage.referrals,
        {"referral_id": asked.referral_id},
        {"child_id": asked.child_id, "more_information_at": envelope.time},
        latest=["more_information_at"],
    )


async def note_reconsideration(session: AsyncSession, envelope: Envelope) -> None:
    reconsidered = envelope.event
    assert isinstance(reconsidered, ReferralReconsidered)
    await storage.reconsider(session, referral_id=reconsidered.referral_id, at=envelope.time)


# Assignment stream ----------------------------------------------------------------------------------------------


async def note_lead(session: AsyncSession, envelope: Envelope) -> None:
    """The first lead's time measures time to help; the latest assignment says who leads (and supervises) now, and
    the latest assignment of a lead says their capacity."""
    assigned = envelope.event
    assert isinstance(assigned, LeadAssigned)
    await storage.put(
        session,
        storage.referrals,
        {"referral_id": assigned.referral_id},
        {
            "child_id": assigned.child_id,
            "first_lead_at": assigned.assigned_at,
            "lead_practitioner_id": assigned.practitioner_id,
            "manager_id": assigned.manager_id,
            "lead_at": assigned.assigned_at,
        },
        earliest=["first_lead_at"],
        when_newer=("lead_at", ["lead_practitioner_id", "manager_id"]),
    )
    # The lead's capacity as the assignment service had it then; an older event (or one from before the event
    # carried it) never overwrites a newer figure.
    if assigned.lead_capacity is not None:
        await storage.put(
            session,
            storage.lead_capacity,
            {"practitioner_id": assigned.practitioner_id},
            {"max_caseload": assigned.lead_capacity, "as_of": assigned.assigned_at},
            when_newer=("as_of", ["max_caseload"]),
        )


# Plans stream ---------------------------------------------------------------------------------------------------


async def _stage(session: AsyncSession, case_id: str, child_id: str, stage: str, envelope: Envelope) -> None:
    await storage.put(
        session,
        storage.cases,
        {"case_id": case_id},
        {"child_id": child_id, "stage": stage, "stage_at": envelope.time},
        when_newer=("stage_at", ["stage"]),
    )


async def note_case_opened(session: AsyncSession, envelope: Envelope) -> None:
    opened = envelope.event
    assert isinstance(opened, CaseOpened)
    await storage.put(
        session,
        storage.cases,
        {"case_id": opened.case_id},
        {
            "referral_id": opened.referral_id,
            "child_id": opened.child_id,
            "lead_practitioner_id": opened.lead_practitioner_id,
            "opened_at": opened.opened_at,
        },
        earliest=["opened_at"],
    )
    await _stage(session, opened.case_id, opened.child_id, "assess", envelope)


async def note_assessment(session: AsyncSession, envelope: Envelope) -> None:
    assessed = envelope.event
    assert isinstance(assessed, AssessmentCompleted)
    await _stage(session, assessed.case_id, assessed.child_id, "plan", envelope)


async def note_endorsement(session: AsyncSession, envelope: Envelope) -> None:
    endorsed = envelope.event
    assert isinstance(endorsed, PlanEndorsed)
    await storage.put(
        session,
        storage.cases,
        {"case_id": endorsed.case_id},
        {"child_id": endorsed.child_id, "endorsed_at": endorsed.endorsed_at},
        earliest=["endorsed_at"],
    )


async def note_implementation(session: AsyncSession, envelope: Envelope) -> None:
    started = envelope.event
    assert isinstance(started, ImplementationStarted)
    await _stage(session, started.case_id, started.child_id, "implement", envelope)


async def note_review(session: AsyncSession, envelope: Envelope) -> None:
    reviewed = envelope.event
    assert isinstance(reviewed, ReviewRecorded)
    await storage.put(
        session,
        storage.cases,
        {"case_id": reviewed.case_id},
        {"child_id": reviewed.child_id, "last_reviewed_at": reviewed.reviewed_at},
        latest=["last_reviewed_at"],
    )
    stage = STAGE_AFTER_REVIEW.get(reviewed.outcome, "review")
    await _stage(session, reviewed.case_id, reviewed.child_id, stage, envelope)


async def note_review_overdue(session: AsyncSession, envelope: Envelope) -> None:
    overdue = envelope.event
    assert isinstance(overdue, PlanReviewOverdue)
    await storage.put(session, storage.overdue_reviews, {"case_id": overdue.case_id, "due_at": overdue.due_at}, {})


async def note_action_overdue(session: AsyncSession, envelope: Envelope) -> None:
    overdue = envelope.event
    assert isinstance(overdue, ActionOverdue)
    await storage.put(
        session,
        storage.actions,
        {"action_id": overdue.action_id},
        {"case_id": overdue.case_id, "overdue": True, "due_on": overdue.due_on},
    )


async def note_action_done(session: AsyncSession, envelope: Envelope) -> None:
    done = envelope.event
    assert isinstance(done, ActionCompleted)
    await storage.put(
        session,
        storage.actions,
        {"action_id": done.action_id},
        {"case_id": done.case_id, "completed_at": envelope.time},
        earliest=["completed_at"],
    )


async def note_exit(session: AsyncSession, envelope: Envelope) -> None:
    closed = envelope.event
    assert isinstance(closed, CaseClosed)
    await storage.put(
        session,
        storage.cases,
        {"case_id": closed.case_id},
        {
            "referral_id": closed.referral_id,
            "child_id": closed.child_id,
            "closed_at": closed.closed_at,
            "exit_reason": closed.reason,
            "child_rating": closed.child_rating,
            "whanau_rating": closed.whanau_rating,
            "feedback_comments": closed.feedback_comments,
        },
    )
    await _stage(session, closed.case_id, closed.child_id, "closed", envelope)


# Hub stream -----------------------------------------------------------------------------------------------------


async def note_screening(session: AsyncSession, envelope: Envelope) -> None:
    screened = envelope.event
    assert isinstance(screened, ConcernScreened)
    await storage.put(
        session,
        storage.concerns,
        {"concern_id": screened.concern_id},
        {
            "first_screened_at": screened.screened_at,
            "priority": screened.priority,
            "priority_at": screened.screened_at,
        },
        earliest=["first_screened_at"],
        when_newer=("priority_at", ["priority"]),
    )
    # The hub marks a human's change of the tool's priority with the rule `hub_override` (services/hub/api.py).
    if screened.confirmed_by_human and "hub_override" in screened.rules_fired:
        await storage.put(
            session,
            storage.concern_overrides,
            {"concern_id": screened.concern_id, "screened_at": screened.screened_at},
            {},
        )


async def note_escalation(session: AsyncSession, envelope: Envelope) -> None:
    started = envelope.event
    assert isinstance(started, EscalationStarted)
    await storage.put(
        session,
        storage.escalations,
        {"escalation_id": started.escalation_id},
        {"concern_id": started.concern_id, "started_at": started.started_at},
        earliest=["started_at"],
    )


async def note_re_escalation(session: AsyncSession, envelope: Envelope) -> None:
    step = envelope.event
    assert isinstance(step, EscalationStepTaken)
    await storage.put(
        session,
        storage.escalation_steps,
        {"escalation_id": step.escalation_id, "round": step.round, "step": step.step},
        {},
    )


async def note_acknowledgement(session: AsyncSession, envelope: Envelope) -> None:
    acknowledged = envelope.event
    assert isinstance(acknowledged, EscalationAcknowledged)
    await storage.put(
        session,
        storage.escalations,
        {"escalation_id": acknowledged.escalation_id},
        {
            "concern_id": acknowledged.concern_id,
            "acknowledged_at": acknowledged.acknowledged_at,
            "seconds_to_acknowledge": acknowledged.seconds_to_acknowledge,
        },
        when_newer=("acknowledged_at", ["seconds_to_acknowledge"]),
    )


async def note_exhausted(session: AsyncSession, envelope: Envelope) -> None:
    exhausted = envelope.event
    assert isinstance(exhausted, EscalationExhausted)
    await storage.put(
        session,
        storage.escalations,
        {"escalation_id": exhausted.escalation_id},
        {"concern_id": exhausted.concern_id, "exhausted_at": exhausted.exhausted_at},
        earliest=["exhausted_at"],
    )


async def note_stood_down(session: AsyncSession, envelope: Envelope) -> None:
    stood_down = envelope.event
    assert isinstance(stood_down, EscalationStoodDown)
    await storage.put(
        session,
        storage.escalations,
        {"escalation_id": stood_down.escalation_id},
        {"concern_id": stood_down.concern_id, "stood_down_at": stood_down.stood_down_at},
        earliest=["stood_down_at"],
    )


HANDLERS: dict[type[Event], Handler] = {
    ReferralReceived: note_referral,
    SiblingGroupChanged: note_siblings,
    ReferralWithdrawn: note_withdrawal,
    ReferralAccepted: note_acceptance,
    ReferralDeclined: note_decline,
    MoreInformationRequested: note_questions,
    ReferralReconsidered: note_reconsideration,
    LeadAssigned: note_lead,
    CaseOpened: note_case_opened,
    AssessmentCompleted: note_assessment,
    PlanEndorsed: note_endorsement,
    ImplementationStarted: note_implementation,
    ReviewRecorded: note_review,
    PlanReviewOverdue: note_review_overdue,
    ActionOverdue: note_action_overdue,
    ActionCompleted: note_action_done,
    CaseClosed: note_exit,
    ConcernScreened: note_screening,
    EscalationStarted: note_escalation,
    EscalationStepTaken: note_re_escalation,
    EscalationAcknowledged: note_acknowledgement,
    EscalationExhausted: note_exhausted,
    EscalationStoodDown: note_stood_down,
}


def register(consumer: Consumer) -> None:
    """The events reporting counts, in one place; every other event on the streams is passed over."""
    for model, handler in HANDLERS.items():
        consumer.handles(model)(handler)
