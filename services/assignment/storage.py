"""The assignment service's tables (schema `assignment`) and the queries its handlers and routes make."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
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

from services.assignment.domain import Practitioner
from shared.events.codes import NeedDomain

metadata = MetaData()

practitioners = Table(
    "practitioners",
    metadata,
    Column("practitioner_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("agency", Text, nullable=False),
    Column("discipline", Text, nullable=False),
    Column("needs", JSONB, nullable=False),
    Column("languages", JSONB, nullable=False),
    Column("cultural_competencies", JSONB, nullable=False),
    Column("locality", Text),
    Column("max_caseload", Integer, nullable=False),
    Column("caseload", Integer, nullable=False, server_default="0"),
    Column("manager_id", Text, nullable=False),
    Column("active", Boolean, nullable=False, server_default="true"),
)

# What this service knows of each child it may have to find a lead for, gathered from the referral and the panel.
children = Table(
    "children",
    metadata,
    Column("child_id", Text, primary_key=True),
    Column("referral_id", Text, nullable=False),
    Column("sibling_group_id", Text, nullable=False),
    Column("locality", Text),
    Column("iwi_affiliated", Boolean, nullable=False),
    Column("involved_practitioner_ids", JSONB, nullable=False),
    Column("preferred_practitioner_id", Text),
    Column("participation", Text),
    Column("accepted", Boolean, nullable=False, server_default="false"),
    Column("needs_profile", JSONB),
    Column("withdrawn", Boolean, nullable=False, server_default="false"),
    Column("lead_practitioner_id", Text),
    Column("lead_manager_id", Text),
    Column("correlation_id", Text, nullable=False),
)
Index("children_by_sibling_group", children.c.sibling_group_id)

# One row per proposal to a manager, in order; the score's parts explain each.
proposals = Table(
    "proposals",
    metadata,
    Column("proposal_id", Text, primary_key=True),
    Column("child_id", Text, nullable=False, index=True),
    Column("round", Integer, nullable=False),  # 1 for the first search, +1 for each reassignment
    Column("practitioner_id", Text, nullable=False),
    Column("manager_id", Text, nullable=False),
    Column("score", Integer, nullable=False),
    Column("parts", JSONB, nullable=False),
    Column("basis", Text, nullable=False),
    Column("sibling_exception", Text),
    Column("status", Text, nullable=False),  # proposed | confirmed | declined | timed_out | no_capacity | ended
    Column("reason", Text),  # reassignment reason for the round, decline reason for the proposal
    Column("proposed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("respond_by", DateTime(timezone=True), nullable=False),
    Column("decided_by", Text),
    Column("decided_at", DateTime(timezone=True)),
)
Index("proposals_by_manager", proposals.c.manager_id, proposals.c.status)


def practitioner_of(row: Any) -> Practitioner:
    return Practitioner(
        practitioner_id=row.practitioner_id,
        agency=row.agency,
        discipline=row.discipline,
        needs=frozenset(NeedDomain(n) for n in row.needs),
        languages=frozenset(row.languages),
        cultural_competencies=frozenset(row.cultural_competencies),
        locality=row.locality,
        max_caseload=row.max_caseload,
        caseload=row.caseload,
        manager_id=row.manager_id,
        active=row.active,
    )


async def practitioner_rows(session: AsyncSession) -> list[Row[Any]]:
    return list(await session.execute(select(practitioners).order_by(practitioners.c.practitioner_id)))


async def all_practitioners(session: AsyncSession) -> list[Practitioner]:
    return [practitioner_of(row) for row in await practitioner_rows(session)]


async def practitioner(session: AsyncSession, *, practitioner_id: str) -> Row[Any] | None:
    return (
        await session.execute(select(practitioners).where(practitioners.c.practitioner_id == practitioner_id))
    ).first()


async def put_practitioner(session: AsyncSession, **values: Any) -> None:
    statement = insert(practitioners).values(**values)
    changes = {k: statement.excluded[k] for k in values if k not in ("practitioner_id", "caseload")}
    await session.execute(
        statement.on_conflict_do_update(index_elements=[practitioners.c.practitioner_id], set_=changes)
    )


async def take_slot(session: AsyncSession, *, practitioner_id: str) -> bool:
    """One more case for the practitioner if, and only if, a slot is free: racing confirmations cannot overbook."""
    result = await session.execute(
        update(practitioners)
        .where(
            practitioners.c.practitioner_id == practitioner_id,
            practitioners.c.caseload < practitioners.c.max_caseload,
            practitioners.c.active,
        )
        .values(caseload=practitioners.c.caseload + 1)
        .returning(practitioners.c.practitioner_id)
    )
    return result.first() is not None


async def release_slot(session: AsyncSession, *, practitioner_id: str) -> None:
    await session.execute(
        update(practitioners)
        .where(practitioners.c.practitioner_id == practitioner_id, practitioners.c.caseload > 0)
        .values(caseload=practitioners.c.caseload - 1)
    )


async def child(session: AsyncSession, *, child_id: str, for_update: bool = True) -> Row[Any] | None:
    query = select(children).where(children.c.child_id == child_id)
    return (await session.execute(query.with_for_update() if for_update else query)).first()


async def upsert_child(session: AsyncSession, *, child_id: str, **values: Any) -> None:
    statement = insert(children).values(child_id=child_id, **values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[children.c.child_id], set_={k: statement.excluded[k] for k in values}
        )
    )


async def set_child(session: AsyncSession, *, child_id: str, **values: Any) -> bool:
    result = await session.execute(
        update(children).where(children.c.child_id == child_id).values(**values).returning(children.c.child_id)
    )
    return result.first() is not None


async def sibling_lead(session: AsyncSession, *, child_id: str, sibling_group_id: str) -> str | None:
    return await session.scalar(
        select(children.c.lead_practitioner_id)
        .where(
            children.c.sibling_group_id == sibling_group_id,
            children.c.child_id != child_id,
            children.c.lead_practitioner_id.is_not(None),
        )
        .order_by(children.c.child_id)
        .limit(1)
    )


async def add_proposal(session: AsyncSession, **values: Any) -> None:
    await session.execute(proposals.insert().values(**values))


async def proposal(session: AsyncSession, *, proposal_id: str, for_update: bool = True) -> Row[Any] | None:
    query = select(proposals).where(proposals.c.proposal_id == proposal_id)
    return (await session.execute(query.with_for_update() if for_update else query)).first()


async def set_proposal(session: AsyncSession, *, proposal_id: str, **values: Any) -> None:
    await session.execute(update(proposals).where(proposals.c.proposal_id == proposal_id).values(**values))


async def open_proposal(session: AsyncSession, *, child_id: str) -> Row[Any] | None:
    return (
        await session.execute(
            select(proposals)
            .where(proposals.c.child_id == child_id, proposals.c.status == "proposed")
            .with_for_update()
        )
    ).first()


async def round_of(session: AsyncSession, *, child_id: str) -> int:
    return int(
        await session.scalar(
            select(func.coalesce(func.max(proposals.c.round), 0)).where(proposals.c.child_id == child_id)
        )
        or 0
    )


async def tried_in_round(session: AsyncSession, *, child_id: str, round_number: int) -> set[str]:
    rows = await session.scalars(
        select(proposals.c.practitioner_id).where(proposals.c.child_id == child_id, proposals.c.round == round_number)
    )
    return set(rows)


async def proposals_for_manager(session: AsyncSession, *, manager_id: str) -> list[Row[Any]]:
    rows = await session.execute(
        select(proposals)
        .where(proposals.c.manager_id == manager_id, proposals.c.status == "proposed")
        .order_by(proposals.c.respond_by)
    )
    return list(rows)


async def proposals_of(session: AsyncSession, *, child_id: str) -> list[Row[Any]]:
    rows = await session.execute(
        select(proposals).where(proposals.c.child_id == child_id).order_by(proposals.c.proposed_at)
    )
    return list(rows)
