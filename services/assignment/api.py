"""The assignment service's HTTP API: the practitioner directory, managers' proposals, reassignment.

Managers (`manager`) keep their own practitioners and answer proposals made to them; administrators
(`administrator`) keep the whole directory. A child's assignment is seen by its lead, the lead's manager, panel members
and administrators. Every read and write is audited, refused ones too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.assignment import storage
from services.assignment.domain import ReassignmentReason
from services.assignment.handlers import Matcher, publish
from shared.audit import record_access
from shared.db import transaction
from shared.events.assignment import ReassignmentRequested
from shared.events.codes import NeedDomain
from shared.security import CurrentPrincipal, Principal
from shared.service import runtime_of

router = APIRouter(tags=["assignment"])

Text = Annotated[str, Field(min_length=1, max_length=200)]


class PractitionerIn(BaseModel):
    name: Text
    agency: Text
    discipline: Text
    needs: list[NeedDomain]
    languages: list[Text] = []
    cultural_competencies: list[Text] = []
    locality: Text | None = None
    max_caseload: Annotated[int, Field(ge=0, le=60)]
    manager_id: Text
    active: bool = True


class PractitionerOut(PractitionerIn):
    practitioner_id: str
    caseload: int


class ProposalOut(BaseModel):
    proposal_id: str
    child_id: str
    practitioner_id: str
    manager_id: str
    score: int
    parts: list[dict[str, Any]]
    basis: str
    sibling_exception: str | None
    status: str
    reason: str | None
    respond_by: datetime
    decided_by: str | None


class Refusal(BaseModel):
    reason: Annotated[str, Field(min_length=3, max_length=500)]


class Reassignment(BaseModel):
    reason: ReassignmentReason
    note: Annotated[str, Field(max_length=2000)] = ""


def _matcher(request: Request) -> Matcher:
    matcher: Matcher = request.app.state.matcher
    return matcher


async def _audit(session: AsyncSession, principal: Principal, allowed: bool, action: str, **rest: Any) -> None:
    await record_access(session, principal=principal, action=action if allowed else f"{action} refused", **rest)


def _forbidden(why: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, why)


@router.put("/practitioners/{practitioner_id}", response_model=PractitionerOut)
async def put_practitioner(
    practitioner_id: str, body: PractitionerIn, request: Request, principal: CurrentPrincipal
) -> PractitionerOut:
    """Add or change a practitioner. A manager keeps only the practitioners they manage."""
    async with transaction(runtime_of(request.app).sessions) as session:
        existing = await storage.practitioner(session, practitioner_id=practitioner_id)
        allowed = principal.has_role("administrator") or (
            principal.has_role("manager")
            and body.manager_id == principal.subject
            and (existing is None or existing.manager_id == principal.subject)
        )
        await _audit(
            session,
            principal,
            allowed,
            "change practitioner",
            child_id=None,
            purpose="directory",
            detail={"practitioner_id": practitioner_id},
        )
        if allowed:
            await storage.put_practitioner(session, practitioner_id=practitioner_id, **body.model_dump(mode="json"))
            row = await storage.practitioner(session, practitioner_id=practitioner_id)
    if not allowed:
        raise _forbidden("administrators, or the practitioner's own manager, keep the directory")
    return PractitionerOut.model_validate(row, from_attributes=True)


@router.get("/practitioners", response_model=list[PractitionerOut])
async def list_practitioners(request: Request, principal: CurrentPrincipal) -> list[PractitionerOut]:
    async with transaction(runtime_of(request.app).sessions) as session:
        allowed = principal.has_role("administrator", "manager", "panel_member")
        await _audit(session, principal, allowed, "read directory", child_id=None, purpose="directory")
        rows = await storage.practitioner_rows(session) if allowed else []
    if not allowed:
        raise _forbidden("managers, administrators and panel members read the directory")
    return [PractitionerOut.model_validate(row, from_attributes=True) for row in rows]


@router.get("/proposals", response_model=list[ProposalOut])
async def my_proposals(request: Request, principal: CurrentPrincipal) -> list[ProposalOut]:
    """The proposals waiting for this manager's answer: the manager's task list."""
    async with transaction(runtime_of(request.app).sessions) as session:
        allowed = principal.has_role("manager")
        await _audit(session, principal, allowed, "read proposals", child_id=None, purpose="lead confirmation")
        rows = await storage.proposals_for_manager(session, manager_id=principal.subject) if allowed else []
    if not allowed:
        raise _forbidden("only managers answer proposals")
    return [ProposalOut.model_validate(row, from_attributes=True) for row in rows]


async def _answer(
    request: Request, principal: CurrentPrincipal, proposal_id: str, *, confirm: bool, reason: str = ""
) -> dict[str, str]:
    matcher = _matcher(request)
    problem: HTTPException | None = None
    async with transaction(runtime_of(request.app).sessions) as session:
        proposal = await storage.proposal(session, proposal_id=proposal_id)
        allowed = proposal is not None and principal.has_role("manager") and proposal.manager_id == principal.subject
        await _audit(
            session,
            principal,
            allowed,
            "confirm lead" if confirm else "decline lead",
            child_id=proposal.child_id if proposal else None,
            purpose="lead confirmation",
            detail={"proposal_id": proposal_id, "reason": reason},
        )
        if proposal is None:
            problem = HTTPException(status.HTTP_404_NOT_FOUND, "no such proposal")
        elif not allowed:
            problem = _forbidden("only the proposed practitioner's manager answers this proposal")
        elif proposal.status != "proposed":
            problem = HTTPException(status.HTTP_409_CONFLICT, f"this proposal is already {proposal.status}")
        elif confirm:
            if not await matcher.confirm(session, proposal, manager_id=principal.subject):
                # Committed: the next candidate has been proposed.
                problem = HTTPException(status.HTTP_409_CONFLICT, "the practitioner has no capacity left")
        else:
            await matcher.move_on(
                session, proposal, status="declined", reason="declined_by_manager", by=principal.subject
            )
    if problem is not None:
        raise problem
    return {"proposal_id": proposal_id, "status": "confirmed" if confirm else "declined"}


@router.post("/proposals/{proposal_id}/confirm", responses={403: {}, 404: {}, 409: {}})
async def confirm_proposal(proposal_id: str, request: Request, principal: CurrentPrincipal) -> dict[str, str]:
    """The manager confirms availability: the practitioner becomes the child's lead professional."""
    return await _answer(request, principal, proposal_id, confirm=True)


@router.post("/proposals/{proposal_id}/decline", responses={403: {}, 404: {}, 409: {}})
async def decline_proposal(
    proposal_id: str, body: Refusal, request: Request, principal: CurrentPrincipal
) -> dict[str, str]:
    """The manager declines: the next candidate is proposed."""
    return await _answer(request, principal, proposal_id, confirm=False, reason=body.reason)


def _may_see_child(principal: Principal, child: Any) -> bool:
    if principal.has_role("administrator", "panel_member"):
        return True
    return principal.subject in (child.lead_practitioner_id, child.lead_manager_id)


@router.get("/children/{child_id}/assignment", responses={403: {}, 404: {}})
async def read_assignment(child_id: str, request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    """The child's lead and every proposal with its score, explained."""
    async with transaction(runtime_of(request.app).sessions) as session:
        child = await storage.child(session, child_id=child_id, for_update=False)
        allowed = child is not None and _may_see_child(principal, child)
        await _audit(
            session,
            principal,
            allowed,
            "read assignment",
            child_id=child_id if allowed else None,
            purpose="lead assignment",
            detail={"child_id": child_id},
        )
        history = await storage.proposals_of(session, child_id=child_id) if allowed else []
    if not allowed:
        raise _forbidden("only the lead, their manager, panel members and administrators see this")
    assert child is not None
    return {
        "child_id": child_id,
        "lead_practitioner_id": child.lead_practitioner_id,
        "lead_manager_id": child.lead_manager_id,
        "proposals": [ProposalOut.model_validate(p, from_attributes=True).model_dump() for p in history],
    }


@router.post("/children/{child_id}/reassignment", status_code=202, responses={403: {}, 404: {}, 409: {}})
async def request_reassignment(
    child_id: str, body: Reassignment, request: Request, principal: CurrentPrincipal
) -> dict[str, str]:
    """Find a new lead (family's request, lead leaving, capacity, manager's call); the current lead stays until then."""
    matcher = _matcher(request)
    problem: HTTPException | None = None
    async with transaction(runtime_of(request.app).sessions) as session:
        child = await storage.child(session, child_id=child_id)
        allowed = child is not None and (
            principal.has_role("administrator")
            or (principal.has_role("manager") and principal.subject == child.lead_manager_id)
        )
        await _audit(
            session,
            principal,
            allowed,
            "request reassignment",
            child_id=child_id if allowed else None,
            purpose="lead assignment",
            detail={"reason": body.reason, "note": body.note},
        )
        if not allowed:
            problem = _forbidden("the lead's manager or an administrator asks for a reassignment")
        elif child is None or child.lead_practitioner_id is None:
            problem = HTTPException(status.HTTP_409_CONFLICT, "this child has no lead professional to replace")
        elif await storage.open_proposal(session, child_id=child_id) is not None:
            problem = HTTPException(status.HTTP_409_CONFLICT, "a proposal for this child is already waiting")
        else:
            round_number = await storage.round_of(session, child_id=child_id) + 1
            await publish(
                session,
                child,
                ReassignmentRequested(
                    child_id=child_id,
                    referral_id=child.referral_id,
                    current_practitioner_id=child.lead_practitioner_id,
                    reason=body.reason,
                ),
            )
            await matcher.propose_next(
                session,
                child,
                round_number=round_number,
                reason=body.reason,
                exclude=frozenset({child.lead_practitioner_id}),
            )
    if problem is not None:
        raise problem
    return {"child_id": child_id, "status": "reassignment started"}
