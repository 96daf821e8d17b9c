"""Reporting's HTTP API: each report as JSON and as CSV, for the people allowed to read it; every read is audited.

The Local Governance Group and the panel read de-identified aggregates with small counts suppressed; a manager reads
their own staff's caseloads and overdue items, by child only where they supervise the lead (domain.may_read).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from services.reporting import storage
from services.reporting.domain import (
    REPORTS,
    Period,
    Report,
    cases_report,
    exits_report,
    feedback_report,
    hub_report,
    may_read,
    referrals_report,
    team_report,
    timeliness_report,
)
from shared.access import audited, in_transaction
from shared.security import CurrentPrincipal, Principal
from shared.service import runtime_of

router = APIRouter(tags=["reporting"])

PURPOSE = "reporting on progress"
MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"
From = Annotated[str | None, Query(alias="from", pattern=MONTH, description="first month, YYYY-MM")]
To = Annotated[str | None, Query(alias="to", pattern=MONTH, description="last month, YYYY-MM (inclusive)")]


async def build(session: AsyncSession, principal: Principal, name: str, period: Period, *, now: datetime) -> Report:
    """Compute one report from the facts. Aggregates are suppressed for everyone: only `team` names children."""
    match name:
        case "referrals":
            return referrals_report(await storage.journeys(session), period, suppress=True)
        case "timeliness":
            return timeliness_report(await storage.journeys(session), period, now=now, suppress=True)
        case "cases":
            return cases_report(
                await storage.journeys(session),
                await storage.overdue_actions(session),
                await storage.overdue_reviews_of(session),
                suppress=True,
                capacities=await storage.lead_capacities(session),
            )
        case "exits":
            return exits_report(await storage.journeys(session), period, suppress=True)
        case "feedback":
            return feedback_report(await storage.journeys(session), period, suppress=True)
        case "hub":
            return hub_report(
                await storage.concerns_of(session), await storage.escalations_of(session), period, suppress=True
            )
        case "team":
            return team_report(
                principal.subject,
                await storage.journeys(session),
                await storage.overdue_actions(session),
                await storage.overdue_reviews_of(session),
                await storage.lead_capacities(session),
            )
    raise AssertionError(f"no report {name!r}")


async def read(session: AsyncSession, principal: Principal, name: str, period: Period, *, shown_as: str) -> Report:
    """Decide, build and audit one read of a report (refused reads are audited too, before anything is read)."""
    detail: dict[str, Any] = {"report": name, "format": shown_as, "from": period.first, "to": period.last}
    if name not in REPORTS:
        await audited(
            session,
            principal,
            allowed=False,
            action="read report",
            purpose=PURPOSE,
            why="no such report",
            detail=detail,
            refuse_with=status.HTTP_404_NOT_FOUND,
        )
    allowed, why = may_read(principal, name)
    if not allowed:
        await audited(session, principal, allowed=False, action="read report", purpose=PURPOSE, why=why, detail=detail)
    report = await build(session, principal, name, period, now=datetime.now(UTC))
    if name == "team":
        # The by-child view names children: the audit row lists which.
        detail["children"] = sorted(
            {str(row["child_id"]) for t in report.tables if t.key == "by_child" for row in t.rows}
        )
    await audited(session, principal, allowed=True, action="read report", purpose=PURPOSE, why=why, detail=detail)
    return report


def period_of(first: str | None, last: str | None) -> Period:
    return Period(first, last)


@router.get("/reports/{name}.csv", response_class=Response, responses={403: {}, 404: {}})
async def report_csv(
    name: str,
    request: Request,
    principal: CurrentPrincipal,
    first: From = None,
    last: To = None,
) -> Response:
    """The report as CSV: every table one after another, each row led by its table's key; suppressed cells read `<5`."""
    period = period_of(first, last)
    report = await in_transaction(
        runtime_of(request.app).sessions, lambda s: read(s, principal, name, period, shown_as="csv")
    )
    out = io.StringIO()
    csv.writer(out).writerows(report.csv_rows())
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{report.key}.csv"'},
    )


@router.get("/reports/{name}", responses={403: {}, 404: {}})
async def report_json(
    name: str,
    request: Request,
    principal: CurrentPrincipal,
    first: From = None,
    last: To = None,
) -> dict[str, Any]:
    """One report as JSON. A suppressed cell is `null` and its column is listed in the row's `suppressed`."""
    period = period_of(first, last)
    report = await in_transaction(
        runtime_of(request.app).sessions, lambda s: read(s, principal, name, period, shown_as="json")
    )
    return {**report.as_json(), "from": period.first, "to": period.last}
