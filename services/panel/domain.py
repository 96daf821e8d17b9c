"""Panel rules, free of I/O: urgency, and which decisions a review allows (working days: shared.workdays)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.events.codes import ConcernCategory, NeedDomain, ReasonCode, Recommendation
from shared.events.panel import DeclineReason, PlanReviewOutcome

# Urgency --------------------------------------------------------------------------------------------------------


class Urgency(StrEnum):
    HIGH = "high"
    STANDARD = "standard"


# Reasons that put a child at greater risk of harm: their reviews go to the top of the queue.
HIGH_URGENCY_REASONS = frozenset(
    {
        ReasonCode.FAMILY_VIOLENCE,
        ReasonCode.NEGLECT,
        ReasonCode.PARENTAL_SUBSTANCE_USE,
        ReasonCode.CHILD_MENTAL_HEALTH,
    }
)


def urgency(reasons: Iterable[ReasonCode]) -> Urgency:
    return Urgency.HIGH if HIGH_URGENCY_REASONS.intersection(reasons) else Urgency.STANDARD


def queue_order(item_urgency: Urgency, due_at: datetime) -> tuple[int, datetime]:
    """High urgency first, then the earliest due."""
    return (0 if item_urgency is Urgency.HIGH else 1, due_at)


# Decisions ------------------------------------------------------------------------------------------------------


class ReviewStatus(StrEnum):
    AWAITING_DECISION = "awaiting_decision"
    MORE_INFORMATION_REQUESTED = "more_information_requested"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"


class _Decision(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    reason: Annotated[str, Field(min_length=3, max_length=2000, description="why the panel decided so (required)")]


class Accept(_Decision):
    decision: Literal["accept"]
    needs_profile: Annotated[list[NeedDomain], Field(min_length=1)]
    safety_planning_required: bool = False
    safety_planning_reason: Annotated[str, Field(max_length=2000)] | None = None
    recommendations_for_lead: list[Recommendation] = []
    preferred_practitioner_id: Annotated[str, Field(max_length=100)] | None = None

    @model_validator(mode="after")
    def _safety_planning_has_a_reason(self) -> Accept:
        if self.safety_planning_required and not self.safety_planning_reason:
            raise ValueError("safety planning needs safety_planning_reason")
        return self


class Decline(_Decision):
    decision: Literal["decline"]
    decline_reason: DeclineReason
    recommendations_to_referrer: Annotated[list[Recommendation], Field(min_length=1)]
    serious_risk: bool = False
    risk_categories: list[ConcernCategory] = []
    risk_details: Annotated[str, Field(max_length=4000)] | None = None

    @model_validator(mode="after")
    def _serious_risk_is_described(self) -> Decline:
        if self.serious_risk and not (self.risk_categories and self.risk_details):
            raise ValueError("a serious risk needs risk_categories and risk_details for the hub")
        return self


class AskForMoreInformation(_Decision):
    decision: Literal["more_information"]
    questions: Annotated[list[Annotated[str, Field(min_length=3, max_length=500)]], Field(min_length=1)]


Decision = Annotated[Accept | Decline | AskForMoreInformation, Field(discriminator="decision")]


class AlreadyDecided(Exception):
    """A decided review can only change through an explicit reconsideration."""


def decide(status: ReviewStatus, decision: Accept | Decline | AskForMoreInformation) -> ReviewStatus:
    match status, decision:
        case ReviewStatus.AWAITING_DECISION, Accept():
            return ReviewStatus.ACCEPTED
        case ReviewStatus.AWAITING_DECISION, Decline():
            return ReviewStatus.DECLINED
        case ReviewStatus.AWAITING_DECISION, AskForMoreInformation():
            return ReviewStatus.MORE_INFORMATION_REQUESTED
        case ReviewStatus.MORE_INFORMATION_REQUESTED, Accept() | Decline():
            # The panel may decide without waiting for the answer.
            return decide(ReviewStatus.AWAITING_DECISION, decision)
        case _:
            raise AlreadyDecided(f"this referral is {status}; a chair's reconsideration is needed to change it")


def reconsider(status: ReviewStatus) -> ReviewStatus:
    match status:
        case ReviewStatus.ACCEPTED | ReviewStatus.DECLINED:
            return ReviewStatus.AWAITING_DECISION
        case _:
            raise AlreadyDecided(f"only an accepted or declined referral can be reconsidered, not a {status} one")


def information_arrived(status: ReviewStatus) -> ReviewStatus:
    """The referrer answered: back in the queue (answers that come after a decision are kept, nothing reopens)."""
    match status:
        case ReviewStatus.MORE_INFORMATION_REQUESTED:
            return ReviewStatus.AWAITING_DECISION
        case _:
            return status


class PlanReview(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    outcome: PlanReviewOutcome
    advice: list[Recommendation] = []
    note: Annotated[str, Field(max_length=4000)] = ""

    @model_validator(mode="after")
    def _advice_is_given(self) -> PlanReview:
        if self.outcome is PlanReviewOutcome.ADVICE_GIVEN and not (self.advice or self.note):
            raise ValueError("advice to the lead professional needs advice codes or a note")
        return self
