"""Referral rules, free of I/O: what a referral must satisfy, who the child is, who their siblings are,
what consent allows, and who may read a referral."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Literal

from shared.agencies import AGENCIES, sender_problems
from shared.events.agency import ChildDetails, Consent, ReferralSubmitted, WhanauMember
from shared.events.codes import ConcernCategory, Participation, ReasonCode, SharingPurpose
from shared.events.referral import MatchBasis, Outcome, Problem
from shared.security import Principal


class ReferralStatus(StrEnum):
    RECEIVED = "received"
    MORE_INFORMATION_NEEDED = "more_information_needed"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    LEAD_ASSIGNED = "lead_assigned"
    WITHDRAWN = "withdrawn"
    CLOSED = "closed"


OPEN_STATUSES = frozenset(
    {
        ReferralStatus.RECEIVED,
        ReferralStatus.MORE_INFORMATION_NEEDED,
        ReferralStatus.ACCEPTED,
        ReferralStatus.LEAD_ASSIGNED,
    }
)


class NotAllowed(Exception):
    """A change the referral's current state does not allow."""


def withdrawn(status: ReferralStatus) -> ReferralStatus:
    match status:
        case s if s in OPEN_STATUSES:
            return ReferralStatus.WITHDRAWN
        case _:
            raise NotAllowed(f"a {status} referral cannot be withdrawn")


# Intake ---------------------------------------------------------------------------------------------------------


def check_referral(
    referral: ReferralSubmitted, *, sender: str, source: str, known: frozenset[str] = AGENCIES
) -> list[Problem]:
    """Rules the schema cannot know: that an agency refers only in its own name (`sender` is the agency whose topic
    the referral came in on, `source` its `ce_source`), and that every agency it names is registered."""
    problems = [Problem(**p) for p in sender_problems(sender=sender, source=source, named=referral.agency)]
    for n, sharing in enumerate(referral.consent.share_with):
        if sharing.agency not in known:
            problems.append(Problem(field=f"consent.share_with.{n}.agency", problem="is not a registered agency"))
    for n, practitioner in enumerate(referral.involved_practitioners):
        if practitioner.agency is not None and practitioner.agency not in known:
            problems.append(Problem(field=f"involved_practitioners.{n}.agency", problem="is not a registered agency"))
    preferred = referral.preferred_practitioner
    if preferred is not None and preferred.agency is not None and preferred.agency not in known:
        problems.append(Problem(field="preferred_practitioner.agency", problem="is not a registered agency"))
    return problems


PanelDecision = Literal["accepted", "declined", "more_information", "reconsidered"]


def after_panel(status: ReferralStatus, decision: PanelDecision) -> ReferralStatus:
    """The referral's state after a panel decision. A referral withdrawn or closed meanwhile stays so."""
    match status, decision:
        case ((ReferralStatus.WITHDRAWN | ReferralStatus.CLOSED), _):
            return status
        case _, "accepted":
            return ReferralStatus.ACCEPTED
        case _, "declined":
            return ReferralStatus.DECLINED
        case _, "more_information":
            return ReferralStatus.MORE_INFORMATION_NEEDED
        case _, "reconsidered":
            return ReferralStatus.RECEIVED
    raise NotAllowed(f"unknown panel decision {decision!r}")


def outcome_of(status: ReferralStatus) -> Outcome:
    """The outcome an agency is told for a referral in this state (re-sent when it submits the same referral again)."""
    match status:
        case ReferralStatus.RECEIVED:
            return Outcome.RECEIVED
        case ReferralStatus.MORE_INFORMATION_NEEDED:
            return Outcome.MORE_INFORMATION_NEEDED
        case ReferralStatus.ACCEPTED:
            return Outcome.ACCEPTED
        case ReferralStatus.DECLINED:
            return Outcome.DECLINED
        case ReferralStatus.LEAD_ASSIGNED:
            return Outcome.LEAD_PROFESSIONAL_ASSIGNED
        case ReferralStatus.WITHDRAWN:
            return Outcome.WITHDRAWN
        case ReferralStatus.CLOSED:
            return Outcome.CASE_CLOSED


def concern_categories(reasons: Iterable[ReasonCode]) -> list[ConcernCategory]:
    """How the hub files a referral that reports immediate danger."""
    by_reason = {
        ReasonCode.FAMILY_VIOLENCE: ConcernCategory.FAMILY_VIOLENCE,
        ReasonCode.NEGLECT: ConcernCategory.NEGLECT,
        ReasonCode.CHILD_MENTAL_HEALTH: ConcernCategory.SELF_HARM,
    }
    categories = {by_reason.get(reason, ConcernCategory.OTHER) for reason in reasons}
    return sorted(categories)


# Child identity -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KnownChild:
    child_id: str
    name_key: str
    date_of_birth: date
    nhi: str | None
    sibling_group_id: str


@dataclass(frozen=True, slots=True)
class Match:
    child: KnownChild
    basis: MatchBasis
    needs_confirmation: bool


def name_key(*parts: str) -> str:
    """A name as compared across agencies' systems: case, macrons and spacing do not make a different person."""
    text = unicodedata.normalize("NFKD", " ".join(parts))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def child_name_key(child: ChildDetails) -> str:
    return name_key(child.given_names, child.family_name)


def match_child(
    child: ChildDetails, *, by_nhi: KnownChild | None, by_name_and_birth: Sequence[KnownChild]
) -> Match | None:
    """Who this child already is to us, if anyone. An NHI match is certain; a name and date-of-birth match is
    recorded for a person to confirm. Two different NHIs are two different children, whatever their names."""
    if child.nhi and by_nhi is not None:
        return Match(by_nhi, MatchBasis.NHI, needs_confirmation=False)
    candidates = [c for c in by_name_and_birth if not (c.nhi and child.nhi and c.nhi != child.nhi)]
    if not candidates:
        return None
    # Several namesakes born the same day: link to the earliest known, and let a person confirm.
    return Match(candidates[0], MatchBasis.NAME_AND_DATE_OF_BIRTH, needs_confirmation=True)


# Siblings -------------------------------------------------------------------------------------------------------


def caregiver_key(member: WhanauMember) -> str | None:
    """A caregiver across referrals: name plus phone or email. A name alone is too weak to join two families."""
    if not member.caregiver:
        return None
    contact = member.contact
    if contact.phone:
        reach = re.sub(r"\D", "", contact.phone)[-9:]
    elif contact.email:
        reach = contact.email.casefold()
    else:
        return None
    return f"{name_key(member.name)}|{reach}"


def caregiver_keys(whanau: Iterable[WhanauMember]) -> set[str]:
    return {key for member in whanau if (key := caregiver_key(member))}


def surviving_group(groups: Iterable[str]) -> str:
    """When sibling groups meet, one id survives (the smallest, so every instance picks the same one)."""
    return min(groups)


# Consent --------------------------------------------------------------------------------------------------------

ConsentChangeKind = Literal["recorded", "updated", "withdrawn"]


@dataclass(frozen=True, slots=True)
class ConsentState:
    version: int
    participation: Participation
    sharing: tuple[tuple[str, frozenset[SharingPurpose]], ...]

    def allows(self, agency: str, purpose: SharingPurpose) -> bool:
        """Whether information may go to `agency` for `purpose` under this consent."""
        return self.participation is Participation.YES and any(
            a == agency and purpose in purposes for a, purposes in self.sharing
        )


def consent_state(version: int, consent: Consent, *, withdraw_all_sharing: bool = False) -> ConsentState:
    sharing = () if withdraw_all_sharing else tuple((s.agency, frozenset(s.purposes)) for s in consent.share_with)
    return ConsentState(version=version, participation=consent.participation, sharing=sharing)


def consent_change(
    current: ConsentState | None, consent: Consent, *, withdraw_all_sharing: bool = False
) -> tuple[ConsentState, ConsentChangeKind]:
    """The next consent and what kind of change it is. Anything taken away is a withdrawal: others must stop at once."""
    following = consent_state(
        (current.version + 1) if current else 1, consent, withdraw_all_sharing=withdraw_all_sharing
    )
    if current is None:
        return following, "recorded"
    before = {(a, p) for a, purposes in current.sharing for p in purposes}
    after = {(a, p) for a, purposes in following.sharing for p in purposes}
    stopped_taking_part = (
        current.participation is Participation.YES and following.participation is not Participation.YES
    )
    if before - after or stopped_taking_part:
        return following, "withdrawn"
    return following, "updated"


# Need to know ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferralAccess:
    agency: str
    referrer_id: str
    lead_id: str | None = None


def may_read_referral(principal: Principal, referral: ReferralAccess) -> bool:
    """Panel members review every referral; auditors check access; the child's assigned lead professional sees it;
    a referrer sees the referrals they made."""
    if principal.has_role("panel_member", "auditor"):
        return True
    if referral.lead_id is not None and principal.subject == referral.lead_id:
        return True
    return principal.has_role("referrer") and (principal.subject, principal.agency) == (
        referral.referrer_id,
        referral.agency,
    )
