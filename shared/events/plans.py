"""Events the plans service publishes on `plans.events` that other services already listen for."""

from __future__ import annotations

from datetime import datetime

from shared.events.catalogue import Event, event_type


@event_type("nz.childrensteams.plans.plan_submitted_for_review.v1")
class PlanSubmittedForReview(Event):
    """The lead professional asks the panel to review a Child's Plan (endorsement, or advice on progress)."""

    plan_id: str
    child_id: str
    stage: str
    submitted_at: datetime
