"""The hub's safety-critical path under faults: the hub SIGKILLed mid-chain, Kafka down at intake, the other services
absent. The hub runs as a real OS process (`python -m services.hub`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.hub.handlers import STREAM, TO_CONTACT_CENTRE, TO_POLICE
from shared.events.hub import (
    EscalationAcknowledged,
    EscalationExhausted,
    EscalationStepTaken,
    EscalationToContactCentre,
    EscalationToPolice,
)
from tests.conftest import eventually
from tests.fault.test_backbone_faults import stack
from tests.support.hub import HubProcess, SimulatorProcess, critical_concern, read_all
from tests.support.services import bearer

TEACHER = bearer("teacher-2", "education-moe", "referrer")
WORKER = bearer("sw-2", "childrens-hub", "hub_social_worker")


@pytest.fixture
async def hubs() -> AsyncIterator[list[HubProcess]]:
    started: list[HubProcess] = []
    yield started
    for hub in started:
        hub.kill()


@pytest.fixture
def simulators() -> Iterator[list[SimulatorProcess]]:
    started: list[SimulatorProcess] = []
    yield started
    for simulator in started:
        simulator.stop()


async def _raise(hub: HubProcess) -> dict[str, Any]:
    async with hub.client() as client:
        response = await client.post("/concerns", json=critical_concern(), headers=TEACHER)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _escalation(hub: HubProcess, concern_id: str) -> dict[str, Any]:
    async with hub.client() as client:
        response = await client.get(f"/concerns/{concern_id}/escalation", headers=WORKER)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def _of(escalation_id: str) -> Any:
    return lambda e: e.event.escalation_id == escalation_id


async def test_hub_killed_mid_chain_and_restarted_continues_with_no_step_lost_or_doubled(
    kafka_bootstrap: str, hubs: list[HubProcess]
) -> None:
    settings = {"escalation_step_seconds": "1.5", "escalation_rounds": "2", "timer_lease_seconds": "2"}
    hub = HubProcess(**settings)
    hubs.append(hub)
    await hub.start()
    accepted = await _raise(hub)
    escalation_id = accepted["escalation_id"]

    async def stepped_once() -> bool:
        return len((await _escalation(hub, accepted["concern_id"]))["steps"]) >= 2

    await eventually(stepped_once)
    hub.kill()
    steps_before_kill = len((await _escalation_from_db(accepted["concern_id"]))["steps"])
    assert steps_before_kill < 6, "the kill must land mid-chain"

    restarted = HubProcess(**settings)
    hubs.append(restarted)
    await restarted.start()

    async def exhausted() -> bool:
        return bool((await _escalation(restarted, accepted["concern_id"]))["status"] == "exhausted")

    await eventually(exhausted, within=120)
    view = await _escalation(restarted, accepted["concern_id"])
    assert [s["step"] for s in view["steps"]] == [0, 1, 2, 3, 4, 5]

    async def all_published() -> list[Any]:
        found = await read_all(kafka_bootstrap, STREAM, EscalationExhausted, _of(escalation_id))
        return found

    await eventually(all_published, within=60)
    to_centre = await read_all(kafka_bootstrap, TO_CONTACT_CENTRE, EscalationToContactCentre, _of(escalation_id))
    to_police = await read_all(kafka_bootstrap, TO_POLICE, EscalationToPolice, _of(escalation_id))
    # A relay killed between publish and mark-sent may publish a row again, with the same id: at-least-once with
    # one idempotency key per notification. Every step is there, none is a second, different notification.
    by_notification = Counter(e.event.notification_id for e in to_centre + to_police)
    assert set(by_notification) == {
        f"{escalation_id}/0/contact_centre",
        f"{escalation_id}/1/contact_centre",
        f"{escalation_id}/2/police",
        f"{escalation_id}/3/contact_centre",
        f"{escalation_id}/4/contact_centre",
        f"{escalation_id}/5/police",
    }
    for notification in by_notification:
        assert len({e.id for e in to_centre + to_police if e.event.notification_id == notification}) == 1
    taken = await read_all(kafka_bootstrap, STREAM, EscalationStepTaken, _of(escalation_id))
    assert sorted({e.event.step for e in taken}) == [1, 2, 3, 4, 5]


async def _escalation_from_db(concern_id: str) -> dict[str, Any]:
    from sqlalchemy import text

    from deploy.local import database_url
    from shared.db import make_engine

    engine = make_engine(database_url("hub"), "hub")
    try:
        async with engine.connect() as connection:
            steps = (
                await connection.execute(
                    text(
                        "SELECT s.step FROM escalation_steps s JOIN escalations e USING (escalation_id) "
                        "WHERE e.concern_id = :c"
                    ),
                    {"c": concern_id},
                )
            ).all()
    finally:
        await engine.dispose()
    return {"steps": [s.step for s in steps]}


async def test_kafka_down_at_intake_the_concern_is_stored_and_escalated_when_kafka_returns(
    kafka_bootstrap: str, hubs: list[HubProcess]
) -> None:
    hub = HubProcess(escalation_step_seconds="120")
    hubs.append(hub)
    await hub.start()
    stack("kafka-stop")
    try:
        accepted = await _raise(hub)  # accepted with Kafka away: the concern and its escalation are in Postgres
        view = await _escalation(hub, accepted["concern_id"])
        assert view["status"] == "open" and [s["step"] for s in view["steps"]] == [0]
        # A load balancer keeps this hub in service (it takes concerns); readiness says Kafka is away.
        async with hub.client() as client:
            serving = await eventually(lambda: _status(client, "/health/serving", 200))
            ready = await eventually(lambda: _status(client, "/health/ready", 503))
        assert (serving["database"], ready["kafka"]) == ("ok", "unreachable")
    finally:
        stack("kafka-start")

    async def escalated() -> list[Any]:
        found = await read_all(
            kafka_bootstrap, TO_CONTACT_CENTRE, EscalationToContactCentre, _of(accepted["escalation_id"])
        )
        return found

    [sent] = await eventually(escalated, within=180, every=1)
    assert sent.event.step == 0


async def _status(client: httpx.AsyncClient, path: str, wanted: int) -> dict[str, Any] | None:
    response = await client.get(path)
    return response.json() if response.status_code == wanted else None


async def test_escalation_is_acknowledged_with_panel_assignment_and_plans_stopped(
    kafka_bootstrap: str, hubs: list[HubProcess], simulators: list[SimulatorProcess]
) -> None:
    # Only the hub and the contact-centre simulator run: no referral, panel, assignment or plans service.
    simulator = SimulatorProcess("--ack-after", "0.2", "--group", f"cc-sim-{id(simulators)}")
    simulator.start()
    simulators.append(simulator)
    hub = HubProcess(escalation_step_seconds="30")
    hubs.append(hub)
    await hub.start()
    accepted = await _raise(hub)

    async def acknowledged() -> bool:
        return bool((await _escalation(hub, accepted["concern_id"]))["status"] == "acknowledged")

    await eventually(acknowledged, within=90)
    view = await _escalation(hub, accepted["concern_id"])
    assert view["acknowledged_by"] == "simulated-call-taker" and [s["step"] for s in view["steps"]] == [0]

    async def announced() -> list[Any]:
        found = await read_all(kafka_bootstrap, STREAM, EscalationAcknowledged, _of(accepted["escalation_id"]))
        return found

    await eventually(announced, within=60)
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{hub.url}/metrics")).text
    assert "ctp_escalation_acknowledgement_seconds_count" in metrics


pytestmark = pytest.mark.infra
