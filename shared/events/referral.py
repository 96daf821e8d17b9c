"""Events the referral service publishes: its public stream (`referral.events`) and outcomes to agencies.

Least data: ids, codes, dates. Names, contact details and free text stay in the referral service.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from shared.events.catalogue import Event, event_type
from shared.events.codes import NeedDomain, Participation, ReasonCode, Recommendation, SharingPurpose


class Problem(BaseModel):
    """One reason a message was refused: the field and what is wrong with it, never the value."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    field: str
    problem: str


class InvolvedPractitioner(BaseModel):
    """A practitioner already working with the child or whānau: who, their agency and role (no name or contact)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    practitioner_id: str
    agency: str | None
    role: str


class Sharing(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    agency: str
    purposes: list[SharingPurpose]


class MatchBasis(StrEnum):
    NHI = "nhi"
    NAME_AND_DATE_OF_BIRTH = "name_and_date_of_birth"


class Outcome(StrEnum):
    RECEIVED = "received"
    REJECTED = "rejected"
    LINKED_TO_EXISTING = "linked_to_existing"
    FORWARDED_TO_HUB = "forwarded_to_hub"
    WITHDRAWN = "withdrawn"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    MORE_INFORMATION_NEEDED = "more_information_needed"
    LEAD_PROFESSIONAL_ASSIGNED = "lead_professional_assigned"
    CASE_CLOSED = "case_closed"


@event_type("nz.childrensteams.referral.outcome.v1")
class ReferralOutcome(Event):
    """What became of an agency's referral, on its `agency.<code>.outcomes.out`, keyed by the agency's referral id."""

    agency: str
    agency_referral_id: str
    outcome: Outcome
    referral_id: str | None = None
    child_id: str | None = None
    problems: list[Problem] = []
    recommendations: list[Recommendation] = []
    questions: list[str] = Field(default=[], description="the panel's questions when more information is needed")
    resent: bool = Field(default=False, description="true when this repeats the current outcome for a resubmission")


@event_type("nz.childrensteams.referral.received.v1")
class ReferralReceived(Event):
    referral_id: str
    child_id: str
    agency: str
    received_at: datetime
    reasons: list[ReasonCode]
    needs: list[NeedDomain]
    participation: Participation
    sibling_group_id: str
    family_preference: bool = Field(description="the family named a preferred practitioner")
    preferred_practitioner_id: str | None = None
    involved_practitioners: list[InvolvedPractitioner] = Field(
        default=[], description="practitioners already working with the child or whānau (an existing relationship)"
    )
    locality: str | None = None
    iwi_affiliated: bool = False


@event_type("nz.childrensteams.referral.rejected.v1")
class ReferralRejected(Event):
    """An agency's referral was refused; keyed by the agency's referral id (there is no child id)."""

    agency: str
    agency_referral_id: str
    problems: list[Problem]


@event_type("nz.childrensteams.referral.linked_to_existing.v1")
class ReferralLinked(Event):
    """A referral for a child who already has an open referral: linked to it, not duplicated."""

    referral_id: str
    child_id: str
    agency: str
    agency_referral_id: str
    basis: MatchBasis
    needs_confirmation: bool


@event_type("nz.childrensteams.referral.withdrawn.v1")
class ReferralWithdrawn(Event):
    referral_id: str
    child_id: str
    reason: str


@event_type("nz.childrensteams.referral.information_provided.v1")
class ReferralInformationProvided(Event):
    """The referrer answered the panel's questions: the referral goes back to the panel."""

    referral_id: str
    child_id: str
    provided_at: datetime


@event_type("nz.childrensteams.referral.consent_recorded.v1")
class ConsentRecorded(Event):
    child_id: str
    referral_id: str
    version: int
    participation: Participation
    sharing: list[Sharing]
    recorded_at: datetime


@event_type("nz.childrensteams.referral.consent_updated.v1")
class ConsentUpdated(ConsentRecorded):
    pass


@event_type("nz.childrensteams.referral.consent_withdrawn.v1")
class ConsentWithdrawn(ConsentRecorded):
    """Sharing stopped (and, if participation is `no`, the family no longer takes part): stop sharing at once."""


@event_type("nz.childrensteams.referral.sibling_group_changed.v1")
class SiblingGroupChanged(Event):
    sibling_group_id: str
    child_ids: Annotated[list[str], Field(min_length=1)]
