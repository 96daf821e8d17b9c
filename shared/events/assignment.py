"""Events the assignment service publishes on `assignment.events`: proposals, confirmations and reassignments."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shared.events.catalogue import Event, event_type


@event_type("nz.childrensteams.assignment.lead_proposed.v1")
class LeadProposed(Event):
    """The best-fit practitioner is proposed to their home-agency manager, who confirms or declines by `respond_by`."""

    proposal_id: str
    child_id: str
    referral_id: str
    practitioner_id: str
    manager_id: str
    score: int
    basis: str  # "score" or "sibling"
    respond_by: datetime


@event_type("nz.childrensteams.assignment.lead_assigned.v1")
class LeadAssigned(Event):
    """The manager confirmed: this practitioner is the child's lead professional, supervised by that manager."""

    proposal_id: str
    child_id: str
    referral_id: str
    practitioner_id: str
    manager_id: str
    assigned_at: datetime
    previous_practitioner_id: str | None = None
    reassignment_reason: str | None = None
    lead_capacity: int | None = Field(default=None, description="the lead's maximum caseload when assigned")


@event_type("nz.childrensteams.assignment.lead_declined.v1")
class LeadDeclined(Event):
    """The manager declined the proposal, or did not answer in time: the next candidate is tried."""

    proposal_id: str
    child_id: str
    practitioner_id: str
    reason: str  # "declined_by_manager" | "no_answer_by_deadline" | "no_capacity_left"


@event_type("nz.childrensteams.assignment.reassignment_requested.v1")
class ReassignmentRequested(Event):
    child_id: str
    referral_id: str
    current_practitioner_id: str
    reason: str


@event_type("nz.childrensteams.assignment.no_lead_available.v1")
class NoLeadAvailable(Event):
    """For the panel: nobody eligible is left to propose, and why."""

    child_id: str
    referral_id: str
    reasons: list[str]
