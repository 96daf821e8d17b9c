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
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.hub import storage
from services.hub.domain import (
    AUDITOR,
    DUTY_MANAGER,
    REFERRERS,
    SOCIAL_WORKER,
    AlreadySettled,
    EscalationStatus,
    NotAllowed,
    NotReferable,
    Priority,
    Screening,
    check_override,
    check_referable,
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
from shared.access import Refused, audited, in_transaction, role_check
from shared.agencies import agency_source
from shared.events.agency import ChildDetails, Consent, LongText, Practitioner, ReferralSubmitted, Text, WhanauMember
from shared.events.codes import NeedDomain, ReasonCode
from shared.events.hub import ConcernReferred, ConcernReport, EscalationStoodDown
from shared.messaging.envelope import Envelope
from shared.messaging.outbox import add_to_outbox
from shared.messaging.topics import referrals_in
from shared.security import CurrentPrincipal, Principal
from shared.service import runtime_of

router = APIRouter(tags=["hub"])

HUB_STAFF = (SOCIAL_WORKER, DUTY_MANAGER)
READERS = (SOCIAL_WORKER, DUTY_MANAGER, AUDITOR)
HUB_AGENCY = "childrens-hub"
HUB_AGENCY_SOURCE = agency_source(HUB_AGENCY)
# A concern the hub turns into a referral goes in as the hub's own agency, on its own ingress topic.
REFERRALS_IN = referrals_in(HUB_AGENCY)
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
    referred_at: datetime | None


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


class ReferralMade(BaseModel):
    concern_id: str
    agency_referral_id: str
    referred_at: datetime


def _escalation_settings(request: Request) -> EscalationSettings:
    settings: EscalationSettings = request.app.state.escalation
    return settings


def concern_id_for(principal: Principal, idempotency_key: str | None) -> str:
    """A retried request with the same idempotency key (from the same person) is the same concern."""
    if idempotency_key:
        return str(uuid.uuid5(NOTIFICATIONS, f"{principal.agency}/{principal.subject}/{idempotency_key}"))
    return str(uuid.uuid4())


async def accept_concern(
    session: AsyncSession,
    principal: Principal,
    report: ConcernReport,
    *,
    concern_id: str,
    escalation: EscalationSettings,
) -> ConcernAccepted:
    """Take a person's concern in (screened at once; a critical one escalated before anyone acts) and audit it."""
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
        escalation=escalation,
    )
    await audited(
        session,
        principal,
        allowed=True,
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


@router.post("/concerns", status_code=201, response_model=ConcernAccepted)
async def raise_concern(
    report: ConcernReport,
    request: Request,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> ConcernAccepted:
    """Any professional raises a concern. It is screened at once; a critical one is escalated before anyone acts."""
    concern_id = concern_id_for(principal, idempotency_key)

    async def work(session: AsyncSession) -> ConcernAccepted:
        return await accept_concern(
            session, principal, report, concern_id=concern_id, escalation=_escalation_settings(request)
        )

    return await in_transaction(runtime_of(request.app).sessions, work)


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


async def queue_of(
    session: AsyncSession,
    principal: Principal,
    *,
    purpose: str,
    include_screened: bool = False,
    limit: int | None = None,
) -> list[QueueItem]:
    """The queue for hub staff (most urgent first, then oldest), audited; refused without a hub role."""
    allowed, why = role_check(principal, READERS)
    await audited(session, principal, allowed=allowed, why=why, action="read concern queue", purpose=purpose)
    rows = await storage.queue(session, include_screened=include_screened, limit=limit)
    return [QueueItem(**_item(row), escalation_status=row.escalation_status) for row in rows]


async def _audited_concern(
    session: AsyncSession,
    principal: Principal,
    concern_id: str,
    *,
    roles: tuple[str, ...],
    action: str,
    purpose: str,
    for_update: bool = False,
) -> Row[Any]:
    """The concern's row for one of `roles`, the access audited whatever the answer; 403, or 404 when unknown."""
    row = await storage.concern(session, concern_id=concern_id, for_update=for_update)
    allowed, why = role_check(principal, roles)
    await audited(
        session,
        principal,
        allowed=allowed,
        why=why,
        action=action,
        child_id=row.child_id if row else None,
        purpose=purpose,
        detail={"concern_id": concern_id},
    )
    if row is None:
        raise Refused("no such concern", status.HTTP_404_NOT_FOUND)
    return row


async def concern_of(session: AsyncSession, principal: Principal, concern_id: str, *, purpose: str) -> ConcernView:
    """One concern with the screening tool's explanation and every screening, audited; 403, or 404 when unknown."""
    row = await _audited_concern(session, principal, concern_id, roles=READERS, action="read concern", purpose=purpose)
    history = await storage.screenings_of(session, concern_id=concern_id)
    escalation = await storage.escalation(session, concern_id=concern_id)
    return ConcernView(
        **_item(row),
        escalation_status=escalation.status if escalation else None,
        screened_priority=row.screened_priority,
        explanation=[RuleExplained(**e) for e in explain(row.rules_fired)],
        report=row.report,
        screenings=[ScreeningRecord.model_validate(s, from_attributes=True) for s in history],
        agency_referral_id=row.agency_referral_id,
        referred_at=row.referred_at,
    )


async def escalation_of(
    session: AsyncSession, principal: Principal, concern_id: str, *, purpose: str
) -> EscalationView:
    """A concern's escalation: the frozen policy, each step taken and the acknowledgement, audited."""
    row = await storage.escalation(session, concern_id=concern_id)
    allowed, why = role_check(principal, READERS)
    await audited(
        session,
        principal,
        allowed=allowed,
        why=why,
        action="read escalation",
        child_id=row.child_id if row else None,
        purpose=purpose,
        detail={"concern_id": concern_id},
    )
    if row is None:
        raise Refused("this concern has no escalation", status.HTTP_404_NOT_FOUND)
    steps = await storage.steps_of(session, escalation_id=row.escalation_id)
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


@router.get("/concerns", response_model=list[QueueItem])
async def read_queue(
    request: Request,
    principal: CurrentPrincipal,
    purpose: Purpose = "concern screening",
    include_screened: bool = False,
) -> list[QueueItem]:
    """Concerns waiting for a hub social worker: the most urgent priority first, then the oldest."""

    async def work(session: AsyncSession) -> list[QueueItem]:
        return await queue_of(session, principal, purpose=purpose, include_screened=include_screened)

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.get("/concerns/{concern_id}", response_model=ConcernView, responses={403: {}, 404: {}})
async def read_concern(
    concern_id: str, request: Request, principal: CurrentPrincipal, purpose: Purpose = "concern screening"
) -> ConcernView:
    """The concern, the screening tool's explanation in plain words, and every confirmation or override."""

    async def work(session: AsyncSession) -> ConcernView:
        return await concern_of(session, principal, concern_id, purpose=purpose)

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.get("/concerns/{concern_id}/escalation", response_model=EscalationView, responses={403: {}, 404: {}})
async def read_escalation(
    concern_id: str, request: Request, principal: CurrentPrincipal, purpose: Purpose = "escalation status"
) -> EscalationView:
    """The escalation's frozen policy, each step taken (with its notification ids), and the acknowledgement."""

    async def work(session: AsyncSession) -> EscalationView:
        return await escalation_of(session, principal, concern_id, purpose=purpose)

    return await in_transaction(runtime_of(request.app).sessions, work)


async def decide_screening(
    session: AsyncSession,
    principal: Principal,
    concern_id: str,
    decision: ScreeningDecision,
    *,
    escalation: EscalationSettings,
) -> Priority:
    """Confirm or override a concern's priority with a reason, audited; returns the priority it now has."""
    if decision.decision == "override" and decision.priority is None:
        raise Refused("an override needs the new priority", status.HTTP_422_UNPROCESSABLE_ENTITY)
    row = await storage.concern(session, concern_id=concern_id, for_update=True)
    current = Priority(row.priority) if row else Priority.NO_FURTHER_ACTION
    new = decision.priority if decision.decision == "override" and decision.priority else current
    try:
        check_override(current, new, principal.roles)
        refusal = ""
    except NotAllowed as error:
        refusal = str(error)
    await audited(
        session,
        principal,
        allowed=not refusal,
        why=refusal,
        action=f"{decision.decision} concern priority",
        child_id=row.child_id if row else None,
        purpose="concern screening",
        detail={"concern_id": concern_id, "from": current.value, "to": new.value, "reason": decision.reason},
    )
    if row is None:
        raise Refused("no such concern", status.HTTP_404_NOT_FOUND)
    await _apply_screening(session, row, current, new, decision, principal, escalation)
    return new


@router.post("/concerns/{concern_id}/screening", status_code=201, responses={403: {}, 404: {}, 422: {}})
async def screen_concern(
    concern_id: str, decision: ScreeningDecision, request: Request, principal: CurrentPrincipal
) -> dict[str, str]:
    """Confirm the tool's priority, or override it with a reason. Lowering a critical concern needs a duty manager
    (and stands its escalation down); raising one to critical starts an escalation."""

    async def work(session: AsyncSession) -> Priority:
        return await decide_screening(
            session, principal, concern_id, decision, escalation=_escalation_settings(request)
        )

    new = await in_transaction(runtime_of(request.app).sessions, work)
    return {"concern_id": concern_id, "priority": new.value}


async def _apply_screening(
    session: AsyncSession,
    row: Any,
    current: Priority,
    new: Priority,
    decision: ScreeningDecision,
    principal: Principal,
    settings: EscalationSettings,
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


async def refer_concern(
    session: AsyncSession, principal: Principal, concern_id: str, body: ReferralRequest
) -> ReferralMade | list[dict[str, str]]:
    """Turn a concern screened as suited to a Children's Team into a referral, sent as the Children's Hub agency.

    Audited; refused (403, 404, 409) with the audit row kept. Returns every reason the referral cannot be made
    (nothing is sent then), or the referral once it is in the outbox.
    """
    agency_referral_id = f"hub-{concern_id}"
    row = await _audited_concern(
        session,
        principal,
        concern_id,
        roles=REFERRERS,
        action="refer concern to the Children's Team",
        purpose="referral",
        for_update=True,
    )
    try:
        check_referable(row.priority, row.agency_referral_id)
    except NotReferable as error:
        raise Refused(str(error), status.HTTP_409_CONFLICT) from None
    referral, reasons = _referral(row, body, principal, agency_referral_id)
    if referral is None:
        return reasons
    envelope = Envelope(
        event=referral, source=HUB_AGENCY_SOURCE, subject=agency_referral_id, correlation_id=row.correlation_id
    )
    await add_to_outbox(session, envelope, topic=REFERRALS_IN)
    await storage.set_concern(
        session,
        concern_id=concern_id,
        status="referred",
        agency_referral_id=agency_referral_id,
        referred_at=referral.submitted_at,
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
    return ReferralMade(concern_id=concern_id, agency_referral_id=agency_referral_id, referred_at=referral.submitted_at)


@router.post("/concerns/{concern_id}/referral", status_code=201, responses={403: {}, 404: {}, 409: {}, 422: {}})
async def refer_to_childrens_team(
    concern_id: str, body: ReferralRequest, request: Request, principal: CurrentPrincipal
) -> dict[str, str]:
    """A concern screened as suited to a Children's Team becomes a referral, sent as the Children's Hub agency."""

    async def work(session: AsyncSession) -> ReferralMade | list[dict[str, str]]:
        return await refer_concern(session, principal, concern_id, body)

    made = await in_transaction(runtime_of(request.app).sessions, work)
    if isinstance(made, list):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, made)
    return {"concern_id": concern_id, "agency_referral_id": made.agency_referral_id}


def child_on_concern(report: dict[str, Any]) -> ChildDetails | None:
    """The child's details as the concern gave them, or None when it lacks names and a date of birth."""
    known = report.get("child") or {}
    details = {k: known.get(k) for k in ("given_names", "family_name", "date_of_birth", "nhi", "locality")}
    try:
        return ChildDetails.model_validate({k: v for k, v in details.items() if v is not None})
    except ValidationError:
        return None


def _referral(
    row: Any, body: ReferralRequest, principal: Principal, agency_referral_id: str
) -> tuple[ReferralSubmitted | None, list[dict[str, str]]]:
    """The agency referral the Children's Hub sends, or every reason it cannot be made."""
    report: dict[str, Any] = row.report
    child = body.child or child_on_concern(report)
    if child is None:
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
