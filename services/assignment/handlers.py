"""How the assignment service finds a lead professional: from the events it hears, through proposals to managers.

A child becomes ready when the panel has accepted and the family has agreed to take part (in either order). The best
candidate is proposed to their manager with a deadline (a durable timer); a decline, a timeout or a vanished slot moves
to the next candidate in the same round; a reassignment starts a new round without the current lead.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.assignment import storage
from services.assignment.domain import ChildNeeds, choose, ready_to_match
from shared.events import Event
from shared.events.assignment import LeadAssigned, LeadDeclined, LeadProposed, NoLeadAvailable
from shared.events.codes import NeedDomain
from shared.events.panel import ReferralAccepted
from shared.events.plans import CaseClosed
from shared.events.referral import (
    ConsentRecorded,
    ConsentUpdated,
    ConsentWithdrawn,
    ReferralReceived,
    ReferralWithdrawn,
    SiblingGroupChanged,
)
from shared.messaging.consumer import Consumer
from shared.messaging.envelope import Envelope
from shared.messaging.outbox import add_to_outbox
from shared.timers import Timer, cancel, schedule
from shared.workdays import add_working_days

SOURCE = "/services/assignment"
STREAM = "assignment.events"
HEARS = ["referral.events", "panel.events", "plans.events"]
PROPOSAL_DEADLINE = "proposal_deadline"


class ChildNotKnownYet(Exception):
    """The panel's word arrived before the referral's: retried until it has."""


async def publish(session: AsyncSession, child: Row[Any], event: Event) -> None:
    envelope = Envelope(event=event, source=SOURCE, subject=child.child_id, correlation_id=child.correlation_id)
    await add_to_outbox(session, envelope, topic=STREAM)


class Matcher:
    """Finds and proposes leads; `confirmation_days` is the managers' window in NZ working days."""

    def __init__(self, *, confirmation_days: int) -> None:
        self.confirmation_days = confirmation_days

    def register(self, consumer: Consumer) -> None:
        consumer.handles(ReferralReceived)(self.note_referral)
        for consent in (ConsentRecorded, ConsentUpdated, ConsentWithdrawn):
            consumer.handles(consent)(self.note_consent)
        consumer.handles(SiblingGroupChanged)(self.note_siblings)
        consumer.handles(ReferralAccepted)(self.note_acceptance)
        consumer.handles(ReferralWithdrawn)(self.note_withdrawal)
        consumer.handles(CaseClosed)(self.note_case_closed)

    @property
    def timers(self) -> dict[str, Any]:
        return {PROPOSAL_DEADLINE: self.deadline_passed}

    # What the service hears ------------------------------------------------------------------------------------

    async def note_referral(self, session: AsyncSession, envelope: Envelope) -> None:
        received = envelope.event
        assert isinstance(received, ReferralReceived)
        await storage.upsert_child(
            session,
            child_id=received.child_id,
            referral_id=received.referral_id,
            sibling_group_id=received.sibling_group_id,
            locality=received.locality,
            iwi_affiliated=received.iwi_affiliated,
            involved_practitioner_ids=[p.practitioner_id for p in received.involved_practitioners],
            preferred_practitioner_id=received.preferred_practitioner_id,
            participation=received.participation,
            correlation_id=envelope.correlation_id,
        )

    async def note_consent(self, session: AsyncSession, envelope: Envelope) -> None:
        consent = envelope.event
        assert isinstance(consent, ConsentRecorded)
        if await storage.set_child(session, child_id=consent.child_id, participation=consent.participation):
            await self.match_if_ready(session, consent.child_id)

    async def note_siblings(self, session: AsyncSession, envelope: Envelope) -> None:
        group = envelope.event
        assert isinstance(group, SiblingGroupChanged)
        for child_id in group.child_ids:
            await storage.set_child(session, child_id=child_id, sibling_group_id=group.sibling_group_id)

    async def note_acceptance(self, session: AsyncSession, envelope: Envelope) -> None:
        accepted = envelope.event
        assert isinstance(accepted, ReferralAccepted)
        changes: dict[str, Any] = {"accepted": True, "needs_profile": [n.value for n in accepted.needs_profile]}
        if accepted.preferred_practitioner_id:
            changes["preferred_practitioner_id"] = accepted.preferred_practitioner_id
        if not await storage.set_child(session, child_id=accepted.child_id, **changes):
            raise ChildNotKnownYet(accepted.child_id)
        await self.match_if_ready(session, accepted.child_id)

    async def note_withdrawal(self, session: AsyncSession, envelope: Envelope) -> None:
        withdrawn = envelope.event
        assert isinstance(withdrawn, ReferralWithdrawn)
        if not await storage.set_child(session, child_id=withdrawn.child_id, withdrawn=True):
            return
        if (open_proposal := await storage.open_proposal(session, child_id=withdrawn.child_id)) is not None:
            await storage.set_proposal(
                session, proposal_id=open_proposal.proposal_id, status="ended", reason="withdrawn"
            )
            await cancel(session, kind=PROPOSAL_DEADLINE, key=open_proposal.proposal_id)

    async def note_case_closed(self, session: AsyncSession, envelope: Envelope) -> None:
        """The case ended: the lead's slot is free again."""
        closed = envelope.event
        assert isinstance(closed, CaseClosed)
        child = await storage.child(session, child_id=closed.child_id)
        if child is None or child.lead_practitioner_id is None:
            return
        await storage.release_slot(session, practitioner_id=child.lead_practitioner_id)
        await storage.set_child(session, child_id=closed.child_id, lead_practitioner_id=None, lead_manager_id=None)

    # Matching ----------------------------------------------------------------------------------------------------

    async def match_if_ready(self, session: AsyncSession, child_id: str) -> None:
        child = await storage.child(session, child_id=child_id)
        assert child is not None
        ready = ready_to_match(
            accepted=child.accepted,
            participation=child.participation,
            has_lead=child.lead_practitioner_id is not None,
            withdrawn=child.withdrawn,
        )
        if ready and await storage.open_proposal(session, child_id=child_id) is None:
            round_number = await storage.round_of(session, child_id=child_id)
            if round_number == 0:
                await self.propose_next(session, child, round_number=1, reason="first assignment")

    async def propose_next(
        self,
        session: AsyncSession,
        child: Row[Any],
        *,
        round_number: int,
        reason: str,
        exclude: frozenset[str] = frozenset(),
    ) -> None:
        """Propose the best candidate not yet tried in this round, or tell the panel that nobody is left."""
        tried = await storage.tried_in_round(session, child_id=child.child_id, round_number=round_number)
        needs = ChildNeeds(
            needs_profile=frozenset(NeedDomain(n) for n in child.needs_profile or []),
            locality=child.locality,
            iwi_affiliated=child.iwi_affiliated,
            involved_practitioner_ids=frozenset(child.involved_practitioner_ids),
            preferred_practitioner_id=child.preferred_practitioner_id,
        )
        sibling_lead = await storage.sibling_lead(
            session, child_id=child.child_id, sibling_group_id=child.sibling_group_id
        )
        choice = choose(
            await storage.all_practitioners(session),
            needs,
            sibling_lead_id=sibling_lead,
            excluded=frozenset(tried) | exclude,
        )
        if not choice.candidates:
            await publish(
                session,
                child,
                NoLeadAvailable(
                    child_id=child.child_id, referral_id=child.referral_id, reasons=choice.reasons_if_empty
                ),
            )
            return
        top = choice.candidates[0]
        proposal_id = str(uuid.uuid4())
        respond_by = add_working_days(datetime.now(UTC), self.confirmation_days)
        await storage.add_proposal(
            session,
            proposal_id=proposal_id,
            child_id=child.child_id,
            round=round_number,
            practitioner_id=top.practitioner_id,
            manager_id=top.manager_id,
            score=top.total,
            parts=top.explain(),
            basis=top.basis,
            sibling_exception=choice.sibling_exception,
            status="proposed",
            reason=reason,
            respond_by=respond_by,
        )
        await schedule(session, kind=PROPOSAL_DEADLINE, key=proposal_id, due_at=respond_by)
        await publish(
            session,
            child,
            LeadProposed(
                proposal_id=proposal_id,
                child_id=child.child_id,
                referral_id=child.referral_id,
                practitioner_id=top.practitioner_id,
                manager_id=top.manager_id,
                score=top.total,
                basis=top.basis,
                respond_by=respond_by,
            ),
        )

    async def move_on(self, session: AsyncSession, proposal: Row[Any], *, status: str, reason: str, by: str) -> None:
        """A proposal that will not be confirmed: record why, tell everyone, and try the next candidate."""
        await storage.set_proposal(
            session, proposal_id=proposal.proposal_id, status=status, decided_by=by, decided_at=datetime.now(UTC)
        )
        await cancel(session, kind=PROPOSAL_DEADLINE, key=proposal.proposal_id)
        child = await storage.child(session, child_id=proposal.child_id)
        assert child is not None
        await publish(
            session,
            child,
            LeadDeclined(
                proposal_id=proposal.proposal_id,
                child_id=proposal.child_id,
                practitioner_id=proposal.practitioner_id,
                reason=reason,
            ),
        )
        exclude = frozenset({child.lead_practitioner_id}) if child.lead_practitioner_id else frozenset()
        await self.propose_next(
            session, child, round_number=proposal.round, reason=proposal.reason or "", exclude=exclude
        )

    async def confirm(self, session: AsyncSession, proposal: Row[Any], *, manager_id: str) -> bool:
        """Assign the lead and count the case in one transaction. False if the last slot went meanwhile."""
        if not await storage.take_slot(session, practitioner_id=proposal.practitioner_id):
            await self.move_on(session, proposal, status="no_capacity", reason="no_capacity_left", by=manager_id)
            return False
        child = await storage.child(session, child_id=proposal.child_id)
        assert child is not None
        previous = child.lead_practitioner_id
        if previous and previous != proposal.practitioner_id:
            await storage.release_slot(session, practitioner_id=previous)
        now = datetime.now(UTC)
        await storage.set_proposal(
            session, proposal_id=proposal.proposal_id, status="confirmed", decided_by=manager_id, decided_at=now
        )
        await storage.set_child(
            session,
            child_id=proposal.child_id,
            lead_practitioner_id=proposal.practitioner_id,
            lead_manager_id=proposal.manager_id,
        )
        await cancel(session, kind=PROPOSAL_DEADLINE, key=proposal.proposal_id)
        lead = await storage.practitioner(session, practitioner_id=proposal.practitioner_id)
        await publish(
            session,
            child,
            LeadAssigned(
                proposal_id=proposal.proposal_id,
                child_id=proposal.child_id,
                referral_id=child.referral_id,
                practitioner_id=proposal.practitioner_id,
                manager_id=proposal.manager_id,
                assigned_at=now,
                previous_practitioner_id=previous if previous != proposal.practitioner_id else None,
                reassignment_reason=proposal.reason if previous else None,
                lead_capacity=lead.max_caseload if lead is not None else None,
            ),
        )
        return True

    async def deadline_passed(self, session: AsyncSession, timer: Timer) -> None:
        proposal = await storage.proposal(session, proposal_id=timer.key)
        if proposal is None or proposal.status != "proposed":
            return
        await self.move_on(session, proposal, status="timed_out", reason="no_answer_by_deadline", by="deadline")
