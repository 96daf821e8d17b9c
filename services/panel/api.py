"""The panel's HTTP API: the review queue, referral summaries, decisions, reconsideration, and plan reviews.

Panel members (`panel_member`) work the queue and decide; only the chair (`panel_chair`) reconsiders a decision.
Every read and write is audited; refused attempts too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Request, status
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.panel import storage
from services.panel.domain import (
    Accept,
    AlreadyDecided,
    AskForMoreInformation,
    Decision,
    Decline,
    PlanReview,
    ReviewStatus,
    decide,
    reconsider,
)
from services.panel.handlers import CONCERNS, REVIEW_OVERDUE, publish
from shared.access import Refused, audited, in_transaction
from shared.events.concerns import ConcernRaised
from shared.events.panel import (
    MoreInformationRequested,
    PlanReviewRecorded,
    ReferralAccepted,
    ReferralDeclined,
    ReferralReconsidered,
    SafetyPlanningRequired,
)
from shared.security import CurrentPrincipal, Principal
from shared.service import runtime_of
from shared.timers import cancel

router = APIRouter(tags=["panel"])

PANEL = ("panel_member", "panel_chair")
Purpose = Annotated[str, Header(alias="X-Purpose", max_length=100)]


class QueueItem(BaseModel):
    referral_id: str
    child_id: str
    agency: str
    urgency: str
    due_at: datetime
    overdue: bool
    reasons: list[str]
    needs: list[str]
    participation: str


class DecisionRecord(BaseModel):
    kind: str
    reason: str
    details: dict[str, Any]
    decided_by: str
    decided_at: datetime


class ReviewView(QueueItem):
    status: str
    received_at: datetime
    family_preference: bool
    sibling_group_id: str
    decisions: list[DecisionRecord]


class Reconsideration(BaseModel):
    reason: Annotated[str, Field(min_length=3, max_length=2000)]


async def _review(
    session: AsyncSession,
    principal: Principal,
    referral_id: str,
    *,
    action: str,
    roles: tuple[str, ...] = PANEL,
    purpose: str = "panel review",
    **detail: Any,
) -> Any:
    """The review, if this person's role allows the action; the audit row records the attempt either way."""
    row = await storage.review(session, referral_id=referral_id, for_update=True)
    await audited(
        session,
        principal,
        allowed=principal.has_role(*roles),
        action=action,
        purpose=purpose,
        child_id=row.child_id if row else None,
        why=f"this needs one of the roles: {', '.join(roles)}",
        detail={"referral_id": referral_id, **detail},
    )
    if row is None:
        raise Refused("no such referral in review", status.HTTP_404_NOT_FOUND)
    return row


def _item(row: Any) -> dict[str, Any]:
    return {
        "referral_id": row.referral_id,
        "child_id": row.child_id,
        "agency": row.agency,
        "urgency": row.urgency,
        "due_at": row.due_at,
        "overdue": row.due_at < datetime.now(UTC),
        "reasons": row.reasons,
        "needs": row.needs,
        "participation": row.participation,
    }


@router.get("/queue", response_model=list[QueueItem])
async def read_queue(
    request: Request, principal: CurrentPrincipal, purpose: Purpose = "panel review"
) -> list[QueueItem]:
    """Referrals waiting for a decision: high urgency first, then the earliest due."""

    async def work(session: AsyncSession) -> list[QueueItem]:
        await audited(
            session,
            principal,
            allowed=principal.has_role(*PANEL),
            action="read review queue",
            purpose=purpose,
            why=f"this needs one of the roles: {', '.join(PANEL)}",
        )
        return [QueueItem(**_item(row)) for row in await storage.queue(session)]

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.get("/reviews/{referral_id}", response_model=ReviewView, responses={403: {}, 404: {}})
async def read_review(
    referral_id: str, request: Request, principal: CurrentPrincipal, purpose: Purpose = "panel review"
) -> ReviewView:
    async def work(session: AsyncSession) -> ReviewView:
        row = await _review(session, principal, referral_id, action="read referral summary", purpose=purpose)
        history = await storage.decisions_of(session, referral_id=referral_id)
        return ReviewView(
            **_item(row),
            status=row.status,
            received_at=row.received_at,
            family_preference=row.family_preference,
            sibling_group_id=row.sibling_group_id,
            decisions=[DecisionRecord.model_validate(d, from_attributes=True) for d in history],
        )

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.post("/reviews/{referral_id}/decision", status_code=201, responses={403: {}, 404: {}, 409: {}})
async def record_decision(
    referral_id: str,
    decision: Annotated[Decision, Body()],
    request: Request,
    principal: CurrentPrincipal,
) -> dict[str, str]:
    """Accept, decline (with recommendations to the referrer) or ask the referrer for more information."""

    async def work(session: AsyncSession) -> dict[str, str]:
        row = await _review(session, principal, referral_id, action=f"decide referral: {decision.decision}")
        try:
            new_status = decide(ReviewStatus(row.status), decision)
        except AlreadyDecided as refusal:
            raise Refused(str(refusal), status.HTTP_409_CONFLICT) from None
        await _apply(session, row, decision, new_status, principal)
        return {"referral_id": referral_id, "status": new_status}

    return await in_transaction(runtime_of(request.app).sessions, work)


async def _apply(
    session: AsyncSession,
    row: Any,
    decision: Accept | Decline | AskForMoreInformation,
    new_status: ReviewStatus,
    principal: Principal,
) -> None:
    details = decision.model_dump(mode="json", exclude={"decision", "reason"})
    decided_at = await storage.add_decision(
        session,
        referral_id=row.referral_id,
        kind=decision.decision,
        reason=decision.reason,
        details=details,
        decided_by=principal.subject,
        decided_by_agency=principal.agency,
    )
    await storage.set_review(session, referral_id=row.referral_id, status=new_status)
    ids = {"referral_id": row.referral_id, "child_id": row.child_id}
    match decision:
        case Accept():
            await cancel(session, kind=REVIEW_OVERDUE, key=row.referral_id)
            await publish(
                session,
                row,
                ReferralAccepted(
                    **ids,
                    decided_at=decided_at,
                    needs_profile=decision.needs_profile,
                    safety_planning_required=decision.safety_planning_required,
                    recommendations_for_lead=decision.recommendations_for_lead,
                    preferred_practitioner_id=decision.preferred_practitioner_id,
                ),
            )
            if decision.safety_planning_required:
                await publish(session, row, SafetyPlanningRequired(**ids, decided_at=decided_at))
        case Decline():
            await cancel(session, kind=REVIEW_OVERDUE, key=row.referral_id)
            await publish(
                session,
                row,
                ReferralDeclined(
                    **ids,
                    decided_at=decided_at,
                    reason=decision.decline_reason,
                    recommendations_to_referrer=decision.recommendations_to_referrer,
                    serious_risk=decision.serious_risk,
                ),
            )
            if decision.serious_risk:
                # A decline that finds serious risk does not close quietly: the hub screens it.
                await publish(
                    session,
                    row,
                    ConcernRaised(
                        concern_id=str(uuid.uuid4()),
                        child_id=row.child_id,
                        raised_by="panel",
                        agency=principal.agency,
                        categories=decision.risk_categories,
                        immediate_danger=False,
                        details=decision.risk_details or "",
                        raised_at=decided_at,
                    ),
                    topic=CONCERNS,
                )
        case AskForMoreInformation():
            # The response clock pauses while the referrer answers (see handlers.requeue_with_answers).
            await cancel(session, kind=REVIEW_OVERDUE, key=row.referral_id)
            await publish(session, row, MoreInformationRequested(**ids, questions=decision.questions))


@router.post("/reviews/{referral_id}/reconsideration", status_code=201, responses={403: {}, 404: {}, 409: {}})
async def reconsider_decision(
    referral_id: str, body: Reconsideration, request: Request, principal: CurrentPrincipal
) -> dict[str, str]:
    """The chair reopens a decided referral, with a reason; the earlier decision stays on the record."""

    async def work(session: AsyncSession) -> dict[str, str]:
        row = await _review(
            session,
            principal,
            referral_id,
            action="reconsider referral decision",
            roles=("panel_chair",),
            reason=body.reason,
        )
        try:
            new_status = reconsider(ReviewStatus(row.status))
        except AlreadyDecided as refusal:
            raise Refused(str(refusal), status.HTTP_409_CONFLICT) from None
        await storage.add_decision(
            session,
            referral_id=referral_id,
            kind="reconsideration",
            reason=body.reason,
            details={"previous_status": row.status},
            decided_by=principal.subject,
            decided_by_agency=principal.agency,
        )
        await storage.set_review(session, referral_id=referral_id, status=new_status)
        await publish(
            session,
            row,
            ReferralReconsidered(referral_id=referral_id, child_id=row.child_id, previous_decision=row.status),
        )
        return {"referral_id": referral_id, "status": new_status}

    return await in_transaction(runtime_of(request.app).sessions, work)


class PlanReviewItem(BaseModel):
    plan_id: str
    child_id: str
    stage: str
    submitted_at: datetime


@router.get("/plan-reviews", response_model=list[PlanReviewItem])
async def read_plan_reviews(
    request: Request, principal: CurrentPrincipal, purpose: Purpose = "plan oversight"
) -> list[PlanReviewItem]:
    async def work(session: AsyncSession) -> list[PlanReviewItem]:
        await audited(
            session,
            principal,
            allowed=principal.has_role(*PANEL),
            action="read plan review queue",
            purpose=purpose,
            why=f"this needs one of the roles: {', '.join(PANEL)}",
        )
        return [
            PlanReviewItem.model_validate(row, from_attributes=True) for row in await storage.plan_review_queue(session)
        ]

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.post("/plan-reviews/{plan_id}", status_code=201, responses={403: {}, 404: {}, 409: {}})
async def record_plan_review(
    plan_id: str, review: PlanReview, request: Request, principal: CurrentPrincipal
) -> dict[str, str]:
    """Endorse a Child's Plan, or advise the lead professional; the plans service hears it."""

    async def work(session: AsyncSession) -> dict[str, str]:
        row = await storage.plan_review(session, plan_id=plan_id)
        await audited(
            session,
            principal,
            allowed=principal.has_role(*PANEL),
            action="review plan",
            purpose="plan oversight",
            child_id=row.child_id if row else None,
            why=f"this needs one of the roles: {', '.join(PANEL)}",
            detail={"plan_id": plan_id},
        )
        if row is None:
            raise Refused("no such plan waiting for review", status.HTTP_404_NOT_FOUND)
        if row.status != "awaiting_review":
            raise Refused("this plan review is already recorded", status.HTTP_409_CONFLICT)
        now = datetime.now(UTC)
        await storage.set_plan_review(
            session,
            plan_id=plan_id,
            status="reviewed",
            outcome=review.outcome,
            advice=[a.value for a in review.advice],
            note=review.note,
            reviewed_by=principal.subject,
            reviewed_at=now,
        )
        await publish(
            session,
            row,
            PlanReviewRecorded(
                plan_id=plan_id, child_id=row.child_id, outcome=review.outcome, advice=review.advice, reviewed_at=now
            ),
        )
        return {"plan_id": plan_id, "outcome": review.outcome}

    return await in_transaction(runtime_of(request.app).sessions, work)
