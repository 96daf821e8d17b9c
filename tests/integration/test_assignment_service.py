"""Finding a lead professional on the real broker and database: referral → panel → assignment → manager."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from services.assignment.handlers import PROPOSAL_DEADLINE
from shared.events.agency import ConsentChanged
from shared.events.assignment import LeadAssigned, LeadDeclined, LeadProposed
from shared.events.referral import ConsentWithdrawn, Outcome, ReferralOutcome
from shared.messaging.topics import referrals_in
from tests.conftest import eventually
from tests.support.kafka import AgencySystem, TopicReader
from tests.support.referrals import make_referral
from tests.support.services import RunningService, bearer

ADMIN = bearer("admin-1", "childrens-team", "administrator")
PANEL = bearer("panel-1", "childrens-team", "panel_member")


@pytest.fixture
async def leads(kafka_bootstrap: str) -> AsyncIterator[TopicReader]:
    async with TopicReader(kafka_bootstrap, "assignment.events") as reader:
        yield reader


@pytest.fixture
def services(
    referral_service: RunningService, panel_service: RunningService, assignment_service: RunningService
) -> RunningService:
    return assignment_service


async def add_practitioner(assignment: RunningService, **overrides: Any) -> str:
    pid = f"prac-{uuid.uuid4().hex[:8]}"
    body = {
        "name": "Test Practitioner",
        "agency": "health-nz",
        "discipline": "social worker",
        "needs": ["education", "parenting_capacity"],
        "locality": "Gisborne",
        "max_caseload": 10,
        "manager_id": f"mgr-{pid}",
    } | overrides
    response = await assignment.api.put(f"/practitioners/{pid}", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    return pid


def manager_of(pid: str) -> dict[str, str]:
    return bearer(f"mgr-{pid}", "health-nz", "manager")


def involved(*pids: str) -> list[dict[str, str]]:
    return [{"id": pid, "name": "Known Practitioner", "role": "social worker", "agency": "health-nz"} for pid in pids]


async def refer_and_accept(
    agency: AgencySystem, outcomes: TopicReader, panel: RunningService, **overrides: Any
) -> tuple[Any, str, str]:
    referral = make_referral(**overrides)
    await agency.send(referrals_in("health-nz"), referral, agency="health-nz", subject=referral.agency_referral_id)
    [told] = await outcomes.events(ReferralOutcome, lambda e: e.event.agency_referral_id == referral.agency_referral_id)
    referral_id, child_id = told.event.referral_id, told.event.child_id

    async def queued() -> bool:
        queue = (await panel.api.get("/queue", headers=PANEL)).json()
        return any(item["referral_id"] == referral_id for item in queue)

    await eventually(queued)
    accept = {"decision": "accept", "reason": "Meets threshold", "needs_profile": ["education", "parenting_capacity"]}
    response = await panel.api.post(f"/reviews/{referral_id}/decision", json=accept, headers=PANEL)
    assert response.status_code == 201, response.text
    return referral, referral_id, child_id


async def test_accepted_and_agreed_a_child_gets_a_proposed_lead_whom_the_manager_confirms(
    services: RunningService,
    panel_service: RunningService,
    agency: AgencySystem,
    outcomes: TopicReader,
    leads: TopicReader,
) -> None:
    known = await add_practitioner(services)
    referral, _, child_id = await refer_and_accept(
        agency, outcomes, panel_service, involved_practitioners=involved(known)
    )

    [proposed] = await leads.events(LeadProposed, lambda e: e.subject == child_id)
    assert (proposed.event.practitioner_id, proposed.event.manager_id) == (known, f"mgr-{known}")
    tasks = (await services.api.get("/proposals", headers=manager_of(known))).json()
    [task] = [t for t in tasks if t["proposal_id"] == proposed.event.proposal_id]
    assert {p["part"] for p in task["parts"]} >= {"relationship", "skills", "caseload", "locality"}

    confirmed = await services.api.post(f"/proposals/{task['proposal_id']}/confirm", headers=manager_of(known))
    assert confirmed.status_code == 200, confirmed.text
    [assigned] = await leads.events(LeadAssigned, lambda e: e.subject == child_id)
    assert (assigned.event.practitioner_id, assigned.event.manager_id) == (known, f"mgr-{known}")
    assert assigned.event.lead_capacity == 10  # the practitioner's maximum caseload, for reporting
    directory = (await services.api.get("/practitioners", headers=ADMIN)).json()
    assert next(p for p in directory if p["practitioner_id"] == known)["caseload"] == 1
    await outcomes.events(  # the referrer is told
        ReferralOutcome,
        lambda e: (
            (e.event.agency_referral_id, e.event.outcome)
            == (referral.agency_referral_id, Outcome.LEAD_PROFESSIONAL_ASSIGNED)
        ),
    )


async def test_no_lead_is_sought_until_the_family_agrees(
    services: RunningService,
    panel_service: RunningService,
    agency: AgencySystem,
    outcomes: TopicReader,
    leads: TopicReader,
) -> None:
    known = await add_practitioner(services)
    not_asked: dict[str, Any] = {"participation": "not_yet_asked", "share_with": [], "given_by": None, "given_at": None}
    referral, _, child_id = await refer_and_accept(
        agency, outcomes, panel_service, involved_practitioners=involved(known), consent=not_asked
    )

    async def accepted_here() -> bool:
        async with services.runtime.sessions() as session:
            return bool(
                await session.scalar(text("SELECT accepted FROM children WHERE child_id = :id"), {"id": child_id})
            )

    await eventually(accepted_here)
    async with services.runtime.sessions() as session:
        assert await session.scalar(text("SELECT count(*) FROM proposals WHERE child_id = :id"), {"id": child_id}) == 0

    agreed = referral.consent.model_dump() | {
        "participation": "yes",
        "given_by": "Mum",
        "given_at": "2026-11-22T09:00:00+13:00",
    }
    change = ConsentChanged(agency_referral_id=referral.agency_referral_id, agency="health-nz", consent=agreed)
    await agency.send(referrals_in("health-nz"), change, agency="health-nz", subject=referral.agency_referral_id)
    [proposed] = await leads.events(LeadProposed, lambda e: e.subject == child_id)
    assert proposed.event.practitioner_id == known


async def test_a_managers_decline_and_a_missed_deadline_each_move_to_the_next_candidate(
    services: RunningService,
    panel_service: RunningService,
    agency: AgencySystem,
    outcomes: TopicReader,
    leads: TopicReader,
) -> None:
    first = await add_practitioner(services, needs=["education", "parenting_capacity"])
    second = await add_practitioner(services, needs=["education"])
    _, _, child_id = await refer_and_accept(
        agency, outcomes, panel_service, involved_practitioners=involved(first, second)
    )

    [to_first] = await leads.events(LeadProposed, lambda e: e.subject == child_id)
    assert to_first.event.practitioner_id == first
    refused = await services.api.post(
        f"/proposals/{to_first.event.proposal_id}/decline", json={"reason": "On leave"}, headers=manager_of(first)
    )
    assert refused.status_code == 200
    [declined] = await leads.events(LeadDeclined, lambda e: e.subject == child_id)
    assert declined.event.reason == "declined_by_manager"
    proposals = await leads.events(LeadProposed, lambda e: e.subject == child_id, count=2)
    to_second = proposals[1]
    assert to_second.event.practitioner_id == second

    async with services.runtime.sessions() as session, session.begin():  # the manager never answers
        await session.execute(
            text("UPDATE timers SET due_at = now() - interval '1 minute' WHERE kind = :kind AND key = :id"),
            {"kind": PROPOSAL_DEADLINE, "id": to_second.event.proposal_id},
        )
    timed_out = await leads.events(LeadDeclined, lambda e: e.subject == child_id, count=2)
    assert timed_out[1].event.reason == "no_answer_by_deadline"
    third = await leads.events(LeadProposed, lambda e: e.subject == child_id, count=3)
    assert third[2].event.practitioner_id not in (first, second)
    late = await services.api.post(f"/proposals/{to_second.event.proposal_id}/confirm", headers=manager_of(second))
    assert late.status_code == 409


async def test_two_confirmations_racing_for_a_practitioners_last_slot_cannot_both_succeed(
    services: RunningService,
    panel_service: RunningService,
    agency: AgencySystem,
    outcomes: TopicReader,
    leads: TopicReader,
) -> None:
    last_slot = await add_practitioner(services, max_caseload=1)
    _, _, one = await refer_and_accept(agency, outcomes, panel_service, involved_practitioners=involved(last_slot))
    _, _, two = await refer_and_accept(agency, outcomes, panel_service, involved_practitioners=involved(last_slot))
    [p1] = await leads.events(LeadProposed, lambda e: e.subject == one)
    [p2] = await leads.events(LeadProposed, lambda e: e.subject == two)
    assert p1.event.practitioner_id == p2.event.practitioner_id == last_slot

    answers = await asyncio.gather(
        services.api.post(f"/proposals/{p1.event.proposal_id}/confirm", headers=manager_of(last_slot)),
        services.api.post(f"/proposals/{p2.event.proposal_id}/confirm", headers=manager_of(last_slot)),
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    directory = (await services.api.get("/practitioners", headers=ADMIN)).json()
    assert next(p for p in directory if p["practitioner_id"] == last_slot)["caseload"] == 1
    loser = one if answers[0].status_code == 409 else two
    [gone] = await leads.events(LeadDeclined, lambda e: e.subject == loser)
    assert gone.event.reason == "no_capacity_left"


async def test_a_sibling_gets_the_lead_their_brother_or_sister_already_has(
    services: RunningService,
    panel_service: RunningService,
    agency: AgencySystem,
    outcomes: TopicReader,
    leads: TopicReader,
) -> None:
    family_lead = await add_practitioner(services)
    other = await add_practitioner(services)
    older, _, first_child = await refer_and_accept(
        agency, outcomes, panel_service, involved_practitioners=involved(family_lead)
    )
    [proposed] = await leads.events(LeadProposed, lambda e: e.subject == first_child)
    confirm = f"/proposals/{proposed.event.proposal_id}/confirm"
    assert (await services.api.post(confirm, headers=manager_of(family_lead))).status_code == 200

    # The younger child shares a caregiver, and already knows another practitioner.
    _, _, second_child = await refer_and_accept(
        agency,
        outcomes,
        panel_service,
        whanau=[m.model_dump() for m in older.whanau],
        involved_practitioners=involved(other),
    )
    [sibling] = await leads.events(LeadProposed, lambda e: e.subject == second_child)
    assert (sibling.event.practitioner_id, sibling.event.basis) == (family_lead, "sibling")


async def test_an_assignment_is_seen_only_with_a_relationship_and_refusals_are_audited(
    services: RunningService,
    panel_service: RunningService,
    agency: AgencySystem,
    outcomes: TopicReader,
    leads: TopicReader,
) -> None:
    known = await add_practitioner(services)
    _, _, child_id = await refer_and_accept(agency, outcomes, panel_service, involved_practitioners=involved(known))
    await leads.events(LeadProposed, lambda e: e.subject == child_id)

    stranger = bearer("mgr-elsewhere", "police-nz", "manager")
    refused = await services.api.get(f"/children/{child_id}/assignment", headers=stranger)
    assert refused.status_code == 403
    seen = await services.api.get(f"/children/{child_id}/assignment", headers=PANEL)
    assert seen.status_code == 200
    assert seen.json()["proposals"][0]["practitioner_id"] == known
    async with services.runtime.sessions() as session:
        actions = (
            await session.scalars(
                text("SELECT action FROM audit_log WHERE detail->>'child_id' = :id ORDER BY id"), {"id": child_id}
            )
        ).all()
    assert list(actions) == ["read assignment refused", "read assignment"]


async def test_a_reassignment_keeps_the_previous_lead_and_reason_and_frees_their_slot(
    services: RunningService,
    panel_service: RunningService,
    agency: AgencySystem,
    outcomes: TopicReader,
    leads: TopicReader,
) -> None:
    leaving = await add_practitioner(services)
    successor = await add_practitioner(services, needs=["education"])  # scores below the first lead
    _, _, child_id = await refer_and_accept(
        agency, outcomes, panel_service, involved_practitioners=involved(leaving, successor)
    )
    [first] = await leads.events(LeadProposed, lambda e: e.subject == child_id)
    assert first.event.practitioner_id == leaving
    confirm = f"/proposals/{first.event.proposal_id}/confirm"
    assert (await services.api.post(confirm, headers=manager_of(leaving))).status_code == 200

    request = {"reason": "lead_leaving", "note": "Moving to Wellington"}
    not_theirs = await services.api.post(
        f"/children/{child_id}/reassignment", json=request, headers=manager_of(successor)
    )
    assert not_theirs.status_code == 403
    started = await services.api.post(f"/children/{child_id}/reassignment", json=request, headers=manager_of(leaving))
    assert started.status_code == 202, started.text

    proposals = await leads.events(LeadProposed, lambda e: e.subject == child_id, count=2)
    assert proposals[1].event.practitioner_id == successor
    confirm = f"/proposals/{proposals[1].event.proposal_id}/confirm"
    assert (await services.api.post(confirm, headers=manager_of(successor))).status_code == 200
    assigned = await leads.events(LeadAssigned, lambda e: e.subject == child_id, count=2)
    latest = assigned[1].event
    assert (latest.practitioner_id, latest.previous_practitioner_id, latest.reassignment_reason) == (
        successor,
        leaving,
        "lead_leaving",
    )
    directory = {p["practitioner_id"]: p for p in (await services.api.get("/practitioners", headers=ADMIN)).json()}
    assert (directory[leaving]["caseload"], directory[successor]["caseload"]) == (0, 1)


async def test_the_assigned_lead_reads_the_referral_and_records_a_consent_withdrawal(
    services: RunningService,
    referral_service: RunningService,
    panel_service: RunningService,
    agency: AgencySystem,
    outcomes: TopicReader,
    leads: TopicReader,
    kafka_bootstrap: str,
) -> None:
    lead = await add_practitioner(services)
    referral, referral_id, child_id = await refer_and_accept(
        agency, outcomes, panel_service, involved_practitioners=involved(lead)
    )
    [proposed] = await leads.events(LeadProposed, lambda e: e.subject == child_id)
    assert (
        await services.api.post(f"/proposals/{proposed.event.proposal_id}/confirm", headers=manager_of(lead))
    ).status_code == 200
    as_lead = bearer(lead, "health-nz", "lead_professional")

    async def readable() -> bool:
        return (await referral_service.api.get(f"/referrals/{referral_id}", headers=as_lead)).status_code == 200

    await eventually(readable)  # once the referral service has heard who the lead is
    withdrawn = {"consent": referral.consent.model_dump(mode="json") | {"share_with": []}}
    other = bearer("someone-else", "health-nz", "lead_professional")
    assert (
        await referral_service.api.put(f"/referrals/{referral_id}/consent", json=withdrawn, headers=other)
    ).status_code == 403
    async with TopicReader(kafka_bootstrap, "referral.events") as stream:
        changed = await referral_service.api.put(f"/referrals/{referral_id}/consent", json=withdrawn, headers=as_lead)
        assert changed.status_code == 200, changed.text
        assert changed.json()["sharing"] == []
        [published] = await stream.events(ConsentWithdrawn, lambda e: e.subject == child_id)
    assert published.event.sharing == []
