"""Breaking things on purpose: killed processes and a stopped broker must neither lose nor double an effect."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import ROOT, Processes, consumer_lag, effects, eventually, messages_in, unsent, write_pings


def stack(command: str) -> None:
    """Drive the test stack's own script, as an operator (or a crash) would."""
    subprocess.run(
        [str(ROOT / "deploy" / "local" / "stack.sh"), command],
        env=os.environ | {"STACK": os.environ.get("STACK", "test")},
        check=True,
        capture_output=True,
    )


async def _effects_per_event(sessions: async_sessionmaker[AsyncSession], run: str) -> Counter[int]:
    return Counter(e.seq for e in await effects(sessions, run))


async def test_consumer_killed_mid_stream_then_restarted_gives_every_event_exactly_one_effect(
    sessions: async_sessionmaker[AsyncSession], processes: Processes, topic: str, run_id: str, kafka_bootstrap: str
) -> None:
    group = f"g-{run_id}"
    total = 1500
    processes.start("relay")
    consumer = processes.start("consume", "--topic", topic, "--group", group, "--delay-ms", "2")
    await write_pings(sessions, topic=topic, run=run_id, count=total)

    await eventually(lambda: _at_least(sessions, run_id, 200))
    consumer.send_signal(signal.SIGKILL)
    consumer.wait()
    handled_before_kill = len(await effects(sessions, run_id))
    assert handled_before_kill < total, "the kill must land mid-stream"

    processes.start("consume", "--topic", topic, "--group", group)
    await eventually(lambda: _drained(kafka_bootstrap, group, topic), within=120)

    per_event = await _effects_per_event(sessions, run_id)
    assert sorted(per_event) == list(range(total))
    assert set(per_event.values()) == {1}


async def test_relay_killed_between_publish_and_mark_sent_publishes_again_and_the_inbox_absorbs_the_duplicate(
    sessions: async_sessionmaker[AsyncSession], processes: Processes, topic: str, run_id: str, kafka_bootstrap: str
) -> None:
    group = f"g-{run_id}"
    count = 50
    processes.start("consume", "--topic", topic, "--group", group)
    ids = await write_pings(sessions, topic=topic, run=run_id, count=count, keys=1)

    crashing = processes.start("relay", "--crash-after-publish")
    assert crashing.wait() == -signal.SIGKILL
    assert await messages_in(kafka_bootstrap, topic) == count  # Kafka has them ...
    assert await unsent(sessions, ids) == count  # ... but the outbox does not know

    processes.start("relay")
    await eventually(lambda: _all_sent(sessions, ids))
    assert await messages_in(kafka_bootstrap, topic) == 2 * count  # every event went out twice
    await eventually(lambda: _drained(kafka_bootstrap, group, topic))

    per_event = await _effects_per_event(sessions, run_id)
    assert sorted(per_event) == list(range(count))
    assert set(per_event.values()) == {1}


async def test_writes_commit_while_kafka_is_down_and_the_outbox_drains_when_it_returns(
    sessions: async_sessionmaker[AsyncSession], processes: Processes, topic: str, run_id: str, kafka_bootstrap: str
) -> None:
    group = f"g-{run_id}"
    processes.start("consume", "--topic", topic, "--group", group)
    processes.start("relay")
    stack("kafka-stop")
    try:
        ids = []
        for batch in range(10):
            ids += await write_pings(sessions, topic=topic, run=run_id, count=10, start=batch * 10)
        assert await unsent(sessions, ids) == 100  # accepted and durable, waiting for Kafka
    finally:
        stack("kafka-start")

    await eventually(lambda: _all_sent(sessions, ids), within=180)
    await eventually(lambda: _at_least(sessions, run_id, 100), within=180)
    per_event = await _effects_per_event(sessions, run_id)
    assert sorted(per_event) == list(range(100))
    assert set(per_event.values()) == {1}


async def _at_least(sessions: async_sessionmaker[AsyncSession], run: str, count: int) -> bool:
    return len(await effects(sessions, run)) >= count


async def _drained(bootstrap: str, group: str, topic: str) -> bool:
    return await consumer_lag(bootstrap, group, topic) == 0


async def _all_sent(sessions: async_sessionmaker[AsyncSession], ids: list[str]) -> bool:
    return await unsent(sessions, ids) == 0


pytestmark = pytest.mark.infra
