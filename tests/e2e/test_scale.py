"""Several instances per service (issue 10): two of each service in one consumer group per service, a stream of
journeys through them, and one instance of each SIGKILLed part-way. Every journey completes, each effect happens once,
and each service handled each child's events in order."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from deploy.local import SERVICES
from deploy.local.fleet import Fleet, instance_name
from tests.conftest import eventually
from tests.support.journeys import (
    OUTCOMES,
    STREAMS,
    assert_every_effect_once,
    assert_handled_in_order,
    play_journeys,
    records_about,
)

PORT_BASE = 18700
JOURNEYS = 6
AT_ONCE = 3


async def test_two_instances_of_each_service_lose_one_each_mid_stream_and_every_journey_completes_once_in_order(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    fleet = Fleet(PORT_BASE, tmp_path, instances=dict.fromkeys(SERVICES, 2))
    fleet.start_all()
    try:
        await eventually(fleet.ready, within=180)
        reached: Counter[str] = Counter()
        crash_now = asyncio.Event()

        async def note(step: str) -> None:
            reached[step.split()[0]] += 1
            if reached["manager"] >= 2:  # two journeys have a lead assigned: the others are mid-way
                crash_now.set()

        async def crash() -> None:
            await crash_now.wait()
            for service in SERVICES:
                fleet.kill(instance_name(service, 1))  # the second instance; its partitions move to the first

        crasher = asyncio.create_task(crash())
        children = await play_journeys(PORT_BASE, kafka_bootstrap, JOURNEYS, at_once=AT_ONCE, after_step=note)
        assert crasher.done(), "the second instances were never killed"
    finally:
        fleet.stop_all()

    assert len(children) == JOURNEYS
    records = await records_about(kafka_bootstrap, (*STREAMS, OUTCOMES), children)
    assert_every_effect_once(records, children)
    assert await assert_handled_in_order(records) >= JOURNEYS
