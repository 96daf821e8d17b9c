"""Events the panel service publishes on `panel.events`: its decisions on referrals and its oversight of plans."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from shared.events.catalogue import Event, event_type
from shared.events.codes import NeedDomain, Recommendation


class DeclineReason(StrEnum):
    BELOW_THRESHOLD = "below_threshold"
    NEEDS_MET_ELSEWHERE = "needs_met_elsewhere"
    STATUTORY_CARE_NEEDED = "statutory_care_needed"
    OUTSIDE_AREA = "outside_area"
    OTHER = "other"


class PlanReviewOutcome(StrEnum):
    ENDORSED = "endorsed"
    ADVICE_GIVEN = "advice_given"


@event_type("nz.childrensteams.panel.referral_accepted.v1")
class ReferralAccepted(Event):
    """The panel accepts: a lead professional should be found once the family has also agreed to take part."""

    referral_id: str
    child_id: str
    decided_at: datetime
    needs_profile: Annotated[list[NeedDomain], Field(min_length=1)]
    safety_planning_required: bool
    recommendations_for_lead: list[Recommendation]
    preferred_practitioner_id: str | None = None


@event_type("nz.childrensteams.panel.safety_planning_required.v1")
class SafetyPlanningRequired(Event):
    referral_id: str
    child_id: str
    decided_at: datetime


@event_type("nz.childrensteams.panel.referral_declined.v1")
class ReferralDeclined(Event):
    referral_id: str
    child_id: str
    decided_at: datetime
    reason: DeclineReason
    recommendations_to_referrer: list[Recommendation]
    serious_risk: bool


@event_type("nz.childrensteams.panel.more_information_requested.v1")
class MoreInformationRequested(Event):
    """Questions for the referrer; the referral service passes them on. Questions name topics, not people."""

    referral_id: str
    child_id: str
    questions: Annotated[list[Annotated[str, Field(max_length=500)]], Field(min_length=1)]


@event_type("nz.childrensteams.panel.referral_reconsidered.v1")
class ReferralReconsidered(Event):
    """An explicit, audited reconsideration: the earlier decision no longer stands; the referral is back in review."""

    referral_id: str
    child_id: str
    previous_decision: str


@event_type("nz.childrensteams.panel.review_overdue.v1")
class ReviewOverdue(Event):
    """A referral has waited past its response window: for the panel chair."""

    referral_id: str
    child_id: str
    due_at: datetime


@event_type("nz.childrensteams.panel.plan_review_recorded.v1")
class PlanReviewRecorded(Event):
    plan_id: str
    child_id: str
    outcome: PlanReviewOutcome
    advice: list[Recommendation]
    reviewed_at: datetime
