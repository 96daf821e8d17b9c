"""Durable timers: "do X at time T unless cancelled", as rows claimed with SKIP LOCKED and fenced by a token.

A restart neither loses a step (the row stays pending until its handler's transaction commits) nor doubles one
(a runner whose lease lapsed finds its fence token stale and does nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.messaging.tables import timers

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timer:
    id: int
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]
    fence: int


TimerHandler = Callable[[AsyncSession, Timer], Awaitable[None]]


async def schedule(
    session: AsyncSession, *, kind: str, key: str, due_at: datetime, payload: Mapping[str, Any] | None = None
) -> None:
    """Set (or move) the one pending timer of `kind` for `key`, in the caller's transaction."""
    statement = insert(timers).values(kind=kind, key=key, due_at=due_at, payload=dict(payload or {}))
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[timers.c.kind, timers.c.key],
            # A literal predicate: PostgreSQL matches a partial unique index only against constants.
            index_where=text("state = 'pending'"),
            set_={
                "due_at": statement.excluded.due_at,
                "payload": statement.excluded.payload,
                "lease_until": None,
            },
        )
    )


async def cancel(session: AsyncSession, *, kind: str, key: str) -> bool:
    result = await session.execute(
        update(timers)
        .where(timers.c.kind == kind, timers.c.key == key, timers.c.state == "pending")
        .values(state="cancelled")
        .returning(timers.c.id)
    )
    return result.first() is not None


class TimerRunner:
    """Fires due timers. Any number of instances may run; each due timer fires once."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        handlers: Mapping[str, TimerHandler],
        poll_seconds: float = 1.0,
        lease_seconds: float = 60.0,
        batch_size: int = 50,
    ) -> None:
        self.sessions = sessions
        self.handlers = dict(handlers)
        self.poll_seconds = poll_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.batch_size = batch_size

    async def run(self) -> None:
        while True:
            try:
                fired = await self.fire_due()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("timer runner failed (%s); retrying", type(error).__name__)
                fired = 0
            if fired == 0:
                await asyncio.sleep(self.poll_seconds)

    async def fire_due(self) -> int:
        claimed = await self._claim()
        fired = 0
        for timer in claimed:
            with contextlib.suppress(Exception):
                fired += await self._fire(timer)
        return fired

    async def _claim(self) -> list[Timer]:
        if not self.handlers:
            return []
        due = (
            select(timers.c.id)
            .where(
                timers.c.state == "pending",
                timers.c.kind.in_(self.handlers),
                timers.c.due_at <= func.now(),
                or_(timers.c.lease_until.is_(None), timers.c.lease_until < func.now()),
            )
            .order_by(timers.c.due_at)
            .limit(self.batch_size)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self.sessions() as session, session.begin():
            rows = await session.execute(
                update(timers)
                .where(timers.c.id.in_(due))
                .values(fence=timers.c.fence + 1, lease_until=func.now() + self.lease)
                .returning(
                    timers.c.id,
                    timers.c.kind,
                    timers.c.key,
                    timers.c.due_at,
                    timers.c.payload,
                    timers.c.fence,
                )
            )
            return [Timer(r.id, r.kind, r.key, r.due_at, r.payload, r.fence) for r in rows]

    async def _fire(self, timer: Timer) -> int:
        try:
            async with self.sessions() as session, session.begin():
                current = await session.scalar(
                    select(timers.c.id)
                    .where(
                        and_(
                            timers.c.id == timer.id,
                            timers.c.fence == timer.fence,
                            timers.c.state == "pending",
                        )
                    )
                    .with_for_update()
                )
                if current is None:
                    return 0  # cancelled, or claimed again by another runner after our lease lapsed
                # Marked fired before the handler runs (same transaction: a failure rolls both back), so a handler
                # may schedule the next step under the same kind and key.
                await session.execute(
                    update(timers).where(timers.c.id == timer.id).values(state="fired", fired_at=func.now())
                )
                await self.handlers[timer.kind](session, timer)
            return 1
        except Exception:
            # The row stays pending; it is claimed again when the lease lapses.
            log.exception("timer %s of kind %s failed; it will be retried after its lease", timer.id, timer.kind)
            raise
