"""What the hub does with concerns (from people, agencies and services), acknowledgements, and its step timers.

Intake stores the concern, screens it and, when it is critical, starts the escalation and queues the message to the
contact centre in the same transaction: nobody has to act first. Each later step is a durable timer fenced by a
token and by the escalation's `next_step`, so a restart or a second hub instance neither loses nor doubles a step.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prometheus_client import Counter, Histogram
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.hub import storage
from services.hub.domain import (
    DEFAULT_STEPS,
    DUTY_MANAGER_TARGET,
    POLICE,
    AlreadySettled,
    ConcernFacts,
    EscalationPolicy,
    EscalationStatus,
    Priority,
    Screening,
    acknowledge,
    age_on,
    notification_id,
    screen,
)
from shared.agencies import AGENCIES, sender_problems
from shared.events import Event
from shared.events.codes import ConcernCategory
from shared.events.concerns import ConcernRaised
from shared.events.hub import (
    ConcernOutcome,
    ConcernReport,
    ConcernScreened,
    ConcernSubmitted,
    ContactCentreAcknowledgement,
    DutyManagerNotified,
    EscalationAcknowledged,
    EscalationExhausted,
    EscalationStarted,
    EscalationStepTaken,
    EscalationToContactCentre,
    EscalationToPolice,
)
from shared.events.referral import Problem
from shared.messaging.consumer import Consumer
from shared.messaging.envelope import H_CORRELATION, H_ID, H_SUBJECT, Envelope
from shared.messaging.errors import InvalidInput, PermanentError
from shared.messaging.outbox import add_to_outbox
from shared.messaging.topics import agency_of, concerns_in, outcomes_out
from shared.timers import Timer, cancel, schedule

log = logging.getLogger(__name__)

SOURCE = "/services/hub"
STREAM = "hub.events"
AGENCY_CONCERNS = [concerns_in(agency) for agency in sorted(AGENCIES)]
RAISED = "concerns.raised"
ACKS = "contactcentre.acks.in"
TO_CONTACT_CENTRE = "contactcentre.escalations.out"
TO_POLICE = "police.escalations.out"
ESCALATION_TOPICS = [TO_CONTACT_CENTRE, TO_POLICE]
ESCALATION_STEP = "escalation_step"
SCREENING_TOOL = "hub-screening-tool"
# Notification ids become CloudEvents ids: the same step to the same target is the same message, even resent.
NOTIFICATIONS = uuid.UUID("5b0c7d0e-1f5e-4c55-9d1a-6d2b8f3e9a10")

ESCALATION_STEPS = Counter("ctp_escalation_steps_total", "Escalation notifications queued", ["target"])
ESCALATION_ACK_SECONDS = Histogram(
    "ctp_escalation_acknowledgement_seconds",
    "From the escalation's start to the contact centre's acknowledgement",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600),
)


@dataclass(frozen=True, slots=True)
class EscalationSettings:
    step_seconds: float
    rounds: int

    def policy(self, *, police_at_start: bool) -> EscalationPolicy:
        return EscalationPolicy(DEFAULT_STEPS, self.step_seconds, self.rounds, police_at_start=police_at_start)


@dataclass(frozen=True, slots=True)
class Intake:
    """A concern as the hub takes it in, whichever way it came."""

    concern_id: str
    source: str  # http | agency | service
    raised_by: str
    agency: str
    child_id: str | None
    report: dict[str, Any]  # what the hub keeps (child, reporter, caregivers, what was seen)
    facts: ConcernFacts
    child_name: str | None
    child_date_of_birth: date | None
    child_location: str | None
    what_was_seen: str
    reporter_name: str | None
    reporter_phone: str | None
    raised_at: datetime


@dataclass(frozen=True, slots=True)
class Taken:
    concern_id: str
    created: bool
    priority: Priority
    rules_fired: tuple[str, ...]
    escalation_id: str | None


def intake_from_report(
    report: ConcernReport, *, concern_id: str, source: str, raised_by: str, agency: str, now: datetime
) -> Intake:
    child = report.child
    name = " ".join(n for n in (child.given_names, child.family_name) if n) or None
    return Intake(
        concern_id=concern_id,
        source=source,
        raised_by=raised_by,
        agency=agency,
        child_id=child.child_id,
        report=report.model_dump(mode="json"),
        facts=ConcernFacts(
            categories=frozenset(report.categories),
            immediate_danger=report.immediate_danger,
            life_in_danger=report.life_in_danger,
            injury=report.injury,
            alleged_harmer_has_access=report.alleged_harmer_has_access,
            child_without_care=report.child_without_care,
            self_harm_plan=report.self_harm_plan,
            caregiver_protective=report.caregiver_protective,
            support_needs=frozenset(report.support_needs),
            child_age_years=age_on(child.date_of_birth, now.date()),
        ),
        child_name=name,
        child_date_of_birth=child.date_of_birth,
        child_location=report.child_location or child.locality,
        what_was_seen=report.what_was_seen,
        reporter_name=report.reporter.name,
        reporter_phone=report.reporter.contact.phone,
        raised_at=report.seen_at,
    )


def intake_from_raised(raised: ConcernRaised) -> Intake:
    born = _date_or_none(raised.child_date_of_birth)
    return Intake(
        concern_id=raised.concern_id,
        source="service",
        raised_by=raised.raised_by,
        agency=raised.agency,
        child_id=raised.child_id,
        report=raised.model_dump(mode="json"),
        facts=ConcernFacts(
            categories=frozenset(raised.categories),
            immediate_danger=raised.immediate_danger,
            life_in_danger=raised.life_in_danger,
            child_age_years=age_on(born, raised.raised_at.date()),
        ),
        child_name=raised.child_name,
        child_date_of_birth=born,
        child_location=raised.child_location,
        what_was_seen=raised.details[:4000],
        reporter_name=raised.reporter_name,
        reporter_phone=raised.reporter_phone,
        raised_at=raised.raised_at,
    )


def _date_or_none(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


async def take_in(
    session: AsyncSession, intake: Intake, *, escalation: EscalationSettings, correlation_id: str = ""
) -> Taken:
    """Store, screen and (when critical) escalate a concern, all in the caller's transaction.

    The same concern id again makes nothing new: the first intake's outcome is returned.
    """
    now = datetime.now(UTC)
    earlier = await storage.earlier_concerns(session, child_id=intake.child_id, before=now)
    facts = ConcernFacts(**{**_fields(intake.facts), "earlier_concerns": earlier})
    screening = screen(facts)
    created = await storage.add_concern(
        session,
        concern_id=intake.concern_id,
        child_id=intake.child_id,
        source=intake.source,
        raised_by=intake.raised_by,
        agency=intake.agency,
        report=intake.report,
        categories=sorted(c.value for c in facts.categories),
        immediate_danger=facts.immediate_danger,
        life_in_danger=facts.life_in_danger,
        received_at=now,
        screened_priority=screening.priority,
        priority=screening.priority,
        priority_rank=screening.priority.rank,
        rules_fired=list(screening.rules_fired),
        status="awaiting_screening",
        correlation_id=correlation_id or intake.concern_id,
    )
    if not created:
        existing = await storage.concern(session, concern_id=intake.concern_id)
        assert existing is not None
        found = await storage.escalation(session, concern_id=intake.concern_id)
        return Taken(
            intake.concern_id,
            False,
            Priority(existing.priority),
            tuple(existing.rules_fired),
            found.escalation_id if found else None,
        )
    row = await storage.concern(session, concern_id=intake.concern_id)
    assert row is not None
    escalation_id = None
    if screening.critical:
        # First in the outbox: the contact centre's message leaves before anything else this concern causes.
        escalation_id = await start_escalation(
            session, row, policy=escalation.policy(police_at_start=screening.police), intake=intake
        )
    await storage.add_screening(
        session,
        concern_id=intake.concern_id,
        kind="tool",
        priority=screening.priority,
        rules_fired=list(screening.rules_fired),
        screened_by=SCREENING_TOOL,
        screened_by_roles="",
    )
    await publish(session, row, screened_event(row, screening, now, confirmed_by_human=False))
    return Taken(intake.concern_id, True, screening.priority, screening.rules_fired, escalation_id)


def _fields(facts: ConcernFacts) -> dict[str, Any]:
    return {name: getattr(facts, name) for name in facts.__slots__}


def screened_event(row: Row[Any], screening: Screening, at: datetime, *, confirmed_by_human: bool) -> ConcernScreened:
    return ConcernScreened(
        concern_id=row.concern_id,
        child_id=row.child_id,
        priority=screening.priority.value,
        rules_fired=list(screening.rules_fired),
        screened_at=at,
        confirmed_by_human=confirmed_by_human,
    )


def subject_of(row: Row[Any]) -> str:
    """The Kafka key: the child id, or the concern id when the hub does not know the child yet."""
    return str(row.child_id or row.concern_id)


async def publish(session: AsyncSession, row: Row[Any], event: Event, *, topic: str = STREAM, id: str = "") -> None:
    """Publish about a concern, continuing its journey; `id` fixes the CloudEvents id (notifications' idempotency)."""
    envelope = Envelope(
        event=event,
        source=SOURCE,
        subject=subject_of(row),
        correlation_id=row.correlation_id,
        id=id or str(uuid.uuid4()),
    )
    await add_to_outbox(session, envelope, topic=topic)


# Escalation ------------------------------------------------------------------------------------------------------


async def start_escalation(
    session: AsyncSession, concern: Row[Any], *, policy: EscalationPolicy, intake: Intake | None = None
) -> str:
    """Freeze the policy, take step 0 (the contact centre, and Police when a life is in danger) and set the timer."""
    escalation_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    await storage.add_escalation(
        session,
        escalation_id=escalation_id,
        concern_id=concern.concern_id,
        child_id=concern.child_id,
        policy=policy.snapshot(),
        status=EscalationStatus.OPEN,
        next_step=0,
        next_due_at=now,
        started_at=now,
        correlation_id=concern.correlation_id,
    )
    row = await storage.escalation(session, escalation_id=escalation_id, for_update=True)
    assert row is not None
    targets = await take_step(session, row, concern, step=0, now=now)
    await publish(
        session,
        concern,
        EscalationStarted(
            escalation_id=escalation_id,
            concern_id=concern.concern_id,
            child_id=concern.child_id,
            targets=list(targets),
            steps_in_policy=policy.total_steps,
            started_at=now,
        ),
    )
    return escalation_id


async def take_step(
    session: AsyncSession, escalation: Row[Any], concern: Row[Any], *, step: int, now: datetime
) -> tuple[str, ...]:
    """Send step `step`'s notifications through the outbox, record the step, and set the timer for the next one
    (or for the end of the chain). Returns the targets notified."""
    policy = EscalationPolicy.from_snapshot(escalation.policy)
    placed = policy.step(step)
    assert placed is not None, f"step {step} is past the policy"
    round_, targets = placed
    acknowledge_by = now + timedelta(seconds=policy.step_seconds)
    ids = []
    for target in targets:
        key = notification_id(escalation.escalation_id, step, target)
        ids.append(key)
        ESCALATION_STEPS.labels(target).inc()
        event_id = str(uuid.uuid5(NOTIFICATIONS, key))
        if target == DUTY_MANAGER_TARGET:
            notice: Event = DutyManagerNotified(
                notification_id=key,
                escalation_id=escalation.escalation_id,
                concern_id=concern.concern_id,
                child_id=concern.child_id,
                step=step,
                notified_at=now,
            )
            await publish(session, concern, notice, id=event_id)
            continue
        kind = EscalationToPolice if target == POLICE else EscalationToContactCentre
        message = kind(
            notification_id=key,
            escalation_id=escalation.escalation_id,
            concern_id=concern.concern_id,
            step=step,
            round=round_,
            priority=concern.priority,
            rules_fired=list(concern.rules_fired),
            **_what_the_contact_centre_needs(concern),
            escalated_at=now,
            acknowledge_by=acknowledge_by,
        )
        topic = TO_POLICE if target == POLICE else TO_CONTACT_CENTRE
        await publish(session, concern, message, topic=topic, id=event_id)
    await storage.add_step(
        session,
        escalation_id=escalation.escalation_id,
        step=step,
        round=round_,
        targets=list(targets),
        notification_ids=ids,
        due_at=escalation.next_due_at or now,
        taken_at=now,
    )
    await storage.set_escalation(
        session, escalation_id=escalation.escalation_id, next_step=step + 1, next_due_at=acknowledge_by
    )
    # One timer per step: the step being fired is still pending in this transaction, so the next one needs its own key.
    await schedule(
        session,
        kind=ESCALATION_STEP,
        key=step_key(escalation.escalation_id, step + 1),
        due_at=acknowledge_by,
        payload={"escalation_id": escalation.escalation_id, "step": step + 1},
    )
    return targets


def _what_the_contact_centre_needs(concern: Row[Any]) -> dict[str, Any]:
    report: dict[str, Any] = concern.report
    if concern.source == "service":
        born = _date_or_none(report.get("child_date_of_birth"))
        return {
            "child_id": concern.child_id,
            "child_name": report.get("child_name"),
            "child_date_of_birth": born,
            "child_location": report.get("child_location"),
            "categories": [ConcernCategory(c) for c in concern.categories],
            "immediate_danger": concern.immediate_danger,
            "life_in_danger": concern.life_in_danger,
            "what_was_seen": str(report.get("details", ""))[:4000],
            "reporter_name": report.get("reporter_name"),
            "reporter_agency": concern.agency,
            "reporter_phone": report.get("reporter_phone"),
            "raised_at": report.get("raised_at"),
        }
    child, reporter = report["child"], report["reporter"]
    name = " ".join(n for n in (child.get("given_names"), child.get("family_name")) if n) or None
    return {
        "child_id": concern.child_id,
        "child_name": name,
        "child_date_of_birth": _date_or_none(child.get("date_of_birth")),
        "child_location": report.get("child_location") or child.get("locality"),
        "categories": [ConcernCategory(c) for c in concern.categories],
        "immediate_danger": concern.immediate_danger,
        "life_in_danger": concern.life_in_danger,
        "what_was_seen": report["what_was_seen"],
        "reporter_name": reporter["name"],
        "reporter_agency": reporter["agency"],
        "reporter_phone": (reporter.get("contact") or {}).get("phone"),
        "raised_at": report["seen_at"],
    }


async def escalate_further(session: AsyncSession, timer: Timer) -> None:
    """The step timer fired: no acknowledgement by the deadline. Take the next step of the frozen policy, or
    record that the chain is exhausted. A stale timer (the step was taken, the chain settled) does nothing."""
    escalation = await storage.escalation(session, escalation_id=str(timer.payload["escalation_id"]), for_update=True)
    if escalation is None or escalation.status != EscalationStatus.OPEN:
        return
    step = int(timer.payload.get("step", -1))
    if step != escalation.next_step:
        return
    concern = await storage.concern(session, concern_id=escalation.concern_id)
    assert concern is not None
    now = datetime.now(UTC)
    policy = EscalationPolicy.from_snapshot(escalation.policy)
    if policy.step(step) is None:
        await storage.set_escalation(
            session,
            escalation_id=escalation.escalation_id,
            status=EscalationStatus.EXHAUSTED,
            next_due_at=None,
            settled_at=now,
        )
        log.error("escalation %s exhausted after %d steps without acknowledgement", escalation.escalation_id, step)
        await publish(
            session,
            concern,
            EscalationExhausted(
                escalation_id=escalation.escalation_id,
                concern_id=concern.concern_id,
                child_id=concern.child_id,
                steps_taken=step,
                exhausted_at=now,
            ),
        )
        return
    targets = await take_step(session, escalation, concern, step=step, now=now)
    round_ = step // len(policy.steps) + 1
    await publish(
        session,
        concern,
        EscalationStepTaken(
            escalation_id=escalation.escalation_id,
            concern_id=concern.concern_id,
            child_id=concern.child_id,
            step=step,
            round=round_,
            targets=list(targets),
            taken_at=now,
        ),
    )


TIMERS = {ESCALATION_STEP: escalate_further}


# Acknowledgements ------------------------------------------------------------------------------------------------


async def record_acknowledgement(session: AsyncSession, envelope: Envelope) -> None:
    ack = envelope.event
    assert isinstance(ack, ContactCentreAcknowledgement)
    escalation = await storage.escalation(session, escalation_id=ack.escalation_id, for_update=True)
    if escalation is None:
        raise PermanentError("acknowledgement for an escalation the hub does not know")
    try:
        status = acknowledge(EscalationStatus(escalation.status))
    except AlreadySettled:
        return  # a second acknowledgement (or one after a stand-down) changes nothing
    await storage.set_escalation(
        session,
        escalation_id=ack.escalation_id,
        status=status,
        next_due_at=None,
        acknowledged_at=ack.acknowledged_at,
        acknowledged_by=ack.acknowledged_by,
        acknowledged_notification_id=ack.notification_id,
        settled_at=datetime.now(UTC),
        settled_by=ack.acknowledged_by,
    )
    await cancel_steps(session, escalation)
    concern = await storage.concern(session, concern_id=escalation.concern_id)
    assert concern is not None
    seconds = max(0.0, (ack.acknowledged_at - escalation.started_at).total_seconds())
    ESCALATION_ACK_SECONDS.observe(seconds)
    await add_to_outbox(
        session,
        envelope.caused(
            EscalationAcknowledged(
                escalation_id=ack.escalation_id,
                concern_id=concern.concern_id,
                child_id=concern.child_id,
                acknowledged_by=ack.acknowledged_by,
                acknowledged_at=ack.acknowledged_at,
                seconds_to_acknowledge=seconds,
            ),
            source=SOURCE,
            subject=subject_of(concern),
        ),
        topic=STREAM,
    )


def step_key(escalation_id: str, step: int) -> str:
    return f"{escalation_id}/{step}"


async def cancel_steps(session: AsyncSession, escalation: Row[Any]) -> None:
    """Cancel the escalation's pending step (the only one: steps are taken one at a time)."""
    await cancel(session, kind=ESCALATION_STEP, key=step_key(escalation.escalation_id, escalation.next_step))


# Concerns from agencies and services -----------------------------------------------------------------------------


def register_intake(consumer: Consumer, *, escalation: EscalationSettings) -> None:
    """Agencies' systems raise concerns on their agency.<code>.concerns.in."""

    async def receive_concern(session: AsyncSession, envelope: Envelope) -> None:
        submitted = envelope.event
        assert isinstance(submitted, ConcernSubmitted)
        problems = sender_problems(sender=agency_of(envelope.topic), source=envelope.source, named=submitted.agency)
        if envelope.subject != submitted.agency_concern_id:
            problems.append({"field": "ce_subject", "problem": "must be the agency_concern_id"})
        if problems:
            raise InvalidInput("concern refused", problems)
        # The agency's own id makes the concern id, so a resent concern is the same concern.
        concern_id = str(uuid.uuid5(NOTIFICATIONS, f"{submitted.agency}/{submitted.agency_concern_id}"))
        taken = await take_in(
            session,
            intake_from_report(
                submitted.concern,
                concern_id=concern_id,
                source="agency",
                raised_by=f"system:{submitted.agency}",
                agency=submitted.agency,
                now=datetime.now(UTC),
            ),
            escalation=escalation,
            correlation_id=envelope.correlation_id,
        )
        told = ConcernOutcome(
            agency=submitted.agency,
            agency_concern_id=submitted.agency_concern_id,
            outcome="received",
            concern_id=taken.concern_id,
        )
        await add_to_outbox(
            session,
            envelope.caused(told, source=SOURCE, subject=submitted.agency_concern_id),
            topic=outcomes_out(submitted.agency),
        )

    consumer.handles(ConcernSubmitted)(receive_concern)


async def reject_concern(session: AsyncSession, topic: str, headers: dict[str, str], error: InvalidInput) -> None:
    """Input on an agency's concerns topic that cannot be taken in: that agency hears every reason."""
    agency = agency_of(topic)
    agency_concern_id = headers.get(H_SUBJECT) or "unknown"
    problems = [Problem(field=e["field"], problem=e["problem"]) for e in error.errors] or [
        Problem(field="message", problem=error.reason)
    ]
    cause_id = headers.get(H_ID, "")
    envelope = Envelope(
        event=ConcernOutcome(agency=agency, agency_concern_id=agency_concern_id, outcome="rejected", problems=problems),
        source=SOURCE,
        subject=agency_concern_id,
        correlation_id=headers.get(H_CORRELATION) or cause_id,
        causation_id=cause_id,
    )
    await add_to_outbox(session, envelope, topic=outcomes_out(agency))


def register_raised(consumer: Consumer, *, escalation: EscalationSettings) -> None:
    """Concerns the referral and panel services (and later plans) raise on concerns.raised."""

    async def receive_raised(session: AsyncSession, envelope: Envelope) -> None:
        raised = envelope.event
        assert isinstance(raised, ConcernRaised)
        await take_in(
            session, intake_from_raised(raised), escalation=escalation, correlation_id=envelope.correlation_id
        )

    consumer.handles(ConcernRaised)(receive_raised)


def register_acknowledgements(consumer: Consumer) -> None:
    consumer.handles(ContactCentreAcknowledgement)(record_acknowledgement)
