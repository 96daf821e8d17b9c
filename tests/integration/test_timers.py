"""Durable timers on the real database: each due step fires once, whatever restarts and races happen."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.messaging.tables import timers
from shared.timers import Timer, TimerRunner, cancel, schedule


def runner(sessions: async_sessionmaker[AsyncSession], kind: str, lease_seconds: float = 60) -> TimerRunner:
    async def fire(session: AsyncSession, timer: Timer) -> None:
        await session.execute(
            text("INSERT INTO fired (kind, key, fence) VALUES (:kind, :key, :fence)"),
            {"kind": timer.kind, "key": timer.key, "fence": timer.fence},
        )

    return TimerRunner(sessions=sessions, handlers={kind: fire}, lease_seconds=lease_seconds)


async def fired_keys(sessions: async_sessionmaker[AsyncSession], kind: str) -> list[str]:
    async with sessions() as session:
        return list(
            (await session.scalars(text("SELECT key FROM fired WHERE kind = :k ORDER BY key"), {"k": kind})).all()
        )


def a_kind() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


async def test_a_due_timer_fires_once_and_a_future_one_waits(sessions: async_sessionmaker[AsyncSession]) -> None:
    kind, now = a_kind(), datetime.now(UTC)
    async with sessions() as session, session.begin():
        await schedule(session, kind=kind, key="review-due", due_at=now - timedelta(seconds=1))
        await schedule(session, kind=kind, key="next-month", due_at=now + timedelta(days=30))
    timer_runner = runner(sessions, kind)

    assert await timer_runner.fire_due() == 1
    assert await timer_runner.fire_due() == 0
    assert await fired_keys(sessions, kind) == ["review-due"]


async def test_two_runners_racing_fire_each_due_timer_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    kind, due = a_kind(), datetime.now(UTC) - timedelta(seconds=1)
    async with sessions() as session, session.begin():
        for n in range(60):
            await schedule(session, kind=kind, key=f"child-{n:02}", due_at=due)
    first, second = runner(sessions, kind), runner(sessions, kind)

    while sum(await asyncio.gather(first.fire_due(), second.fire_due())):
        pass

    assert await fired_keys(sessions, kind) == [f"child-{n:02}" for n in range(60)]


async def test_a_runner_that_lost_its_lease_does_nothing_when_it_comes_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    kind = a_kind()
    async with sessions() as session, session.begin():
        await schedule(session, kind=kind, key="escalate", due_at=datetime.now(UTC) - timedelta(seconds=1))
    stalled, healthy = runner(sessions, kind), runner(sessions, kind)

    [claimed] = await stalled._claim()  # claimed, then the process stalls past its lease
    async with sessions() as session, session.begin():
        await session.execute(
            update(timers).where(timers.c.id == claimed.id).values(lease_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert await healthy.fire_due() == 1
    assert await stalled._fire(claimed) == 0  # its fence token is stale

    assert await fired_keys(sessions, kind) == ["escalate"]


async def test_a_cancelled_timer_never_fires_and_rescheduling_moves_the_one_pending_timer(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    kind, past = a_kind(), datetime.now(UTC) - timedelta(seconds=1)
    async with sessions() as session, session.begin():
        await schedule(session, kind=kind, key="cancelled", due_at=past)
        await schedule(session, kind=kind, key="moved", due_at=past)
        await schedule(session, kind=kind, key="moved", due_at=past + timedelta(days=1))
        assert await cancel(session, kind=kind, key="cancelled")

    assert await runner(sessions, kind).fire_due() == 0
    assert await fired_keys(sessions, kind) == []


async def test_a_firing_timer_can_schedule_its_own_next_step(sessions: async_sessionmaker[AsyncSession]) -> None:
    kind = a_kind()

    async def step_then_schedule_the_next(session: AsyncSession, timer: Timer) -> None:
        number = int(timer.payload.get("step", 1))
        await session.execute(
            text("INSERT INTO fired (kind, key, fence) VALUES (:kind, :key, :fence)"),
            {"kind": kind, "key": f"step-{number}", "fence": timer.fence},
        )
        if number < 3:
            due = datetime.now(UTC) - timedelta(seconds=1)
            await schedule(session, kind=kind, key="escalation", due_at=due, payload={"step": number + 1})

    async with sessions() as session, session.begin():
        await schedule(session, kind=kind, key="escalation", due_at=datetime.now(UTC) - timedelta(seconds=1))
    chain = TimerRunner(sessions=sessions, handlers={kind: step_then_schedule_the_next})
    while await chain.fire_due():
        pass
    assert await fired_keys(sessions, kind) == ["step-1", "step-2", "step-3"]
