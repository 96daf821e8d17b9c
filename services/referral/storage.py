"""The referral service's tables (schema `referral`) and the queries its handlers and routes make."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    Row,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.referral.domain import ConsentState, KnownChild, ReferralStatus
from shared.events.codes import Participation, SharingPurpose

metadata = MetaData()

children = Table(
    "children",
    metadata,
    Column("child_id", Text, primary_key=True),
    Column("given_names", Text, nullable=False),
    Column("family_name", Text, nullable=False),
    Column("preferred_name", Text),
    Column("name_key", Text, nullable=False),
    Column("date_of_birth", Date, nullable=False),
    Column("nhi", Text, unique=True),
    Column("gender", Text, nullable=False),
    Column("iwi", JSONB, nullable=False),
    Column("school", Text),
    Column("locality", Text),
    Column("sibling_group_id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("children_by_name_and_birth", children.c.name_key, children.c.date_of_birth)
Index("children_by_sibling_group", children.c.sibling_group_id)

referrals = Table(
    "referrals",
    metadata,
    Column("referral_id", Text, primary_key=True),
    Column("agency", Text, nullable=False),
    Column("agency_referral_id", Text, nullable=False),
    Column("child_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("referrer", JSONB, nullable=False),
    Column("reasons", JSONB, nullable=False),
    Column("reason_text", Text, nullable=False),
    Column("needs", JSONB, nullable=False),
    Column("child_views", Text),
    Column("whanau", JSONB, nullable=False),
    Column("siblings", JSONB, nullable=False),
    Column("involved_practitioners", JSONB, nullable=False),
    Column("preferred_practitioner", JSONB),
    Column("lead_practitioner_id", Text),  # the child's assigned lead professional, who may read and act on consent
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("agency", "agency_referral_id"),
)
Index("referrals_by_child", referrals.c.child_id)

# Every submission the service took in, whatever became of it: the key to answering a resubmission the same way.
submissions = Table(
    "submissions",
    metadata,
    Column("agency", Text, primary_key=True),
    Column("agency_referral_id", Text, primary_key=True),
    Column("outcome", Text, nullable=False),  # received | linked_to_existing | forwarded_to_hub
    Column("referral_id", Text),
    Column("child_id", Text, nullable=False),
    Column("match_basis", Text),
    Column("needs_confirmation", Boolean, nullable=False, server_default="false"),
    Column("concern_id", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

caregivers = Table(
    "caregivers",
    metadata,
    Column("child_id", Text, primary_key=True),
    Column("caregiver_key", Text, primary_key=True),
)
Index("caregivers_by_key", caregivers.c.caregiver_key)

named_siblings = Table(
    "named_siblings",
    metadata,
    Column("child_id", Text, primary_key=True),  # the child whose referral named the sibling
    Column("name_key", Text, primary_key=True),
    Column("date_of_birth", Date),
    Column("nhi", Text),
)
Index("named_siblings_by_name", named_siblings.c.name_key)
Index("named_siblings_by_nhi", named_siblings.c.nhi)

# The referrer's answers to the panel's questions, kept with the referral (they are free text: they stay here).
answers = Table(
    "referral_answers",
    metadata,
    Column("referral_id", Text, primary_key=True),
    Column("provided_at", DateTime(timezone=True), primary_key=True, server_default=func.now()),
    Column("answers", JSONB, nullable=False),
)

consents = Table(
    "consents",
    metadata,
    Column("child_id", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("referral_id", Text, nullable=False),
    Column("participation", Text, nullable=False),
    Column("sharing", JSONB, nullable=False),
    Column("given_by", Text),
    Column("given_by_relationship", Text),
    Column("given_at", DateTime(timezone=True)),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("recorded_by", Text, nullable=False),
)


# Children --------------------------------------------------------------------------------------------------------


def _known(row: Any) -> KnownChild:
    return KnownChild(row.child_id, row.name_key, row.date_of_birth, row.nhi, row.sibling_group_id)


async def child_by_nhi(session: AsyncSession, *, nhi: str) -> KnownChild | None:
    row = (await session.execute(select(children).where(children.c.nhi == nhi))).first()
    return _known(row) if row else None


async def children_by_name_and_birth(session: AsyncSession, *, name_key: str, date_of_birth: date) -> list[KnownChild]:
    rows = await session.execute(
        select(children)
        .where(children.c.name_key == name_key, children.c.date_of_birth == date_of_birth)
        .order_by(children.c.created_at)
    )
    return [_known(row) for row in rows]


async def add_child(session: AsyncSession, **values: Any) -> None:
    await session.execute(children.insert().values(**values))


async def update_child(session: AsyncSession, *, child_id: str, **values: Any) -> None:
    await session.execute(
        update(children).where(children.c.child_id == child_id).values(**values, updated_at=func.now())
    )


async def lock_children(session: AsyncSession, *, child_ids: set[str]) -> None:
    """Serialise sibling-group changes that touch the same children."""
    await session.execute(
        select(children.c.child_id)
        .where(children.c.child_id.in_(child_ids))
        .order_by(children.c.child_id)
        .with_for_update()
    )


async def sibling_group_members(session: AsyncSession, *, group_ids: set[str]) -> dict[str, str]:
    """child id → sibling group id, for every child in the given groups."""
    rows = await session.execute(
        select(children.c.child_id, children.c.sibling_group_id).where(children.c.sibling_group_id.in_(group_ids))
    )
    return {row.child_id: row.sibling_group_id for row in rows}


async def move_to_group(session: AsyncSession, *, from_groups: set[str], to_group: str) -> None:
    await session.execute(
        update(children).where(children.c.sibling_group_id.in_(from_groups)).values(sibling_group_id=to_group)
    )


async def children_with_caregivers(session: AsyncSession, *, keys: set[str]) -> set[str]:
    if not keys:
        return set()
    rows = await session.scalars(select(caregivers.c.child_id).where(caregivers.c.caregiver_key.in_(keys)))
    return set(rows)


async def add_caregivers(session: AsyncSession, *, child_id: str, keys: set[str]) -> None:
    if keys:
        await session.execute(
            insert(caregivers)
            .values([{"child_id": child_id, "caregiver_key": k} for k in keys])
            .on_conflict_do_nothing()
        )


async def add_named_siblings(session: AsyncSession, *, child_id: str, named: list[dict[str, Any]]) -> None:
    if named:
        await session.execute(
            insert(named_siblings).values([{"child_id": child_id, **n} for n in named]).on_conflict_do_nothing()
        )


async def children_naming(session: AsyncSession, *, name_key: str, date_of_birth: date, nhi: str | None) -> set[str]:
    """Children whose referrals named this child as their sibling."""
    by_name = select(named_siblings.c.child_id).where(
        named_siblings.c.name_key == name_key,
        (named_siblings.c.date_of_birth == date_of_birth) | named_siblings.c.date_of_birth.is_(None),
    )
    found = set(await session.scalars(by_name))
    if nhi:
        found |= set(await session.scalars(select(named_siblings.c.child_id).where(named_siblings.c.nhi == nhi)))
    return found


async def child(session: AsyncSession, *, child_id: str) -> Row[Any] | None:
    return (await session.execute(select(children).where(children.c.child_id == child_id))).first()


# Referrals and submissions ---------------------------------------------------------------------------------------


async def submission(session: AsyncSession, *, agency: str, agency_referral_id: str) -> Row[Any] | None:
    return (
        await session.execute(
            select(submissions, referrals.c.status)
            .outerjoin(referrals, referrals.c.referral_id == submissions.c.referral_id)
            .where(submissions.c.agency == agency, submissions.c.agency_referral_id == agency_referral_id)
        )
    ).first()


async def add_submission(session: AsyncSession, **values: Any) -> bool:
    """Record a submission; False if the same agency referral id was taken in meanwhile (a concurrent duplicate)."""
    result = await session.execute(
        insert(submissions).values(**values).on_conflict_do_nothing().returning(submissions.c.agency)
    )
    return result.first() is not None


async def add_referral(session: AsyncSession, **values: Any) -> None:
    await session.execute(referrals.insert().values(**values))


async def open_referral_of(session: AsyncSession, *, child_id: str, open_statuses: frozenset[str]) -> str | None:
    return await session.scalar(
        select(referrals.c.referral_id)
        .where(referrals.c.child_id == child_id, referrals.c.status.in_(open_statuses))
        .order_by(referrals.c.received_at)
        .limit(1)
    )


async def referral(session: AsyncSession, *, referral_id: str, for_update: bool = False) -> Row[Any] | None:
    query = select(referrals).where(referrals.c.referral_id == referral_id)
    return (await session.execute(query.with_for_update() if for_update else query)).first()


async def referral_by_agency_id(session: AsyncSession, *, agency: str, agency_referral_id: str) -> Row[Any] | None:
    return (
        await session.execute(
            select(referrals)
            .where(referrals.c.agency == agency, referrals.c.agency_referral_id == agency_referral_id)
            .with_for_update()
        )
    ).first()


async def set_status(session: AsyncSession, *, referral_id: str, status: ReferralStatus, **values: Any) -> None:
    await session.execute(
        update(referrals)
        .where(referrals.c.referral_id == referral_id)
        .values(status=status, updated_at=func.now(), **values)
    )


async def add_answers(session: AsyncSession, *, referral_id: str, given: list[str]) -> datetime:
    provided_at: datetime = (
        await session.execute(
            answers.insert().values(referral_id=referral_id, answers=given).returning(answers.c.provided_at)
        )
    ).scalar_one()
    return provided_at


# Consent -----------------------------------------------------------------------------------------------------------


async def current_consent(session: AsyncSession, *, child_id: str, lock: bool = True) -> ConsentState | None:
    """The child's latest consent; locked by default, since the caller is usually about to change it."""
    query = select(consents).where(consents.c.child_id == child_id).order_by(consents.c.version.desc()).limit(1)
    row = (await session.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        return None
    sharing = tuple((s["agency"], frozenset(SharingPurpose(p) for p in s["purposes"])) for s in row.sharing)
    return ConsentState(version=row.version, participation=Participation(row.participation), sharing=sharing)


async def add_consent(
    session: AsyncSession,
    *,
    child_id: str,
    referral_id: str,
    state: ConsentState,
    given_by: str | None,
    given_by_relationship: str | None,
    given_at: datetime | None,
    recorded_by: str,
) -> datetime:
    recorded_at: datetime = (
        await session.execute(
            consents.insert()
            .values(
                child_id=child_id,
                version=state.version,
                referral_id=referral_id,
                participation=state.participation,
                sharing=[{"agency": a, "purposes": sorted(p)} for a, p in state.sharing],
                given_by=given_by,
                given_by_relationship=given_by_relationship,
                given_at=given_at,
                recorded_by=recorded_by,
            )
            .returning(consents.c.recorded_at)
        )
    ).scalar_one()
    return recorded_at


async def groups_of(session: AsyncSession, *, child_ids: set[str]) -> dict[str, str]:
    """child id → sibling group id, for the given children."""
    rows = await session.execute(
        select(children.c.child_id, children.c.sibling_group_id).where(children.c.child_id.in_(child_ids))
    )
    return {row.child_id: row.sibling_group_id for row in rows}
