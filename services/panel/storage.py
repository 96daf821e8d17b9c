"""The panel service's tables (schema `panel`) and the queries its handlers and routes make."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, MetaData, Row, Table, Text, func, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.panel.domain import ReviewStatus

metadata = MetaData()

reviews = Table(
    "reviews",
    metadata,
    Column("referral_id", Text, primary_key=True),
    Column("child_id", Text, nullable=False),
    Column("agency", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("reasons", JSONB, nullable=False),
    Column("needs", JSONB, nullable=False),
    Column("participation", Text, nullable=False),
    Column("family_preference", Boolean, nullable=False),
    Column("sibling_group_id", Text, nullable=False),
    Column("urgency", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    # The child's journey: decisions made over HTTP continue the referral's correlation.
    Column("correlation_id", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("reviews_queue", reviews.c.status, reviews.c.urgency, reviews.c.due_at)

# Every decision and reconsideration, with who made it and why: the record of the panel's reasoning.
decisions = Table(
    "decisions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("referral_id", Text, nullable=False, index=True),
    Column("kind", Text, nullable=False),  # accept | decline | more_information | reconsideration
    Column("reason", Text, nullable=False),
    Column("details", JSONB, nullable=False),
    Column("decided_by", Text, nullable=False),
    Column("decided_by_agency", Text, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

plan_reviews = Table(
    "plan_reviews",
    metadata,
    Column("plan_id", Text, primary_key=True),
    Column("child_id", Text, nullable=False),
    Column("stage", Text, nullable=False),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False),  # awaiting_review | reviewed
    Column("outcome", Text),
    Column("advice", JSONB),
    Column("note", Text),
    Column("reviewed_by", Text),
    Column("reviewed_at", DateTime(timezone=True)),
    Column("correlation_id", Text, nullable=False),
)


async def add_review(session: AsyncSession, **values: Any) -> bool:
    result = await session.execute(
        insert(reviews).values(**values).on_conflict_do_nothing().returning(reviews.c.referral_id)
    )
    return result.first() is not None


async def review(session: AsyncSession, *, referral_id: str, for_update: bool = False) -> Row[Any] | None:
    query = select(reviews).where(reviews.c.referral_id == referral_id)
    return (await session.execute(query.with_for_update() if for_update else query)).first()


async def set_review(session: AsyncSession, *, referral_id: str, **values: Any) -> None:
    await session.execute(
        update(reviews).where(reviews.c.referral_id == referral_id).values(**values, updated_at=func.now())
    )


async def queue(session: AsyncSession) -> list[Row[Any]]:
    """Reviews waiting for the panel: high urgency first, then the earliest due."""
    rows = await session.execute(
        select(reviews)
        .where(reviews.c.status == ReviewStatus.AWAITING_DECISION)
        .order_by((reviews.c.urgency != "high"), reviews.c.due_at)
    )
    return list(rows)


async def add_decision(session: AsyncSession, **values: Any) -> datetime:
    decided_at: datetime = (
        await session.execute(decisions.insert().values(**values).returning(decisions.c.decided_at))
    ).scalar_one()
    return decided_at


async def decisions_of(session: AsyncSession, *, referral_id: str) -> list[Row[Any]]:
    rows = await session.execute(
        select(decisions).where(decisions.c.referral_id == referral_id).order_by(decisions.c.id)
    )
    return list(rows)


async def add_plan_review(session: AsyncSession, **values: Any) -> None:
    await session.execute(insert(plan_reviews).values(**values).on_conflict_do_nothing())


async def plan_review(session: AsyncSession, *, plan_id: str) -> Row[Any] | None:
    return (
        await session.execute(select(plan_reviews).where(plan_reviews.c.plan_id == plan_id).with_for_update())
    ).first()


async def plan_review_queue(session: AsyncSession) -> list[Row[Any]]:
    rows = await session.execute(
        select(plan_reviews).where(plan_reviews.c.status == "awaiting_review").order_by(plan_reviews.c.submitted_at)
    )
    return list(rows)


async def set_plan_review(session: AsyncSession, *, plan_id: str, **values: Any) -> None:
    await session.execute(update(plan_reviews).where(plan_reviews.c.plan_id == plan_id).values(**values))
