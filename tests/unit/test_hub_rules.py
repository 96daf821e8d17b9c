"""The hub's screening rules, who may change a priority, and the frozen escalation policy (no I/O)."""

from __future__ import annotations

import pytest

from services.hub.domain import (
    DEFAULT_STEPS,
    RULES,
    AlreadySettled,
    ConcernFacts,
    EscalationPolicy,
    EscalationStatus,
    NotAllowed,
    Priority,
    acknowledge,
    check_override,
    explain,
    rules_markdown,
    screen,
)
from shared.events.codes import ConcernCategory, NeedDomain
from tests.conftest import ROOT


def facts(*categories: ConcernCategory, **known: object) -> ConcernFacts:
    return ConcernFacts(categories=frozenset(categories), **{"immediate_danger": False, **known})  # type: ignore[arg-type]


def test_immediate_danger_is_critical_whatever_else_is_reported() -> None:
    screening = screen(facts(ConcernCategory.OTHER, immediate_danger=True))
    assert screening.priority is Priority.CRITICAL and "immediate_danger" in screening.rules_fired
    assert not screening.police


def test_a_life_in_danger_also_tells_police() -> None:
    screening = screen(facts(ConcernCategory.PHYSICAL_HARM, immediate_danger=True, life_in_danger=True))
    assert screening.critical and screening.police
    assert screening.rules_fired[:2] == ("life_in_danger", "immediate_danger")


def test_serious_injury_to_an_infant_is_critical_but_to_a_teenager_very_urgent() -> None:
    infant = screen(facts(ConcernCategory.PHYSICAL_HARM, injury="serious", child_age_years=1))
    teenager = screen(facts(ConcernCategory.PHYSICAL_HARM, injury="serious", child_age_years=15))
    assert infant.priority is Priority.CRITICAL and "serious_injury_to_infant" in infant.rules_fired
    assert teenager.priority is Priority.VERY_URGENT


def test_a_young_child_left_without_care_is_critical() -> None:
    assert screen(facts(ConcernCategory.NEGLECT, child_without_care=True, child_age_years=6)).critical
    assert screen(facts(ConcernCategory.NEGLECT, child_without_care=True)).critical  # age unknown: assume young
    assert not screen(facts(ConcernCategory.NEGLECT, child_without_care=True, child_age_years=16)).critical


def test_sexual_harm_is_very_urgent() -> None:
    assert screen(facts(ConcernCategory.SEXUAL_HARM)).priority is Priority.VERY_URGENT


def test_abuse_with_the_harmer_still_able_to_reach_the_child_is_very_urgent() -> None:
    reachable = screen(facts(ConcernCategory.FAMILY_VIOLENCE, alleged_harmer_has_access=True))
    unknown = screen(facts(ConcernCategory.FAMILY_VIOLENCE))
    assert reachable.priority is Priority.VERY_URGENT and "harmer_has_access" in reachable.rules_fired
    assert unknown.priority is Priority.URGENT


def test_repeat_concerns_make_a_worry_urgent() -> None:
    assert screen(facts(ConcernCategory.OTHER, earlier_concerns=2)).priority is Priority.URGENT
    assert screen(facts(ConcernCategory.OTHER, earlier_concerns=1)).priority is Priority.NO_FURTHER_ACTION


def test_neglect_with_a_protective_caregiver_becomes_an_offer_of_a_childrens_team() -> None:
    screening = screen(facts(ConcernCategory.NEGLECT, caregiver_protective="yes"))
    assert screening.priority is Priority.CHILDRENS_TEAM
    assert screening.rules_fired == ("harm_reported", "protective_caregiver")
    # A protective caregiver does not soften physical harm.
    assert screen(facts(ConcernCategory.PHYSICAL_HARM, caregiver_protective="yes")).priority is Priority.URGENT


def test_family_needs_without_harm_suit_a_childrens_team_and_nothing_at_all_is_information_only() -> None:
    needs = screen(facts(ConcernCategory.OTHER, support_needs=frozenset({NeedDomain.HOUSING})))
    assert needs.priority is Priority.CHILDRENS_TEAM
    nothing = screen(facts(ConcernCategory.OTHER))
    assert nothing.priority is Priority.NO_FURTHER_ACTION and nothing.rules_fired == ("no_safety_concern",)


def test_every_fired_rule_is_explained_in_plain_words() -> None:
    screening = screen(facts(ConcernCategory.SEXUAL_HARM, immediate_danger=True, child_age_years=1))
    explained = explain(screening.rules_fired)
    assert [e["rule"] for e in explained] == list(screening.rules_fired)
    assert all(e["says"] for e in explained)


def test_only_a_duty_manager_may_lower_a_critical_concern() -> None:
    worker, manager = frozenset({"hub_social_worker"}), frozenset({"hub_duty_manager"})
    with pytest.raises(NotAllowed):
        check_override(Priority.CRITICAL, Priority.URGENT, worker)
    check_override(Priority.CRITICAL, Priority.URGENT, manager)
    check_override(Priority.URGENT, Priority.CRITICAL, worker)  # raising is anyone's duty
    check_override(Priority.CRITICAL, Priority.CRITICAL, worker)
    with pytest.raises(NotAllowed):
        check_override(Priority.URGENT, Priority.URGENT, frozenset({"auditor"}))


def test_the_escalation_policy_notifies_the_contact_centre_then_again_with_the_duty_manager_then_police() -> None:
    policy = EscalationPolicy(DEFAULT_STEPS, step_seconds=60, rounds=2)
    assert [policy.step(n) for n in range(7)] == [
        (1, ("contact_centre",)),
        (1, ("contact_centre", "duty_manager")),
        (1, ("police",)),
        (2, ("contact_centre",)),
        (2, ("contact_centre", "duty_manager")),
        (2, ("police",)),
        None,
    ]
    danger = EscalationPolicy(DEFAULT_STEPS, step_seconds=60, rounds=1, police_at_start=True)
    assert danger.step(0) == (1, ("contact_centre", "police"))
    assert EscalationPolicy.from_snapshot(policy.snapshot()) == policy


def test_acknowledgement_stops_the_chain_once() -> None:
    assert acknowledge(EscalationStatus.OPEN) is EscalationStatus.ACKNOWLEDGED
    assert acknowledge(EscalationStatus.EXHAUSTED) is EscalationStatus.ACKNOWLEDGED
    with pytest.raises(AlreadySettled):
        acknowledge(EscalationStatus.ACKNOWLEDGED)


def test_the_practitioners_page_is_generated_from_the_rules() -> None:
    page = (ROOT / "docs" / "screening-rules.md").read_text(encoding="utf-8")
    assert page == rules_markdown(), "regenerate: python -m services.hub.domain > docs/screening-rules.md"
    for rule in RULES:
        assert f"`{rule.code}`" in page and rule.says in page
