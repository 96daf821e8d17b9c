"""What agency systems publish to the platform's ingress topics (the contract in docs/asyncapi.json).

Unlike domain events these carry the details the referral service needs to own: it is their one consumer.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.events.catalogue import Event, event_type
from shared.events.codes import Gender, NeedDomain, Participation, ReasonCode, SharingPurpose

# A referral's clock may run a little ahead of ours; more than this is a wrong date, not skew.
CLOCK_SKEW = timedelta(minutes=10)
OLDEST_REFERRAL = timedelta(days=90)

Text = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(max_length=4000)]
AgencyCode = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", description="the agency's registered code")]


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("must include a time zone offset")
    return moment


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
# NHI numbers: the old AAANNNC format and the new AAANNAX one; the letters exclude I and O.
NHI = Annotated[str, Field(pattern=r"^[A-HJ-NP-Z]{3}(\d{4}|\d{2}[A-HJ-NP-Z]{2})$")]


class Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Contact(Part):
    phone: Annotated[str, Field(pattern=r"^\+?[0-9 ()-]{6,20}$")] | None = None
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=200)] | None = None


class Practitioner(Part):
    id: Text
    name: Text
    role: Text
    agency: AgencyCode | None = None
    contact: Contact = Contact()


class ChildDetails(Part):
    given_names: Text
    family_name: Text
    preferred_name: Text | None = None
    date_of_birth: date
    nhi: NHI | None = None
    gender: Gender = Gender.NOT_STATED
    iwi: list[Text] = []
    school: Text | None = None
    locality: Text | None = None


class WhanauMember(Part):
    name: Text
    relationship: Text
    caregiver: bool
    contact: Contact = Contact()


class KnownSibling(Part):
    given_names: Text
    family_name: Text
    date_of_birth: date | None = None
    nhi: NHI | None = None


class PreferredPractitioner(Part):
    name: Text
    agency: AgencyCode | None = None
    practitioner_id: Text | None = None


class SharingConsent(Part):
    """Information may be shared with this agency, for these purposes."""

    agency: AgencyCode
    purposes: Annotated[list[SharingPurpose], Field(min_length=1)]


class Consent(Part):
    participation: Participation
    share_with: list[SharingConsent] = []
    given_by: Text | None = None
    given_by_relationship: Text | None = None
    given_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _who_and_when(self) -> Consent:
        if self.participation is not Participation.NOT_YET_ASKED and not (self.given_by and self.given_at):
            raise ValueError("a family's answer needs given_by and given_at")
        if self.share_with and self.participation is not Participation.YES:
            raise ValueError("information can be shared only when the family agreed to take part")
        return self


@event_type("nz.childrensteams.agency.referral_submitted.v1")
class ReferralSubmitted(Event):
    """An agency refers a child. The key and `ce_subject` are the agency's own referral id."""

    agency_referral_id: Annotated[str, Field(min_length=1, max_length=100)]
    agency: AgencyCode
    submitted_at: AwareDatetime
    referrer: Practitioner
    child: ChildDetails
    whanau: list[WhanauMember] = []
    siblings: list[KnownSibling] = []
    reasons: Annotated[list[ReasonCode], Field(min_length=1)]
    reason_text: LongText = ""
    needs: Annotated[list[NeedDomain], Field(min_length=1)]
    child_views: LongText | None = None
    involved_practitioners: list[Practitioner] = []
    preferred_practitioner: PreferredPractitioner | None = None
    consent: Consent
    immediate_danger: bool = False
    danger_details: LongText | None = None
    child_location: Text | None = None

    @model_validator(mode="after")
    def _dates_and_danger(self) -> ReferralSubmitted:
        now = datetime.now(UTC)
        if self.submitted_at > now + CLOCK_SKEW:
            raise ValueError("submitted_at is in the future")
        if self.submitted_at < now - OLDEST_REFERRAL:
            raise ValueError(f"submitted_at is more than {OLDEST_REFERRAL.days} days ago")
        referral_day = self.submitted_at.date()
        born = self.child.date_of_birth
        if born > referral_day:
            raise ValueError("child.date_of_birth is after the referral date")
        if _age_on(born, referral_day) >= 18:
            raise ValueError("the child must be 0-17 on the referral date")
        if self.consent.given_at and self.consent.given_at > self.submitted_at + CLOCK_SKEW:
            raise ValueError("consent.given_at is after the referral was submitted")
        if self.immediate_danger and not (self.danger_details and self.child_location):
            raise ValueError("an immediate-danger referral needs danger_details and child_location")
        return self


def _age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


@event_type("nz.childrensteams.agency.consent_changed.v1")
class ConsentChanged(Event):
    """The family's consent changed, as the referring agency recorded it. Key: the agency's referral id."""

    agency_referral_id: Annotated[str, Field(min_length=1, max_length=100)]
    agency: AgencyCode
    consent: Consent
    withdraw_all_sharing: bool = False


@event_type("nz.childrensteams.agency.more_information_provided.v1")
class MoreInformationProvided(Event):
    """The referrer's answer to the panel's questions."""

    agency_referral_id: Annotated[str, Field(min_length=1, max_length=100)]
    agency: AgencyCode
    answers: Annotated[list[LongText], Field(min_length=1)]


@event_type("nz.childrensteams.agency.referral_withdrawn.v1")
class ReferralWithdrawnByAgency(Event):
    """The referring agency withdraws its referral (e.g. made in error, family moved away)."""

    agency_referral_id: Annotated[str, Field(min_length=1, max_length=100)]
    agency: AgencyCode
    reason: Annotated[str, Field(pattern=r"^[a-z_]{2,40}$")]
