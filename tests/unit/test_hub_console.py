"""The hub console's own reading of things: form problems under the right field, overdue escalation steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from services.hub.api import EscalationView, ReferralRequest, StepView
from services.hub.console import (
    REFERRAL_FIELDS,
    WHOLE_REFERRAL,
    field_errors,
    referral_errors,
    referral_from_form,
    report_from_form,
    timeline,
)
from shared.events.hub import ConcernReport

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _problems(form: dict[str, str], checked: dict[str, list[str]]) -> dict[str, str]:
    try:
        ConcernReport.model_validate(report_from_form(form, checked, agency="education-moe"))
    except ValidationError as error:
        return field_errors(error)
    return {}


def test_each_form_problem_is_shown_at_the_field_to_fix() -> None:
    problems = _problems({"immediate_danger": "yes", "seen_at": "2026-03-02T08:00"}, {})
    assert set(problems) >= {"child_given_names", "categories", "what_was_seen", "reporter_name"}
    assert problems["categories"] == "Choose at least one kind of concern"

    complete = {
        "child_given_names": "Aroha",
        "child_family_name": "Tane",
        "what_was_seen": "Hit by a caregiver.",
        "seen_at": "2026-03-02T08:00",
        "immediate_danger": "yes",
        "reporter_name": "Mere Smith",
    }
    # Immediate danger without where the child is: the rule spans fields, the message lands on the location.
    assert set(_problems(complete, {"categories": ["physical_harm"]})) == {"child_location"}
    assert _problems(complete | {"child_location": "School office"}, {"categories": ["physical_harm"]}) == {}


def _escalation(status: str, steps: int, acknowledged_at: datetime | None = None) -> EscalationView:
    return EscalationView(
        escalation_id="e-1",
        concern_id="c-1",
        status=status,
        policy={"steps": [["contact_centre"]], "step_seconds": 300, "rounds": 3},
        started_at=START,
        next_step=steps,
        next_due_at=None,
        acknowledged_at=acknowledged_at,
        acknowledged_by="call-taker" if acknowledged_at else None,
        steps=[
            StepView(
                step=n,
                round=1,
                targets=["contact_centre", "duty_manager"] if n else ["contact_centre"],
                notification_ids=[],
                due_at=START + timedelta(minutes=5 * n),
                taken_at=START + timedelta(minutes=5 * n),
            )
            for n in range(steps)
        ],
    )


def test_a_step_is_overdue_when_nobody_acknowledged_it_in_time() -> None:
    late = timeline(_escalation("acknowledged", 2, acknowledged_at=START + timedelta(minutes=7)), START)
    assert [line.overdue for line in late] == [True, False]
    assert late[1].notified == ["National contact centre", "Hub duty manager"]

    waiting = _escalation("open", 1)
    assert [line.overdue for line in timeline(waiting, START + timedelta(minutes=4))] == [False]
    assert [line.overdue for line in timeline(waiting, START + timedelta(minutes=6))] == [True]
    assert [line.overdue for line in timeline(_escalation("stood_down", 1), START + timedelta(hours=1))] == [False]


def _referral_problems(form: dict[str, str], checked: dict[str, list[str]]) -> dict[str, str]:
    try:
        ReferralRequest.model_validate(referral_from_form(form, checked))
    except ValidationError as error:
        problems = [(tuple(str(p) for p in e["loc"]), str(e["msg"])) for e in error.errors()]
        return referral_errors(problems, form, shown=REFERRAL_FIELDS)
    return {}


def test_each_referral_form_problem_is_shown_at_the_field_to_fix() -> None:
    # The family said yes: who answered and when are needed; the summary reads in the form's order.
    problems = _referral_problems({"consent_participation": "yes"}, {"needs": ["housing"]})
    assert list(problems) == ["reasons", "consent_given_by", "consent_given_at", "referrer_name"]
    assert problems["reasons"] == "Choose at least one reason"

    answered = {
        "consent_participation": "yes",
        "consent_given_by": "Mere Rangi",
        "consent_given_at": "2026-03-02T08:00",
        "referrer_name": "Aroha Ngata",
    }
    assert _referral_problems(answered, {"needs": ["housing"]}) == {"reasons": "Choose at least one reason"}
    complete = {"reasons": ["housing_instability"], "needs": ["housing"]}
    assert _referral_problems(answered, complete) == {}
    body = ReferralRequest.model_validate(referral_from_form(answered, complete))
    assert body.consent.given_at is not None and body.consent.given_at.tzinfo is not None  # New Zealand time
    assert body.child is None  # the concern's own details are used unless the form asked for them


def test_the_hubs_reasons_for_not_sending_a_referral_land_where_they_can_be_fixed() -> None:
    too_old = [(("body",), "Value error, the child must be 0-17 on the referral date")]
    # The form asked for the child's date of birth: the message is beside it.
    assert set(referral_errors(too_old, {}, shown=REFERRAL_FIELDS)) == {"child_date_of_birth"}
    # The date of birth came with the concern: the hub's words go at the top of the form.
    asked = [f for f in REFERRAL_FIELDS if not f.startswith("child_")]
    assert referral_errors(too_old, {}, shown=asked) == {WHOLE_REFERRAL: "The child must be 0-17 on the referral date"}
    lacking = [(("child",), "the concern lacks the child's names and date of birth: supply child")]
    assert set(referral_errors(lacking, {}, shown=REFERRAL_FIELDS)) == {
        "child_given_names",
        "child_family_name",
        "child_date_of_birth",
    }
