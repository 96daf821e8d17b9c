"""The panel's HTTP API: the review queue, referral summaries, decisions, reconsideration, and plan reviews.

Panel members (`panel_member`) work the queue and decide; only the chair (`panel_chair`) reconsiders a decision.
Every read and write is audited; refused attempts too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, HTTPException, Request, status
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
from shared.audit import record_access
from shared.db import transaction
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


async def _allowed(session: AsyncSession, principal: Principal, roles: tuple[str, ...], **audit: Any) -> bool:
    """Check the caller's role and write the audit row either way (refusals are worth knowing about)."""
    allowed = principal.has_role(*roles)
    action = audit.pop("action")
    await record_access(session, principal=principal, action=action if allowed else f"{action} refused", **audit)
    return allowed


def _refuse(roles: tuple[str, ...]) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, f"this needs one of the roles: {', '.join(roles)}")


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
    async with transaction(runtime_of(request.app).sessions) as session:
        if not await _allowed(session, principal, PANEL, action="read review queue", child_id=None, purpose=purpose):
            rows = None
        else:
            rows = await storage.queue(session)
    if rows is None:
        raise _refuse(PANEL)
    return [QueueItem(**_item(row)) for row in rows]


@router.get("/reviews/{referral_id}", response_model=ReviewView, responses={403: {}, 404: {}})
async def read_review(
    referral_id: str, request: Request, principal: CurrentPrincipal, purpose: Purpose = "panel review"
) -> ReviewView:
    async with transaction(runtime_of(request.app).sessions) as session:
        row = await storage.review(session, referral_id=referral_id)
        allowed = await _allowed(
            session,
            principal,
            PANEL,
            action="read referral summary",
            child_id=row.child_id if row else None,
            purpose=purpose,
            detail={"referral_id": referral_id},
        )
        history = await storage.decisions_of(session, referral_id=referral_id) if allowed and row else []
    if not allowed:
        raise _refuse(PANEL)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such referral in review")
    return ReviewView(
        **_item(row),
        status=row.status,
        received_at=row.received_at,
        family_preference=row.family_preference,
        sibling_group_id=row.sibling_group_id,
        decisions=[DecisionRecord.model_validate(d, from_attributes=True) for d in history],
    )


@router.post("/reviews/{referral_id}/decision", status_code=201, responses={403: {}, 404: {}, 409: {}})
async def record_decision(
    referral_id: str,
    decision: Annotated[Decision, Body()],
    request: Request,
    principal: CurrentPrincipal,
) -> dict[str, str]:
    """Accept, decline (with recommendations to the referrer) or ask the referrer for more information."""
    async with transaction(runtime_of(request.app).sessions) as session:
        row = await storage.review(session, referral_id=referral_id, for_update=True)
        allowed = await _allowed(
            session,
            principal,
            PANEL,
            action=f"decide referral: {decision.decision}",
            child_id=row.child_id if row else None,
            purpose="panel decision",
            detail={"referral_id": referral_id},
        )
        problem = None if allowed else _refuse(PANEL)
        if problem is None and row is None:
            problem = HTTPException(status.HTTP_404_NOT_FOUND, "no such referral in review")
        if problem is None and row is not None:
            try:
                new_status = decide(ReviewStatus(row.status), decision)
            except AlreadyDecided as refusal:
                problem = HTTPException(status.HTTP_409_CONFLICT, str(refusal))
            else:
                await _apply(session, row, decision, new_status, principal)
    if problem is not None:
        raise problem
    return {"referral_id": referral_id, "status": new_status}


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
    chair = ("panel_chair",)
    async with transaction(runtime_of(request.app).sessions) as session:
        row = await storage.review(session, referral_id=referral_id, for_update=True)
        allowed = await _allowed(
            session,
            principal,
            chair,
            action="reconsider referral decision",
            child_id=row.child_id if row else None,
            purpose="panel reconsideration",
            detail={"referral_id": referral_id, "reason": body.reason},
        )
        problem = None if allowed else _refuse(chair)
        if problem is None and row is None:
            problem = HTTPException(status.HTTP_404_NOT_FOUND, "no such referral in review")
        if problem is None and row is not None:
            try:
                new_status = reconsider(ReviewStatus(row.status))
            except AlreadyDecided as refusal:
                problem = HTTPException(status.HTTP_409_CONFLICT, str(refusal))
            else:
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
    if problem is not None:
        raise problem
    return {"referral_id": referral_id, "status": new_status}


class PlanReviewItem(BaseModel):
    plan_id: str
    child_id: str
    stage: str
    submitted_at: datetime


@router.get("/plan-reviews", response_model=list[PlanReviewItem])
async def read_plan_reviews(
    request: Request, principal: CurrentPrincipal, purpose: Purpose = "plan oversight"
) -> list[PlanReviewItem]:
    async with transaction(runtime_of(request.app).sessions) as session:
        allowed = await _allowed(
            session, principal, PANEL, action="read plan review queue", child_id=None, purpose=purpose
        )
        rows = await storage.plan_review_queue(session) if allowed else []
    if not allowed:
        raise _refuse(PANEL)
    return [PlanReviewItem.model_validate(row, from_attributes=True) for row in rows]


@router.post("/plan-reviews/{plan_id}", status_code=201, responses={403: {}, 404: {}, 409: {}})
async def record_plan_review(
    plan_id: str, review: PlanReview, request: Request, principal: CurrentPrincipal
) -> dict[str, str]:
    """Endorse a Child's Plan, or advise the lead professional; the plans service hears it."""
    async with transaction(runtime_of(request.app).sessions) as session:
        row = await storage.plan_review(session, plan_id=plan_id)
        allowed = await _allowed(
            session,
            principal,
            PANEL,
            action="review plan",
            child_id=row.child_id if row else None,
            purpose="plan oversight",
            detail={"plan_id": plan_id},
        )
        problem = None if allowed else _refuse(PANEL)
        if problem is None and row is None:
            problem = HTTPException(status.HTTP_404_NOT_FOUND, "no such plan waiting for review")
        if problem is None and row is not None and row.status != "awaiting_review":
            problem = HTTPException(status.HTTP_409_CONFLICT, "this plan review is already recorded")
        if problem is None and row is not None:
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
                    plan_id=plan_id,
                    child_id=row.child_id,
                    outcome=review.outcome,
                    advice=review.advice,
                    reviewed_at=now,
                ),
            )
    if problem is not None:
        raise problem
    return {"plan_id": plan_id, "outcome": review.outcome}
