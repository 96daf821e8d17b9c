"""The plans service's tables (schema `plans`) and the queries its handlers and routes make."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Date, DateTime, Index, Integer, MetaData, Row, Table, Text, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.plans.domain import Member, Stage

metadata = MetaData()

cases = Table(
    "cases",
    metadata,
    Column("case_id", Text, primary_key=True),
    Column("child_id", Text, nullable=False),
    Column("referral_id", Text, nullable=False),
    Column("lead_practitioner_id", Text, nullable=False),
    Column("lead_manager_id", Text),
    Column("stage", Text, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("closed_at", DateTime(timezone=True)),
    Column("exit_reason", Text),
    Column("handover_to", JSONB),
    Column("correlation_id", Text, nullable=False),
)
# One open case per child: the database refuses a second.
Index("one_open_case_per_child", cases.c.child_id, unique=True, postgresql_where=text("stage <> 'closed'"))

members = Table(
    "members",
    metadata,
    Column("case_id", Text, primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # child | whanau | lead | practitioner
    Column("name", Text),
    Column("agency", Text),
    Column("role", Text),
    Column("legal_basis", Text),
    Column("joined_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("left_at", DateTime(timezone=True)),
)

# Practitioners the referral named as already working with the child: they join the Action Network once the family's
# consent covers their agency (once only: a lead who later removes one is not overruled).
referred_practitioners = Table(
    "referred_practitioners",
    metadata,
    Column("referral_id", Text, primary_key=True),
    Column("practitioner_id", Text, primary_key=True),
    Column("agency", Text),
    Column("role", Text, nullable=False),
    Column("joined_case_id", Text),
)

consents = Table(
    "consents",
    metadata,
    Column("child_id", Text, primary_key=True),
    Column("participation", Text, nullable=False),
    Column("agencies", JSONB, nullable=False),
    Column("version", Integer, nullable=False),
)

assessments = Table(
    "assessments",
    metadata,
    Column("case_id", Text, primary_key=True),
    Column("assessment", JSONB, nullable=False),
    Column("evidence", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("completed_at", DateTime(timezone=True)),
    Column("completed_by", Text),
)

plans = Table(
    "plans",
    metadata,
    Column("plan_id", Text, primary_key=True),
    Column("case_id", Text, nullable=False),
    Column("child_id", Text, nullable=False),
    Column("status", Text, nullable=False),  # draft | submitted | endorsed | closed
    Column("panel_advice", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("endorsed_at", DateTime(timezone=True)),
)
# ONE Child's Plan per child: enforced by the database, not only by the code.
Index("one_active_plan_per_child", plans.c.child_id, unique=True, postgresql_where=text("status <> 'closed'"))

goals = Table(
    "goals",
    metadata,
    Column("goal_id", Text, primary_key=True),
    Column("plan_id", Text, nullable=False, index=True),
    Column("description", Text, nullable=False),
    Column("need", Text, nullable=False),
    Column("set_with_child", Text, nullable=False),
    Column("set_with_whanau", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="active"),  # active | set_aside (by a revision)
)

actions = Table(
    "actions",
    metadata,
    Column("action_id", Text, primary_key=True),
    Column("plan_id", Text, nullable=False, index=True),
    Column("goal_id", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("owner_member_id", Text, nullable=False),
    Column("due_on", Date, nullable=False),
    Column("status", Text, nullable=False),  # open | done | cancelled
    Column("done_at", DateTime(timezone=True)),
)

reviews = Table(
    "reviews",
    metadata,
    Column("review_id", Text, primary_key=True),
    Column("case_id", Text, nullable=False, index=True),
    Column("outcome", Text, nullable=False),
    Column("notes", Text, nullable=False),
    Column("held_by", Text, nullable=False),
    Column("held_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Concerns the hub screened about a child while their case was open: linked once, the lead told once.
linked_concerns = Table(
    "linked_concerns",
    metadata,
    Column("concern_id", Text, primary_key=True),
    Column("case_id", Text, nullable=False, index=True),
    Column("priority", Text, nullable=False),
    Column("linked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# What the child and the whānau said of the help at exit: ratings travel on CaseClosed; the words stay here.
exit_feedback = Table(
    "exit_feedback",
    metadata,
    Column("case_id", Text, primary_key=True),
    Column("child_rating", Integer),
    Column("whanau_rating", Integer),
    Column("child_words", Text, nullable=False),
    Column("whanau_words", Text, nullable=False),
    Column("recorded_by", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The child's journey across services, one row per event about the child (codes and ids; details stay at source).
timeline = Table(
    "timeline",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("child_id", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("source", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("summary", JSONB, nullable=False),
)
Index("timeline_by_child", timeline.c.child_id, timeline.c.at)


async def open_case(session: AsyncSession, *, child_id: str, for_update: bool = True) -> Row[Any] | None:
    query = select(cases).where(cases.c.child_id == child_id, cases.c.stage != Stage.CLOSED)
    return (await session.execute(query.with_for_update() if for_update else query)).first()


async def case(session: AsyncSession, *, case_id: str, for_update: bool = True) -> Row[Any] | None:
    query = select(cases).where(cases.c.case_id == case_id)
    return (await session.execute(query.with_for_update() if for_update else query)).first()


async def add_case(session: AsyncSession, **values: Any) -> None:
    await session.execute(cases.insert().values(**values))


async def set_case(session: AsyncSession, *, case_id: str, **values: Any) -> None:
    await session.execute(update(cases).where(cases.c.case_id == case_id).values(**values))


async def add_member(session: AsyncSession, **values: Any) -> None:
    statement = insert(members).values(**values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[members.c.case_id, members.c.member_id],
            set_={k: statement.excluded[k] for k in values if k not in ("case_id", "member_id")} | {"left_at": None},
        )
    )


async def remove_member(session: AsyncSession, *, case_id: str, member_id: str) -> bool:
    result = await session.execute(
        update(members)
        .where(members.c.case_id == case_id, members.c.member_id == member_id, members.c.left_at.is_(None))
        .values(left_at=func.now())
        .returning(members.c.member_id)
    )
    return result.first() is not None


async def current_members(session: AsyncSession, *, case_id: str) -> list[Row[Any]]:
    rows = await session.execute(
        select(members).where(members.c.case_id == case_id, members.c.left_at.is_(None)).order_by(members.c.joined_at)
    )
    return list(rows)


def as_members(rows: list[Row[Any]]) -> list[Member]:
    return [Member(r.member_id, r.kind, r.agency, r.legal_basis) for r in rows]


async def add_referred_practitioners(session: AsyncSession, *, referral_id: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(
            insert(referred_practitioners)
            .values([{"referral_id": referral_id, **r} for r in rows])
            .on_conflict_do_nothing()
        )


async def referred_practitioners_of(session: AsyncSession, *, referral_id: str) -> list[Row[Any]]:
    rows = await session.execute(
        select(referred_practitioners)
        .where(referred_practitioners.c.referral_id == referral_id)
        .order_by(referred_practitioners.c.practitioner_id)
    )
    return list(rows)


async def set_referred_joined(session: AsyncSession, *, referral_id: str, practitioner_id: str, case_id: str) -> None:
    await session.execute(
        update(referred_practitioners)
        .where(
            referred_practitioners.c.referral_id == referral_id,
            referred_practitioners.c.practitioner_id == practitioner_id,
        )
        .values(joined_case_id=case_id)
    )


async def consented_agencies(session: AsyncSession, *, child_id: str) -> frozenset[str]:
    row = (await session.execute(select(consents).where(consents.c.child_id == child_id))).first()
    if row is None or row.participation != "yes":
        return frozenset()
    return frozenset(row.agencies)


async def put_consent(
    session: AsyncSession, *, child_id: str, participation: str, agencies: list[str], version: int
) -> None:
    statement = insert(consents).values(
        child_id=child_id, participation=participation, agencies=agencies, version=version
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[consents.c.child_id],
            set_={"participation": participation, "agencies": agencies, "version": version},
            # Consent events can arrive out of order after a retry: never let an older version win.
            where=consents.c.version < statement.excluded.version,
        )
    )


async def assessment(session: AsyncSession, *, case_id: str, lock: bool = False) -> Row[Any] | None:
    query = select(assessments).where(assessments.c.case_id == case_id)
    return (await session.execute(query.with_for_update() if lock else query)).first()


async def put_assessment(session: AsyncSession, *, case_id: str, content: dict[str, Any]) -> None:
    statement = insert(assessments).values(case_id=case_id, assessment=content)
    await session.execute(
        statement.on_conflict_do_update(index_elements=[assessments.c.case_id], set_={"assessment": content})
    )


async def add_evidence(session: AsyncSession, *, case_id: str, evidence: list[dict[str, Any]]) -> None:
    await session.execute(update(assessments).where(assessments.c.case_id == case_id).values(evidence=evidence))


async def active_plan(session: AsyncSession, *, case_id: str, lock: bool = False) -> Row[Any] | None:
    query = select(plans).where(plans.c.case_id == case_id, plans.c.status != "closed")
    return (await session.execute(query.with_for_update() if lock else query)).first()


async def add_plan(session: AsyncSession, **values: Any) -> None:
    await session.execute(plans.insert().values(**values))


async def set_plan(session: AsyncSession, *, plan_id: str, **values: Any) -> None:
    await session.execute(update(plans).where(plans.c.plan_id == plan_id).values(**values))


async def plan(session: AsyncSession, *, plan_id: str, lock: bool = False) -> Row[Any] | None:
    query = select(plans).where(plans.c.plan_id == plan_id)
    return (await session.execute(query.with_for_update() if lock else query)).first()


async def add_goal(session: AsyncSession, **values: Any) -> None:
    await session.execute(goals.insert().values(**values))


async def add_action(session: AsyncSession, **values: Any) -> None:
    await session.execute(actions.insert().values(**values))


async def goals_of(session: AsyncSession, *, plan_id: str) -> list[Row[Any]]:
    """The plan's current goals (a revision sets earlier ones aside; they stay on record)."""
    return list(await session.execute(select(goals).where(goals.c.plan_id == plan_id, goals.c.status == "active")))


async def actions_of(session: AsyncSession, *, plan_id: str) -> list[Row[Any]]:
    return list(await session.execute(select(actions).where(actions.c.plan_id == plan_id).order_by(actions.c.due_on)))


async def action(session: AsyncSession, *, action_id: str, lock: bool = False) -> Row[Any] | None:
    query = select(actions).where(actions.c.action_id == action_id)
    return (await session.execute(query.with_for_update() if lock else query)).first()


async def set_action(session: AsyncSession, *, action_id: str, **values: Any) -> None:
    await session.execute(update(actions).where(actions.c.action_id == action_id).values(**values))


async def add_review(session: AsyncSession, **values: Any) -> None:
    await session.execute(reviews.insert().values(**values))


async def add_timeline(
    session: AsyncSession,
    *,
    event_id: str,
    child_id: str,
    at: datetime,
    source: str,
    type_: str,
    summary: dict[str, Any],
) -> None:
    await session.execute(
        insert(timeline)
        .values(event_id=event_id, child_id=child_id, at=at, source=source, type=type_, summary=summary)
        .on_conflict_do_nothing()
    )


async def timeline_of(session: AsyncSession, *, child_id: str) -> list[Row[Any]]:
    return list(await session.execute(select(timeline).where(timeline.c.child_id == child_id).order_by(timeline.c.at)))


async def set_assessment_done(session: AsyncSession, *, case_id: str, by: str, at: datetime) -> None:
    await session.execute(
        update(assessments).where(assessments.c.case_id == case_id).values(completed_at=at, completed_by=by)
    )


async def cancel_open_actions(session: AsyncSession, *, plan_id: str) -> None:
    await session.execute(
        update(actions).where(actions.c.plan_id == plan_id, actions.c.status == "open").values(status="cancelled")
    )


async def set_goals_aside(session: AsyncSession, *, plan_id: str) -> None:
    await session.execute(update(goals).where(goals.c.plan_id == plan_id).values(status="set_aside"))


async def latest_case(session: AsyncSession, *, child_id: str) -> Row[Any] | None:
    return (
        await session.execute(
            select(cases).where(cases.c.child_id == child_id).order_by(cases.c.opened_at.desc()).limit(1)
        )
    ).first()


async def link_concern(session: AsyncSession, *, concern_id: str, case_id: str, priority: str) -> bool:
    """Link a concern to a case; False if it was linked before (the hub screens a concern more than once)."""
    result = await session.execute(
        insert(linked_concerns)
        .values(concern_id=concern_id, case_id=case_id, priority=priority)
        .on_conflict_do_nothing()
        .returning(linked_concerns.c.concern_id)
    )
    return result.first() is not None


async def add_feedback(session: AsyncSession, **values: Any) -> None:
    await session.execute(exit_feedback.insert().values(**values))
