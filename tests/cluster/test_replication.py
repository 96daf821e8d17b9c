"""Kafka's replication as production runs it (issue 10), in the spirit of Kafka's own replication test: a three-broker
KRaft cluster (replication factor 3, min.insync.replicas=2, unclean leader election off), the five services and a
steady stream of journeys on it, and the broker leading the most busy partitions hard-killed (SIGKILL) and brought
back, three times. Every event a broker acknowledged to a producer is on its topic and handled exactly once in effect.

Not in `make test` (it starts a cluster and ten processes): run it with `make cluster-test`. It prints the counts.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text

from deploy.local import SERVICES, database_url
from deploy.local.fleet import Fleet
from shared.db import make_engine
from shared.messaging.topics import create_topics
from tests.conftest import ROOT, eventually
from tests.support.journeys import (
    OUTCOMES,
    STREAMS,
    assert_every_effect_once,
    assert_handled_in_order,
    play_journeys,
    records_about,
)

CLUSTER = ROOT / "deploy" / "local" / "cluster.sh"
BOOTSTRAP = "127.0.0.1:32091,127.0.0.1:32092,127.0.0.1:32093"
PORT_BASE = 18800
JOURNEYS = 8
AT_ONCE = 2
STEPS = 13  # per journey (deploy/local/demo.py)
KILL_AT_STEP = (6, 36, 66)  # of JOURNEYS * STEPS = 104; each victim comes back 8 steps later
BACK_AFTER_STEPS = 8


def cluster(*args: str) -> None:
    subprocess.run([str(CLUSTER), *args], check=True, capture_output=True, text=True)


@pytest.fixture
def kafka_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    cluster("clean")
    cluster("start")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", BOOTSTRAP)  # what the services and the simulator connect to
    try:
        yield BOOTSTRAP
    finally:
        cluster("stop")


async def busiest_leader(bootstrap: str) -> int:
    """The broker leading the most partitions of the topics the journeys write to."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([*STREAMS, OUTCOMES])
    finally:
        await admin.close()
    leaders = Counter(p["leader"] for topic in described for p in topic["partitions"] if p["leader"] >= 0)
    leader: int = leaders.most_common(1)[0][0]
    return leader


async def acknowledged_since(started: datetime) -> list[tuple[str, str]]:
    """(topic, event id) of every outbox row published since `started`: a broker acknowledged each (acks=all)."""
    acknowledged: list[tuple[str, str]] = []
    for service in SERVICES:
        engine = make_engine(database_url(service), service)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text("SELECT topic, event_id FROM outbox WHERE created_at >= :started AND sent_at IS NOT NULL"),
                    {"started": started},
                )
                acknowledged += [(topic, event_id) for topic, event_id in rows]
        finally:
            await engine.dispose()
    return acknowledged


async def test_leaders_hard_killed_under_a_stream_of_journeys_lose_no_acknowledged_event_and_double_no_effect(
    kafka_cluster: str, tmp_path: Path
) -> None:
    await create_topics(kafka_cluster, replication=3)
    fleet = Fleet(PORT_BASE, tmp_path, ack_after=0)
    fleet.start_all()
    steps = 0
    stepped = asyncio.Event()
    killed: list[int] = []

    async def note(_: str) -> None:
        nonlocal steps
        steps += 1
        stepped.set()

    async def reached(step: int) -> None:
        while steps < step:
            stepped.clear()
            await stepped.wait()

    async def crash_leaders() -> None:
        for step in KILL_AT_STEP:
            await reached(step)
            victim = await busiest_leader(kafka_cluster)
            await asyncio.to_thread(cluster, "kill", str(victim))
            killed.append(victim)
            await reached(step + BACK_AFTER_STEPS)  # the journeys go on with two brokers of three
            await asyncio.to_thread(cluster, "start-node", str(victim))

    try:
        await eventually(fleet.ready, within=180)
        started = datetime.now(UTC)
        chaos = asyncio.create_task(crash_leaders())
        children = await play_journeys(PORT_BASE, kafka_cluster, JOURNEYS, at_once=AT_ONCE, after_step=note)
        await asyncio.wait_for(chaos, 120)
    finally:
        fleet.stop_all()

    assert len(killed) == len(KILL_AT_STEP) and len(children) == JOURNEYS
    acknowledged = await acknowledged_since(started)
    everything = await records_about(kafka_cluster, sorted({topic for topic, _ in acknowledged}), None)
    copies = Counter((r.topic, r.envelope.id) for r in everything)
    lost = [ack for ack in acknowledged if ack not in copies]
    duplicates = sum(count - 1 for count in copies.values())
    about = [r for r in everything if r.child_id in children]
    assert_every_effect_once(about, children)
    checked = await assert_handled_in_order(about)
    print(
        f"\nreplication: brokers killed {killed}; {JOURNEYS} journeys completed; {len(acknowledged)} events "
        f"acknowledged, {len(acknowledged) - len(lost)} found on their topics, {len(lost)} lost; {duplicates} "
        f"redelivered copies (absorbed by the inboxes); {checked} per-child sequences handled in order"
    )
    assert not lost
