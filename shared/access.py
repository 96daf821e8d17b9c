"""The one way an HTTP route decides who may act, audits it, and refuses.

Every attempt leaves an audit row, refused ones included, and a refusal reaches the caller only after that row has
committed. Raise `Refused` before changing anything else: whatever the work wrote before it commits with the audit row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from fastapi import HTTPException, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.audit import record_access
from shared.db import transaction
from shared.security import Principal

T = TypeVar("T")


class Refused(Exception):
    """An HTTP refusal decided inside a transaction: 403 by default, 404 or 409 when that is the truth."""

    def __init__(self, why: str, status_code: int = status.HTTP_403_FORBIDDEN) -> None:
        super().__init__(why)
        self.why = why
        self.status_code = status_code


async def audited(
    session: AsyncSession,
    principal: Principal,
    *,
    allowed: bool,
    action: str,
    purpose: str,
    child_id: str | None = None,
    why: str = "",
    detail: Mapping[str, Any] | None = None,
    refuse_with: int = status.HTTP_403_FORBIDDEN,
) -> None:
    """Write the audit row for this attempt; refuse (403 unless told otherwise, with `why`) if it is not allowed."""
    await record_access(
        session,
        principal=principal,
        action=action if allowed else f"{action} refused",
        child_id=child_id,
        purpose=purpose,
        detail={**(detail or {}), **({"why": why} if why else {})},
    )
    if not allowed:
        raise Refused(why or "you have no need to know this", refuse_with)


async def in_transaction(sessions: async_sessionmaker[AsyncSession], work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run a route's work in one transaction; a `Refused` becomes an HTTP error once the audit row has committed."""
    refusal: Refused | None = None
    async with transaction(sessions) as session:
        try:
            return await work(session)
        except Refused as refused:
            refusal = refused
    raise HTTPException(refusal.status_code, refusal.why)


def role_check(principal: Principal, roles: Iterable[str]) -> tuple[bool, str]:
    """(allowed, why) for a check by role alone: the role that allows it, or which roles it needs."""
    needed = tuple(roles)
    held = sorted(principal.roles.intersection(needed))
    if held:
        return True, held[0]
    return False, f"this needs one of the roles: {', '.join(needed)}"
