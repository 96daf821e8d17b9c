"""The referral service on the real broker and database, driven as an agency's system and a practitioner would."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from shared.events.agency import ConsentChanged
from shared.events.concerns import ConcernRaised
from shared.events.referral import (
    ConsentRecorded,
    ConsentWithdrawn,
    Outcome,
    ReferralLinked,
    ReferralOutcome,
    ReferralReceived,
    ReferralRejected,
    ReferralWithdrawn,
    SiblingGroupChanged,
)
from shared.messaging.consumer import H_ERROR_MESSAGE, H_ORIGIN_TOPIC
from shared.messaging.topics import dlq_topic, outcomes_out, referrals_in
from shared.security import issue_token
from shared.service import Runtime
from tests.support.kafka import AgencySystem, TopicReader
from tests.support.referrals import make_referral
from tests.support.services import RunningService

STREAM, CONCERNS = "referral.events", "concerns.raised"


@pytest.fixture(scope="module")
def service(referral_service: RunningService) -> tuple[Runtime, httpx.AsyncClient]:
    return referral_service.runtime, referral_service.api


@pytest.fixture
async def stream(kafka_bootstrap: str) -> AsyncIterator[TopicReader]:
    async with TopicReader(kafka_bootstrap, STREAM) as reader:
        yield reader


def outcome_for(agency_referral_id: str) -> Any:
    return lambda e: e.event.agency_referral_id == agency_referral_id


async def test_a_valid_referral_is_received_and_the_agency_is_told(
    service: tuple[Runtime, httpx.AsyncClient], agency: AgencySystem, stream: TopicReader, outcomes: TopicReader
) -> None:
    referral = make_referral()
    sent = await agency.send(
        referrals_in("health-nz"), referral, agency="health-nz", subject=referral.agency_referral_id
    )

    [told] = await outcomes.events(ReferralOutcome, outcome_for(referral.agency_referral_id))
    assert told.event.outcome is Outcome.RECEIVED
    child_id = told.event.child_id
    [received] = await stream.events(ReferralReceived, lambda e: e.subject == child_id)
    assert received.event.referral_id == told.event.referral_id
    assert received.event.needs == referral.needs
    assert received.correlation_id == sent.correlation_id  # one journey from the agency's message on
    assert received.causation_id == sent.id
    [consent] = await stream.events(ConsentRecorded, lambda e: e.subject == child_id)
    assert consent.event.sharing[0].agency == "education-moe"
    # The public stream carries ids and codes, never names.
    assert referral.child.given_names not in received.body().decode()


async def test_an_invalid_referral_gets_every_reason_back_and_a_dead_letter_copy(
    service: tuple[Runtime, httpx.AsyncClient],
    agency: AgencySystem,
    stream: TopicReader,
    outcomes: TopicReader,
    kafka_bootstrap: str,
) -> None:
    referral = make_referral()
    body = referral.model_dump(mode="json")
    body["child"]["date_of_birth"] = "2001-01-01"
    body["reasons"] = ["being_a_teenager"]
    del body["needs"]
    agency_id = referral.agency_referral_id
    envelope_headers = {
        "ce_specversion": "1.0",
        "ce_id": str(uuid.uuid4()),
        "ce_source": "/agencies/health-nz",
        "ce_type": "nz.childrensteams.agency.referral_submitted.v1",
        "ce_subject": agency_id,
        "ce_time": datetime.now(UTC).isoformat(),
        "content-type": "application/json",
    }
    async with TopicReader(kafka_bootstrap, dlq_topic(referrals_in("health-nz"))) as dead_letters:
        await agency.send_raw(
            referrals_in("health-nz"), json.dumps(body).encode(), key=agency_id, headers=envelope_headers
        )
        [told] = await outcomes.events(ReferralOutcome, outcome_for(agency_id))
        letter = await dead_letters.headers_where(lambda h: h.get("ce_id") == envelope_headers["ce_id"])

    assert told.event.outcome is Outcome.REJECTED
    assert {p.field for p in told.event.problems} == {"reasons.0", "needs"}
    assert "needs: Field required" in letter[H_ERROR_MESSAGE]
    [rejected] = await stream.events(ReferralRejected, lambda e: e.subject == agency_id)
    assert rejected.event.problems == told.event.problems


async def test_the_topic_names_the_sender_so_referring_in_another_agencys_name_and_garbage_are_answered(
    service: tuple[Runtime, httpx.AsyncClient], agency: AgencySystem, outcomes: TopicReader
) -> None:
    # health-nz's system claims to be police-nz, in its headers and its body; only the topic cannot lie (ACLs).
    impostor = make_referral(agency="police-nz")
    await agency.send(referrals_in("health-nz"), impostor, agency="police-nz", subject=impostor.agency_referral_id)
    # Garbage on police-nz's topic whose headers claim health-nz, and a forged "it first arrived elsewhere" header.
    garbage_headers = {
        "ce_source": "/agencies/health-nz",
        "ce_subject": "GARBAGE-1",
        H_ORIGIN_TOPIC: referrals_in("msd"),
    }
    await agency.send_raw(referrals_in("police-nz"), b"{not json", key="GARBAGE-1", headers=garbage_headers)

    [refused] = await outcomes.events(ReferralOutcome, outcome_for(impostor.agency_referral_id))
    assert (refused.topic, refused.event.agency, refused.event.outcome) == (
        outcomes_out("health-nz"),
        "health-nz",
        Outcome.REJECTED,
    )
    assert [(p.field, p.problem) for p in refused.event.problems] == [
        ("ce_source", "must be /agencies/health-nz on this agency's topic"),
        ("agency", "does not match the sending agency"),
    ]
    [garbage] = await outcomes.events(ReferralOutcome, lambda e: e.event.agency_referral_id == "GARBAGE-1")
    assert (garbage.topic, garbage.event.agency) == (outcomes_out("police-nz"), "police-nz")
    assert garbage.event.outcome is Outcome.REJECTED
    assert "missing CloudEvents headers" in garbage.event.problems[0].problem


async def test_the_same_referral_sent_again_makes_no_second_referral_and_the_outcome_is_resent(
    service: tuple[Runtime, httpx.AsyncClient], agency: AgencySystem, outcomes: TopicReader
) -> None:
    referral = make_referral()
    await agency.send(referrals_in("health-nz"), referral, agency="health-nz", subject=referral.agency_referral_id)
    await agency.send(referrals_in("health-nz"), referral, agency="health-nz", subject=referral.agency_referral_id)

    first, again = await outcomes.events(ReferralOutcome, outcome_for(referral.agency_referral_id), count=2)
    assert (first.event.outcome, first.event.resent) == (Outcome.RECEIVED, False)
    assert (again.event.outcome, again.event.resent) == (Outcome.RECEIVED, True)
    assert again.event.referral_id == first.event.referral_id
    runtime, _ = service
    async with runtime.sessions() as session:
        count = await session.scalar(
            text("SELECT count(*) FROM referrals WHERE agency_referral_id = :id"), {"id": referral.agency_referral_id}
        )
    assert count == 1


async def test_immediate_danger_goes_to_the_hub_as_a_critical_concern_not_a_referral(
    service: tuple[Runtime, httpx.AsyncClient],
    agency: AgencySystem,
    stream: TopicReader,
    outcomes: TopicReader,
    kafka_bootstrap: str,
) -> None:
    referral = make_referral(
        immediate_danger=True,
        danger_details="Child says stepfather threatened to kill her tonight.",
        child_location="Kōwhai School, Room 4",
        reasons=["family_violence"],
    )

    async with TopicReader(kafka_bootstrap, CONCERNS) as concerns:
        await agency.send(referrals_in("health-nz"), referral, agency="health-nz", subject=referral.agency_referral_id)
        [told] = await outcomes.events(ReferralOutcome, outcome_for(referral.agency_referral_id))
        [concern] = await concerns.events(ConcernRaised, lambda e: e.subject == told.event.child_id)
    assert told.event.outcome is Outcome.FORWARDED_TO_HUB
    assert concern.event.immediate_danger
    assert concern.event.child_location == "Kōwhai School, Room 4"
    assert [c.value for c in concern.event.categories] == ["family_violence"]
    assert not [
        e for _, e in stream.seen if e and isinstance(e.event, ReferralReceived) and e.subject == told.event.child_id
    ]


async def test_a_child_with_an_open_referral_is_linked_not_duplicated(
    service: tuple[Runtime, httpx.AsyncClient], agency: AgencySystem, stream: TopicReader, outcomes: TopicReader
) -> None:
    by_health = make_referral(child={"nhi": "ZZZ" + f"{uuid.uuid4().int % 10_000:04d}"})
    await agency.send(referrals_in("health-nz"), by_health, agency="health-nz", subject=by_health.agency_referral_id)
    [first] = await outcomes.events(ReferralOutcome, outcome_for(by_health.agency_referral_id))

    by_school = make_referral(
        agency="education-moe", agency_referral_id=f"MOE-{uuid.uuid4().hex[:8]}", child=by_health.child.model_dump()
    )
    await agency.send(
        referrals_in("education-moe"), by_school, agency="education-moe", subject=by_school.agency_referral_id
    )
    [second] = await outcomes.events(ReferralOutcome, outcome_for(by_school.agency_referral_id))
    assert second.event.outcome is Outcome.LINKED_TO_EXISTING
    assert (second.event.referral_id, second.event.child_id) == (first.event.referral_id, first.event.child_id)
    [linked] = await stream.events(ReferralLinked, lambda e: e.subject == first.event.child_id)
    assert (linked.event.basis.value, linked.event.needs_confirmation) == ("nhi", False)

    # Without an NHI, the same name and birth date link too, flagged for a person to confirm.
    by_police = make_referral(
        agency="police-nz",
        agency_referral_id=f"POL-{uuid.uuid4().hex[:8]}",
        child=by_health.child.model_dump() | {"nhi": None, "given_names": by_health.child.given_names.upper()},
    )
    await agency.send(referrals_in("police-nz"), by_police, agency="police-nz", subject=by_police.agency_referral_id)
    [third] = await outcomes.events(ReferralOutcome, outcome_for(by_police.agency_referral_id))
    assert third.event.child_id == first.event.child_id
    linked_again = await stream.events(ReferralLinked, lambda e: e.subject == first.event.child_id, count=2)
    assert (linked_again[1].event.basis.value, linked_again[1].event.needs_confirmation) == (
        "name_and_date_of_birth",
        True,
    )


async def test_children_who_share_a_caregiver_become_one_sibling_group(
    service: tuple[Runtime, httpx.AsyncClient], agency: AgencySystem, stream: TopicReader, outcomes: TopicReader
) -> None:
    older = make_referral()
    younger = make_referral(whanau=[m.model_dump() for m in older.whanau])
    await agency.send(referrals_in("health-nz"), older, agency="health-nz", subject=older.agency_referral_id)
    [first] = await outcomes.events(ReferralOutcome, outcome_for(older.agency_referral_id))
    await agency.send(referrals_in("health-nz"), younger, agency="health-nz", subject=younger.agency_referral_id)
    [second] = await outcomes.events(ReferralOutcome, outcome_for(younger.agency_referral_id))

    [group] = await stream.events(SiblingGroupChanged, lambda e: e.subject == second.event.child_id)
    assert set(group.event.child_ids) == {first.event.child_id, second.event.child_id}
    [received] = await stream.events(ReferralReceived, lambda e: e.subject == second.event.child_id)
    assert received.event.sibling_group_id == group.event.sibling_group_id


async def test_withdrawn_consent_is_published_at_once_and_a_family_saying_no_withdraws_the_referral(
    service: tuple[Runtime, httpx.AsyncClient], agency: AgencySystem, stream: TopicReader, outcomes: TopicReader
) -> None:
    referral = make_referral()
    await agency.send(referrals_in("health-nz"), referral, agency="health-nz", subject=referral.agency_referral_id)
    [received] = await outcomes.events(ReferralOutcome, outcome_for(referral.agency_referral_id))
    child_id = received.event.child_id

    narrower = referral.consent.model_dump() | {"share_with": []}
    change = ConsentChanged(agency_referral_id=referral.agency_referral_id, agency="health-nz", consent=narrower)
    await agency.send(referrals_in("health-nz"), change, agency="health-nz", subject=referral.agency_referral_id)
    [withdrawal] = await stream.events(ConsentWithdrawn, lambda e: e.subject == child_id)
    assert (withdrawal.event.version, withdrawal.event.sharing) == (2, [])

    declined = referral.consent.model_dump() | {"participation": "no", "share_with": []}
    change = ConsentChanged(agency_referral_id=referral.agency_referral_id, agency="health-nz", consent=declined)
    await agency.send(referrals_in("health-nz"), change, agency="health-nz", subject=referral.agency_referral_id)
    [gone] = await stream.events(ReferralWithdrawn, lambda e: e.subject == child_id)
    assert gone.event.reason == "family_declined"
    told = await outcomes.events(ReferralOutcome, outcome_for(referral.agency_referral_id), count=2)
    assert told[-1].event.outcome is Outcome.WITHDRAWN


async def test_referrals_are_read_only_with_a_need_to_know_and_every_attempt_is_audited(
    service: tuple[Runtime, httpx.AsyncClient], agency: AgencySystem, outcomes: TopicReader
) -> None:
    runtime, api = service
    referral = make_referral()
    await agency.send(referrals_in("health-nz"), referral, agency="health-nz", subject=referral.agency_referral_id)
    [told] = await outcomes.events(ReferralOutcome, outcome_for(referral.agency_referral_id))
    url = f"/referrals/{told.event.referral_id}"

    def bearer(subject: str, agency: str, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(subject=subject, agency=agency, roles=[role])}"}

    assert (await api.get(url)).status_code == 401
    own = await api.get(url, headers=bearer("prac-77", "health-nz", "referrer"))
    assert own.status_code == 200
    assert own.json()["child"]["given_names"] == referral.child.given_names
    assert own.json()["consent"]["participation"] == "yes"
    assert (await api.get(url, headers=bearer("chair-1", "childrens-team", "panel_member"))).status_code == 200
    stranger = await api.get(url, headers=bearer("prac-12", "police-nz", "referrer") | {"X-Purpose": "curiosity"})
    assert stranger.status_code == 403
    assert referral.child.given_names not in stranger.text

    async with runtime.sessions() as session:
        rows = (
            await session.execute(
                text("SELECT actor, action, purpose FROM audit_log WHERE detail->>'referral_id' = :id ORDER BY id"),
                {"id": told.event.referral_id},
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("prac-77", "read referral", "referral review"),
        ("chair-1", "read referral", "referral review"),
        ("prac-12", "read referral refused", "curiosity"),
    ]
