"""What the panel service does with the events it hears, and with its durable timers.

Referrals arrive from the referral service and wait in the queue with a due date; the referrer's answers put them
back; withdrawn referrals leave; plans come for review. A review still waiting at its due date raises `review overdue`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.panel import storage
from services.panel.domain import ReviewStatus, information_arrived, urgency
from shared.events import Event
from shared.events.panel import ReviewOverdue
from shared.events.plans import PlanSubmittedForReview
from shared.events.referral import ReferralInformationProvided, ReferralReceived, ReferralWithdrawn
from shared.messaging.consumer import Consumer
from shared.messaging.envelope import Envelope
from shared.messaging.outbox import add_to_outbox
from shared.timers import Timer, cancel, schedule
from shared.workdays import add_working_days

SOURCE = "/services/panel"
STREAM = "panel.events"
CONCERNS = "concerns.raised"
HEARS = ["referral.events", "plans.events"]
REVIEW_OVERDUE = "review_overdue"


def register(consumer: Consumer, *, response_window_days: int) -> None:
    """The events the panel service handles, in one place."""

    async def queue_referral(session: AsyncSession, envelope: Envelope) -> None:
        received = envelope.event
        assert isinstance(received, ReferralReceived)
        due_at = add_working_days(received.received_at, response_window_days)
        added = await storage.add_review(
            session,
            referral_id=received.referral_id,
            child_id=received.child_id,
            agency=received.agency,
            received_at=received.received_at,
            reasons=[r.value for r in received.reasons],
            needs=[n.value for n in received.needs],
            participation=received.participation,
            family_preference=received.family_preference,
            sibling_group_id=received.sibling_group_id,
            urgency=urgency(received.reasons),
            status=ReviewStatus.AWAITING_DECISION,
            due_at=due_at,
            correlation_id=envelope.correlation_id,
        )
        if added:
            await schedule(
                session,
                kind=REVIEW_OVERDUE,
                key=received.referral_id,
                due_at=due_at,
                payload={"child_id": received.child_id},
            )

    async def requeue_with_answers(session: AsyncSession, envelope: Envelope) -> None:
        provided = envelope.event
        assert isinstance(provided, ReferralInformationProvided)
        review = await storage.review(session, referral_id=provided.referral_id, for_update=True)
        if review is None:
            return
        status = information_arrived(ReviewStatus(review.status))
        if status == review.status:
            return
        # The clock starts again from the answer: the panel has a full response window for what is new.
        due_at = add_working_days(provided.provided_at, response_window_days)
        await storage.set_review(session, referral_id=provided.referral_id, status=status, due_at=due_at)
        await schedule(
            session, kind=REVIEW_OVERDUE, key=provided.referral_id, due_at=due_at, payload={"child_id": review.child_id}
        )

    consumer.handles(ReferralReceived)(queue_referral)
    consumer.handles(ReferralInformationProvided)(requeue_with_answers)
    consumer.handles(ReferralWithdrawn)(close_withdrawn)
    consumer.handles(PlanSubmittedForReview)(queue_plan_review)


async def close_withdrawn(session: AsyncSession, envelope: Envelope) -> None:
    withdrawn = envelope.event
    assert isinstance(withdrawn, ReferralWithdrawn)
    if await storage.review(session, referral_id=withdrawn.referral_id, for_update=True) is None:
        return
    await storage.set_review(session, referral_id=withdrawn.referral_id, status=ReviewStatus.WITHDRAWN)
    await cancel(session, kind=REVIEW_OVERDUE, key=withdrawn.referral_id)


async def queue_plan_review(session: AsyncSession, envelope: Envelope) -> None:
    submitted = envelope.event
    assert isinstance(submitted, PlanSubmittedForReview)
    await storage.add_plan_review(
        session,
        plan_id=submitted.plan_id,
        child_id=submitted.child_id,
        stage=submitted.stage,
        submitted_at=submitted.submitted_at,
        status="awaiting_review",
        correlation_id=envelope.correlation_id,
    )


async def raise_overdue(session: AsyncSession, timer: Timer) -> None:
    """The review's due date passed: tell the panel chair, unless it was decided (or is waiting for answers)."""
    review = await storage.review(session, referral_id=timer.key)
    if review is None or review.status != ReviewStatus.AWAITING_DECISION:
        return
    await publish(
        session,
        review,
        ReviewOverdue(referral_id=review.referral_id, child_id=review.child_id, due_at=review.due_at),
    )


TIMERS = {REVIEW_OVERDUE: raise_overdue}


async def publish(session: AsyncSession, row: Row[Any], event: Event, *, topic: str = STREAM) -> None:
    """Publish about a review's (or plan review's) child, continuing the journey that brought it to the panel."""
    envelope = Envelope(event=event, source=SOURCE, subject=row.child_id, correlation_id=row.correlation_id)
    await add_to_outbox(session, envelope, topic=topic)
