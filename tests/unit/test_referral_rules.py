"""Referral rules: the published schema, identity matching, siblings, consent and need-to-know."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.referral.domain import (
    KnownChild,
    NotAllowed,
    ReferralAccess,
    ReferralStatus,
    caregiver_key,
    check_referral,
    consent_change,
    match_child,
    may_read_referral,
    name_key,
    outcome_of,
    surviving_group,
    withdrawn,
)
from shared.events.agency import ChildDetails, Consent, WhanauMember
from shared.events.codes import Participation, SharingPurpose
from shared.events.referral import MatchBasis, Outcome
from shared.security import Principal
from tests.support.referrals import make_referral


def problems_of(**overrides: object) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        make_referral(**overrides)
    return {f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in caught.value.errors()}


def test_a_well_formed_referral_passes_the_schema_and_the_rules() -> None:
    referral = make_referral()
    assert check_referral(referral, sender="health-nz", source="/agencies/health-nz") == []


def test_a_young_person_who_has_turned_18_is_not_referred_to_a_childrens_team() -> None:
    eighteen_today = datetime.now(UTC).date().replace(year=datetime.now(UTC).year - 18)
    [problem] = problems_of(child={"date_of_birth": eighteen_today.isoformat()})
    assert "the child must be 0-17 on the referral date" in problem


def test_a_baby_born_today_can_be_referred() -> None:
    assert make_referral(child={"date_of_birth": datetime.now(UTC).date().isoformat()})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"child": {"date_of_birth": (date.today() + timedelta(days=3)).isoformat()}}, "after the referral date"),
        ({"submitted_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "submitted_at is in the future"),
        ({"submitted_at": (datetime.now(UTC) - timedelta(days=200)).isoformat()}, "more than 90 days ago"),
        ({"submitted_at": "2026-11-01T10:00:00"}, "must include a time zone offset"),
        ({"reasons": ["being_a_teenager"]}, "reasons.0: Input should be"),
        ({"needs": []}, "needs: List should have at least 1 item"),
        ({"child": {"nhi": "ABC12"}}, "child.nhi: String should match pattern"),
        ({"immediate_danger": True}, "needs danger_details and child_location"),
        ({"consent": {"participation": "yes", "given_by": None}}, "needs given_by and given_at"),
        ({"whanau": [{"name": "Nan", "relationship": "grandmother", "caregiver": True, "shoe_size": 7}]}, "Extra"),
    ],
)
def test_the_schema_names_what_is_wrong(overrides: dict[str, object], expected: str) -> None:
    assert any(expected in problem for problem in problems_of(**overrides)), problems_of(**overrides)


def test_unregistered_agencies_and_an_agency_referring_in_anothers_name_are_refused() -> None:
    referral = make_referral(
        agency="acme-corp",
        consent={"share_with": [{"agency": "nosy-ltd", "purposes": ["planning"]}]},
    )
    # health-nz's topic, so health-nz sent it, whatever its ce_source and body say.
    problems = {(p.field, p.problem) for p in check_referral(referral, sender="health-nz", source="/agencies/acme")}
    assert problems == {
        ("ce_source", "must be /agencies/health-nz on this agency's topic"),
        ("agency", "does not match the sending agency"),
        ("consent.share_with.0.agency", "is not a registered agency"),
    }


def known(child_id: str, name: str, born: date, nhi: str | None = None) -> KnownChild:
    return KnownChild(child_id, name_key(name), born, nhi, f"group-{child_id}")


def details(name: str, born: date, nhi: str | None = None) -> ChildDetails:
    given, family = name.split(" ", 1)
    return ChildDetails(given_names=given, family_name=family, date_of_birth=born, nhi=nhi)


BORN = date(2017, 3, 14)


def test_an_nhi_match_is_certain() -> None:
    record = known("c1", "Tama Ngata", BORN, "ZZZ0016")
    match = match_child(details("Tamati Ngata", BORN, "ZZZ0016"), by_nhi=record, by_name_and_birth=[])
    assert match is not None
    assert (match.child, match.basis, match.needs_confirmation) == (record, MatchBasis.NHI, False)


def test_a_name_and_birth_match_ignores_macrons_and_case_but_needs_a_person_to_confirm() -> None:
    record = known("c1", "Mānaia Te Rangi", BORN)
    assert name_key("MANAIA", "te  rangi") == record.name_key
    match = match_child(details("Manaia Te Rangi", BORN), by_nhi=None, by_name_and_birth=[record])
    assert match is not None
    assert (match.basis, match.needs_confirmation) == (MatchBasis.NAME_AND_DATE_OF_BIRTH, True)


def test_namesakes_with_different_nhi_numbers_are_different_children() -> None:
    record = known("c1", "Tama Ngata", BORN, "ZZZ0016")
    assert match_child(details("Tama Ngata", BORN, "ZZZ0024"), by_nhi=None, by_name_and_birth=[record]) is None


def test_caregivers_join_families_by_name_and_phone_or_email_never_by_name_alone() -> None:
    by_phone = WhanauMember(
        name="Aroha Ngata", relationship="mother", caregiver=True, contact={"phone": "027 555 1234"}
    )
    same_phone = WhanauMember(
        name="aroha  ngātā", relationship="whaea", caregiver=True, contact={"phone": "+64 27 555 1234"}
    )
    name_only = WhanauMember(name="Aroha Ngata", relationship="mother", caregiver=True)
    not_caregiver = WhanauMember(
        name="Aroha Ngata", relationship="aunt", caregiver=False, contact={"phone": "0275551234"}
    )
    assert caregiver_key(by_phone) == caregiver_key(same_phone) is not None
    assert caregiver_key(name_only) is None
    assert caregiver_key(not_caregiver) is None


def test_when_sibling_groups_meet_every_instance_keeps_the_same_one() -> None:
    assert surviving_group({"g-b", "g-a", "g-c"}) == surviving_group(["g-c", "g-a"]) == "g-a"


def consent(participation: str, *sharing: tuple[str, list[str]]) -> Consent:
    return Consent(
        participation=Participation(participation),
        share_with=[{"agency": a, "purposes": p} for a, p in sharing],
        given_by="Aroha",
        given_at=datetime.now(UTC),
    )


def test_taking_away_any_sharing_is_a_withdrawal_and_adding_is_an_update() -> None:
    first, kind = consent_change(None, consent("yes", ("education-moe", ["assessment", "planning"])))
    assert (first.version, kind) == (1, "recorded")
    assert first.allows("education-moe", SharingPurpose.PLANNING)
    assert not first.allows("police-nz", SharingPurpose.PLANNING)

    wider, kind = consent_change(
        first, consent("yes", ("education-moe", ["assessment", "planning"]), ("health-nz", ["assessment"]))
    )
    assert (wider.version, kind) == (2, "updated")

    narrower, kind = consent_change(wider, consent("yes", ("education-moe", ["assessment"])))
    assert (narrower.version, kind) == (3, "withdrawn")
    assert not narrower.allows("education-moe", SharingPurpose.PLANNING)

    none, kind = consent_change(narrower, consent("yes", ("education-moe", ["assessment"])), withdraw_all_sharing=True)
    assert (kind, none.sharing) == ("withdrawn", ())

    declined, kind = consent_change(first, consent("no"))
    assert kind == "withdrawn"
    assert not declined.allows("education-moe", SharingPurpose.ASSESSMENT)


def test_only_an_open_referral_can_be_withdrawn() -> None:
    assert withdrawn(ReferralStatus.ACCEPTED) is ReferralStatus.WITHDRAWN
    with pytest.raises(NotAllowed):
        withdrawn(ReferralStatus.DECLINED)
    assert outcome_of(ReferralStatus.LEAD_ASSIGNED) is Outcome.LEAD_PROFESSIONAL_ASSIGNED


def person(subject: str, agency: str, *roles: str) -> Principal:
    return Principal(subject=subject, agency=agency, roles=frozenset(roles))


def test_a_referral_is_read_by_its_referrer_panel_members_and_auditors_only() -> None:
    referral = ReferralAccess(agency="health-nz", referrer_id="prac-77")
    assert may_read_referral(person("prac-77", "health-nz", "referrer"), referral)
    assert may_read_referral(person("chair-1", "childrens-team", "panel_member"), referral)
    assert may_read_referral(person("audit-2", "childrens-team", "auditor"), referral)
    assert not may_read_referral(person("prac-77", "police-nz", "referrer"), referral)
    assert not may_read_referral(person("prac-99", "health-nz", "referrer"), referral)
    assert not may_read_referral(person("hub-3", "childrens-hub", "hub_social_worker"), referral)
