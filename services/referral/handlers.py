"""What the referral service does with the messages it hears: agency referrals, consent changes and withdrawals.

Each handler runs inside the consumer's transaction: its state changes, audit rows and outgoing events commit together.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.referral import storage
from services.referral.domain import (
    OPEN_STATUSES,
    ConsentState,
    Match,
    NotAllowed,
    ReferralStatus,
    after_panel,
    caregiver_keys,
    check_referral,
    child_name_key,
    concern_categories,
    consent_change,
    match_child,
    name_key,
    outcome_of,
    surviving_group,
    withdrawn,
)
from shared.agencies import AGENCIES, sender_problems
from shared.audit import record_access
from shared.events import Event
from shared.events.agency import (
    ChildDetails,
    Consent,
    ConsentChanged,
    MoreInformationProvided,
    ReferralSubmitted,
    ReferralWithdrawnByAgency,
)
from shared.events.assignment import LeadAssigned
from shared.events.concerns import ConcernRaised
from shared.events.panel import MoreInformationRequested, ReferralAccepted, ReferralDeclined, ReferralReconsidered
from shared.events.plans import CaseClosed
from shared.events.referral import (
    ConsentRecorded,
    ConsentUpdated,
    ConsentWithdrawn,
    InvolvedPractitioner,
    Outcome,
    Problem,
    ReferralInformationProvided,
    ReferralLinked,
    ReferralOutcome,
    ReferralReceived,
    ReferralRejected,
    ReferralWithdrawn,
    Sharing,
    SiblingGroupChanged,
)
from shared.messaging.consumer import Consumer
from shared.messaging.envelope import H_CORRELATION, H_ID, H_SUBJECT, Envelope
from shared.messaging.errors import InvalidInput, PermanentError
from shared.messaging.outbox import add_to_outbox
from shared.messaging.topics import agency_of, outcomes_out, referrals_in
from shared.security import Principal

SOURCE = "/services/referral"
INGRESS = [referrals_in(agency) for agency in sorted(AGENCIES)]
STREAM = "referral.events"
DECISIONS = ["panel.events", "assignment.events", "plans.events"]
CONCERNS = "concerns.raised"


def register(consumer: Consumer) -> None:
    """What agencies send on the ingress topic."""
    consumer.handles(ReferralSubmitted)(receive_referral)
    consumer.handles(ConsentChanged)(change_consent)
    consumer.handles(ReferralWithdrawnByAgency)(withdraw_referral)
    consumer.handles(MoreInformationProvided)(receive_answers)


def register_decisions(consumer: Consumer) -> None:
    """The panel's decisions and the lead's assignment, which the referring agency hears about from us."""
    for decision in (ReferralAccepted, ReferralDeclined, MoreInformationRequested, ReferralReconsidered):
        consumer.handles(decision)(record_panel_decision)
    consumer.handles(LeadAssigned)(record_lead_assigned)
    consumer.handles(CaseClosed)(record_case_closed)


async def publish(session: AsyncSession, cause: Envelope | None, event: Event, *, topic: str, subject: str) -> None:
    """Publish what `cause` led to (same journey); a change a person made over HTTP has no cause event."""
    envelope = cause.caused(event, source=SOURCE, subject=subject) if cause else Envelope(event, SOURCE, subject)
    await add_to_outbox(session, envelope, topic=topic)


async def tell_agency(
    session: AsyncSession,
    cause: Envelope | None,
    agency: str,
    agency_referral_id: str,
    outcome: Outcome,
    **details: Any,
) -> None:
    event = ReferralOutcome(agency=agency, agency_referral_id=agency_referral_id, outcome=outcome, **details)
    await publish(session, cause, event, topic=outcomes_out(agency), subject=agency_referral_id)


def agency_system(agency: str) -> Principal:
    """Who an agency's system acts as, for the audit log."""
    return Principal(subject=f"system:{agency}", agency=agency, roles=frozenset({"agency_system"}))


# Intake ------------------------------------------------------------------------------------------------------------


async def receive_referral(session: AsyncSession, envelope: Envelope) -> None:
    referral = envelope.event
    assert isinstance(referral, ReferralSubmitted)
    agency, agency_id = referral.agency, referral.agency_referral_id
    problems = check_referral(referral, sender=agency_of(envelope.topic), source=envelope.source)
    if envelope.subject != agency_id:
        problems.append(Problem(field="ce_subject", problem="must be the agency_referral_id"))
    if problems:
        raise InvalidInput("referral refused", [p.model_dump() for p in problems])

    earlier = await storage.submission(session, agency=agency, agency_referral_id=agency_id)
    if earlier is not None:
        await _resend_outcome(session, envelope, earlier)
        return

    match = await _identify(session, referral.child)
    child_id = match.child.child_id if match else await _register_child(session, referral.child)
    await record_access(
        session, principal=agency_system(agency), action="referral submitted", child_id=child_id, purpose="intake"
    )

    if referral.immediate_danger:
        await _forward_to_hub(session, envelope, referral, child_id, match)
        return

    if match is not None:
        open_referral = await storage.open_referral_of(session, child_id=child_id, open_statuses=OPEN_STATUSES)
        if open_referral is not None:
            await _link_to_open_referral(session, envelope, referral, match, open_referral)
            return
        await _update_child(session, child_id, referral.child)

    referral_id = str(uuid.uuid4())
    if not await storage.add_submission(
        session,
        agency=agency,
        agency_referral_id=agency_id,
        outcome=Outcome.RECEIVED,
        referral_id=referral_id,
        child_id=child_id,
        match_basis=match.basis if match else None,
        needs_confirmation=bool(match and match.needs_confirmation),
    ):
        raise RuntimeError("the same agency referral id is being taken in concurrently; retrying")
    await storage.add_referral(
        session,
        referral_id=referral_id,
        agency=agency,
        agency_referral_id=agency_id,
        child_id=child_id,
        status=ReferralStatus.RECEIVED,
        submitted_at=referral.submitted_at,
        referrer=referral.referrer.model_dump(mode="json"),
        reasons=[r.value for r in referral.reasons],
        reason_text=referral.reason_text,
        needs=[n.value for n in referral.needs],
        child_views=referral.child_views,
        whanau=[m.model_dump(mode="json") for m in referral.whanau],
        siblings=[s.model_dump(mode="json") for s in referral.siblings],
        involved_practitioners=[p.model_dump(mode="json") for p in referral.involved_practitioners],
        preferred_practitioner=referral.preferred_practitioner.model_dump(mode="json")
        if referral.preferred_practitioner
        else None,
    )
    group = await _link_siblings(session, envelope, child_id, referral)
    await _apply_consent(session, envelope, child_id, referral_id, referral.consent, recorded_by=agency)
    await publish(
        session,
        envelope,
        ReferralReceived(
            referral_id=referral_id,
            child_id=child_id,
            agency=agency,
            received_at=datetime.now(UTC),
            reasons=referral.reasons,
            needs=referral.needs,
            participation=referral.consent.participation,
            sibling_group_id=group,
            family_preference=referral.preferred_practitioner is not None,
            preferred_practitioner_id=referral.preferred_practitioner.practitioner_id
            if referral.preferred_practitioner
            else None,
            involved_practitioners=[
                InvolvedPractitioner(practitioner_id=p.id, agency=p.agency, role=p.role)
                for p in referral.involved_practitioners
            ],
            locality=referral.child.locality,
            iwi_affiliated=bool(referral.child.iwi),
        ),
        topic=STREAM,
        subject=child_id,
    )
    await tell_agency(
        session, envelope, agency, agency_id, Outcome.RECEIVED, referral_id=referral_id, child_id=child_id
    )


async def _identify(session: AsyncSession, child: ChildDetails) -> Match | None:
    by_nhi = await storage.child_by_nhi(session, nhi=child.nhi) if child.nhi else None
    namesakes = await storage.children_by_name_and_birth(
        session, name_key=child_name_key(child), date_of_birth=child.date_of_birth
    )
    return match_child(child, by_nhi=by_nhi, by_name_and_birth=namesakes)


async def _register_child(session: AsyncSession, child: ChildDetails) -> str:
    """Mint the stable child id every service will know this child by."""
    child_id = str(uuid.uuid4())
    await storage.add_child(
        session,
        child_id=child_id,
        given_names=child.given_names,
        family_name=child.family_name,
        preferred_name=child.preferred_name,
        name_key=child_name_key(child),
        date_of_birth=child.date_of_birth,
        nhi=child.nhi,
        gender=child.gender,
        iwi=child.iwi,
        school=child.school,
        locality=child.locality,
        sibling_group_id=str(uuid.uuid4()),
    )
    return child_id


async def _update_child(session: AsyncSession, child_id: str, child: ChildDetails) -> None:
    """A returning child: keep what may change (school, locality, iwi); identity fields stay as first confirmed."""
    changes = {
        "school": child.school,
        "locality": child.locality,
        "preferred_name": child.preferred_name,
    }
    await storage.update_child(
        session, child_id=child_id, iwi=child.iwi, **{k: v for k, v in changes.items() if v is not None}
    )


async def _resend_outcome(session: AsyncSession, envelope: Envelope, earlier: Row[Any]) -> None:
    outcome = Outcome(earlier.outcome)
    if outcome is Outcome.RECEIVED and earlier.status is not None:
        outcome = outcome_of(ReferralStatus(earlier.status))
    await tell_agency(
        session,
        envelope,
        earlier.agency,
        earlier.agency_referral_id,
        outcome,
        referral_id=earlier.referral_id,
        child_id=earlier.child_id,
        resent=True,
    )


async def _forward_to_hub(
    session: AsyncSession, envelope: Envelope, referral: ReferralSubmitted, child_id: str, match: Match | None
) -> None:
    """Immediate danger is not a referral: the hub gets a critical concern now, and the agency is told so."""
    concern_id = str(uuid.uuid4())
    await storage.add_submission(
        session,
        agency=referral.agency,
        agency_referral_id=referral.agency_referral_id,
        outcome=Outcome.FORWARDED_TO_HUB,
        child_id=child_id,
        concern_id=concern_id,
        match_basis=match.basis if match else None,
        needs_confirmation=bool(match and match.needs_confirmation),
    )
    child = referral.child
    await publish(
        session,
        envelope,
        ConcernRaised(
            concern_id=concern_id,
            child_id=child_id,
            raised_by="referral",
            agency=referral.agency,
            reporter_name=referral.referrer.name,
            reporter_phone=referral.referrer.contact.phone,
            child_name=f"{child.given_names} {child.family_name}",
            child_date_of_birth=child.date_of_birth.isoformat(),
            child_location=referral.child_location,
            categories=concern_categories(referral.reasons),
            immediate_danger=True,
            details=referral.danger_details or "",
            raised_at=datetime.now(UTC),
        ),
        topic=CONCERNS,
        subject=child_id,
    )
    await tell_agency(
        session, envelope, referral.agency, referral.agency_referral_id, Outcome.FORWARDED_TO_HUB, child_id=child_id
    )


async def _link_to_open_referral(
    session: AsyncSession, envelope: Envelope, referral: ReferralSubmitted, match: Match, open_referral: str
) -> None:
    child_id = match.child.child_id
    await storage.add_submission(
        session,
        agency=referral.agency,
        agency_referral_id=referral.agency_referral_id,
        outcome=Outcome.LINKED_TO_EXISTING,
        referral_id=open_referral,
        child_id=child_id,
        match_basis=match.basis,
        needs_confirmation=match.needs_confirmation,
    )
    await _link_siblings(session, envelope, child_id, referral)
    await publish(
        session,
        envelope,
        ReferralLinked(
            referral_id=open_referral,
            child_id=child_id,
            agency=referral.agency,
            agency_referral_id=referral.agency_referral_id,
            basis=match.basis,
            needs_confirmation=match.needs_confirmation,
        ),
        topic=STREAM,
        subject=child_id,
    )
    await tell_agency(
        session,
        envelope,
        referral.agency,
        referral.agency_referral_id,
        Outcome.LINKED_TO_EXISTING,
        referral_id=open_referral,
        child_id=child_id,
    )


async def _link_siblings(session: AsyncSession, envelope: Envelope, child_id: str, referral: ReferralSubmitted) -> str:
    """Join this child's sibling group with those of children sharing a caregiver or named as siblings either way.

    Returns the child's sibling group id afterwards; publishes the group when it changed.
    """
    keys = caregiver_keys(referral.whanau)
    related = await storage.children_with_caregivers(session, keys=keys)
    named = []
    for sibling in referral.siblings:
        key = name_key(sibling.given_names, sibling.family_name)
        named.append({"name_key": key, "date_of_birth": sibling.date_of_birth, "nhi": sibling.nhi})
        if sibling.nhi and (known := await storage.child_by_nhi(session, nhi=sibling.nhi)):
            related.add(known.child_id)
        elif sibling.date_of_birth:
            related |= {
                c.child_id
                for c in await storage.children_by_name_and_birth(
                    session, name_key=key, date_of_birth=sibling.date_of_birth
                )
            }
    child = referral.child
    related |= await storage.children_naming(
        session, name_key=child_name_key(child), date_of_birth=child.date_of_birth, nhi=child.nhi
    )
    await storage.add_caregivers(session, child_id=child_id, keys=keys)
    await storage.add_named_siblings(session, child_id=child_id, named=named)

    await storage.lock_children(session, child_ids=related | {child_id})
    groups = await storage.groups_of(session, child_ids=related | {child_id})
    own_group = groups[child_id]
    if len(set(groups.values())) == 1:
        return own_group
    survivor = surviving_group(groups.values())
    await storage.move_to_group(session, from_groups=set(groups.values()) - {survivor}, to_group=survivor)
    members = await storage.sibling_group_members(session, group_ids={survivor})
    await publish(
        session,
        envelope,
        SiblingGroupChanged(sibling_group_id=survivor, child_ids=sorted(members)),
        topic=STREAM,
        subject=child_id,
    )
    return survivor


# Consent ------------------------------------------------------------------------------------------------------------


async def _apply_consent(
    session: AsyncSession,
    envelope: Envelope | None,
    child_id: str,
    referral_id: str,
    consent: Consent,
    *,
    recorded_by: str,
    withdraw_all_sharing: bool = False,
) -> ConsentState:
    current = await storage.current_consent(session, child_id=child_id)
    state, kind = consent_change(current, consent, withdraw_all_sharing=withdraw_all_sharing)
    recorded_at = await storage.add_consent(
        session,
        child_id=child_id,
        referral_id=referral_id,
        state=state,
        given_by=consent.given_by,
        given_by_relationship=consent.given_by_relationship,
        given_at=consent.given_at,
        recorded_by=recorded_by,
    )
    event_class = {"recorded": ConsentRecorded, "updated": ConsentUpdated, "withdrawn": ConsentWithdrawn}[kind]
    event = event_class(
        child_id=child_id,
        referral_id=referral_id,
        version=state.version,
        participation=state.participation,
        sharing=[Sharing(agency=a, purposes=sorted(p)) for a, p in state.sharing],
        recorded_at=recorded_at,
    )
    await publish(session, envelope, event, topic=STREAM, subject=child_id)
    return state


async def change_consent(session: AsyncSession, envelope: Envelope) -> None:
    change = envelope.event
    assert isinstance(change, ConsentChanged)
    row = await _agencys_referral(session, envelope, change.agency, change.agency_referral_id)
    await record_access(
        session,
        principal=agency_system(change.agency),
        action="consent changed",
        child_id=row.child_id,
        purpose="consent",
    )
    await record_consent_change(
        session,
        envelope,
        row,
        change.consent,
        withdraw_all_sharing=change.withdraw_all_sharing,
        by=change.agency,
    )


async def record_consent_change(
    session: AsyncSession,
    cause: Envelope | None,
    row: Row[Any],
    consent: Consent,
    *,
    withdraw_all_sharing: bool,
    by: str,
) -> ConsentState:
    """A changed consent, from the referring agency's system or from the lead professional over HTTP (no cause event).
    A withdrawal is published at once; a family that no longer takes part withdraws an open referral."""
    state = await _apply_consent(
        session,
        cause,
        row.child_id,
        row.referral_id,
        consent,
        recorded_by=by,
        withdraw_all_sharing=withdraw_all_sharing,
    )
    if state.participation.value == "no" and row.status in OPEN_STATUSES:
        await _withdraw(session, cause, row, reason="family_declined")
    return state


async def withdraw_referral(session: AsyncSession, envelope: Envelope) -> None:
    withdrawal = envelope.event
    assert isinstance(withdrawal, ReferralWithdrawnByAgency)
    row = await _agencys_referral(session, envelope, withdrawal.agency, withdrawal.agency_referral_id)
    await record_access(
        session,
        principal=agency_system(withdrawal.agency),
        action="referral withdrawn",
        child_id=row.child_id,
        purpose="intake",
    )
    await _withdraw(session, envelope, row, reason=withdrawal.reason)


async def _withdraw(session: AsyncSession, envelope: Envelope | None, row: Row[Any], *, reason: str) -> None:
    try:
        status = withdrawn(ReferralStatus(row.status))
    except NotAllowed as refusal:
        raise InvalidInput("withdrawal refused", [{"field": "agency_referral_id", "problem": str(refusal)}]) from None
    referral_id, child_id = row.referral_id, row.child_id
    await storage.set_status(session, referral_id=referral_id, status=status)
    await publish(
        session,
        envelope,
        ReferralWithdrawn(referral_id=referral_id, child_id=child_id, reason=reason),
        topic=STREAM,
        subject=child_id,
    )
    await tell_agency(
        session,
        envelope,
        row.agency,
        row.agency_referral_id,
        Outcome.WITHDRAWN,
        referral_id=referral_id,
        child_id=child_id,
    )


async def _agencys_referral(
    session: AsyncSession, envelope: Envelope, agency: str, agency_referral_id: str
) -> Row[Any]:
    problems = sender_problems(sender=agency_of(envelope.topic), source=envelope.source, named=agency)
    if problems:
        raise InvalidInput("refused", problems)
    row = await storage.referral_by_agency_id(session, agency=agency, agency_referral_id=agency_referral_id)
    if row is None:
        raise InvalidInput(
            "refused", [{"field": "agency_referral_id", "problem": "no referral with this id from this agency"}]
        )
    return row


# The panel ---------------------------------------------------------------------------------------------------------


async def record_panel_decision(session: AsyncSession, envelope: Envelope) -> None:
    decision = envelope.event
    assert isinstance(decision, ReferralAccepted | ReferralDeclined | MoreInformationRequested | ReferralReconsidered)
    row = await storage.referral(session, referral_id=decision.referral_id, for_update=True)
    if row is None:
        raise PermanentError("the panel decided on a referral this service never issued")
    details: dict[str, Any] = {}
    match decision:
        case ReferralAccepted():
            status = after_panel(ReferralStatus(row.status), "accepted")
        case ReferralDeclined():
            status = after_panel(ReferralStatus(row.status), "declined")
            details["recommendations"] = decision.recommendations_to_referrer
        case MoreInformationRequested():
            status = after_panel(ReferralStatus(row.status), "more_information")
            details["questions"] = decision.questions
        case ReferralReconsidered():
            status = after_panel(ReferralStatus(row.status), "reconsidered")
    if status == row.status:
        return
    await storage.set_status(session, referral_id=row.referral_id, status=status)
    await tell_agency(
        session,
        envelope,
        row.agency,
        row.agency_referral_id,
        outcome_of(status),
        referral_id=row.referral_id,
        child_id=row.child_id,
        **details,
    )


async def record_lead_assigned(session: AsyncSession, envelope: Envelope) -> None:
    assigned = envelope.event
    assert isinstance(assigned, LeadAssigned)
    row = await storage.referral(session, referral_id=assigned.referral_id, for_update=True)
    if row is None:
        raise PermanentError("a lead was assigned for a referral this service never issued")
    if row.status in (ReferralStatus.WITHDRAWN, ReferralStatus.CLOSED):
        return
    await storage.set_status(
        session,
        referral_id=row.referral_id,
        status=ReferralStatus.LEAD_ASSIGNED,
        lead_practitioner_id=assigned.practitioner_id,
    )
    await tell_agency(
        session,
        envelope,
        row.agency,
        row.agency_referral_id,
        Outcome.LEAD_PROFESSIONAL_ASSIGNED,
        referral_id=row.referral_id,
        child_id=row.child_id,
    )


async def record_case_closed(session: AsyncSession, envelope: Envelope) -> None:
    closed = envelope.event
    assert isinstance(closed, CaseClosed)
    row = await storage.referral(session, referral_id=closed.referral_id, for_update=True)
    if row is None:
        raise PermanentError("a case closed for a referral this service never issued")
    if row.status == ReferralStatus.CLOSED:
        return
    await storage.set_status(session, referral_id=row.referral_id, status=ReferralStatus.CLOSED)
    await tell_agency(
        session,
        envelope,
        row.agency,
        row.agency_referral_id,
        Outcome.CASE_CLOSED,
        referral_id=row.referral_id,
        child_id=row.child_id,
    )


async def receive_answers(session: AsyncSession, envelope: Envelope) -> None:
    answered = envelope.event
    assert isinstance(answered, MoreInformationProvided)
    row = await _agencys_referral(session, envelope, answered.agency, answered.agency_referral_id)
    if row.status != ReferralStatus.MORE_INFORMATION_NEEDED:
        raise InvalidInput(
            "answers refused",
            [{"field": "agency_referral_id", "problem": "the panel has not asked for more information"}],
        )
    await record_access(
        session,
        principal=agency_system(answered.agency),
        action="more information provided",
        child_id=row.child_id,
        purpose="panel review",
    )
    provided_at = await storage.add_answers(session, referral_id=row.referral_id, given=answered.answers)
    await storage.set_status(session, referral_id=row.referral_id, status=ReferralStatus.RECEIVED)
    await publish(
        session,
        envelope,
        ReferralInformationProvided(referral_id=row.referral_id, child_id=row.child_id, provided_at=provided_at),
        topic=STREAM,
        subject=row.child_id,
    )


# Rejections ----------------------------------------------------------------------------------------------------------


async def reject_submission(session: AsyncSession, topic: str, headers: dict[str, str], error: InvalidInput) -> None:
    """Input on an agency's ingress topic that cannot be taken in: that agency hears every reason."""
    agency = agency_of(topic)
    agency_referral_id = headers.get(H_SUBJECT) or "unknown"
    problems = [Problem(field=e["field"], problem=e["problem"]) for e in error.errors] or [
        Problem(field="message", problem=error.reason)
    ]
    # Both point straight at the agency's message, so the agency can match the rejection by causation id.
    cause_id = headers.get(H_ID, "")
    correlation_id = headers.get(H_CORRELATION) or cause_id
    rejected = ReferralRejected(agency=agency, agency_referral_id=agency_referral_id, problems=problems)
    told = ReferralOutcome(
        agency=agency, agency_referral_id=agency_referral_id, outcome=Outcome.REJECTED, problems=problems
    )
    for event, destination in ((rejected, STREAM), (told, outcomes_out(agency))):
        envelope = Envelope(
            event=event,
            source=SOURCE,
            subject=agency_referral_id,
            correlation_id=correlation_id,
            causation_id=cause_id,
        )
        await add_to_outbox(session, envelope, topic=destination)
