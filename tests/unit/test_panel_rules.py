"""Panel rules: response windows in NZ working days, urgency, and which decisions a review allows."""

from __future__ import annotations

from datetime import datetime, time

import pytest
from pydantic import TypeAdapter, ValidationError

from services.panel.domain import (
    Accept,
    AlreadyDecided,
    AskForMoreInformation,
    Decision,
    Decline,
    ReviewStatus,
    Urgency,
    decide,
    information_arrived,
    reconsider,
    urgency,
)
from shared.events.codes import ReasonCode
from shared.workdays import NZ, add_working_days


def nz(day: str, at: str = "10:00") -> datetime:
    return datetime.combine(datetime.fromisoformat(day).date(), time.fromisoformat(at), tzinfo=NZ)


@pytest.mark.parametrize(
    ("arrived", "window", "due_day"),
    [
        (nz("2026-11-18"), 1, "2026-11-19"),  # Wednesday → Thursday
        (nz("2026-11-20", "21:30"), 1, "2026-11-23"),  # Friday night → Monday
        (nz("2026-11-21"), 1, "2026-11-23"),  # Saturday → Monday
        (nz("2026-04-02"), 1, "2026-04-07"),  # Thursday before Easter: Good Friday and Easter Monday skipped
        (nz("2026-07-09"), 1, "2026-07-13"),  # Matariki (Friday 10 July) skipped
        (nz("2026-12-24"), 2, "2026-12-30"),  # Christmas, Boxing Day observed on Monday 28th
        (nz("2026-11-18"), 10, "2026-12-02"),  # Oranga Tamariki's "10 working days"
    ],
)
def test_response_windows_count_nz_working_days(arrived: datetime, window: int, due_day: str) -> None:
    due = add_working_days(arrived, window)
    assert due.date().isoformat() == due_day
    assert (due.hour, due.minute, due.tzinfo) == (23, 59, NZ)


def test_a_utc_timestamp_counts_from_the_nz_calendar_day() -> None:
    # 11:30 UTC on Thursday is 00:30 on Friday in New Zealand (daylight time): one working day ends on Monday,
    # not on Friday as counting from the UTC date would have it.
    thursday_utc = datetime.fromisoformat("2026-11-19T11:30:00+00:00")
    assert add_working_days(thursday_utc, 1).date().isoformat() == "2026-11-23"


def test_referrals_with_family_violence_or_neglect_go_to_the_top_of_the_queue() -> None:
    assert urgency([ReasonCode.SCHOOL_ATTENDANCE, ReasonCode.FAMILY_VIOLENCE]) is Urgency.HIGH
    assert urgency([ReasonCode.SCHOOL_ATTENDANCE, ReasonCode.BULLYING]) is Urgency.STANDARD


ACCEPT = Accept(decision="accept", reason="Meets threshold", needs_profile=["education"])
DECLINE = Decline(
    decision="decline",
    reason="Needs are met by school",
    decline_reason="needs_met_elsewhere",
    recommendations_to_referrer=["school_engagement"],
)
ASK = AskForMoreInformation(decision="more_information", reason="Unclear", questions=["Who are the caregivers?"])


def test_a_review_is_decided_once_and_changed_only_by_a_reconsideration() -> None:
    assert decide(ReviewStatus.AWAITING_DECISION, ACCEPT) is ReviewStatus.ACCEPTED
    assert decide(ReviewStatus.AWAITING_DECISION, DECLINE) is ReviewStatus.DECLINED
    with pytest.raises(AlreadyDecided, match="reconsideration"):
        decide(ReviewStatus.ACCEPTED, DECLINE)
    with pytest.raises(AlreadyDecided):
        decide(ReviewStatus.WITHDRAWN, ACCEPT)
    assert reconsider(ReviewStatus.DECLINED) is ReviewStatus.AWAITING_DECISION
    with pytest.raises(AlreadyDecided):
        reconsider(ReviewStatus.AWAITING_DECISION)


def test_asking_for_more_information_pauses_the_review_until_the_answer_arrives() -> None:
    waiting = decide(ReviewStatus.AWAITING_DECISION, ASK)
    assert waiting is ReviewStatus.MORE_INFORMATION_REQUESTED
    with pytest.raises(AlreadyDecided):
        decide(waiting, ASK)
    assert information_arrived(waiting) is ReviewStatus.AWAITING_DECISION
    assert information_arrived(ReviewStatus.ACCEPTED) is ReviewStatus.ACCEPTED
    # The panel may still decide without the answer.
    assert decide(waiting, ACCEPT) is ReviewStatus.ACCEPTED


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"decision": "accept", "reason": "ok", "needs_profile": ["health"]}, "at least 3 characters"),
        ({"decision": "accept", "reason": "Fine", "needs_profile": []}, "at least 1 item"),
        (
            {"decision": "accept", "reason": "Fine", "needs_profile": ["health"], "safety_planning_required": True},
            "safety_planning_reason",
        ),
        (
            {
                "decision": "decline",
                "reason": "Statutory",
                "decline_reason": "statutory_care_needed",
                "recommendations_to_referrer": ["statutory_referral"],
                "serious_risk": True,
            },
            "risk_categories and risk_details",
        ),
        ({"decision": "decline", "reason": "No", "decline_reason": "other"}, "Field required"),
        ({"decision": "shrug", "reason": "Hmm"}, "does not match any of the expected tags"),
    ],
)
def test_a_decision_needs_a_reason_and_what_its_kind_requires(body: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        TypeAdapter(Decision).validate_python(body)
