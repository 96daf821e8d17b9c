"""The Children's Hub's events: concerns in, screenings and escalations out, acknowledgements back.

Domain events (`nz.childrensteams.hub.*`) travel on `hub.events` and carry ids, codes and dates only. Escalations to the
national contact centre and Police are egress to outside systems that must act on them at once, so they carry who the
child is, where, and who raised the concern (their topics are readable by those systems only).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from shared.events.agency import CLOCK_SKEW, NHI, AgencyCode, AwareDatetime, Contact, LongText, Part, Text
from shared.events.catalogue import Event, event_type
from shared.events.codes import ConcernCategory, NeedDomain
from shared.events.referral import Problem

Priority = Literal["critical", "very_urgent", "urgent", "childrens_team", "no_further_action"]
Target = Literal["contact_centre", "police", "duty_manager"]


# What a concern carries: the same shape over HTTP and on agency.<code>.concerns.in ---------------------------------


class ConcernChild(Part):
    """The child: an existing child id, or enough to find them (names, and a date of birth when known)."""

    child_id: Text | None = None
    given_names: Text | None = None
    family_name: Text | None = None
    date_of_birth: date | None = None
    nhi: NHI | None = None
    locality: Text | None = None

    @model_validator(mode="after")
    def _identifiable(self) -> ConcernChild:
        if not self.child_id and not (self.given_names and self.family_name):
            raise ValueError("a child needs a child_id, or given_names and family_name")
        if self.date_of_birth and self.date_of_birth > datetime.now(UTC).date():
            raise ValueError("child.date_of_birth is in the future")
        return self


class Reporter(Part):
    """Who raised the concern, so the hub (and the contact centre) can call them back."""

    name: Text
    agency: AgencyCode
    role: Text | None = None
    contact: Contact = Contact()


class Caregiver(Part):
    name: Text
    relationship: Text
    lives_with_child: bool = True
    contact: Contact = Contact()


class ConcernReport(Part):
    """A concern about a child, with the facts the screening rules read (see docs/screening-rules.md)."""

    child: ConcernChild
    reporter: Reporter
    categories: Annotated[list[ConcernCategory], Field(min_length=1)]
    what_was_seen: Annotated[str, Field(min_length=1, max_length=4000)]
    seen_at: AwareDatetime
    immediate_danger: bool
    life_in_danger: bool = False
    child_location: Text | None = None
    caregivers: list[Caregiver] = []
    injury: Literal["none", "minor", "serious"] = "none"
    # None: the reporter does not know.
    alleged_harmer_has_access: bool | None = None
    child_without_care: bool = False
    self_harm_plan: bool = False
    caregiver_protective: Literal["yes", "no", "unknown"] = "unknown"
    support_needs: list[NeedDomain] = []

    @model_validator(mode="after")
    def _when_and_where(self) -> ConcernReport:
        if self.seen_at > datetime.now(UTC) + CLOCK_SKEW:
            raise ValueError("seen_at is in the future")
        if self.life_in_danger and not self.immediate_danger:
            raise ValueError("a life in danger is immediate danger: set immediate_danger")
        if self.immediate_danger and not self.child_location:
            raise ValueError("a concern of immediate danger needs child_location (where the child is now)")
        return self


@event_type("nz.childrensteams.agency.concern_submitted.v1")
class ConcernSubmitted(Event):
    """An agency's system raises a concern. The key and `ce_subject` are the agency's own concern id."""

    agency_concern_id: Annotated[str, Field(min_length=1, max_length=100)]
    agency: AgencyCode
    submitted_at: AwareDatetime
    concern: ConcernReport


@event_type("nz.childrensteams.hub.concern_outcome.v1")
class ConcernOutcome(Event):
    """What became of an agency's concern: `received` (with the hub's concern id) or `rejected` with every reason."""

    agency: str
    agency_concern_id: str
    outcome: Literal["received", "rejected"]
    concern_id: str | None = None
    problems: list[Problem] = []


# The hub's domain events on hub.events ---------------------------------------------------------------------------


@event_type("nz.childrensteams.hub.concern_screened.v1")
class ConcernScreened(Event):
    """A concern's response priority: from the screening tool at intake, then as a hub social worker confirms it."""

    concern_id: str
    child_id: str | None
    priority: Priority
    rules_fired: list[str]
    screened_at: datetime
    confirmed_by_human: bool = False


@event_type("nz.childrensteams.hub.concern_referred.v1")
class ConcernReferred(Event):
    """A concern suited to a Children's Team became a referral (agency `childrens-hub`)."""

    concern_id: str
    child_id: str | None
    agency_referral_id: str
    referred_at: datetime


@event_type("nz.childrensteams.hub.escalation_started.v1")
class EscalationStarted(Event):
    escalation_id: str
    concern_id: str
    child_id: str | None
    targets: list[Target]
    steps_in_policy: int
    started_at: datetime


@event_type("nz.childrensteams.hub.escalation_step_taken.v1")
class EscalationStepTaken(Event):
    """No acknowledgement by the deadline: the next step of the frozen policy was taken (a re-escalation)."""

    escalation_id: str
    concern_id: str
    child_id: str | None
    step: int
    round: int
    targets: list[Target]
    taken_at: datetime


@event_type("nz.childrensteams.hub.duty_manager_notified.v1")
class DutyManagerNotified(Event):
    """The hub duty manager is told an escalation is still unacknowledged (their console and pager read this)."""

    notification_id: str
    escalation_id: str
    concern_id: str
    child_id: str | None
    step: int
    notified_at: datetime


@event_type("nz.childrensteams.hub.escalation_acknowledged.v1")
class EscalationAcknowledged(Event):
    escalation_id: str
    concern_id: str
    child_id: str | None
    acknowledged_by: str
    acknowledged_at: datetime
    seconds_to_acknowledge: float


@event_type("nz.childrensteams.hub.escalation_exhausted.v1")
class EscalationExhausted(Event):
    """Every step of the policy was taken and nobody acknowledged: people must act by hand."""

    escalation_id: str
    concern_id: str
    child_id: str | None
    steps_taken: int
    exhausted_at: datetime


@event_type("nz.childrensteams.hub.escalation_stood_down.v1")
class EscalationStoodDown(Event):
    """A duty manager lowered the concern's priority below critical: the chain stops."""

    escalation_id: str
    concern_id: str
    child_id: str | None
    stood_down_by: str
    stood_down_at: datetime


@event_type("nz.childrensteams.hub.escalation_overdue.v1")
class EscalationOverdue(Event):
    """The watchdog's alarm: a step of an open escalation is late beyond the bound (the scheduler stalled or failed)."""

    escalation_id: str
    concern_id: str
    step: int
    reason: Literal["step_overdue"]
    due_at: datetime
    detected_at: datetime


# Egress to the national contact centre and Police ----------------------------------------------------------------


class _Escalation(Event):
    """What the contact centre (or Police) needs to act without calling back. `notification_id` is the idempotency
    key: a step sent twice (a relay retry) carries the same one, and the same `ce_id`."""

    notification_id: str
    escalation_id: str
    concern_id: str
    step: int
    round: int
    priority: Priority
    rules_fired: list[str]
    child_id: str | None
    child_name: str | None
    child_date_of_birth: date | None
    child_location: str | None
    categories: list[ConcernCategory]
    immediate_danger: bool
    life_in_danger: bool
    what_was_seen: LongText
    reporter_name: str | None
    reporter_agency: str
    reporter_phone: str | None
    raised_at: datetime
    escalated_at: datetime
    acknowledge_by: datetime


@event_type("nz.childrensteams.escalation.contact_centre_notified.v1")
class EscalationToContactCentre(_Escalation):
    pass


@event_type("nz.childrensteams.escalation.police_notified.v1")
class EscalationToPolice(_Escalation):
    pass


@event_type("nz.childrensteams.contactcentre.escalation_acknowledged.v1")
class ContactCentreAcknowledgement(Event):
    """The national contact centre took the escalation: a person there is acting on it."""

    escalation_id: Annotated[str, Field(min_length=1, max_length=100)]
    notification_id: Annotated[str, Field(min_length=1, max_length=200)]
    acknowledged_by: Text
    acknowledged_at: AwareDatetime
