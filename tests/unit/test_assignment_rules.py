"""Choosing a lead professional: the explainable score, eligibility, and the siblings rule."""

from __future__ import annotations

from services.assignment.domain import ChildNeeds, Practitioner, choose, rank, ready_to_match, score
from shared.events.codes import NeedDomain


def practitioner(pid: str, *needs: str, caseload: int = 2, maximum: int = 10, **rest: object) -> Practitioner:
    fields: dict[str, object] = {
        "practitioner_id": pid,
        "agency": "health-nz",
        "discipline": "nurse",
        "needs": frozenset(NeedDomain(n) for n in needs),
        "languages": frozenset({"en"}),
        "cultural_competencies": frozenset(),
        "locality": "Gisborne",
        "max_caseload": maximum,
        "caseload": caseload,
        "manager_id": f"mgr-{pid}",
        "active": True,
    }
    return Practitioner(**(fields | rest))  # type: ignore[arg-type]


CHILD = ChildNeeds(
    needs_profile=frozenset({NeedDomain.EDUCATION, NeedDomain.PARENTING_CAPACITY}),
    locality="Gisborne",
    iwi_affiliated=True,
)


def test_every_part_of_the_score_is_kept_with_its_reason() -> None:
    candidate = score(
        practitioner("kiri", "education", "parenting_capacity", cultural_competencies=frozenset({"kaupapa_maori"})),
        ChildNeeds(
            needs_profile=CHILD.needs_profile,
            locality="gisborne",
            iwi_affiliated=True,
            involved_practitioner_ids=frozenset({"kiri"}),
            preferred_practitioner_id="kiri",
        ),
    )
    assert {p["part"]: p["points"] for p in candidate.explain()} == {
        "relationship": 40,
        "family_preference": 30,
        "skills": 20,
        "caseload": 8,
        "locality": 10,
        "culture": 10,
    }
    assert candidate.total == 118
    assert "covers 2 of 2 needs" in str(candidate.explain()[2]["why"])


def test_an_existing_relationship_outranks_a_better_skills_match() -> None:
    known = practitioner("known", "education")
    expert = practitioner("expert", "education", "parenting_capacity")
    child = ChildNeeds(needs_profile=CHILD.needs_profile, involved_practitioner_ids=frozenset({"known"}))
    assert [c.practitioner_id for c in rank([expert, known], child, excluded=frozenset())] == ["known", "expert"]


def test_ties_go_to_the_lighter_caseload_then_the_id_so_the_order_never_changes() -> None:
    busy, free, also_free = (
        practitioner("b", "education", caseload=6),
        practitioner("z", "education", caseload=1),
        practitioner("a", "education", caseload=1),
    )
    child = ChildNeeds(needs_profile=frozenset({NeedDomain.EDUCATION}))
    order = [c.practitioner_id for c in rank([busy, free, also_free], child, excluded=frozenset())]
    assert order == ["a", "z", "b"]


def test_inactive_full_and_already_declined_practitioners_are_not_proposed_and_the_panel_hears_why() -> None:
    choice = choose(
        [
            practitioner("away", "education", active=False),
            practitioner("full", "education", caseload=10, maximum=10),
            practitioner("said-no", "education"),
        ],
        CHILD,
        sibling_lead_id=None,
        excluded=frozenset({"said-no"}),
    )
    assert choice.candidates == []
    assert choice.reasons_if_empty == [
        "away: not active",
        "full: at capacity",
        "said-no: already declined or replaced for this child",
    ]


def test_siblings_get_the_same_lead_professional_before_anyone_scoring_higher() -> None:
    sibling_lead = practitioner("hemi", "family_violence")
    better = practitioner("kiri", "education", "parenting_capacity")
    choice = choose([better, sibling_lead], CHILD, sibling_lead_id="hemi")
    first = choice.candidates[0]
    assert (first.practitioner_id, first.basis, choice.sibling_exception) == ("hemi", "sibling", None)
    assert first.explain()[0]["part"] == "sibling"
    assert [c.practitioner_id for c in choice.candidates] == ["hemi", "kiri"]


def test_the_siblings_rule_gives_way_to_capacity_and_to_the_familys_wish_and_says_so() -> None:
    full = practitioner("hemi", "family_violence", caseload=10, maximum=10)
    other = practitioner("kiri", "education")
    at_capacity = choose([full, other], CHILD, sibling_lead_id="hemi")
    assert at_capacity.sibling_exception == "sibling's lead is at capacity"
    assert [c.practitioner_id for c in at_capacity.candidates] == ["kiri"]

    wants_kiri = ChildNeeds(needs_profile=CHILD.needs_profile, preferred_practitioner_id="kiri")
    family = choose([practitioner("hemi", "education"), other], wants_kiri, sibling_lead_id="hemi")
    assert family.sibling_exception == "the family asked for another practitioner"
    assert family.candidates[0].practitioner_id == "kiri"


def test_a_lead_is_sought_only_after_both_the_panels_acceptance_and_the_familys_agreement() -> None:
    assert ready_to_match(accepted=True, participation="yes", has_lead=False, withdrawn=False)
    assert not ready_to_match(accepted=True, participation="not_yet_asked", has_lead=False, withdrawn=False)
    assert not ready_to_match(accepted=False, participation="yes", has_lead=False, withdrawn=False)
    assert not ready_to_match(accepted=True, participation="yes", has_lead=True, withdrawn=False)
    assert not ready_to_match(accepted=True, participation="yes", has_lead=False, withdrawn=True)
