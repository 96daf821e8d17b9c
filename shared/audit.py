"""The one audit writer: every read and write of a child's information leaves an append-only row."""

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.messaging.tables import audit_log
from shared.security import Principal


async def record_access(
    session: AsyncSession,
    *,
    principal: Principal,
    action: str,
    child_id: str | None,
    purpose: str,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Write the audit row in the caller's transaction: the access and its record stand or fall together."""
    await session.execute(
        audit_log.insert().values(
            actor=principal.subject,
            roles=",".join(sorted(principal.roles)),
            agency=principal.agency,
            action=action,
            child_id=child_id,
            purpose=purpose,
            detail=dict(detail or {}),
        )
    )
