"""Reporting's read model (schema `reporting`): fact tables fed by the public streams, and the queries reports make.

Facts hold ids, codes and times from the events, never names or free text. Every write is an upsert keyed by the
fact's id that keeps the earliest "first" time and lets only a newer event move a "latest" value, so a redelivered or
late event (from another topic, or through a retry topic) leaves the same facts as events in order would.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    TextClause,
    bindparam,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnClause

from services.reporting.domain import Concern, Escalation, Journey, OverdueAction, OverdueReview

metadata = MetaData()
NEVER: ColumnClause[datetime] = literal_column("'-infinity'::timestamptz", DateTime(timezone=True))

# One row per referral: what the referral, panel and assignment streams said of it.
referrals = Table(
    "referrals",
    metadata,
    Column("referral_id", Text, primary_key=True),
    Column("child_id", Text),
    Column("agency", Text),
    Column("received_at", DateTime(timezone=True)),
    Column("reasons", JSONB),
    Column("decision", Text),  # accepted | declined
    Column("decline_reason", Text),
    Column("decided_at", DateTime(timezone=True)),
    Column("reconsidered_at", DateTime(timezone=True)),
    Column("more_information_at", DateTime(timezone=True)),
    Column("withdrawn_at", DateTime(timezone=True)),
    Column("lead_practitioner_id", Text),
    Column("manager_id", Text),
    Column("first_lead_at", DateTime(timezone=True)),
    Column("lead_at", DateTime(timezone=True)),  # when the current lead was assigned
)

# Which sibling group a child is in now (a referral names it; the referral service may regroup children later).
sibling_groups = Table(
    "sibling_groups",
    metadata,
    Column("child_id", Text, primary_key=True),
    Column("sibling_group_id", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

# One row per case (a child's journey once a lead is assigned), from the plans stream.
cases = Table(
    "cases",
    metadata,
    Column("case_id", Text, primary_key=True),
    Column("referral_id", Text, index=True),
    Column("child_id", Text),
    Column("lead_practitioner_id", Text),
    Column("opened_at", DateTime(timezone=True)),
    Column("stage", Text),
    Column("stage_at", DateTime(timezone=True)),
    Column("endorsed_at", DateTime(timezone=True)),
    Column("last_reviewed_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("exit_reason", Text),
    Column("child_rating", Integer),
    Column("whanau_rating", Integer),
    Column("feedback_comments", Integer, nullable=False, server_default="0"),
)

actions = Table(
    "actions",
    metadata,
    Column("action_id", Text, primary_key=True),
    Column("case_id", Text, nullable=False),
    Column("overdue", Boolean, nullable=False, server_default="false"),
    Column("due_on", Text),
    Column("completed_at", DateTime(timezone=True)),
)

overdue_reviews = Table(
    "overdue_reviews",
    metadata,
    Column("case_id", Text, primary_key=True),
    Column("due_at", DateTime(timezone=True), primary_key=True),
)

concerns = Table(
    "concerns",
    metadata,
    Column("concern_id", Text, primary_key=True),
    Column("first_screened_at", DateTime(timezone=True), nullable=False),
    Column("priority", Text, nullable=False),
    Column("priority_at", DateTime(timezone=True), nullable=False),
)

# A hub social worker's override of the screening tool's priority, one row per override.
concern_overrides = Table(
    "concern_overrides",
    metadata,
    Column("concern_id", Text, primary_key=True),
    Column("screened_at", DateTime(timezone=True), primary_key=True),
)

escalations = Table(
    "escalations",
    metadata,
    Column("escalation_id", Text, primary_key=True),
    Column("concern_id", Text),
    Column("started_at", DateTime(timezone=True)),
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("seconds_to_acknowledge", Float),
    Column("exhausted_at", DateTime(timezone=True)),
    Column("stood_down_at", DateTime(timezone=True)),
)

# Each step taken for want of an acknowledgement (a re-escalation).
escalation_steps = Table(
    "escalation_steps",
    metadata,
    Column("escalation_id", Text, primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("step", Integer, primary_key=True),
)

# Each lead professional's capacity (maximum caseload) as the latest `LeadAssigned` naming them said it.
lead_capacity = Table(
    "lead_capacity",
    metadata,
    Column("practitioner_id", Text, primary_key=True),
    Column("max_caseload", Integer, nullable=False),
    Column("as_of", DateTime(timezone=True), nullable=False),
)

FACT_TABLES = (
    referrals,
    sibling_groups,
    cases,
    actions,
    overdue_reviews,
    concerns,
    concern_overrides,
    escalations,
    escalation_steps,
    lead_capacity,
)


# Writes ---------------------------------------------------------------------------------------------------------


async def put(
    session: AsyncSession,
    table: Table,
    key: Mapping[str, Any],
    values: Mapping[str, Any],
    *,
    earliest: Sequence[str] = (),
    latest: Sequence[str] = (),
    when_newer: tuple[str, Sequence[str]] | None = None,
) -> None:
    """Insert the fact, or update it: plain `values` are set, `earliest`/`latest` keep the least/greatest time, and
    `when_newer=(time column, columns)` sets those columns only if this event's time is newer than the stored one."""
    guard = (when_newer[0], tuple(when_newer[1])) if when_newer else None
    statement = _upsert(table, tuple(key), tuple(values), tuple(earliest), tuple(latest), guard)
    await session.execute(statement, {**key, **values})


@functools.cache
def _upsert(
    table: Table,
    key: tuple[str, ...],
    columns: tuple[str, ...],
    earliest: tuple[str, ...],
    latest: tuple[str, ...],
    when_newer: tuple[str, tuple[str, ...]] | None,
) -> TextClause:
    """One upsert statement per shape of `put`, written once as SQL text: SQLAlchemy cannot cache the compiled form
    of PostgreSQL's INSERT .. ON CONFLICT, and compiling it for every event was a third of a rebuild's time."""
    names = (*key, *columns)
    guarded = {when_newer[0], *when_newer[1]} if when_newer else set()
    changes = []
    for name in columns:
        if name in earliest:
            change = f"LEAST({table.name}.{name}, EXCLUDED.{name})"
        elif name in latest:
            change = f"GREATEST({table.name}.{name}, EXCLUDED.{name})"
        elif name in guarded and when_newer is not None:
            at = when_newer[0]
            newer = f"EXCLUDED.{at} >= COALESCE({table.name}.{at}, '-infinity'::timestamptz)"
            change = f"CASE WHEN {newer} THEN EXCLUDED.{name} ELSE {table.name}.{name} END"
        else:
            change = f"EXCLUDED.{name}"
        changes.append(f"{name} = {change}")
    action = f"DO UPDATE SET {', '.join(changes)}" if changes else "DO NOTHING"
    sql = (
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)}) "
        f"ON CONFLICT ({', '.join(key)}) {action}"
    )
    return text(sql).bindparams(*(bindparam(n, type_=table.c[n].type) for n in names))


async def reconsider(session: AsyncSession, *, referral_id: str, at: datetime) -> None:
    """The panel's earlier decision no longer stands (unless a decision came after this reconsideration)."""
    await put(session, referrals, {"referral_id": referral_id}, {"reconsidered_at": at}, latest=["reconsidered_at"])
    await session.execute(
        update(referrals)
        .where(referrals.c.referral_id == referral_id, referrals.c.decided_at <= at)
        .values(decision=None, decline_reason=None, decided_at=None)
    )


async def decide(
    session: AsyncSession, *, referral_id: str, child_id: str, decision: str, reason: str | None, at: datetime
) -> None:
    """The panel's decision, unless a later decision or reconsideration is already known."""
    statement = insert(referrals).values(
        referral_id=referral_id, child_id=child_id, decision=decision, decline_reason=reason, decided_at=at
    )
    later_known = func.greatest(
        func.coalesce(referrals.c.decided_at, NEVER), func.coalesce(referrals.c.reconsidered_at, NEVER)
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["referral_id"],
            set_={
                "child_id": statement.excluded.child_id,
                "decision": statement.excluded.decision,
                "decline_reason": statement.excluded.decline_reason,
                "decided_at": statement.excluded.decided_at,
            },
            where=statement.excluded.decided_at >= later_known,
        )
    )


async def truncate_facts(session: AsyncSession) -> None:
    """Empty the read model (the rebuild's first step)."""
    names = ", ".join(table.name for table in FACT_TABLES)
    await session.execute(text(f"TRUNCATE {names}"))


# Reads ----------------------------------------------------------------------------------------------------------


async def journeys(session: AsyncSession) -> list[Journey]:
    """Every referral with its case (a case whose referral was never heard of stands alone).

    A referral has one case. Should the streams ever tell of two (a case opened again under the same referral after
    it closed), the journey is the first: time to help is measured to the first help.
    """
    journey = func.coalesce(cases.c.referral_id, func.concat("case:", cases.c.case_id))
    c = (
        select(cases)
        .distinct(journey)
        .order_by(journey, cases.c.opened_at.asc().nulls_last(), cases.c.case_id)
        .subquery("first_cases")
    )
    r, s = referrals, sibling_groups
    query = select(
        func.coalesce(r.c.referral_id, func.concat("case:", c.c.case_id)).label("referral_id"),
        func.coalesce(r.c.child_id, c.c.child_id).label("child_id"),
        r.c.agency,
        r.c.received_at,
        r.c.reasons,
        s.c.sibling_group_id,
        r.c.decision,
        r.c.decline_reason,
        r.c.decided_at,
        r.c.more_information_at,
        r.c.withdrawn_at,
        func.coalesce(r.c.lead_practitioner_id, c.c.lead_practitioner_id).label("lead_practitioner_id"),
        r.c.manager_id,
        r.c.first_lead_at,
        c.c.case_id,
        c.c.opened_at,
        c.c.stage,
        c.c.endorsed_at,
        c.c.last_reviewed_at,
        c.c.closed_at,
        c.c.exit_reason,
        c.c.child_rating,
        c.c.whanau_rating,
        func.coalesce(c.c.feedback_comments, 0).label("feedback_comments"),
    ).select_from(
        r.join(c, c.c.referral_id == r.c.referral_id, full=True).outerjoin(
            s, s.c.child_id == func.coalesce(r.c.child_id, c.c.child_id)
        )
    )
    rows = (await session.execute(query)).mappings()
    return [Journey(**{**row, "reasons": tuple(row["reasons"] or ())}) for row in rows]


async def overdue_actions(session: AsyncSession) -> list[OverdueAction]:
    query = select(actions.c.action_id, actions.c.case_id, actions.c.due_on, actions.c.completed_at).where(
        actions.c.overdue
    )
    return [OverdueAction(r.action_id, r.case_id, r.due_on or "", r.completed_at) for r in await session.execute(query)]


async def overdue_reviews_of(session: AsyncSession) -> list[OverdueReview]:
    return [OverdueReview(r.case_id, r.due_at) for r in await session.execute(select(overdue_reviews))]


async def concerns_of(session: AsyncSession) -> list[Concern]:
    overrides = (
        select(func.count())
        .select_from(concern_overrides)
        .where(concern_overrides.c.concern_id == concerns.c.concern_id)
        .scalar_subquery()
    )
    query = select(concerns.c.concern_id, concerns.c.first_screened_at, concerns.c.priority, overrides.label("n"))
    return [Concern(r.concern_id, r.first_screened_at, r.priority, r.n) for r in await session.execute(query)]


async def lead_capacities(session: AsyncSession) -> dict[str, int]:
    """Each lead's latest known capacity (maximum caseload), by practitioner id."""
    query = select(lead_capacity.c.practitioner_id, lead_capacity.c.max_caseload)
    return {r.practitioner_id: r.max_caseload for r in await session.execute(query)}


async def escalations_of(session: AsyncSession) -> list[Escalation]:
    steps = (
        select(func.count())
        .select_from(escalation_steps)
        .where(escalation_steps.c.escalation_id == escalations.c.escalation_id)
        .scalar_subquery()
    )
    query = select(escalations, steps.label("steps"))
    return [
        Escalation(
            escalation_id=r.escalation_id,
            started_at=r.started_at,
            acknowledged_at=r.acknowledged_at,
            seconds_to_acknowledge=r.seconds_to_acknowledge,
            re_escalations=r.steps,
            exhausted=r.exhausted_at is not None,
            stood_down=r.stood_down_at is not None,
        )
        for r in await session.execute(query)
    ]
