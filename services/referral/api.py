"""The referral service's HTTP API: referral lookup for people with a need to know, every attempt audited."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, status
from pydantic import BaseModel

from services.referral import storage
from services.referral.domain import ReferralAccess, may_read_referral
from shared.audit import record_access
from shared.db import transaction
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
    runtime = runtime_of(request.app)
    async with transaction(runtime.sessions) as session:
        row = await storage.referral(session, referral_id=referral_id)
        allowed = row is not None and may_read_referral(
            principal, ReferralAccess(agency=row.agency, referrer_id=row.referrer["id"])
        )
        await record_access(
            session,
            principal=principal,
            action="read referral" if allowed else "read referral refused",
            child_id=row.child_id if allowed and row is not None else None,
            purpose=purpose,
            detail={"referral_id": referral_id},
        )
        if allowed and row is not None:
            child = await storage.child(session, child_id=row.child_id)
            consent = await storage.current_consent(session, child_id=row.child_id, lock=False)
    # Refusals are raised after the audit row committed.
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such referral")
    if not allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "you have no need to know this referral")
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
