"""Inbox: which events a consumer has handled, written in the handler's own transaction, so redelivery has no effect."""

from collections.abc import Sequence

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.messaging.tables import inbox


async def first_delivery(session: AsyncSession, *, consumer: str, event_id: str) -> bool:
    """True the first time `consumer` sees `event_id`; the row commits or rolls back with the handler's effects."""
    result = await session.execute(
        insert(inbox).values(consumer=consumer, event_id=event_id).on_conflict_do_nothing().returning(inbox.c.event_id)
    )
    return result.first() is not None


async def first_deliveries(session: AsyncSession, *, consumer: str, event_ids: Sequence[str]) -> set[str]:
    """The ids among `event_ids` that `consumer` has not seen before, recorded in one round trip."""
    if not event_ids:
        return set()
    rows = [{"consumer": consumer, "event_id": event_id} for event_id in dict.fromkeys(event_ids)]
    result = await session.execute(insert(inbox).values(rows).on_conflict_do_nothing().returning(inbox.c.event_id))
    return set(result.scalars())
