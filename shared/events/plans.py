"""Events the plans service publishes on `plans.events` that other services already listen for."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from shared.events.catalogue import Event, event_type


@event_type("nz.childrensteams.plans.plan_submitted_for_review.v1")
class PlanSubmittedForReview(Event):
    """The lead professional asks the panel to review a Child's Plan (endorsement, or advice on progress)."""

    plan_id: str
    child_id: str
    stage: str
    submitted_at: datetime


@event_type("nz.childrensteams.plans.case_opened.v1")
class CaseOpened(Event):
    case_id: str
    child_id: str
    referral_id: str
    lead_practitioner_id: str
    opened_at: datetime


@event_type("nz.childrensteams.plans.member_joined.v1")
class MemberJoined(Event):
    """Someone joined the Child's Action Network (ids and agency only)."""

    case_id: str
    child_id: str
    member_id: str
    kind: str  # child | whanau | lead | practitioner
    agency: str | None
    legal_basis: str | None


@event_type("nz.childrensteams.plans.member_left.v1")
class MemberLeft(Event):
    case_id: str
    child_id: str
    member_id: str


@event_type("nz.childrensteams.plans.assessment_completed.v1")
class AssessmentCompleted(Event):
    case_id: str
    child_id: str
    needs: list[str]
    completed_at: datetime


@event_type("nz.childrensteams.plans.plan_endorsed.v1")
class PlanEndorsed(Event):
    plan_id: str
    case_id: str
    child_id: str
    endorsed_at: datetime


@event_type("nz.childrensteams.plans.implementation_started.v1")
class ImplementationStarted(Event):
    case_id: str
    child_id: str
    plan_id: str
    next_review_due: datetime


@event_type("nz.childrensteams.plans.action_completed.v1")
class ActionCompleted(Event):
    action_id: str
    case_id: str
    child_id: str
    owner_member_id: str


@event_type("nz.childrensteams.plans.action_overdue.v1")
class ActionOverdue(Event):
    """For the action's owner and the lead professional."""

    action_id: str
    case_id: str
    child_id: str
    owner_member_id: str
    lead_practitioner_id: str
    due_on: str


@event_type("nz.childrensteams.plans.review_recorded.v1")
class ReviewRecorded(Event):
    case_id: str
    child_id: str
    outcome: str  # continue | revise | close
    reviewed_at: datetime


@event_type("nz.childrensteams.plans.review_overdue.v1")
class PlanReviewOverdue(Event):
    """A scheduled review of the plan has not been held: for the lead and their manager."""

    case_id: str
    child_id: str
    lead_practitioner_id: str
    lead_manager_id: str
    due_at: datetime


@event_type("nz.childrensteams.plans.concern_linked.v1")
class ConcernLinked(Event):
    """A concern the hub screened is about a child with an open case: linked, and the lead told."""

    concern_id: str
    case_id: str
    child_id: str
    lead_practitioner_id: str
    priority: str


@event_type("nz.childrensteams.plans.case_closed.v1")
class CaseClosed(Event):
    """The journey's end: goals achieved (with handover) or another recorded reason. The referrer hears of it."""

    case_id: str
    child_id: str
    referral_id: str
    reason: str
    handover_to: list[str]
    closed_at: datetime
    # Whānau feedback at exit, for reporting in aggregate: ratings only; their words stay in the plans service.
    child_rating: Annotated[int, Field(ge=1, le=5)] | None = Field(
        default=None, description="the child's rating of the help they had, 1 (poor) to 5 (great), if they gave one"
    )
    whanau_rating: Annotated[int, Field(ge=1, le=5)] | None = Field(
        default=None, description="the whānau's rating of the help they had, 1 (poor) to 5 (great), if they gave one"
    )
    feedback_comments: Annotated[int, Field(ge=0, le=2)] = Field(
        default=0, description="how many of the child and the whānau also gave feedback in words (kept by plans)"
    )
