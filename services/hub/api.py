"""The hub's HTTP API: raising concerns, the screening queue, concern detail with its explanation, confirm/override,
escalation status, and turning a concern suited to a Children's Team into a referral.

Any professional with a token may raise a concern. Hub social workers (`hub_social_worker`) screen; lowering a critical
concern needs the duty manager (`hub_duty_manager`); auditors read. Every read and write is audited, refusals too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Request, status
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.hub import storage
from services.hub.domain import (
    AUDITOR,
    DUTY_MANAGER,
    SOCIAL_WORKER,
    AlreadySettled,
    EscalationStatus,
    NotAllowed,
    Priority,
    Screening,
    check_override,
    explain,
    stand_down,
)
from services.hub.handlers import (
    NOTIFICATIONS,
    EscalationSettings,
    Taken,
    cancel_steps,
    intake_from_report,
    publish,
    screened_event,
    start_escalation,
    take_in,
)
from shared.audit import record_access
from shared.db import transaction
from shared.events.agency import ChildDetails, Consent, LongText, Practitioner, ReferralSubmitted, Text, WhanauMember
from shared.events.codes import NeedDomain, ReasonCode
from shared.events.hub import ConcernReferred, ConcernReport, EscalationStoodDown
from shared.messaging.envelope import Envelope
from shared.messaging.outbox import add_to_outbox
from shared.security import CurrentPrincipal, Principal
from shared.service import runtime_of

router = APIRouter(tags=["hub"])

HUB_STAFF = (SOCIAL_WORKER, DUTY_MANAGER)
READERS = (SOCIAL_WORKER, DUTY_MANAGER, AUDITOR)
HUB_AGENCY = "childrens-hub"
HUB_AGENCY_SOURCE = f"/agencies/{HUB_AGENCY}"
REFERRALS_IN = "agency.referrals.in"
Purpose = Annotated[str, Header(alias="X-Purpose", max_length=100)]


class ConcernAccepted(BaseModel):
    concern_id: str
    priority: Priority
    rules_fired: list[str]
    escalation_id: str | None
    new: bool


class RuleExplained(BaseModel):
    rule: str
    priority: str
    says: str


class ScreeningRecord(BaseModel):
    kind: str
    priority: str
    previous_priority: str | None
    reason: str | None
    screened_by: str
    screened_at: datetime


class QueueItem(BaseModel):
    concern_id: str
    child_id: str | None
    agency: str
    source: str
    categories: list[str]
    priority: Priority
    status: str
    received_at: datetime
    escalation_status: str | None


class ConcernView(QueueItem):
    screened_priority: Priority
    explanation: list[RuleExplained]
    report: dict[str, Any]
    screenings: list[ScreeningRecord]
    agency_referral_id: str | None


class StepView(BaseModel):
    step: int
    round: int
    targets: list[str]
    notification_ids: list[str]
    due_at: datetime
    taken_at: datetime


class EscalationView(BaseModel):
    escalation_id: str
    concern_id: str
    status: str
    policy: dict[str, Any]
    started_at: datetime
    next_step: int
    next_due_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    steps: list[StepView]


class ScreeningDecision(BaseModel):
    decision: Literal["confirm", "override"]
    priority: Priority | None = None
    reason: Annotated[str, Field(min_length=3, max_length=2000)]


class ReferralRequest(BaseModel):
    """What a referral needs that a concern does not carry; the child's details when the concern lacks them."""

    referrer_name: Text
    reasons: Annotated[list[ReasonCode], Field(min_length=1)]
    needs: Annotated[list[NeedDomain], Field(min_length=1)]
    consent: Consent
    reason_text: LongText = ""
    child: ChildDetails | None = None
    whanau: list[WhanauMember] = []


async def _allowed(session: AsyncSession, principal: Principal, roles: tuple[str, ...], **audit: Any) -> bool:
    """Check the caller's role and write the audit row either way (refusals are worth knowing about)."""
    allowed = principal.has_role(*roles)
    action = audit.pop("action")
    await record_access(session, principal=principal, action=action if allowed else f"{action} refused", **audit)
    return allowed


def _refuse(roles: tuple[str, ...]) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, f"this needs one of the roles: {', '.join(roles)}")


def _missing() -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, "no such concern")


def _escalation_settings(request: Request) -> EscalationSettings:
    settings: EscalationSettings = request.app.state.escalation
    return settings


@router.post("/concerns", status_code=201, response_model=ConcernAccepted)
async def raise_concern(
    report: ConcernReport,
    request: Request,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> ConcernAccepted:
    """Any professional raises a concern. It is screened at once; a critical one is escalated before anyone acts."""
    concern_id = (
        str(uuid.uuid5(NOTIFICATIONS, f"{principal.agency}/{principal.subject}/{idempotency_key}"))
        if idempotency_key
        else str(uuid.uuid4())
    )
    async with transaction(runtime_of(request.app).sessions) as session:
        taken: Taken = await take_in(
            session,
            intake_from_report(
                report,
                concern_id=concern_id,
                source="http",
                raised_by=principal.subject,
                agency=principal.agency,
                now=datetime.now(UTC),
            ),
            escalation=_escalation_settings(request),
        )
        await record_access(
            session,
            principal=principal,
            action="raise concern",
            child_id=report.child.child_id,
            purpose="concern",
            detail={"concern_id": concern_id, "priority": taken.priority.value},
        )
    return ConcernAccepted(
        concern_id=taken.concern_id,
        priority=taken.priority,
        rules_fired=list(taken.rules_fired),
        escalation_id=taken.escalation_id,
        new=taken.created,
    )


def _item(row: Any) -> dict[str, Any]:
    return {
        "concern_id": row.concern_id,
        "child_id": row.child_id,
        "agency": row.agency,
        "source": row.source,
        "categories": row.categories,
        "priority": row.priority,
        "status": row.status,
        "received_at": row.received_at,
    }


@router.get("/concerns", response_model=list[QueueItem])
async def read_queue(
    request: Request,
    principal: CurrentPrincipal,
    purpose: Purpose = "concern screening",
    include_screened: bool = False,
) -> list[QueueItem]:
    """Concerns waiting for a hub social worker: the most urgent priority first, then the oldest."""
    async with transaction(runtime_of(request.app).sessions) as session:
        allowed = await _allowed(
            session, principal, READERS, action="read concern queue", child_id=None, purpose=purpose
        )
        rows = await storage.queue(session, include_screened=include_screened) if allowed else []
    if not allowed:
        raise _refuse(READERS)
    return [QueueItem(**_item(row), escalation_status=row.escalation_status) for row in rows]


@router.get("/concerns/{concern_id}", response_model=ConcernView, responses={403: {}, 404: {}})
async def read_concern(
    concern_id: str, request: Request, principal: CurrentPrincipal, purpose: Purpose = "concern screening"
) -> ConcernView:
    """The concern, the screening tool's explanation in plain words, and every confirmation or override."""
    async with transaction(runtime_of(request.app).sessions) as session:
        row = await storage.concern(session, concern_id=concern_id)
        allowed = await _allowed(
            session,
            principal,
            READERS,
            action="read concern",
            child_id=row.child_id if row else None,
            purpose=purpose,
            detail={"concern_id": concern_id},
        )
        history = await storage.screenings_of(session, concern_id=concern_id) if allowed and row else []
        escalation = await storage.escalation(session, concern_id=concern_id) if allowed and row else None
    if not allowed:
        raise _refuse(READERS)
    if row is None:
        raise _missing()
    return ConcernView(
        **_item(row),
        escalation_status=escalation.status if escalation else None,
        screened_priority=row.screened_priority,
        explanation=[RuleExplained(**e) for e in explain(row.rules_fired)],
        report=row.report,
        screenings=[ScreeningRecord.model_validate(s, from_attributes=True) for s in history],
        agency_referral_id=row.agency_referral_id,
    )


@router.get("/concerns/{concern_id}/escalation", response_model=EscalationView, responses={403: {}, 404: {}})
async def read_escalation(
    concern_id: str, request: Request, principal: CurrentPrincipal, purpose: Purpose = "escalation status"
) -> EscalationView:
    """The escalation's frozen policy, each step taken (with its notification ids), and the acknowledgement."""
    async with transaction(runtime_of(request.app).sessions) as session:
        row = await storage.escalation(session, concern_id=concern_id)
        allowed = await _allowed(
            session,
            principal,
            READERS,
            action="read escalation",
            child_id=row.child_id if row else None,
            purpose=purpose,
            detail={"concern_id": concern_id},
        )
        steps = await storage.steps_of(session, escalation_id=row.escalation_id) if allowed and row else []
    if not allowed:
        raise _refuse(READERS)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this concern has no escalation")
    return EscalationView(
        escalation_id=row.escalation_id,
        concern_id=row.concern_id,
        status=row.status,
        policy=row.policy,
        started_at=row.started_at,
        next_step=row.next_step,
        next_due_at=row.next_due_at,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        steps=[StepView.model_validate(s, from_attributes=True) for s in steps],
    )


@router.post("/concerns/{concern_id}/screening", status_code=201, responses={403: {}, 404: {}, 422: {}})
async def screen_concern(
    concern_id: str, decision: ScreeningDecision, request: Request, principal: CurrentPrincipal
) -> dict[str, str]:
    """Confirm the tool's priority, or override it with a reason. Lowering a critical concern needs a duty manager
    (and stands its escalation down); raising one to critical starts an escalation."""
    if decision.decision == "override" and decision.priority is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "an override needs the new priority")
    problem: HTTPException | None = None
    async with transaction(runtime_of(request.app).sessions) as session:
        row = await storage.concern(session, concern_id=concern_id, for_update=True)
        current = Priority(row.priority) if row else Priority.NO_FURTHER_ACTION
        new = decision.priority if decision.decision == "override" and decision.priority else current
        try:
            check_override(current, new, principal.roles)
            refusal = None
        except NotAllowed as error:
            refusal = str(error)
        await record_access(
            session,
            principal=principal,
            action=f"{decision.decision} concern priority" + (" refused" if refusal else ""),
            child_id=row.child_id if row else None,
            purpose="concern screening",
            detail={"concern_id": concern_id, "from": current.value, "to": new.value, "reason": decision.reason},
        )
        if refusal:
            problem = HTTPException(status.HTTP_403_FORBIDDEN, refusal)
        elif row is None:
            problem = _missing()
        else:
            await _apply_screening(session, request, row, current, new, decision, principal)
    if problem is not None:
        raise problem
    return {"concern_id": concern_id, "priority": new.value}


async def _apply_screening(
    session: AsyncSession,
    request: Request,
    row: Any,
    current: Priority,
    new: Priority,
    decision: ScreeningDecision,
    principal: Principal,
) -> None:
    rules = list(row.rules_fired) + (["hub_override"] if new is not current else [])
    screened_at = await storage.add_screening(
        session,
        concern_id=row.concern_id,
        kind=decision.decision,
        priority=new,
        previous_priority=current,
        rules_fired=rules,
        reason=decision.reason,
        screened_by=principal.subject,
        screened_by_roles=",".join(sorted(principal.roles)),
    )
    await storage.set_concern(
        session, concern_id=row.concern_id, priority=new, priority_rank=new.rank, status="screened", rules_fired=rules
    )
    escalation = await storage.escalation(session, concern_id=row.concern_id, for_update=True)
    if new is Priority.CRITICAL and escalation is None:
        settings = _escalation_settings(request)
        fresh = await storage.concern(session, concern_id=row.concern_id)
        assert fresh is not None
        await start_escalation(session, fresh, policy=settings.policy(police_at_start=bool(row.life_in_danger)))
    elif current is Priority.CRITICAL and new is not Priority.CRITICAL and escalation is not None:
        try:
            settled = stand_down(EscalationStatus(escalation.status))
        except AlreadySettled:
            settled = None
        if settled is not None:
            now = datetime.now(UTC)
            await storage.set_escalation(
                session,
                escalation_id=escalation.escalation_id,
                status=settled,
                next_due_at=None,
                settled_at=now,
                settled_by=principal.subject,
            )
            await cancel_steps(session, escalation)
            await publish(
                session,
                row,
                EscalationStoodDown(
                    escalation_id=escalation.escalation_id,
                    concern_id=row.concern_id,
                    child_id=row.child_id,
                    stood_down_by=principal.subject,
                    stood_down_at=now,
                ),
            )
    await publish(
        session, row, screened_event(row, Screening(new, tuple(rules), False), screened_at, confirmed_by_human=True)
    )


@router.post("/concerns/{concern_id}/referral", status_code=201, responses={403: {}, 404: {}, 409: {}, 422: {}})
async def refer_to_childrens_team(
    concern_id: str, body: ReferralRequest, request: Request, principal: CurrentPrincipal
) -> dict[str, str]:
    """A concern screened as suited to a Children's Team becomes a referral, sent as the Children's Hub agency."""
    roles = (SOCIAL_WORKER,)
    problem: HTTPException | None = None
    agency_referral_id = f"hub-{concern_id}"
    async with transaction(runtime_of(request.app).sessions) as session:
        row = await storage.concern(session, concern_id=concern_id, for_update=True)
        allowed = await _allowed(
            session,
            principal,
            roles,
            action="refer concern to the Children's Team",
            child_id=row.child_id if row else None,
            purpose="referral",
            detail={"concern_id": concern_id},
        )
        if not allowed:
            problem = _refuse(roles)
        elif row is None:
            problem = _missing()
        elif row.agency_referral_id:
            problem = HTTPException(status.HTTP_409_CONFLICT, "this concern is already a referral")
        elif row.priority != Priority.CHILDRENS_TEAM:
            problem = HTTPException(
                status.HTTP_409_CONFLICT,
                f"only a concern screened as childrens_team becomes a referral (it is {row.priority})",
            )
        else:
            referral, reasons = _referral(row, body, principal, agency_referral_id)
            if referral is None:
                problem = HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, reasons)
            else:
                envelope = Envelope(
                    event=referral,
                    source=HUB_AGENCY_SOURCE,
                    subject=agency_referral_id,
                    correlation_id=row.correlation_id,
                )
                await add_to_outbox(session, envelope, topic=REFERRALS_IN)
                await storage.set_concern(
                    session, concern_id=concern_id, status="referred", agency_referral_id=agency_referral_id
                )
                await publish(
                    session,
                    row,
                    ConcernReferred(
                        concern_id=concern_id,
                        child_id=row.child_id,
                        agency_referral_id=agency_referral_id,
                        referred_at=referral.submitted_at,
                    ),
                )
    if problem is not None:
        raise problem
    return {"concern_id": concern_id, "agency_referral_id": agency_referral_id}


def _referral(
    row: Any, body: ReferralRequest, principal: Principal, agency_referral_id: str
) -> tuple[ReferralSubmitted | None, list[dict[str, str]]]:
    """The agency referral the Children's Hub sends, or every reason it cannot be made."""
    report: dict[str, Any] = row.report
    child = body.child
    if child is None:
        known = report.get("child") or {}
        details = {k: known.get(k) for k in ("given_names", "family_name", "date_of_birth", "nhi", "locality")}
        try:
            child = ChildDetails.model_validate({k: v for k, v in details.items() if v is not None})
        except ValidationError:
            return None, [
                {"field": "child", "problem": "the concern lacks the child's names and date of birth: supply child"}
            ]
    caregivers = [
        WhanauMember(name=c["name"], relationship=c["relationship"], caregiver=True, contact=c.get("contact") or {})
        for c in report.get("caregivers", [])
    ]
    try:
        referral = ReferralSubmitted(
            agency_referral_id=agency_referral_id,
            agency=HUB_AGENCY,
            submitted_at=datetime.now(UTC),
            referrer=Practitioner(
                id=principal.subject, name=body.referrer_name, role="hub social worker", agency=HUB_AGENCY
            ),
            child=child,
            whanau=body.whanau or caregivers,
            reasons=body.reasons,
            reason_text=body.reason_text,
            needs=body.needs,
            consent=body.consent,
        )
    except ValidationError as error:
        return None, [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "problem": e["msg"]}
            for e in error.errors(include_input=False, include_url=False)
        ]
    return referral, []
