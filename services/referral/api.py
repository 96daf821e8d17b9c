"""The referral service's HTTP API: referral lookup for people with a need to know, every attempt audited."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, status
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.referral import handlers, storage
from services.referral.domain import ConsentState, ReferralAccess, may_read_referral
from shared.access import audited, in_transaction
from shared.events.agency import Consent
from shared.security import CurrentPrincipal
from shared.service import runtime_of

router = APIRouter(tags=["referrals"])


class ChildView(BaseModel):
    child_id: str
    given_names: str
    family_name: str
    preferred_name: str | None
    date_of_birth: date
    nhi: str | None
    gender: str
    iwi: list[str]
    school: str | None
    locality: str | None
    sibling_group_id: str


class ConsentView(BaseModel):
    version: int
    participation: str
    sharing: list[dict[str, Any]]


class ReferralView(BaseModel):
    referral_id: str
    agency: str
    agency_referral_id: str
    status: str
    submitted_at: datetime
    received_at: datetime
    referrer: dict[str, Any]
    child: ChildView
    reasons: list[str]
    reason_text: str
    needs: list[str]
    child_views: str | None
    whanau: list[dict[str, Any]]
    siblings: list[dict[str, Any]]
    involved_practitioners: list[dict[str, Any]]
    preferred_practitioner: dict[str, Any] | None
    consent: ConsentView | None


@router.get(
    "/referrals/{referral_id}",
    response_model=ReferralView,
    responses={403: {"description": "no need to know this referral"}, 404: {"description": "no such referral"}},
)
async def read_referral(
    referral_id: str,
    request: Request,
    principal: CurrentPrincipal,
    purpose: Annotated[str, Header(alias="X-Purpose", max_length=100)] = "referral review",
) -> ReferralView:
    """A referral with the child's details, for the referrer who made it, panel members and auditors.

    Every attempt is audited, including refused ones; a refused reader learns nothing about the referral.
    """

    async def work(session: AsyncSession) -> ReferralView:
        row = await storage.referral(session, referral_id=referral_id)
        await audited(
            session,
            principal,
            allowed=row is not None
            and may_read_referral(
                principal,
                ReferralAccess(agency=row.agency, referrer_id=row.referrer["id"], lead_id=row.lead_practitioner_id),
            ),
            action="read referral",
            purpose=purpose,
            child_id=row.child_id if row else None,
            why="you have no need to know this referral",
            detail={"referral_id": referral_id},
            refuse_with=status.HTTP_403_FORBIDDEN if row else status.HTTP_404_NOT_FOUND,
        )
        assert row is not None
        child = await storage.child(session, child_id=row.child_id)
        consent = await storage.current_consent(session, child_id=row.child_id, lock=False)
        return _view(row, child, consent)

    return await in_transaction(runtime_of(request.app).sessions, work)


def _view(row: Any, child: Any, consent: ConsentState | None) -> ReferralView:
    return ReferralView(
        referral_id=row.referral_id,
        agency=row.agency,
        agency_referral_id=row.agency_referral_id,
        status=row.status,
        submitted_at=row.submitted_at,
        received_at=row.received_at,
        referrer=row.referrer,
        child=ChildView.model_validate(child, from_attributes=True),
        reasons=row.reasons,
        reason_text=row.reason_text,
        needs=row.needs,
        child_views=row.child_views,
        whanau=row.whanau,
        siblings=row.siblings,
        involved_practitioners=row.involved_practitioners,
        preferred_practitioner=row.preferred_practitioner,
        consent=ConsentView(
            version=consent.version,
            participation=consent.participation,
            sharing=[{"agency": a, "purposes": sorted(p)} for a, p in consent.sharing],
        )
        if consent
        else None,
    )


class ConsentChange(BaseModel):
    consent: Consent
    withdraw_all_sharing: bool = False


@router.put("/referrals/{referral_id}/consent", responses={403: {}, 404: {}})
async def change_consent(
    referral_id: str, body: ConsentChange, request: Request, principal: CurrentPrincipal
) -> ConsentView:
    """The child's lead professional records the family's changed consent; anything taken away is published at once
    as a withdrawal, so other services stop sharing."""

    async def work(session: AsyncSession) -> ConsentView:
        row = await storage.referral(session, referral_id=referral_id, for_update=True)
        await audited(
            session,
            principal,
            allowed=row is not None and principal.subject == row.lead_practitioner_id,
            action="change consent",
            purpose="consent",
            child_id=row.child_id if row else None,
            why="only the child's lead professional records consent changes here",
            detail={"referral_id": referral_id},
            refuse_with=status.HTTP_403_FORBIDDEN if row else status.HTTP_404_NOT_FOUND,
        )
        assert row is not None
        state = await handlers.record_consent_change(
            session, None, row, body.consent, withdraw_all_sharing=body.withdraw_all_sharing, by=principal.subject
        )
        return ConsentView(
            version=state.version,
            participation=state.participation,
            sharing=[{"agency": a, "purposes": sorted(p)} for a, p in state.sharing],
        )

    return await in_transaction(runtime_of(request.app).sessions, work)
