"""The hub's tables (schema `hub`) and the queries its handlers, routes and watchdog make."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Row,
    Table,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.hub.domain import EscalationStatus
from shared.messaging.tables import outbox, timers

metadata = MetaData()

concerns = Table(
    "concerns",
    metadata,
    Column("concern_id", Text, primary_key=True),
    Column("child_id", Text),
    Column("source", Text, nullable=False),  # http | agency | service
    Column("raised_by", Text, nullable=False),  # the person's subject, the agency's system, or the service
    Column("agency", Text, nullable=False),
    # The report as it arrived (child, reporter, caregivers, what was seen): kept here, never on a public stream.
    Column("report", JSONB, nullable=False),
    Column("categories", JSONB, nullable=False),
    Column("immediate_danger", Boolean, nullable=False),
    Column("life_in_danger", Boolean, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("screened_priority", Text, nullable=False),
    Column("priority", Text, nullable=False),  # the current one: screened, then confirmed or overridden
    Column("priority_rank", Integer, nullable=False),
    Column("rules_fired", JSONB, nullable=False),
    Column("status", Text, nullable=False),  # awaiting_screening | screened | referred
    Column("agency_referral_id", Text),
    Column("referred_at", DateTime(timezone=True)),
    Column("correlation_id", Text, nullable=False),
)
Index("concerns_queue", concerns.c.status, concerns.c.priority_rank, concerns.c.received_at)
Index("concerns_by_child", concerns.c.child_id, concerns.c.received_at)

# Every screening: the tool's at intake, then each confirmation or override with who and why.
screenings = Table(
    "screenings",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("concern_id", Text, nullable=False, index=True),
    Column("kind", Text, nullable=False),  # tool | confirm | override
    Column("priority", Text, nullable=False),
    Column("previous_priority", Text),
    Column("rules_fired", JSONB, nullable=False),
    Column("reason", Text),
    Column("screened_by", Text, nullable=False),
    Column("screened_by_roles", Text, nullable=False),
    Column("screened_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

escalations = Table(
    "escalations",
    metadata,
    Column("escalation_id", Text, primary_key=True),
    Column("concern_id", Text, nullable=False, unique=True),
    Column("child_id", Text),
    Column("policy", JSONB, nullable=False),  # the snapshot frozen when the escalation started
    Column("status", Text, nullable=False),
    Column("next_step", Integer, nullable=False),
    Column("next_due_at", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("acknowledged_by", Text),
    Column("acknowledged_notification_id", Text),
    Column("settled_at", DateTime(timezone=True)),
    Column("settled_by", Text),
    # The watchdog raises one alarm per late step.
    Column("alarmed_step", Integer),
    Column("correlation_id", Text, nullable=False),
)
Index("escalations_open", escalations.c.status, escalations.c.next_due_at)

escalation_steps = Table(
    "escalation_steps",
    metadata,
    Column("escalation_id", Text, primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("round", Integer, nullable=False),
    Column("targets", JSONB, nullable=False),
    Column("notification_ids", JSONB, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("taken_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


async def add_concern(session: AsyncSession, **values: Any) -> bool:
    result = await session.execute(
        insert(concerns).values(**values).on_conflict_do_nothing().returning(concerns.c.concern_id)
    )
    return result.first() is not None


async def concern(session: AsyncSession, *, concern_id: str, for_update: bool = False) -> Row[Any] | None:
    query = select(concerns).where(concerns.c.concern_id == concern_id)
    return (await session.execute(query.with_for_update() if for_update else query)).first()


async def set_concern(session: AsyncSession, *, concern_id: str, **values: Any) -> None:
    await session.execute(update(concerns).where(concerns.c.concern_id == concern_id).values(**values))


async def earlier_concerns(session: AsyncSession, *, child_id: str | None, before: datetime) -> int:
    if child_id is None:
        return 0
    count = await session.scalar(
        select(func.count())
        .select_from(concerns)
        .where(
            concerns.c.child_id == child_id,
            concerns.c.received_at < before,
            concerns.c.received_at >= before - timedelta(days=365),
        )
    )
    return int(count or 0)


async def queue(session: AsyncSession, *, include_screened: bool, limit: int | None = None) -> list[Row[Any]]:
    """Concerns for hub staff: the most urgent first, then the oldest (the first `limit` of them, if given)."""
    statuses = ["awaiting_screening", "screened"] if include_screened else ["awaiting_screening"]
    rows = await session.execute(
        select(concerns, escalations.c.status.label("escalation_status"))
        .outerjoin(escalations, escalations.c.concern_id == concerns.c.concern_id)
        .where(concerns.c.status.in_(statuses))
        .order_by(concerns.c.priority_rank, concerns.c.received_at)
        .limit(limit)
    )
    return list(rows)


async def add_screening(session: AsyncSession, **values: Any) -> datetime:
    screened_at: datetime = (
        await session.execute(screenings.insert().values(**values).returning(screenings.c.screened_at))
    ).scalar_one()
    return screened_at


async def screenings_of(session: AsyncSession, *, concern_id: str) -> list[Row[Any]]:
    rows = await session.execute(
        select(screenings).where(screenings.c.concern_id == concern_id).order_by(screenings.c.id)
    )
    return list(rows)


async def add_escalation(session: AsyncSession, **values: Any) -> None:
    await session.execute(escalations.insert().values(**values))


async def escalation(
    session: AsyncSession, *, escalation_id: str | None = None, concern_id: str | None = None, for_update: bool = False
) -> Row[Any] | None:
    query = select(escalations)
    if escalation_id is not None:
        query = query.where(escalations.c.escalation_id == escalation_id)
    if concern_id is not None:
        query = query.where(escalations.c.concern_id == concern_id)
    return (await session.execute(query.with_for_update() if for_update else query)).first()


async def set_escalation(session: AsyncSession, *, escalation_id: str, **values: Any) -> None:
    await session.execute(update(escalations).where(escalations.c.escalation_id == escalation_id).values(**values))


async def add_step(session: AsyncSession, **values: Any) -> None:
    # A primary key (escalation, step): a step recorded twice would fail the transaction rather than double it.
    await session.execute(escalation_steps.insert().values(**values))


async def steps_of(session: AsyncSession, *, escalation_id: str) -> list[Row[Any]]:
    rows = await session.execute(
        select(escalation_steps)
        .where(escalation_steps.c.escalation_id == escalation_id)
        .order_by(escalation_steps.c.step)
    )
    return list(rows)


async def late_steps(session: AsyncSession, *, bound: timedelta) -> list[Row[Any]]:
    """Open escalations whose next step is due more than `bound` ago and has not been alarmed yet."""
    rows = await session.execute(
        select(escalations)
        .where(
            escalations.c.status == EscalationStatus.OPEN,
            escalations.c.next_due_at < func.now() - bound,
            func.coalesce(escalations.c.alarmed_step, -1) != escalations.c.next_step,
        )
        .with_for_update(skip_locked=True)
    )
    return list(rows)


async def undelivered(session: AsyncSession, *, topics: list[str], bound: timedelta) -> list[Row[Any]]:
    """Escalation messages still in the outbox (Kafka away, relay stalled) longer than `bound`."""
    rows = await session.execute(
        select(outbox.c.event_id, outbox.c.topic, outbox.c.created_at).where(
            outbox.c.sent_at.is_(None), outbox.c.topic.in_(topics), outbox.c.created_at < func.now() - bound
        )
    )
    return list(rows)


async def overdue_counts(session: AsyncSession, *, bound: timedelta, timer_kind: str) -> int:
    """Pending step timers due more than `bound` ago: a stalled scheduler shows here first."""
    count = await session.scalar(
        select(func.count())
        .select_from(timers)
        .where(timers.c.kind == timer_kind, timers.c.state == "pending", timers.c.due_at < func.now() - bound)
    )
    return int(count or 0)


# Migration 0003's trigger NOTIFYs this channel with {"concern_id": ...} whenever a concern or its escalation changes.
CONSOLE_CHANNEL = "hub_console"
