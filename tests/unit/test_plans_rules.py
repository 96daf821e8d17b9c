"""The Child's Plan stage machine, the common assessment, and who in the Action Network sees the child."""

from __future__ import annotations

import pytest

from services.plans.domain import (
    Assessment,
    ExitReason,
    IllegalMove,
    Member,
    Readiness,
    ReviewOutcome,
    Stage,
    may_join,
    may_see_child,
    next_stage,
)
from shared.security import Principal

READY_TO_PLAN = Readiness(child_voice_recorded=True, whanau_view_recorded=True, assessed_domains=3)
READY_TO_IMPLEMENT = Readiness(plan_endorsed=True, goals=2, goals_without_actions=0)


def test_the_journey_runs_assess_plan_implement_review_and_exit() -> None:
    stage = next_stage(Stage.ASSESS, "complete_assessment", facts=READY_TO_PLAN)
    assert stage is Stage.PLAN
    stage = next_stage(stage, "start_implementation", facts=READY_TO_IMPLEMENT)
    assert stage is Stage.IMPLEMENT
    stage = next_stage(stage, "hold_review")
    assert next_stage(stage, "review_outcome", outcome=ReviewOutcome.CONTINUE) is Stage.IMPLEMENT
    assert next_stage(stage, "review_outcome", outcome=ReviewOutcome.REVISE) is Stage.PLAN
    assert next_stage(stage, "exit", exit_reason=ExitReason.GOALS_ACHIEVED) is Stage.CLOSED


def test_the_assessment_needs_the_childs_voice_and_the_whanaus_view() -> None:
    with pytest.raises(IllegalMove, match="the child's voice, the whānau's view"):
        next_stage(Stage.ASSESS, "complete_assessment", facts=Readiness(assessed_domains=2))


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        (Readiness(plan_endorsed=False, goals=1), "endorsed by the panel"),
        (Readiness(plan_endorsed=True, goals=0), "every goal needs at least one action"),
        (Readiness(plan_endorsed=True, goals=2, goals_without_actions=1), "every goal needs at least one action"),
    ],
)
def test_a_plan_is_implemented_only_when_endorsed_and_every_goal_has_actions(facts: Readiness, reason: str) -> None:
    with pytest.raises(IllegalMove, match=reason):
        next_stage(Stage.PLAN, "start_implementation", facts=facts)


@pytest.mark.parametrize(
    ("stage", "move"),
    [
        (Stage.ASSESS, "start_implementation"),
        (Stage.PLAN, "hold_review"),
        (Stage.IMPLEMENT, "complete_assessment"),
        (Stage.CLOSED, "hold_review"),
    ],
)
def test_an_illegal_move_says_why(stage: Stage, move: str) -> None:
    with pytest.raises(IllegalMove):
        next_stage(stage, move, facts=READY_TO_IMPLEMENT)  # type: ignore[arg-type]


def test_goals_are_celebrated_only_after_a_review_but_other_exits_can_come_at_any_stage() -> None:
    with pytest.raises(IllegalMove, match="only after a review"):
        next_stage(Stage.IMPLEMENT, "exit", exit_reason=ExitReason.GOALS_ACHIEVED)
    assert next_stage(Stage.ASSESS, "exit", exit_reason=ExitReason.MOVED_AWAY) is Stage.CLOSED
    assert next_stage(Stage.PLAN, "exit", exit_reason=ExitReason.STATUTORY_CARE_AND_PROTECTION) is Stage.CLOSED


def test_the_assessment_knows_its_tuituia_shaped_domains_and_the_needs_it_found() -> None:
    assessment = Assessment.model_validate(
        {
            "domains": {
                "child_wellbeing.education": {
                    "strengths": "Loves kapa haka",
                    "needs": "Attendance",
                    "need_identified": True,
                },
                "whanau_and_environment.housing": {"needs": "Overcrowded", "need_identified": True},
                "caregiver_capacity.emotional_warmth": {"strengths": "Close to Nan"},
                "astrology": {},
            }
        }
    )
    assert assessment.unknown_domains() == ["astrology"]
    assert assessment.assessed_needs() == ["child_wellbeing.education", "whanau_and_environment.housing"]


def person(subject: str, agency: str, *roles: str) -> Principal:
    return Principal(subject=subject, agency=agency, roles=frozenset(roles))


NETWORK = [
    Member("nurse-1", "practitioner", "health-nz", None),
    Member("cop-1", "practitioner", "police-nz", "Family Violence Act s20"),
    Member("teacher-1", "practitioner", "education-moe", None),
]


def test_network_members_see_the_child_while_consent_or_a_legal_basis_covers_their_agency() -> None:
    def sees(who: Principal, consent: set[str]) -> tuple[bool, str]:
        return may_see_child(
            who, lead_id="lead-1", lead_manager_id="mgr-1", members=NETWORK, consented_agencies=frozenset(consent)
        )

    assert sees(person("lead-1", "oranga-tamariki"), set())[0]
    assert sees(person("mgr-1", "oranga-tamariki", "manager"), set())[0]
    assert sees(person("nurse-1", "health-nz"), {"health-nz"}) == (True, "consent covers their agency")
    assert sees(person("cop-1", "police-nz"), set()) == (True, "legal basis: Family Violence Act s20")
    allowed, why = sees(person("teacher-1", "education-moe"), {"health-nz"})
    assert not allowed and "consent does not cover your agency" in why
    assert sees(person("stranger", "health-nz"), {"health-nz"}) == (False, "not in this child's Action Network")


def test_joining_from_outside_the_familys_consent_needs_a_legal_basis() -> None:
    assert may_join("health-nz", None, frozenset({"health-nz"})) is None
    assert may_join("police-nz", "Oranga Tamariki Act s66C", frozenset()) is None
    assert "legal basis" in str(may_join("police-nz", None, frozenset({"health-nz"})))
