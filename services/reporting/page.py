"""The reports page (`GET /reports`): every report the reader may see, each table drawn as a server-rendered SVG bar
chart with the table itself beside it as its text alternative. No script; bars carry their values in words, and a
suppressed figure is drawn hatched and labelled `<5`, so nothing is told by colour alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession

from services.reporting.api import MONTH, PURPOSE, period_of, read
from services.reporting.domain import SMALL_COUNT, Cell, Period, Report, Table, may_read, reports_for
from shared.access import audited, in_transaction
from shared.security import CurrentPrincipal, Principal
from shared.service import runtime_of

router = APIRouter(tags=["reporting"])
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")

MAX_BARS = 30
BAR_HEIGHT = 22
BAR_GAP = 8
LABEL_WIDTH = 340
PLOT_WIDTH = 360
VALUE_WIDTH = 120
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    text: str
    y: int
    width: int
    suppressed: bool


@dataclass(frozen=True, slots=True)
class Chart:
    """A horizontal bar chart of one column of a table, laid out for the template."""

    id: str
    title: str
    description: str
    bars: tuple[Bar, ...]
    width: int
    height: int
    label_width: int
    more: int  # rows left out of the chart (all are in the table)


def chart_of(report: Report, table: Table) -> Chart | None:
    if table.chart is None or not table.rows:
        return None
    column = next(c for c in table.columns if c.key == table.chart)
    rows = table.rows[:MAX_BARS]
    cells = [row[column.key] for row in rows]
    values = [c.value for c in cells if isinstance(c, Cell) and c.value is not None]
    top = max([float(v) for v in values] + [float(SMALL_COUNT)])
    bars = []
    for index, (row, cell) in enumerate(zip(rows, cells, strict=True)):
        assert isinstance(cell, Cell)
        if cell.suppressed:
            # Drawn as if it were the largest suppressed value (4), hatched, with "<5" in words beside it.
            width, text = round(PLOT_WIDTH * (SMALL_COUNT - 1) / top), f"<{SMALL_COUNT} (suppressed)"
        else:
            width, text = round(PLOT_WIDTH * float(cell.value or 0) / top), cell.text() or "none"
        bars.append(Bar(table.labels(row), text, index * (BAR_HEIGHT + BAR_GAP), max(width, 1), cell.suppressed))
    return Chart(
        id=f"{report.key}-{table.key}",
        title=f"{table.title}: {column.label}",
        description=f"Bar chart of {column.label.lower()} for each row of the table that follows.",
        bars=tuple(bars),
        width=LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH,
        height=len(bars) * (BAR_HEIGHT + BAR_GAP),
        label_width=LABEL_WIDTH,
        more=len(table.rows) - len(rows),
    )


def _render(request: Request, template: str, context: dict[str, object], status_code: int = 200) -> Response:
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


@router.get("/reports", response_class=Response, responses={403: {}})
async def reports_page(
    request: Request,
    principal: CurrentPrincipal,
    first: Annotated[str | None, Query(alias="from", pattern=MONTH)] = None,
    last: Annotated[str | None, Query(alias="to", pattern=MONTH)] = None,
) -> Response:
    """Every report this person may read, with charts; each report shown is one audited read."""
    period = period_of(first, last)

    async def work(session: AsyncSession) -> list[Report]:
        names = reports_for(principal)
        if not names:
            await _refuse_page(session, principal, period)
        return [await read(session, principal, name, period, shown_as="page") for name in names]

    try:
        reports = await in_transaction(runtime_of(request.app).sessions, work)
    except HTTPException as refused:
        return _render(
            request, "refused.html", {"principal": principal, "why": refused.detail}, status_code=refused.status_code
        )
    sections = [(report, [(table, chart_of(report, table)) for table in report.tables]) for report in reports]
    return _render(
        request,
        "reports.html",
        {"principal": principal, "sections": sections, "period": period, "small_count": SMALL_COUNT},
    )


async def _refuse_page(session: AsyncSession, principal: Principal, period: Period) -> None:
    _, why = may_read(principal, "referrals")  # why aggregates are refused says who may read what
    await audited(
        session,
        principal,
        allowed=False,
        action="read reports page",
        purpose=PURPOSE,
        why=why,
        detail={"format": "page", "from": period.first, "to": period.last},
        refuse_with=status.HTTP_403_FORBIDDEN,
    )
