"""The plans service's HTTP API: the lead professional and the Child's Action Network keep the child's plan on track.

The lead moves the case through its stages; members contribute evidence and complete their actions; every read and
write is audited with why it was allowed or refused (need-to-know: see domain.may_see_child).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.plans import storage
from services.plans.domain import (
    DOMAIN_NAMES,
    Assessment,
    ExitReason,
    IllegalMove,
    Readiness,
    ReviewOutcome,
    Stage,
    may_join,
    may_see_child,
    next_stage,
)
from services.plans.handlers import ACTION_DUE, REVIEW_DUE, join_network, publish
from shared.access import Refused, audited, in_transaction
from shared.events.plans import (
    ActionCompleted,
    AssessmentCompleted,
    CaseClosed,
    ImplementationStarted,
    MemberLeft,
    PlanSubmittedForReview,
    ReviewRecorded,
)
from shared.security import CurrentPrincipal, Principal
from shared.service import runtime_of
from shared.timers import cancel, schedule
from shared.workdays import NZ

router = APIRouter(tags=["plans"])

Text = Annotated[str, Field(min_length=1, max_length=2000)]


class MemberIn(BaseModel):
    member_id: Annotated[str, Field(min_length=1, max_length=100)]
    kind: Annotated[str, Field(pattern="^(whanau|practitioner)$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    agency: Annotated[str, Field(max_length=100)] | None = None
    role: Annotated[str, Field(max_length=200)] | None = None
    legal_basis: Annotated[str, Field(max_length=200)] | None = None


class Evidence(BaseModel):
    domain: str
    evidence: Text


class ActionIn(BaseModel):
    description: Text
    owner_member_id: str
    due_on: date


class GoalIn(BaseModel):
    description: Text
    need: str
    set_with_child: bool
    set_with_whanau: bool
    actions: Annotated[list[ActionIn], Field(min_length=1)]


class PlanIn(BaseModel):
    goals: Annotated[list[GoalIn], Field(min_length=1)]


class ReviewIn(BaseModel):
    outcome: ReviewOutcome
    notes: Text


class ExitFeedback(BaseModel):
    """What the child and the whānau say of the help they had: ratings 1 (poor) to 5 (great), and their own words."""

    child_rating: Annotated[int, Field(ge=1, le=5)] | None = None
    whanau_rating: Annotated[int, Field(ge=1, le=5)] | None = None
    child_words: Annotated[str, Field(max_length=2000)] = ""
    whanau_words: Annotated[str, Field(max_length=2000)] = ""


class ExitIn(BaseModel):
    reason: ExitReason
    handover_to: list[Annotated[str, Field(max_length=100)]] = []
    celebration: Annotated[str, Field(max_length=2000)] = ""
    feedback: ExitFeedback | None = None


async def _case(
    session: AsyncSession,
    principal: Principal,
    case_id: str,
    *,
    action: str,
    lead_only: bool = False,
    lock: bool | None = None,
) -> Row[Any]:
    """Load the case and decide, with a reason, whether this person may do this; the audit row records both.

    Writes lock the case row first (then the plan or assessment), in that order everywhere; reads lock nothing.
    """
    case = await storage.case(session, case_id=case_id, for_update=lead_only if lock is None else lock)
    if case is None:
        await audited(
            session,
            principal,
            allowed=False,
            action=action,
            purpose="child's plan",
            why="no such case",
            refuse_with=404,
        )
    assert case is not None
    if lead_only:
        allowed = principal.subject == case.lead_practitioner_id
        why = "lead professional" if allowed else "only the child's lead professional does this"
    else:
        members = storage.as_members(await storage.current_members(session, case_id=case_id))
        allowed, why = may_see_child(
            principal,
            lead_id=case.lead_practitioner_id,
            lead_manager_id=case.lead_manager_id,
            members=members,
            consented_agencies=await storage.consented_agencies(session, child_id=case.child_id),
        )
    await audited(
        session,
        principal,
        allowed=allowed,
        action=action,
        purpose="child's plan",
        child_id=case.child_id,
        why=why,
        detail={"case_id": case_id},
    )
    return case


def _settings(request: Request) -> Any:
    return runtime_of(request.app).settings


def _stage(case: Row[Any], move: Any, **rules: Any) -> Stage:
    """The next stage, or a 409 that says what is missing."""
    try:
        return next_stage(Stage(case.stage), move, **rules)
    except IllegalMove as illegal:
        raise Refused(str(illegal), status.HTTP_409_CONFLICT) from None


@router.get("/cases/{case_id}", responses={403: {}, 404: {}})
async def read_case(case_id: str, request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    async def work(session: AsyncSession) -> dict[str, Any]:
        case = await _case(session, principal, case_id, action="read case")
        return await _case_view(session, case)

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.get("/children/{child_id}/case", responses={403: {}, 404: {}})
async def read_childs_case(child_id: str, request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    async def work(session: AsyncSession) -> dict[str, Any]:
        open_case = await storage.open_case(session, child_id=child_id, for_update=False)
        if open_case is None:
            raise Refused(status_code=status.HTTP_404_NOT_FOUND, why="no open case for this child")
        case = await _case(session, principal, open_case.case_id, action="read case")
        return await _case_view(session, case)

    return await in_transaction(runtime_of(request.app).sessions, work)


async def _case_view(session: AsyncSession, case: Row[Any]) -> dict[str, Any]:
    plan = await storage.active_plan(session, case_id=case.case_id)
    assessment = await storage.assessment(session, case_id=case.case_id)
    return {
        "case_id": case.case_id,
        "child_id": case.child_id,
        "stage": case.stage,
        "lead_practitioner_id": case.lead_practitioner_id,
        "lead_manager_id": case.lead_manager_id,
        "members": [
            {k: m._mapping[k] for k in ("member_id", "kind", "name", "agency", "role", "legal_basis")}
            for m in await storage.current_members(session, case_id=case.case_id)
        ],
        # Named by the referral but not yet in the network: their agency is outside the family's consent.
        "waiting_for_consent": [
            {"practitioner_id": p.practitioner_id, "agency": p.agency, "role": p.role}
            for p in await storage.referred_practitioners_of(session, referral_id=case.referral_id)
            if not p.joined_case_id
        ],
        "assessment": dict(assessment._mapping["assessment"]) if assessment else None,
        "assessment_completed": bool(assessment and assessment.completed_at),
        "plan": None
        if plan is None
        else {
            "plan_id": plan.plan_id,
            "status": plan.status,
            "panel_advice": plan.panel_advice,
            "goals": [dict(g._mapping) for g in await storage.goals_of(session, plan_id=plan.plan_id)],
            "actions": [
                {**a._mapping, "due_on": a.due_on.isoformat()}
                for a in await storage.actions_of(session, plan_id=plan.plan_id)
            ],
        },
        "exit_reason": case.exit_reason,
    }


@router.post("/cases/{case_id}/members", status_code=201, responses={403: {}, 404: {}, 409: {}})
async def add_member(case_id: str, body: MemberIn, request: Request, principal: CurrentPrincipal) -> dict[str, str]:
    """The lead brings someone into the Child's Action Network; an agency outside the family's consent needs a legal
    basis on record."""

    async def work(session: AsyncSession) -> dict[str, str]:
        case = await _case(session, principal, case_id, action="add network member", lead_only=True)
        if case.stage == Stage.CLOSED:
            raise Refused(status_code=status.HTTP_409_CONFLICT, why="the case is closed")
        consented = await storage.consented_agencies(session, child_id=case.child_id)
        if body.kind == "practitioner" and (why := may_join(body.agency, body.legal_basis, consented)):
            raise Refused(status_code=status.HTTP_409_CONFLICT, why=why)
        await join_network(session, case, **body.model_dump())
        return {"member_id": body.member_id}

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.delete("/cases/{case_id}/members/{member_id}", responses={403: {}, 404: {}})
async def remove_member(case_id: str, member_id: str, request: Request, principal: CurrentPrincipal) -> dict[str, str]:
    """Membership ends (it is kept on record, with when it ended)."""

    async def work(session: AsyncSession) -> dict[str, str]:
        case = await _case(session, principal, case_id, action="remove network member", lead_only=True)
        if not await storage.remove_member(session, case_id=case_id, member_id=member_id):
            raise Refused(status_code=status.HTTP_404_NOT_FOUND, why="not a current member")
        await publish(session, case, MemberLeft(case_id=case_id, child_id=case.child_id, member_id=member_id))
        return {"member_id": member_id, "status": "left"}

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.put("/cases/{case_id}/assessment", responses={403: {}, 404: {}, 409: {}, 422: {}})
async def put_assessment(
    case_id: str, body: Assessment, request: Request, principal: CurrentPrincipal
) -> dict[str, Any]:
    """The lead records the common assessment: strengths and needs per domain, the child's voice, the whānau's view."""
    if unknown := body.unknown_domains():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown assessment domains: {', '.join(unknown)}")

    async def work(session: AsyncSession) -> dict[str, Any]:
        case = await _case(session, principal, case_id, action="write assessment", lead_only=True)
        if case.stage != Stage.ASSESS:
            raise Refused(
                status_code=status.HTTP_409_CONFLICT,
                why=f"the assessment is written at the assess stage, not {case.stage}",
            )
        await storage.put_assessment(session, case_id=case_id, content=body.model_dump(mode="json"))
        return {"case_id": case_id, "assessed_needs": body.assessed_needs()}

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.post("/cases/{case_id}/assessment/evidence", status_code=201, responses={403: {}, 404: {}, 409: {}})
async def add_evidence(case_id: str, body: Evidence, request: Request, principal: CurrentPrincipal) -> dict[str, str]:
    """Any member who may see the child contributes evidence to a domain of the assessment."""
    if body.domain not in DOMAIN_NAMES:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown assessment domain: {body.domain}")

    async def work(session: AsyncSession) -> dict[str, str]:
        await _case(session, principal, case_id, action="add assessment evidence", lock=True)
        current = await storage.assessment(session, case_id=case_id, lock=True)
        if current is None or current.completed_at is not None:
            raise Refused(status_code=status.HTTP_409_CONFLICT, why="there is no assessment in progress")
        item = {"domain": body.domain, "evidence": body.evidence, "by": principal.subject, "agency": principal.agency}
        await storage.add_evidence(session, case_id=case_id, evidence=[*current.evidence, item])
        return {"case_id": case_id, "domain": body.domain}

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.post("/cases/{case_id}/assessment/complete", responses={403: {}, 404: {}, 409: {}})
async def complete_assessment(case_id: str, request: Request, principal: CurrentPrincipal) -> dict[str, str]:
    async def work(session: AsyncSession) -> dict[str, str]:
        case = await _case(session, principal, case_id, action="complete assessment", lead_only=True)
        current = await storage.assessment(session, case_id=case_id)
        recorded = Assessment.model_validate(current.assessment) if current else Assessment()
        stage = _stage(
            case,
            "complete_assessment",
            facts=Readiness(
                child_voice_recorded=bool(recorded.child_voice.strip()),
                whanau_view_recorded=bool(recorded.whanau_view.strip()),
                assessed_domains=len(recorded.domains),
            ),
        )
        now = datetime.now(UTC)
        await storage.set_assessment_done(session, case_id=case_id, by=principal.subject, at=now)
        await storage.set_case(session, case_id=case_id, stage=stage)
        await publish(
            session,
            case,
            AssessmentCompleted(
                case_id=case_id, child_id=case.child_id, needs=recorded.assessed_needs(), completed_at=now
            ),
        )
        return {"case_id": case_id, "stage": stage}

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.post("/cases/{case_id}/plan", status_code=201, responses={403: {}, 404: {}, 409: {}, 422: {}})
async def write_plan(case_id: str, body: PlanIn, request: Request, principal: CurrentPrincipal) -> dict[str, str]:
    """Goals set with the child and whānau, each tied to an assessed need; actions owned by network members."""

    async def work(session: AsyncSession) -> dict[str, str]:
        case = await _case(session, principal, case_id, action="write plan", lead_only=True)
        if case.stage != Stage.PLAN:
            raise Refused(
                status_code=status.HTTP_409_CONFLICT, why=f"the plan is written at the plan stage, not {case.stage}"
            )
        current = await storage.assessment(session, case_id=case_id)
        needs = set(Assessment.model_validate(current.assessment).assessed_needs()) if current else set()
        owners = {m.member_id for m in await storage.current_members(session, case_id=case_id)}
        problems = [
            f"goals.{n}.need: {goal.need} is not an assessed need"
            for n, goal in enumerate(body.goals)
            if goal.need not in needs
        ] + [
            f"goals.{n}.actions.{m}.owner_member_id: not in the Child's Action Network"
            for n, goal in enumerate(body.goals)
            for m, action in enumerate(goal.actions)
            if action.owner_member_id not in owners
        ]
        if problems:
            raise Refused(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, why="; ".join(problems))
        plan = await storage.active_plan(session, case_id=case_id)
        if plan is None:
            plan_id = str(uuid.uuid4())
            try:
                async with session.begin_nested():
                    await storage.add_plan(
                        session, plan_id=plan_id, case_id=case_id, child_id=case.child_id, status="draft"
                    )
            except IntegrityError:
                raise Refused(
                    status_code=status.HTTP_409_CONFLICT, why="this child already has a Child's Plan: revise it"
                ) from None
        else:
            plan_id = plan.plan_id
            # A revision adds to the plan; earlier goals and actions stay on record, open actions are set aside.
            await storage.cancel_open_actions(session, plan_id=plan_id)
            await storage.set_goals_aside(session, plan_id=plan_id)
            await storage.set_plan(session, plan_id=plan_id, status="draft")
        for goal in body.goals:
            goal_id = str(uuid.uuid4())
            await storage.add_goal(
                session,
                goal_id=goal_id,
                plan_id=plan_id,
                description=goal.description,
                need=goal.need,
                set_with_child=str(goal.set_with_child).lower(),
                set_with_whanau=str(goal.set_with_whanau).lower(),
            )
            for action in goal.actions:
                await storage.add_action(
                    session,
                    action_id=str(uuid.uuid4()),
                    plan_id=plan_id,
                    goal_id=goal_id,
                    description=action.description,
                    owner_member_id=action.owner_member_id,
                    due_on=action.due_on,
                    status="open",
                )
        return {"plan_id": plan_id, "status": "draft"}

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.post("/cases/{case_id}/plan/submit", responses={403: {}, 404: {}, 409: {}})
async def submit_plan(case_id: str, request: Request, principal: CurrentPrincipal) -> dict[str, str]:
    """The plan goes to the panel for discussion; its endorsement or advice comes back as an event."""

    async def work(session: AsyncSession) -> dict[str, str]:
        case = await _case(session, principal, case_id, action="submit plan", lead_only=True)
        plan = await storage.active_plan(session, case_id=case_id)
        if case.stage != Stage.PLAN or plan is None or plan.status != "draft":
            raise Refused(
                status_code=status.HTTP_409_CONFLICT, why="only a draft plan at the plan stage goes to the panel"
            )
        await storage.set_plan(session, plan_id=plan.plan_id, status="submitted")
        await publish(
            session,
            case,
            PlanSubmittedForReview(
                plan_id=plan.plan_id, child_id=case.child_id, stage=case.stage, submitted_at=datetime.now(UTC)
            ),
        )
        return {"plan_id": plan.plan_id, "status": "submitted"}

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.post("/cases/{case_id}/implementation", responses={403: {}, 404: {}, 409: {}})
async def start_implementation(case_id: str, request: Request, principal: CurrentPrincipal) -> dict[str, str]:
    """An endorsed plan goes to work: action deadlines and the first review are scheduled."""

    async def work(session: AsyncSession) -> dict[str, str]:
        case = await _case(session, principal, case_id, action="start implementation", lead_only=True)
        plan = await storage.active_plan(session, case_id=case_id)
        goals = await storage.goals_of(session, plan_id=plan.plan_id) if plan else []
        open_actions = (
            [a for a in await storage.actions_of(session, plan_id=plan.plan_id) if a.status == "open"] if plan else []
        )
        with_actions = {a.goal_id for a in open_actions}
        stage = _stage(
            case,
            "start_implementation",
            facts=Readiness(
                plan_endorsed=bool(plan and plan.status == "endorsed"),
                goals=len(goals),
                goals_without_actions=len([g for g in goals if g.goal_id not in with_actions]),
            ),
        )
        assert plan is not None
        await storage.set_case(session, case_id=case_id, stage=stage)
        for action in open_actions:
            due = datetime.combine(action.due_on, time(23, 59, 59), tzinfo=NZ)
            await schedule(session, kind=ACTION_DUE, key=action.action_id, due_at=due, payload={"case_id": case_id})
        next_review = datetime.now(UTC) + timedelta(days=_settings(request).review_interval_days)
        await schedule(session, kind=REVIEW_DUE, key=case_id, due_at=next_review)
        await publish(
            session,
            case,
            ImplementationStarted(
                case_id=case_id, child_id=case.child_id, plan_id=plan.plan_id, next_review_due=next_review
            ),
        )
        return {"case_id": case_id, "stage": stage}

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.post("/actions/{action_id}/done", responses={403: {}, 404: {}, 409: {}})
async def complete_action(action_id: str, request: Request, principal: CurrentPrincipal) -> dict[str, str]:
    """The action's owner (or the lead) marks it done."""

    async def work(session: AsyncSession) -> dict[str, str]:
        action = await storage.action(session, action_id=action_id)
        plan = (
            await storage.plan(session, plan_id=action.plan_id) if action else None
        )  # no lock: the case is locked next
        if action is None or plan is None:
            raise Refused(status_code=status.HTTP_404_NOT_FOUND, why="no such action")
        case = await _case(session, principal, plan.case_id, action="complete action", lock=True)
        action = await storage.action(session, action_id=action_id, lock=True)  # re-read under the case's lock
        assert action is not None
        if principal.subject not in (action.owner_member_id, case.lead_practitioner_id):
            raise Refused(
                status_code=status.HTTP_403_FORBIDDEN, why="only the action's owner or the lead marks it done"
            )
        if action.status != "open":
            raise Refused(status_code=status.HTTP_409_CONFLICT, why=f"this action is {action.status}")
        await storage.set_action(session, action_id=action_id, status="done", done_at=datetime.now(UTC))
        await cancel(session, kind=ACTION_DUE, key=action_id)
        await publish(
            session,
            case,
            ActionCompleted(
                action_id=action_id,
                case_id=case.case_id,
                child_id=case.child_id,
                owner_member_id=action.owner_member_id,
            ),
        )
        return {"action_id": action_id, "status": "done"}

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.post("/cases/{case_id}/reviews", status_code=201, responses={403: {}, 404: {}, 409: {}})
async def hold_review(case_id: str, body: ReviewIn, request: Request, principal: CurrentPrincipal) -> dict[str, str]:
    """The lead and the network review progress: continue, revise the plan, or close (then exit with a reason)."""

    async def work(session: AsyncSession) -> dict[str, str]:
        case = await _case(session, principal, case_id, action="record review", lead_only=True)
        reviewing = _stage(case, "hold_review")
        try:
            stage = next_stage(reviewing, "review_outcome", outcome=body.outcome)
        except IllegalMove as illegal:
            raise Refused(str(illegal), status.HTTP_409_CONFLICT) from None
        now = datetime.now(UTC)
        await storage.add_review(
            session,
            review_id=str(uuid.uuid4()),
            case_id=case_id,
            outcome=body.outcome,
            notes=body.notes,
            held_by=principal.subject,
        )
        await storage.set_case(session, case_id=case_id, stage=stage)
        await cancel(session, kind=REVIEW_DUE, key=case_id)
        if body.outcome is ReviewOutcome.CONTINUE:
            next_review = now + timedelta(days=_settings(request).review_interval_days)
            await schedule(session, kind=REVIEW_DUE, key=case_id, due_at=next_review)
        if body.outcome is ReviewOutcome.REVISE and (plan := await storage.active_plan(session, case_id=case_id)):
            await storage.set_plan(session, plan_id=plan.plan_id, status="draft")
        await publish(
            session,
            case,
            ReviewRecorded(case_id=case_id, child_id=case.child_id, outcome=body.outcome, reviewed_at=now),
        )
        return {"case_id": case_id, "stage": stage}

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.post("/cases/{case_id}/exit", responses={403: {}, 404: {}, 409: {}})
async def exit_case(case_id: str, body: ExitIn, request: Request, principal: CurrentPrincipal) -> dict[str, str]:
    """The journey ends: goals achieved (celebrate; hand over to universal or specialist services) or another reason."""

    async def work(session: AsyncSession) -> dict[str, str]:
        case = await _case(session, principal, case_id, action="close case", lead_only=True)
        stage = _stage(case, "exit", exit_reason=body.reason)
        if body.reason is ExitReason.GOALS_ACHIEVED and not body.handover_to:
            raise Refused(
                status_code=status.HTTP_409_CONFLICT,
                why="an exit for achieved goals records the handover (handover_to)",
            )
        now = datetime.now(UTC)
        await storage.set_case(
            session, case_id=case_id, stage=stage, closed_at=now, exit_reason=body.reason, handover_to=body.handover_to
        )
        if plan := await storage.active_plan(session, case_id=case_id):
            await storage.cancel_open_actions(session, plan_id=plan.plan_id)
            await storage.set_plan(session, plan_id=plan.plan_id, status="closed")
        await cancel(session, kind=REVIEW_DUE, key=case_id)
        feedback = body.feedback or ExitFeedback()
        words = [w for w in (feedback.child_words.strip(), feedback.whanau_words.strip()) if w]
        if body.feedback is not None:
            # The words are personal: they stay here; the event carries the ratings and how many gave words.
            await storage.add_feedback(session, case_id=case_id, recorded_by=principal.subject, **feedback.model_dump())
        await publish(
            session,
            case,
            CaseClosed(
                case_id=case_id,
                child_id=case.child_id,
                referral_id=case.referral_id,
                reason=body.reason,
                handover_to=body.handover_to,
                closed_at=now,
                child_rating=feedback.child_rating,
                whanau_rating=feedback.whanau_rating,
                feedback_comments=len(words),
            ),
        )
        return {"case_id": case_id, "stage": stage}

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.get("/children/{child_id}/timeline", responses={403: {}, 404: {}})
async def read_timeline(child_id: str, request: Request, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    """The child's journey across services, from their events, for people with a need to know."""

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        case = await storage.latest_case(session, child_id=child_id)
        if case is None:
            raise Refused(status_code=status.HTTP_404_NOT_FOUND, why="no case for this child")
        await _case(session, principal, case.case_id, action="read timeline")
        return [
            {"at": row.at, "source": row.source, "type": row.type, "summary": row.summary}
            for row in await storage.timeline_of(session, child_id=child_id)
        ]

    return await in_transaction(runtime_of(request.app).sessions, work)
