"""The assignment service's HTTP API: the practitioner directory, managers' proposals, reassignment.

Managers (`manager`) keep their own practitioners and answer proposals made to them; administrators
(`administrator`) keep the whole directory. A child's assignment is seen by its lead, the lead's manager, panel members
and administrators. Every read and write is audited, refused ones too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.assignment import storage
from services.assignment.domain import ReassignmentReason
from services.assignment.handlers import Matcher, publish
from shared.access import Refused, audited, in_transaction
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


@router.put("/practitioners/{practitioner_id}", response_model=PractitionerOut)
async def put_practitioner(
    practitioner_id: str, body: PractitionerIn, request: Request, principal: CurrentPrincipal
) -> PractitionerOut:
    """Add or change a practitioner. A manager keeps only the practitioners they manage."""

    async def work(session: AsyncSession) -> PractitionerOut:
        existing = await storage.practitioner(session, practitioner_id=practitioner_id)
        allowed = principal.has_role("administrator") or (
            principal.has_role("manager")
            and body.manager_id == principal.subject
            and (existing is None or existing.manager_id == principal.subject)
        )
        await audited(
            session,
            principal,
            allowed=allowed,
            action="change practitioner",
            purpose="directory",
            why="administrators, or the practitioner's own manager, keep the directory",
            detail={"practitioner_id": practitioner_id},
        )
        await storage.put_practitioner(session, practitioner_id=practitioner_id, **body.model_dump(mode="json"))
        return PractitionerOut.model_validate(
            await storage.practitioner(session, practitioner_id=practitioner_id), from_attributes=True
        )

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.get("/practitioners", response_model=list[PractitionerOut])
async def list_practitioners(request: Request, principal: CurrentPrincipal) -> list[PractitionerOut]:
    async def work(session: AsyncSession) -> list[PractitionerOut]:
        await audited(
            session,
            principal,
            allowed=principal.has_role("administrator", "manager", "panel_member"),
            action="read directory",
            purpose="directory",
            why="managers, administrators and panel members read the directory",
        )
        return [
            PractitionerOut.model_validate(row, from_attributes=True)
            for row in await storage.practitioner_rows(session)
        ]

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.get("/proposals", response_model=list[ProposalOut])
async def my_proposals(request: Request, principal: CurrentPrincipal) -> list[ProposalOut]:
    """The proposals waiting for this manager's answer: the manager's task list."""

    async def work(session: AsyncSession) -> list[ProposalOut]:
        await audited(
            session,
            principal,
            allowed=principal.has_role("manager"),
            action="read proposals",
            purpose="lead confirmation",
            why="only managers answer proposals",
        )
        rows = await storage.proposals_for_manager(session, manager_id=principal.subject)
        return [ProposalOut.model_validate(row, from_attributes=True) for row in rows]

    return await in_transaction(runtime_of(request.app).sessions, work)


async def _answer(
    request: Request, principal: CurrentPrincipal, proposal_id: str, *, confirm: bool, reason: str = ""
) -> dict[str, str]:
    matcher = _matcher(request)

    async def work(session: AsyncSession) -> dict[str, str]:
        proposal = await storage.proposal(session, proposal_id=proposal_id)
        await audited(
            session,
            principal,
            allowed=proposal is not None and principal.has_role("manager") and proposal.manager_id == principal.subject,
            action="confirm lead" if confirm else "decline lead",
            purpose="lead confirmation",
            child_id=proposal.child_id if proposal else None,
            why="only the proposed practitioner's manager answers this proposal",
            detail={"proposal_id": proposal_id, "reason": reason},
            refuse_with=status.HTTP_403_FORBIDDEN if proposal else status.HTTP_404_NOT_FOUND,
        )
        assert proposal is not None
        if proposal.status != "proposed":
            raise Refused(f"this proposal is already {proposal.status}", status.HTTP_409_CONFLICT)
        if not confirm:
            await matcher.move_on(
                session, proposal, status="declined", reason="declined_by_manager", by=principal.subject
            )
            return {"proposal_id": proposal_id, "status": "declined"}
        if not await matcher.confirm(session, proposal, manager_id=principal.subject):
            # Committed with the refusal: the next candidate has been proposed.
            raise Refused("the practitioner has no capacity left", status.HTTP_409_CONFLICT)
        return {"proposal_id": proposal_id, "status": "confirmed"}

    return await in_transaction(runtime_of(request.app).sessions, work)


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

    async def work(session: AsyncSession) -> dict[str, Any]:
        child = await storage.child(session, child_id=child_id, for_update=False)
        await audited(
            session,
            principal,
            allowed=child is not None and _may_see_child(principal, child),
            action="read assignment",
            purpose="lead assignment",
            child_id=child_id,
            why="only the lead, their manager, panel members and administrators see this",
            detail={"child_id": child_id},
        )
        assert child is not None
        return {
            "child_id": child_id,
            "lead_practitioner_id": child.lead_practitioner_id,
            "lead_manager_id": child.lead_manager_id,
            "proposals": [
                ProposalOut.model_validate(p, from_attributes=True).model_dump()
                for p in await storage.proposals_of(session, child_id=child_id)
            ],
        }

    return await in_transaction(runtime_of(request.app).sessions, work)


@router.post("/children/{child_id}/reassignment", status_code=202, responses={403: {}, 404: {}, 409: {}})
async def request_reassignment(
    child_id: str, body: Reassignment, request: Request, principal: CurrentPrincipal
) -> dict[str, str]:
    """Find a new lead (family's request, lead leaving, capacity, manager's call); the current lead stays until then."""
    matcher = _matcher(request)

    async def work(session: AsyncSession) -> dict[str, str]:
        child = await storage.child(session, child_id=child_id)
        allowed = child is not None and (
            principal.has_role("administrator")
            or (principal.has_role("manager") and principal.subject == child.lead_manager_id)
        )
        await audited(
            session,
            principal,
            allowed=allowed,
            action="request reassignment",
            purpose="lead assignment",
            child_id=child_id,
            why="the lead's manager or an administrator asks for a reassignment",
            detail={"reason": body.reason, "note": body.note},
        )
        assert child is not None
        if child.lead_practitioner_id is None:
            raise Refused("this child has no lead professional to replace", status.HTTP_409_CONFLICT)
        if await storage.open_proposal(session, child_id=child_id) is not None:
            raise Refused("a proposal for this child is already waiting", status.HTTP_409_CONFLICT)
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
            round_number=await storage.round_of(session, child_id=child_id) + 1,
            reason=body.reason,
            exclude=frozenset({child.lead_practitioner_id}),
        )
        return {"child_id": child_id, "status": "reassignment started"}

    return await in_transaction(runtime_of(request.app).sessions, work)
