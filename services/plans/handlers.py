"""What the plans service does with the events it hears and with its durable timers.

A lead's assignment opens the child's case (or changes its lead); consent decides who in the Action Network may see
the child; the panel's plan review endorses the plan or advises; every event about the child lands on its timeline.
Overdue actions and reviews are durable timers.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.plans import storage
from services.plans.domain import Stage
from shared.events import Event, registered_types
from shared.events.assignment import LeadAssigned
from shared.events.hub import ConcernScreened
from shared.events.panel import PlanReviewOutcome, PlanReviewRecorded
from shared.events.plans import (
    ActionOverdue,
    CaseOpened,
    ConcernLinked,
    MemberJoined,
    MemberLeft,
    PlanEndorsed,
    PlanReviewOverdue,
)
from shared.events.referral import ConsentRecorded, ReferralReceived
from shared.messaging.consumer import Consumer, Handler
from shared.messaging.envelope import Envelope
from shared.messaging.outbox import add_to_outbox
from shared.timers import Timer

SOURCE = "/services/plans"
STREAM = "plans.events"
HEARS = ["referral.events", "panel.events", "assignment.events", "hub.events", STREAM]
ACTION_DUE = "action_due"
REVIEW_DUE = "review_due"
TIMELINE_AREAS = ("referral", "panel", "assignment", "plans", "hub")


async def publish(session: AsyncSession, case: Row[Any], event: Event) -> None:
    """Publish about a case's child, continuing the journey that opened the case."""
    envelope = Envelope(event=event, source=SOURCE, subject=case.child_id, correlation_id=case.correlation_id)
    await add_to_outbox(session, envelope, topic=STREAM)


async def record_on_timeline(session: AsyncSession, envelope: Envelope) -> None:
    """Every event about a child, from any service, is a line on the child's timeline (ids and codes only)."""
    child_id = getattr(envelope.event, "child_id", None)
    if not child_id:
        return
    await storage.add_timeline(
        session,
        event_id=envelope.id,
        child_id=child_id,
        at=envelope.time,
        source=envelope.source,
        type_=envelope.type,
        summary=envelope.event.model_dump(mode="json", exclude={"child_id"}),
    )


def with_timeline(handler: Handler) -> Handler:
    async def handle(session: AsyncSession, envelope: Envelope) -> None:
        await record_on_timeline(session, envelope)
        await handler(session, envelope)

    return handle


def register(consumer: Consumer) -> None:
    """The events the plans service handles, in one place; every other event about a child goes on its timeline."""
    specific: dict[type[Event], Handler] = {
        ReferralReceived: note_referred_practitioners,
        LeadAssigned: open_or_change_lead,
        PlanReviewRecorded: record_panel_review,
        ConcernScreened: link_concern,
    }
    for model in registered_types().values():
        if issubclass(model, ConsentRecorded):
            specific[model] = note_consent
    for model in registered_types().values():
        area = model.ce_type.removeprefix("nz.childrensteams.").split(".")[0]
        if model in specific:
            consumer.handles(model)(with_timeline(specific[model]))
        elif area in TIMELINE_AREAS:
            consumer.handles(model)(record_on_timeline)


async def note_consent(session: AsyncSession, envelope: Envelope) -> None:
    consent = envelope.event
    assert isinstance(consent, ConsentRecorded)
    await storage.put_consent(
        session,
        child_id=consent.child_id,
        participation=consent.participation,
        agencies=sorted({s.agency for s in consent.sharing}),
        version=consent.version,
    )
    case = await storage.open_case(session, child_id=consent.child_id)
    if case is not None:
        await join_referred_practitioners(session, case)


async def join_network(
    session: AsyncSession,
    case: Row[Any],
    *,
    member_id: str,
    kind: str,
    name: str | None = None,
    agency: str | None = None,
    role: str | None = None,
    legal_basis: str | None = None,
) -> None:
    """Someone joins the child's Action Network: their membership, and MemberJoined (ids and agency, no name)."""
    await storage.add_member(
        session,
        case_id=case.case_id,
        member_id=member_id,
        kind=kind,
        name=name,
        agency=agency,
        role=role,
        legal_basis=legal_basis,
    )
    await publish(
        session,
        case,
        MemberJoined(
            case_id=case.case_id,
            child_id=case.child_id,
            member_id=member_id,
            kind=kind,
            agency=agency,
            legal_basis=legal_basis,
        ),
    )


async def note_referred_practitioners(session: AsyncSession, envelope: Envelope) -> None:
    """The practitioners a referral names are kept until the child's case opens, then join its Action Network."""
    received = envelope.event
    assert isinstance(received, ReferralReceived)
    await storage.add_referred_practitioners(
        session,
        referral_id=received.referral_id,
        rows=[p.model_dump(include={"practitioner_id", "agency", "role"}) for p in received.involved_practitioners],
    )
    case = await storage.open_case(session, child_id=received.child_id)
    if case is not None and case.referral_id == received.referral_id:
        await join_referred_practitioners(session, case)


async def join_referred_practitioners(session: AsyncSession, case: Row[Any]) -> None:
    """Bring the referral's practitioners into the Action Network once the family's consent covers their agency; the
    others wait (the lead can add one with a recorded legal basis)."""
    consented = await storage.consented_agencies(session, child_id=case.child_id)
    members = {m.member_id for m in await storage.current_members(session, case_id=case.case_id)}
    for practitioner in await storage.referred_practitioners_of(session, referral_id=case.referral_id):
        already = practitioner.practitioner_id in members  # the lead, say
        if practitioner.joined_case_id or not (already or practitioner.agency in consented):
            continue
        await storage.set_referred_joined(
            session, referral_id=case.referral_id, practitioner_id=practitioner.practitioner_id, case_id=case.case_id
        )
        if already:
            continue
        await join_network(
            session,
            case,
            member_id=practitioner.practitioner_id,
            kind="practitioner",
            agency=practitioner.agency,
            role=practitioner.role,
        )


async def open_or_change_lead(session: AsyncSession, envelope: Envelope) -> None:
    """A lead assigned opens the child's case, with the child and the lead in its Action Network; a later
    assignment (a reassignment) changes the lead of the open case."""
    assigned = envelope.event
    assert isinstance(assigned, LeadAssigned)
    case = await storage.open_case(session, child_id=assigned.child_id)
    if case is None:
        case_id = str(uuid.uuid4())
        await storage.add_case(
            session,
            case_id=case_id,
            child_id=assigned.child_id,
            referral_id=assigned.referral_id,
            lead_practitioner_id=assigned.practitioner_id,
            lead_manager_id=assigned.manager_id,
            stage=Stage.ASSESS,
            correlation_id=envelope.correlation_id,
        )
        case = await storage.case(session, case_id=case_id)
        assert case is not None
        await storage.add_member(session, case_id=case_id, member_id=f"child:{assigned.child_id}", kind="child")
        await publish(
            session,
            case,
            CaseOpened(
                case_id=case_id,
                child_id=assigned.child_id,
                referral_id=assigned.referral_id,
                lead_practitioner_id=assigned.practitioner_id,
                opened_at=datetime.now(UTC),
            ),
        )
    elif case.lead_practitioner_id != assigned.practitioner_id:
        await storage.remove_member(session, case_id=case.case_id, member_id=case.lead_practitioner_id)
        await publish(
            session, case, MemberLeft(case_id=case.case_id, child_id=case.child_id, member_id=case.lead_practitioner_id)
        )
        await storage.set_case(
            session,
            case_id=case.case_id,
            lead_practitioner_id=assigned.practitioner_id,
            lead_manager_id=assigned.manager_id,
        )
    else:
        return
    await join_network(session, case, member_id=assigned.practitioner_id, kind="lead", role="lead professional")
    await join_referred_practitioners(session, case)


async def link_concern(session: AsyncSession, envelope: Envelope) -> None:
    """A concern about a child with an open case joins the case, and the lead is told (once)."""
    screened = envelope.event
    assert isinstance(screened, ConcernScreened)
    if not screened.child_id:
        return
    case = await storage.open_case(session, child_id=screened.child_id)
    if case is None:
        return
    if await storage.link_concern(
        session, concern_id=screened.concern_id, case_id=case.case_id, priority=screened.priority
    ):
        await publish(
            session,
            case,
            ConcernLinked(
                concern_id=screened.concern_id,
                case_id=case.case_id,
                child_id=case.child_id,
                lead_practitioner_id=case.lead_practitioner_id,
                priority=screened.priority,
            ),
        )


async def record_panel_review(session: AsyncSession, envelope: Envelope) -> None:
    reviewed = envelope.event
    assert isinstance(reviewed, PlanReviewRecorded)
    found = await storage.plan(session, plan_id=reviewed.plan_id)
    if found is None:
        return
    case = await storage.case(session, case_id=found.case_id)  # the case first, as the routes lock it
    plan = await storage.plan(session, plan_id=reviewed.plan_id, lock=True)
    if case is None or plan is None or plan.status != "submitted":
        return
    advice = [*plan.panel_advice, {"outcome": reviewed.outcome, "advice": reviewed.advice}]
    if reviewed.outcome is PlanReviewOutcome.ENDORSED:
        await storage.set_plan(
            session, plan_id=plan.plan_id, status="endorsed", endorsed_at=reviewed.reviewed_at, panel_advice=advice
        )
        await publish(
            session,
            case,
            PlanEndorsed(
                plan_id=plan.plan_id, case_id=case.case_id, child_id=case.child_id, endorsed_at=reviewed.reviewed_at
            ),
        )
    else:
        # Advice sends the plan back to the lead to revise and submit again.
        await storage.set_plan(session, plan_id=plan.plan_id, status="draft", panel_advice=advice)


# Timers ---------------------------------------------------------------------------------------------------------


async def action_overdue(session: AsyncSession, timer: Timer) -> None:
    action = await storage.action(session, action_id=timer.key)
    if action is None or action.status != "open":
        return
    case = await storage.case(session, case_id=timer.payload["case_id"], for_update=False)
    if case is None or case.stage == Stage.CLOSED:
        return
    await publish(
        session,
        case,
        ActionOverdue(
            action_id=action.action_id,
            case_id=case.case_id,
            child_id=case.child_id,
            owner_member_id=action.owner_member_id,
            lead_practitioner_id=case.lead_practitioner_id,
            due_on=action.due_on.isoformat(),
        ),
    )


async def review_overdue(session: AsyncSession, timer: Timer) -> None:
    case = await storage.case(session, case_id=timer.key, for_update=False)
    if case is None or case.stage != Stage.IMPLEMENT:
        return
    await publish(
        session,
        case,
        PlanReviewOverdue(
            case_id=case.case_id,
            child_id=case.child_id,
            lead_practitioner_id=case.lead_practitioner_id,
            lead_manager_id=case.lead_manager_id or "",
            due_at=timer.due_at,
        ),
    )


TIMERS = {ACTION_DUE: action_overdue, REVIEW_DUE: review_overdue}
