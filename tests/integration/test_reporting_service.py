"""Reporting on the real broker and database: events on the public streams become figures; governance sees small
counts suppressed; a manager sees only their staff; a practitioner is refused (and audited); a rebuild from the
streams gives the same figures; whānau feedback given at a real exit reaches reporting as ratings only.

The stack's topics hold other tests' events too, so every journey here is dated in a month of its own, long past,
and comes from an agency, a manager and leads named for this run; assertions look only there. The other services
hear these journeys too and react as they would (the plans service opens a case for each lead assigned, once it runs):
the read model counts a referral's first case, so their reaction leaves this run's figures as they were.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deploy.local import database_url
from services.reporting.app import Settings
from services.reporting.rebuild import rebuild
from shared.events import Event
from shared.events.assignment import LeadAssigned
from shared.events.codes import NeedDomain, Participation, ReasonCode
from shared.events.hub import ConcernScreened, EscalationAcknowledged, EscalationStarted, EscalationStepTaken
from shared.events.panel import DeclineReason, ReferralAccepted, ReferralDeclined
from shared.events.plans import (
    ActionOverdue,
    CaseClosed,
    CaseOpened,
    ImplementationStarted,
    PlanEndorsed,
    PlanReviewOverdue,
    PlanSubmittedForReview,
)
from shared.events.referral import ReferralReceived
from shared.messaging.envelope import Envelope
from shared.workdays import NZ
from tests.conftest import KEY_FILE, eventually
from tests.integration.test_plans_service import ASSESSMENT, PANEL, assigned_child
from tests.support.kafka import AgencySystem, TopicReader
from tests.support.services import RunningService, bearer, run_service

AGGREGATES = ("referrals", "timeliness", "exits", "feedback", "hub")


@pytest.fixture(scope="module")
async def reporting(kafka_bootstrap: str) -> AsyncIterator[RunningService]:
    from services.reporting.app import create_app

    async with run_service(Settings, create_app, kafka_bootstrap=kafka_bootstrap, key_file=KEY_FILE) as service:
        yield service


class Streams:
    """Publishes on the public streams as each service's outbox relay would (same envelope, key and headers)."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
        self.sent: list[tuple[str, Envelope]] = []

    async def send(self, service: str, event: Event, *, child_id: str, at: datetime) -> Envelope:
        envelope = Envelope(event=event, source=f"/services/{service}", subject=child_id, time=at)
        await self.resend(f"{service}.events", envelope)
        self.sent.append((f"{service}.events", envelope))
        return envelope

    async def resend(self, topic: str, envelope: Envelope) -> None:
        headers = [(k, v.encode()) for k, v in envelope.headers().items()]
        await self.producer.send_and_wait(topic, envelope.body(), key=envelope.key, headers=headers)


@pytest.fixture
async def streams(kafka_bootstrap: str) -> AsyncIterator[Streams]:
    publisher = Streams(kafka_bootstrap)
    await publisher.producer.start()
    try:
        yield publisher
    finally:
        await publisher.producer.stop()


@dataclass(frozen=True)
class Run:
    """This run's names and its month (long past, so no other test's journeys share it)."""

    id: str
    month: str
    start: datetime

    @property
    def agency(self) -> str:
        return f"agency-{self.id}"

    @property
    def manager(self) -> str:
        return f"mgr-{self.id}"

    def lead(self, which: str) -> str:
        return f"lead-{self.id}-{which}"


@pytest.fixture
def run() -> Run:
    year, month = random.randint(1950, 2009), random.randint(1, 12)
    # The 1st at 10:00 NZ time: every journey below begins and ends within the month.
    return Run(uuid.uuid4().hex[:8], f"{year}-{month:02d}", datetime(year, month, 1, 10, tzinfo=NZ))


# Each of this run's leads' maximum caseload, as the assignment service says it in `LeadAssigned.lead_capacity`.
CAPACITY = {"a": 6, "b": 3}


async def seven_journeys_and_six_concerns(streams: Streams, run: Run) -> list[str]:
    """Seven children referred by this run's agency and two by another; returns the child ids of the seven.

    Events go out newest stream first (plans, then assignment, panel, referral) so that the read model sees each
    journey's end before its start, as it may when one service's stream lags behind another's.
    """
    day = timedelta(days=1)
    children = [f"child-{run.id}-{n}" for n in range(9)]
    later: list[tuple[str, Event, str, datetime]] = []
    for n, child in enumerate(children):
        referral, case, received = f"ref-{run.id}-{n}", f"case-{run.id}-{n}", run.start
        ours = n < 7
        agency = run.agency if ours else f"other-{run.id}"
        later.append(
            (
                "referral",
                ReferralReceived(
                    referral_id=referral,
                    child_id=child,
                    agency=agency,
                    received_at=received,
                    reasons=[ReasonCode.SCHOOL_ATTENDANCE],
                    needs=[NeedDomain.EDUCATION],
                    participation=Participation.YES,
                    sibling_group_id=f"siblings-{run.id}-{n // 2}",
                    family_preference=False,
                ),
                child,
                received,
            )
        )
        if n == 6:  # declined, late: twelve days for a five-working-day window
            decided = received + 12 * day
            later.append(
                (
                    "panel",
                    ReferralDeclined(
                        referral_id=referral,
                        child_id=child,
                        decided_at=decided,
                        reason=DeclineReason.NEEDS_MET_ELSEWHERE,
                        recommendations_to_referrer=[],
                        serious_risk=False,
                    ),
                    child,
                    decided,
                )
            )
            continue
        decided, assigned, endorsed = received + 2 * day, received + 4 * day, received + 8 * day
        later.append(
            (
                "panel",
                ReferralAccepted(
                    referral_id=referral,
                    child_id=child,
                    decided_at=decided,
                    needs_profile=[NeedDomain.EDUCATION],
                    safety_planning_required=False,
                    recommendations_for_lead=[],
                ),
                child,
                decided,
            )
        )
        lead = run.lead("a" if n < 4 else "b") if ours else f"lead-other-{run.id}"
        capacity = CAPACITY["a" if n < 4 else "b"] if ours else 10
        manager = run.manager if ours else f"mgr-other-{run.id}"
        later.append(
            (
                "assignment",
                LeadAssigned(
                    proposal_id=f"p-{run.id}-{n}",
                    child_id=child,
                    referral_id=referral,
                    practitioner_id=lead,
                    manager_id=manager,
                    assigned_at=assigned,
                    lead_capacity=capacity,
                ),
                child,
                assigned,
            )
        )
        plans: list[tuple[Event, datetime]] = [
            (CaseOpened(case_id=case, child_id=child, referral_id=referral, lead_practitioner_id=lead,
                        opened_at=assigned), assigned),
            (PlanEndorsed(plan_id=f"plan-{case}", case_id=case, child_id=child, endorsed_at=endorsed), endorsed),
            (ImplementationStarted(case_id=case, child_id=child, plan_id=f"plan-{case}", next_review_due=endorsed),
             endorsed),
        ]  # fmt: skip
        if n in (3, 5):  # still open: child 3 with an overdue action and an overdue review
            if n == 3:
                plans.append(
                    (
                        ActionOverdue(
                            action_id=f"action-{case}",
                            case_id=case,
                            child_id=child,
                            owner_member_id=lead,
                            lead_practitioner_id=lead,
                            due_on=str((endorsed + 14 * day).date()),
                        ),
                        endorsed + 15 * day,
                    )
                )
                plans.append(
                    (
                        PlanReviewOverdue(
                            case_id=case,
                            child_id=child,
                            lead_practitioner_id=lead,
                            lead_manager_id=manager,
                            due_at=endorsed + 42 * day,
                        ),
                        endorsed + 42 * day,
                    )
                )
        else:
            closed = assigned + (10 + n) * day
            plans.append(
                (
                    CaseClosed(
                        case_id=case,
                        child_id=child,
                        referral_id=referral,
                        reason="goals_achieved",
                        handover_to=["universal_services"],
                        closed_at=closed,
                        child_rating=4 + n % 2,
                        whanau_rating=5,
                        feedback_comments=1,
                    ),
                    closed,
                )
            )
        later += [("plans", event, child, at) for event, at in plans]
    for n in range(6):
        concern, escalation, screened = f"concern-{run.id}-{n}", f"esc-{run.id}-{n}", run.start + n * day
        later.append(
            (
                "hub",
                ConcernScreened(
                    concern_id=concern,
                    child_id=None,
                    priority="critical",
                    rules_fired=["immediate_danger", *(["hub_override"] if n == 0 else [])],
                    screened_at=screened,
                    confirmed_by_human=n == 0,
                ),
                concern,
                screened,
            )
        )
        targets: Any = ["contact_centre"]
        later.append(
            (
                "hub",
                EscalationStarted(
                    escalation_id=escalation,
                    concern_id=concern,
                    child_id=None,
                    targets=targets,
                    steps_in_policy=3,
                    started_at=screened,
                ),
                concern,
                screened,
            )
        )
        if n == 5:  # nobody answered the first step: re-escalated, never acknowledged
            step = EscalationStepTaken(
                escalation_id=escalation,
                concern_id=concern,
                child_id=None,
                step=2,
                round=1,
                targets=targets,
                taken_at=screened,
            )
            later.append(("hub", step, concern, screened + timedelta(minutes=15)))
            continue
        seconds = 60.0 * (n + 1)
        acknowledged = EscalationAcknowledged(
            escalation_id=escalation,
            concern_id=concern,
            child_id=None,
            acknowledged_by="contact-centre-1",
            acknowledged_at=screened + timedelta(seconds=seconds),
            seconds_to_acknowledge=seconds,
        )
        later.append(("hub", acknowledged, concern, screened + timedelta(seconds=seconds)))
    order = {"plans": 0, "hub": 1, "assignment": 2, "panel": 3, "referral": 4}
    for service, event, subject, at in sorted(later, key=lambda item: order[item[0]]):
        await streams.send(service, event, child_id=subject, at=at)
    return children[:7]


HEARD = text(
    """
    SELECT (SELECT count(*) FROM referrals WHERE referral_id LIKE :run AND received_at IS NOT NULL) = 9
       AND (SELECT count(*) FROM referrals WHERE referral_id LIKE :run AND decided_at IS NOT NULL) = 9
       AND (SELECT count(*) FROM referrals WHERE referral_id LIKE :run AND first_lead_at IS NOT NULL) = 8
       AND (SELECT count(*) FROM cases WHERE case_id LIKE :run AND opened_at IS NOT NULL AND stage_at IS NOT NULL
                                         AND endorsed_at IS NOT NULL) = 8
       AND (SELECT count(*) FROM cases WHERE case_id LIKE :run AND closed_at IS NOT NULL) = 6
       AND (SELECT count(*) FROM actions WHERE action_id LIKE :run AND overdue) = 1
       AND (SELECT count(*) FROM overdue_reviews WHERE case_id LIKE :run) = 1
       AND (SELECT count(*) FROM concerns WHERE concern_id LIKE :run) = 6
       AND (SELECT count(*) FROM concern_overrides WHERE concern_id LIKE :run) = 1
       AND (SELECT count(*) FROM escalations WHERE escalation_id LIKE :run AND started_at IS NOT NULL) = 6
       AND (SELECT count(*) FROM escalations WHERE escalation_id LIKE :run AND acknowledged_at IS NOT NULL) = 5
       AND (SELECT count(*) FROM escalation_steps WHERE escalation_id LIKE :run) = 1
       AND (SELECT count(*) FROM sibling_groups WHERE child_id LIKE :run) = 9
    """
)


async def heard_all(sessions: async_sessionmaker[AsyncSession], run: Run) -> bool:
    """The read model holds every fact of this run's journeys (each stream is consumed at its own pace)."""
    async with sessions() as session:
        return bool(await session.scalar(HEARD, {"run": f"%-{run.id}-%"}))


def table(report: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return next(t["rows"] for t in report["tables"] if t["key"] == key)


def row(rows: Sequence[dict[str, Any]], **where: Any) -> dict[str, Any]:
    [found] = [r for r in rows if all(r[k] == v for k, v in where.items())]
    return found


async def figures(api: Any, run: Run, headers: dict[str, str]) -> dict[str, Any]:
    period = {"from": run.month, "to": run.month}
    return {name: (await api.get(f"/reports/{name}", params=period, headers=headers)).json() for name in AGGREGATES}


async def audit_rows(service: RunningService, actor: str) -> list[Any]:
    async with service.runtime.sessions() as session:
        rows = await session.execute(
            text("SELECT action, detail FROM audit_log WHERE actor = :actor ORDER BY id"), {"actor": actor}
        )
        return list(rows)


async def test_governance_sees_a_months_figures_with_small_counts_suppressed(
    reporting: RunningService, streams: Streams, run: Run
) -> None:
    await seven_journeys_and_six_concerns(streams, run)
    governance = bearer(f"lgg-{run.id}", "tairawhiti-lgg", "governance_group")
    period = {"from": run.month, "to": run.month}

    await eventually(lambda: heard_all(reporting.runtime.sessions, run))
    found = await figures(reporting.api, run, governance)

    referrals = table(found["referrals"], "by_agency")
    assert row(referrals, agency=run.agency) == {
        "month": run.month,
        "agency": run.agency,
        "received": 7,
        "accepted": 6,
        "declined": None,  # one: suppressed
        "withdrawn": 0,
        "suppressed": ["declined"],
    }
    other = row(referrals, agency=f"other-{run.id}")
    assert other["received"] is None and other["suppressed"] == ["received", "accepted"]

    decision, lead, plan, exit_ = table(found["timeliness"], "milestones")
    assert (decision["reached"], decision["median_days"], decision["breached"]) == (9, 2.0, None)
    assert decision["suppressed"] == ["breached"]  # the one late decline
    assert (lead["reached"], lead["median_days"], lead["breached"]) == (8, 4.0, 0)
    assert (plan["reached"], plan["median_days"]) == (8, 8.0)
    assert (exit_["reached"], exit_["median_days"], exit_["breached"], exit_["suppressed"]) == (6, 17.0, None, [])

    [goals_met] = table(found["exits"], "by_reason")
    assert goals_met["reason"] == "goals_achieved" and goals_met["exits"] == 6
    assert goals_met["median_days"] == 13.0

    child, whanau = table(found["feedback"], "summary")
    assert (child["ratings"], child["mean_rating"]) == (6, 4.3)
    assert (whanau["ratings"], whanau["mean_rating"]) == (6, 5.0)
    assert table(found["feedback"], "comments") == [{"exits": 6, "comments": 6, "suppressed": []}]

    hub = table(found["hub"], "escalations")
    assert row(hub, figure="Escalations started")["value"] == 6
    assert row(hub, figure="Median seconds to acknowledge")["value"] == 180.0
    assert row(hub, figure="Longest seconds to acknowledge")["value"] == 300.0
    assert row(hub, figure="Re-escalations (steps taken for want of an acknowledgement)")["suppressed"] == ["value"]
    assert row(hub, figure="Screening priorities overridden by hub staff")["suppressed"] == ["value"]
    assert row(table(found["hub"], "by_priority"), priority="critical")["concerns"] == 6

    exported = await reporting.api.get("/reports/referrals.csv", params=period, headers=governance)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert f"by_agency,{run.month},{run.agency},7,6,<5,0" in exported.text.splitlines()

    # The panel reads the same aggregates; the open-cases snapshot is aggregate too.
    panel = bearer(f"panel-{run.id}", "childrens-team", "panel_member")
    cases = (await reporting.api.get("/reports/cases", headers=panel)).json()
    assert cases["small_counts_suppressed"] is True
    assert [r["stage"] for r in table(cases, "by_stage")][:3] == [
        "Awaiting the panel's decision",
        "More information asked of the referrer",
        "Accepted, awaiting a lead professional",
    ]
    team = row(table(cases, "by_team"), team=f"team of {run.manager}")
    assert team["leads"] == 2 and team["open_cases"] is None and team["suppressed"][0] == "open_cases"
    # Capacity is staff's, shown; the share of it used is derived from two children, suppressed.
    assert team["capacity"] == CAPACITY["a"] + CAPACITY["b"]
    assert team["capacity_used"] is None and "capacity_used" in team["suppressed"]

    reads = await audit_rows(reporting, f"lgg-{run.id}")
    assert [(a, d["report"], d["format"]) for a, d in reads][-1] == ("read report", "referrals", "csv")
    assert {d["report"] for _, d in reads} == set(AGGREGATES)


async def test_a_manager_sees_only_their_own_staff_and_children(
    reporting: RunningService, streams: Streams, run: Run
) -> None:
    ours = await seven_journeys_and_six_concerns(streams, run)
    manager = bearer(run.manager, "oranga-tamariki", "manager")

    await eventually(lambda: heard_all(reporting.runtime.sessions, run))
    report = (await reporting.api.get("/reports/team", headers=manager)).json()
    assert table(report, "by_lead") == [
        {"lead": run.lead("a"), "open_cases": 1, "capacity": CAPACITY["a"], "free_slots": CAPACITY["a"] - 1,
         "overdue_actions": 1, "overdue_reviews": 1, "suppressed": []},
        {"lead": run.lead("b"), "open_cases": 1, "capacity": CAPACITY["b"], "free_slots": CAPACITY["b"] - 1,
         "overdue_actions": 0, "overdue_reviews": 0, "suppressed": []},
    ]  # fmt: skip
    by_child = table(report, "by_child")
    assert [(r["child_id"], r["stage"]) for r in by_child] == [(ours[3], "implement"), (ours[5], "implement")]

    # Another manager sees none of it; a manager is not given the aggregates.
    other = bearer(f"mgr-other-{run.id}", "oranga-tamariki", "manager")
    theirs = (await reporting.api.get("/reports/team", headers=other)).json()
    assert {r["child_id"] for r in table(theirs, "by_child")}.isdisjoint(ours)
    assert (await reporting.api.get("/reports/referrals", headers=manager)).status_code == 403

    [*_, (action, detail)] = await audit_rows(reporting, run.manager)
    assert action == "read report refused" and detail["report"] == "referrals"
    team_reads = [d for a, d in await audit_rows(reporting, run.manager) if a == "read report"]
    assert set(team_reads[-1]["children"]) == {ours[3], ours[5]}


async def test_a_practitioner_is_refused_every_report_and_the_refusal_is_audited(
    reporting: RunningService, run: Run
) -> None:
    practitioner = bearer(f"prac-{run.id}", "health-nz", "practitioner")
    for path in ("/reports/referrals", "/reports/team", "/reports/hub.csv"):
        refused = await reporting.api.get(path, headers=practitioner)
        assert refused.status_code == 403, path
    page = await reporting.api.get("/reports", headers=practitioner)
    assert page.status_code == 403 and "not available to you" in page.text
    assert (await reporting.api.get("/reports/referrals")).status_code == 401
    actions = [a for a, _ in await audit_rows(reporting, f"prac-{run.id}")]
    assert actions == ["read report refused"] * 3 + ["read reports page refused"]


async def test_a_rebuild_from_the_streams_gives_the_same_figures(
    reporting: RunningService, streams: Streams, run: Run, kafka_bootstrap: str
) -> None:
    await seven_journeys_and_six_concerns(streams, run)
    # The same events again (a relay that published twice): the inbox makes no difference to the figures.
    for topic, envelope in streams.sent[:5]:
        await streams.resend(topic, envelope)
    governance = bearer(f"lgg-{run.id}", "tairawhiti-lgg", "governance_group")
    manager = bearer(run.manager, "oranga-tamariki", "manager")

    await eventually(lambda: heard_all(reporting.runtime.sessions, run))
    before = (
        await figures(reporting.api, run, governance),
        (await reporting.api.get("/reports/team", headers=manager)).json(),
    )
    settings = Settings(database_url=database_url("reporting"), kafka_bootstrap=kafka_bootstrap)
    done = await rebuild(settings)  # with the live service still running, as in production
    # Unreadable messages are older events the live consumer dead-lettered too (the dev stack keeps some).
    assert done.read >= len(streams.sent) and done.applied >= len(streams.sent) - 5 and done.failed == 0
    after = (
        await figures(reporting.api, run, governance),
        (await reporting.api.get("/reports/team", headers=manager)).json(),
    )
    assert after == before


async def test_whanau_feedback_at_exit_reaches_reporting_as_ratings_while_the_words_stay_with_plans(
    reporting: RunningService,
    referral_service: RunningService,
    panel_service: RunningService,
    assignment_service: RunningService,
    plans_service: RunningService,
    agency: AgencySystem,
    outcomes: TopicReader,
    kafka_bootstrap: str,
) -> None:
    services = {"panel": panel_service, "assignment": assignment_service, "plans": plans_service}
    plans = plans_service.api
    async with TopicReader(kafka_bootstrap, "plans.events") as plan_events:
        _, child_id, lead, as_lead = await assigned_child(services, agency, outcomes, kafka_bootstrap)
        [opened] = await plan_events.events(CaseOpened, lambda e: e.subject == child_id)
        case_id = opened.event.case_id
        assert (await plans.put(f"/cases/{case_id}/assessment", json=ASSESSMENT, headers=as_lead)).status_code == 200
        assert (await plans.post(f"/cases/{case_id}/assessment/complete", headers=as_lead)).status_code == 200
        action = {"description": "Walking school bus", "owner_member_id": lead, "due_on": "2099-01-01"}
        goal = {
            "description": "At school every day",
            "need": "child_wellbeing.education",
            "set_with_child": True,
            "set_with_whanau": True,
            "actions": [action],
        }
        assert (await plans.post(f"/cases/{case_id}/plan", json={"goals": [goal]}, headers=as_lead)).status_code == 201
        assert (await plans.post(f"/cases/{case_id}/plan/submit", headers=as_lead)).status_code == 200
        [submitted] = await plan_events.events(PlanSubmittedForReview, lambda e: e.subject == child_id)

        async def waiting_for_panel() -> bool:
            queue = (await panel_service.api.get("/plan-reviews", headers=PANEL)).json()
            return any(item["plan_id"] == submitted.event.plan_id for item in queue)

        await eventually(waiting_for_panel)
        endorse = await panel_service.api.post(
            f"/plan-reviews/{submitted.event.plan_id}", json={"outcome": "endorsed"}, headers=PANEL
        )
        assert endorse.status_code == 201
        await plan_events.events(PlanEndorsed, lambda e: e.subject == child_id)
        assert (await plans.post(f"/cases/{case_id}/implementation", headers=as_lead)).status_code == 200
        review = {"outcome": "close", "notes": "Goals met."}
        assert (await plans.post(f"/cases/{case_id}/reviews", json=review, headers=as_lead)).status_code == 201
        words = {"child_words": "I like school now", "whanau_words": "Mornings are calm"}
        exit_ = {
            "reason": "goals_achieved",
            "handover_to": ["universal_services"],
            "feedback": {"child_rating": 5, "whanau_rating": 4, **words},
        }
        assert (await plans.post(f"/cases/{case_id}/exit", json=exit_, headers=as_lead)).status_code == 200
        [closed] = await plan_events.events(CaseClosed, lambda e: e.subject == child_id)

    assert (closed.event.child_rating, closed.event.whanau_rating, closed.event.feedback_comments) == (5, 4, 2)
    assert not any(w in closed.body().decode() for w in words.values())  # the event carries no words
    async with plans_service.runtime.sessions() as session:
        kept = (await session.execute(text("SELECT * FROM exit_feedback WHERE case_id = :c"), {"c": case_id})).one()
    assert (kept.child_words, kept.whanau_words, kept.recorded_by) == (*words.values(), lead)

    async def ratings_heard() -> Any:
        async with reporting.runtime.sessions() as session:
            query = text("SELECT child_rating, whanau_rating, feedback_comments FROM cases WHERE case_id = :c")
            return (await session.execute(query, {"c": case_id})).one_or_none()

    async def closed_heard() -> Any:
        row = await ratings_heard()
        return row if row is not None and row.child_rating is not None else None

    assert tuple(await eventually(closed_heard)) == (5, 4, 2)
