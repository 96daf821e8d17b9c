"""Reporting's rules, free of I/O: response windows, percentiles, small-count suppression, and each report's figures.

Reports are computed from fact rows (one per child's journey, concern, escalation or overdue item) that the handlers
keep up to date from the public streams. Aggregates for the Local Governance Group and the panel suppress every
count from 1 to 4, and every figure derived from fewer than five children (a median, a percentile, a rate, a mean).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeVar

from shared.security import Principal
from shared.workdays import NZ, add_working_days

# Who reads what. `governance_group` is the Local Governance Group's role (new with reporting).
GOVERNANCE = "governance_group"
PANEL = "panel_member"
MANAGER = "manager"
AGGREGATE_READERS = (GOVERNANCE, PANEL)

# Aggregates shown to governance and the panel hide counts under this, and figures derived from fewer children.
SMALL_COUNT = 5

# Response windows, in NZ working days from the referral's arrival. Each reuses a number a service already runs by:
# - the panel decides within 5 working days (services/panel/app.py, Settings.response_window_working_days);
# - the lead's manager confirms within 2 working days of the proposal (services/assignment/app.py,
#   Settings.confirmation_window_working_days), so a lead is due 5 + 2 working days after the referral;
# - the plan is endorsed within 45 working days: the assessment window of UK practice named in the platform's
#   architecture (../shared/ARCHITECTURE.md, "Known response windows"); no service enforces it yet.
# tests/unit/test_reporting_rules.py keeps the first two equal to the services' settings.
DECISION_WORKING_DAYS = 5
CONFIRMATION_WORKING_DAYS = 2
PLAN_ENDORSED_WORKING_DAYS = 45
# A plan under way is reviewed every 42 days (services/plans/app.py, Settings.review_interval_days); the plans
# service says when a review is overdue (PlanReviewOverdue), so reporting only counts those.
REVIEW_INTERVAL_DAYS = 42

Kind = Literal["label", "count", "figure"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Milestone:
    key: str
    label: str
    window_working_days: int | None

    def due(self, received_at: datetime) -> datetime | None:
        if self.window_working_days is None:
            return None
        return add_working_days(received_at, self.window_working_days)

    @property
    def window(self) -> str:
        return "none set" if self.window_working_days is None else f"{self.window_working_days} working days"


DECISION = Milestone("panel_decision", "Panel decision", DECISION_WORKING_DAYS)
LEAD = Milestone("lead_assigned", "Lead professional assigned", DECISION_WORKING_DAYS + CONFIRMATION_WORKING_DAYS)
PLAN = Milestone("plan_endorsed", "Child's Plan endorsed", PLAN_ENDORSED_WORKING_DAYS)
EXIT = Milestone("exit", "Exit", None)
MILESTONES = (DECISION, LEAD, PLAN, EXIT)

# Where an open journey stands, in the order of the journey.
STAGES = (
    ("awaiting_decision", "Awaiting the panel's decision"),
    ("more_information", "More information asked of the referrer"),
    ("awaiting_lead", "Accepted, awaiting a lead professional"),
    ("assess", "Assess"),
    ("plan", "Plan"),
    ("implement", "Implement"),
    ("review", "Review"),
)
# What a review's outcome moves the case to (the plans service's stage machine, services/plans/domain.py).
STAGE_AFTER_REVIEW = {"continue": "implement", "revise": "plan", "close": "review"}
PRIORITIES = ("critical", "very_urgent", "urgent", "childrens_team", "no_further_action")
RATINGS = (1, 2, 3, 4, 5)


# Facts --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Journey:
    """One referral and, once a lead is assigned, the child's case: ids, codes and times only."""

    referral_id: str
    child_id: str | None = None
    agency: str | None = None
    received_at: datetime | None = None
    reasons: tuple[str, ...] = ()
    sibling_group_id: str | None = None
    decision: str | None = None  # accepted | declined
    decline_reason: str | None = None
    decided_at: datetime | None = None
    more_information_at: datetime | None = None
    withdrawn_at: datetime | None = None
    lead_practitioner_id: str | None = None
    manager_id: str | None = None
    first_lead_at: datetime | None = None
    case_id: str | None = None
    opened_at: datetime | None = None
    stage: str | None = None
    endorsed_at: datetime | None = None
    last_reviewed_at: datetime | None = None
    closed_at: datetime | None = None
    exit_reason: str | None = None
    child_rating: int | None = None
    whanau_rating: int | None = None
    feedback_comments: int = 0

    @property
    def open(self) -> bool:
        return self.closed_at is None and self.withdrawn_at is None and self.decision != "declined"

    @property
    def where(self) -> str | None:
        """Its stage while open (see STAGES), None once it has ended."""
        if not self.open:
            return None
        if self.case_id is not None:
            return self.stage or "assess"
        if self.decision == "accepted":
            return "awaiting_lead"
        if self.more_information_at is not None:
            return "more_information"
        return "awaiting_decision" if self.received_at is not None else None

    def reached(self, milestone: Milestone) -> datetime | None:
        return {
            DECISION.key: self.decided_at,
            LEAD.key: self.first_lead_at,
            PLAN.key: self.endorsed_at,
            EXIT.key: self.closed_at,
        }[milestone.key]

    def expects(self, milestone: Milestone) -> bool:
        """Whether the journey is still heading for this milestone (a declined referral expects no lead)."""
        if not self.open:
            return False
        match milestone.key:
            case "panel_decision":
                return self.decision is None
            case "lead_assigned":
                return self.decision == "accepted" and self.first_lead_at is None
            case "plan_endorsed":
                return self.case_id is not None and self.endorsed_at is None
            case _:
                return False


@dataclass(frozen=True, slots=True)
class OverdueAction:
    action_id: str
    case_id: str
    due_on: str
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class OverdueReview:
    case_id: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Concern:
    concern_id: str
    first_screened_at: datetime
    priority: str
    overrides: int


@dataclass(frozen=True, slots=True)
class Escalation:
    escalation_id: str
    started_at: datetime | None
    acknowledged_at: datetime | None
    seconds_to_acknowledge: float | None
    re_escalations: int
    exhausted: bool
    stood_down: bool


# Figures ------------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (as numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def days_between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 86_400


def month_of(at: datetime) -> str:
    """The NZ calendar month, `YYYY-MM`: reports are by month as people in Aotearoa count them."""
    return at.astimezone(NZ).strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class Period:
    """Months from `first` to `last` inclusive (`YYYY-MM`); either end may be open."""

    first: str | None = None
    last: str | None = None

    def holds(self, at: datetime | None) -> bool:
        if at is None:
            return False
        month = month_of(at)
        return (self.first is None or month >= self.first) and (self.last is None or month <= self.last)


@dataclass(frozen=True, slots=True)
class Cell:
    """One figure as shown: its value, or None with `suppressed` when showing it could identify a child."""

    value: int | float | None
    suppressed: bool = False

    def text(self) -> str:
        if self.suppressed:
            return f"<{SMALL_COUNT}"
        if self.value is None:
            return ""
        if isinstance(self.value, float):
            return f"{self.value:.1f}"
        return str(self.value)


def count(n: int, *, suppress: bool) -> Cell:
    """A count of children (or concerns): 1 to 4 are suppressed; a zero names nobody and is shown."""
    if suppress and 0 < n < SMALL_COUNT:
        return Cell(None, suppressed=True)
    return Cell(n)


def derived(value: float | None, *, basis: int, suppress: bool, places: int = 1) -> Cell:
    """A figure computed over `basis` children (median, percentile, mean, rate): hidden when fewer than five."""
    if value is None or basis == 0:
        return Cell(None)
    if suppress and basis < SMALL_COUNT:
        return Cell(None, suppressed=True)
    return Cell(round(float(value), places))


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    kind: Kind = "count"


Row = Mapping[str, "str | Cell"]


@dataclass(frozen=True, slots=True)
class Table:
    """One table of a report. `chart` names the column drawn as bars (labelled by the row's label columns)."""

    key: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    chart: str | None = None
    note: str = ""

    def labels(self, row: Row) -> str:
        return " · ".join(str(row[c.key]) for c in self.columns if c.kind == "label")

    def as_json(self) -> dict[str, object]:
        rows = []
        for row in self.rows:
            out: dict[str, object] = {}
            hidden = []
            for column in self.columns:
                value = row[column.key]
                if isinstance(value, Cell):
                    out[column.key] = value.value
                    if value.suppressed:
                        hidden.append(column.key)
                else:
                    out[column.key] = value
            out["suppressed"] = hidden
            rows.append(out)
        return {
            "key": self.key,
            "title": self.title,
            "columns": [{"key": c.key, "label": c.label, "kind": c.kind} for c in self.columns],
            "rows": rows,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Report:
    key: str
    title: str
    tables: tuple[Table, ...]
    suppressed: bool
    notes: tuple[str, ...] = field(default=())

    def as_json(self) -> dict[str, object]:
        return {
            "report": self.key,
            "title": self.title,
            "small_counts_suppressed": self.suppressed,
            "small_count_threshold": SMALL_COUNT if self.suppressed else None,
            "tables": [t.as_json() for t in self.tables],
            "notes": list(self.notes),
        }

    def csv_rows(self) -> list[list[str]]:
        """Every table one after another, each row led by its table's key; suppressed cells read `<5`."""
        lines: list[list[str]] = []
        for table in self.tables:
            lines.append(["table", *(c.label for c in table.columns)])
            for row in table.rows:
                lines.append([table.key, *(_text(row[c.key]) for c in table.columns)])
        return lines


def _text(value: str | Cell) -> str:
    return value.text() if isinstance(value, Cell) else value


# The reports ----------------------------------------------------------------------------------------------------


def referrals_report(journeys: Iterable[Journey], period: Period, *, suppress: bool) -> Report:
    """Referrals received, accepted, declined and withdrawn, by the referral's month: by agency, by reason."""
    cohort = [j for j in journeys if period.holds(j.received_at)]

    def outcomes(group: Sequence[Journey]) -> dict[str, Cell]:
        return {
            "received": count(len(group), suppress=suppress),
            "accepted": count(sum(j.decision == "accepted" for j in group), suppress=suppress),
            "declined": count(sum(j.decision == "declined" for j in group), suppress=suppress),
            "withdrawn": count(sum(j.withdrawn_at is not None for j in group), suppress=suppress),
        }

    counted = (
        Column("received", "Received"),
        Column("accepted", "Accepted"),
        Column("declined", "Declined"),
        Column("withdrawn", "Withdrawn"),
    )
    by_agency = _grouped(cohort, lambda j: [(month_of(_at(j.received_at)), j.agency or "unknown")])
    by_reason = _grouped(cohort, lambda j: [(month_of(_at(j.received_at)), r) for r in j.reasons or ("unknown",)])
    declined = _grouped(
        [j for j in cohort if j.decision == "declined"],
        lambda j: [(month_of(_at(j.received_at)), j.decline_reason or "unknown")],
    )
    return Report(
        "referrals",
        "Referrals",
        (
            Table(
                "by_agency",
                "Referrals by referring agency and month",
                (Column("month", "Month", "label"), Column("agency", "Agency", "label"), *counted),
                tuple({"month": m, "agency": a, **outcomes(g)} for (m, a), g in by_agency),
                chart="received",
            ),
            Table(
                "by_reason",
                "Referrals by reason and month",
                (Column("month", "Month", "label"), Column("reason", "Reason", "label"), *counted),
                tuple({"month": m, "reason": r, **outcomes(g)} for (m, r), g in by_reason),
                chart="received",
                note="A referral with several reasons counts once under each.",
            ),
            Table(
                "declined_by_reason",
                "Referrals the panel declined, by the panel's reason",
                (
                    Column("month", "Month", "label"),
                    Column("reason", "Reason", "label"),
                    Column("declined", "Declined"),
                ),
                tuple(
                    {"month": m, "reason": r, "declined": count(len(g), suppress=suppress)} for (m, r), g in declined
                ),
                chart="declined",
            ),
        ),
        suppress,
        ("Months are the month the referral arrived (NZ time); a referral's later steps count in that month.",),
    )


def timeliness_report(journeys: Iterable[Journey], period: Period, *, now: datetime, suppress: bool) -> Report:
    """Days from referral to each milestone (median, 90th percentile) against its window, and how many breached it."""
    cohort = [j for j in journeys if period.holds(j.received_at)]
    rows: list[Row] = []
    for milestone in MILESTONES:
        days, breached, waiting = [], 0, 0
        for journey in cohort:
            received = _at(journey.received_at)
            reached = journey.reached(milestone)
            due = milestone.due(received)
            if reached is not None:
                days.append(days_between(received, reached))
                breached += due is not None and reached > due
            elif journey.expects(milestone):
                waiting += 1
                breached += due is not None and now > due
        rows.append(
            {
                "milestone": milestone.label,
                "window": milestone.window,
                "reached": count(len(days), suppress=suppress),
                "median_days": derived(median(days) if days else None, basis=len(days), suppress=suppress),
                "p90_days": derived(percentile(days, 90) if days else None, basis=len(days), suppress=suppress),
                "waiting": count(waiting, suppress=suppress),
                "breached": count(breached, suppress=suppress) if milestone.window_working_days else Cell(None),
            }
        )
    return Report(
        "timeliness",
        "Time to help",
        (
            Table(
                "milestones",
                "Days from referral to each milestone, against its response window",
                (
                    Column("milestone", "Milestone", "label"),
                    Column("window", "Window", "label"),
                    Column("reached", "Children who reached it"),
                    Column("median_days", "Median days", "figure"),
                    Column("p90_days", "90th percentile days", "figure"),
                    Column("waiting", "Still waiting"),
                    Column("breached", "Breached the window"),
                ),
                tuple(rows),
                chart="median_days",
                note="Breached: reached after the window closed, or still waiting after it closed.",
            ),
        ),
        suppress,
        (
            "Windows count NZ working days from the referral's arrival: panel decision 5 (the panel's response "
            "window), lead assigned 5 + 2 (the manager's confirmation window), plan endorsed 45 (assessment window).",
        ),
    )


def cases_report(
    journeys: Sequence[Journey],
    actions: Iterable[OverdueAction],
    reviews: Iterable[OverdueReview],
    *,
    suppress: bool,
    capacities: Mapping[str, int] | None = None,
) -> Report:
    """Now: open journeys by stage, overdue actions and reviews per team, caseloads against the leads' capacity,
    siblings who kept one lead. `capacities` is each lead's latest known maximum caseload."""
    open_now = [j for j in journeys if j.open]
    stages = Counter(j.where for j in open_now)
    overdue_actions, overdue_reviews = open_overdue(journeys, actions, reviews)
    teams: dict[str, list[Journey]] = defaultdict(list)
    for journey in open_now:
        if journey.case_id is not None:
            teams[journey.manager_id or "unknown"].append(journey)
    actions_by_team = tally(overdue_actions, "manager_id")
    reviews_by_team = tally(overdue_reviews, "manager_id")
    team_rows: list[Row] = []
    for team, cases in sorted(teams.items()):
        leads = {j.lead_practitioner_id for j in cases if j.lead_practitioner_id}
        capacity, used = team_capacity(cases, capacities or {})
        team_rows.append(
            {
                "team": f"team of {team}",
                "leads": Cell(len(leads)),  # staff, not children: never suppressed
                "open_cases": count(len(cases), suppress=suppress),
                "mean_caseload": derived(
                    len(cases) / len(leads) if leads else None, basis=len(cases), suppress=suppress
                ),
                "capacity": Cell(capacity),  # staff's maximum caseloads, not children: never suppressed
                "capacity_used": derived(100 * used / capacity if capacity else None, basis=used, suppress=suppress),
                "overdue_actions": count(actions_by_team.get(team, 0), suppress=suppress),
                "overdue_reviews": count(reviews_by_team.get(team, 0), suppress=suppress),
            }
        )
    groups, kept = siblings_with_one_lead(journeys)
    return Report(
        "cases",
        "Open cases",
        (
            Table(
                "by_stage",
                "Open journeys by stage",
                (Column("stage", "Stage", "label"), Column("open", "Open")),
                tuple({"stage": label, "open": count(stages.get(key, 0), suppress=suppress)} for key, label in STAGES),
                chart="open",
            ),
            Table(
                "by_team",
                "Caseloads and overdue items per team (a team is a manager's staff)",
                (
                    Column("team", "Team", "label"),
                    Column("leads", "Lead professionals"),
                    Column("open_cases", "Open cases"),
                    Column("mean_caseload", "Cases per lead", "figure"),
                    Column("capacity", "Capacity"),
                    Column("capacity_used", "Capacity used (%)", "figure"),
                    Column("overdue_actions", "Overdue actions"),
                    Column("overdue_reviews", "Overdue reviews"),
                ),
                tuple(team_rows),
                chart="open_cases",
                note=CAPACITY_NOTE,
            ),
            Table(
                "siblings",
                "Siblings who kept one lead professional",
                (
                    Column("groups", "Sibling groups with two or more children assigned"),
                    Column("kept_one_lead", "Kept one lead"),
                    Column("rate", "Kept one lead (%)", "figure"),
                ),
                (
                    {
                        "groups": count(groups, suppress=suppress),
                        "kept_one_lead": count(kept, suppress=suppress),
                        "rate": derived(100 * kept / groups if groups else None, basis=groups, suppress=suppress),
                    },
                ),
            ),
        ),
        suppress,
        ("Open cases and overdue items are as they stand now; the period does not apply to them.",),
    )


def exits_report(journeys: Iterable[Journey], period: Period, *, suppress: bool) -> Report:
    """Exits by reason in the period (by the month of exit), with days in service (case opened to exit)."""
    exited = [j for j in journeys if period.holds(j.closed_at)]
    by_reason: dict[str, list[Journey]] = defaultdict(list)
    for journey in exited:
        by_reason[journey.exit_reason or "unknown"].append(journey)
    rows: list[Row] = []
    for reason, group in sorted(by_reason.items()):
        days = [days_between(j.opened_at, _at(j.closed_at)) for j in group if j.opened_at is not None]
        rows.append(
            {
                "reason": reason,
                "exits": count(len(group), suppress=suppress),
                "median_days": derived(median(days) if days else None, basis=len(days), suppress=suppress),
                "p90_days": derived(percentile(days, 90) if days else None, basis=len(days), suppress=suppress),
            }
        )
    return Report(
        "exits",
        "Exits",
        (
            Table(
                "by_reason",
                "Exits by reason, with days in service",
                (
                    Column("reason", "Reason", "label"),
                    Column("exits", "Exits"),
                    Column("median_days", "Median days in service", "figure"),
                    Column("p90_days", "90th percentile days", "figure"),
                ),
                tuple(rows),
                chart="exits",
            ),
        ),
        suppress,
    )


def feedback_report(journeys: Iterable[Journey], period: Period, *, suppress: bool) -> Report:
    """Whānau feedback given at exit, in aggregate: ratings (1 poor to 5 great) and how many also gave words."""
    exited = [j for j in journeys if period.holds(j.closed_at)]
    child = [j.child_rating for j in exited if j.child_rating is not None]
    whanau = [j.whanau_rating for j in exited if j.whanau_rating is not None]
    comments = sum(j.feedback_comments for j in exited)
    return Report(
        "feedback",
        "Whānau feedback",
        (
            Table(
                "summary",
                "Feedback at exit",
                (
                    Column("who", "From", "label"),
                    Column("ratings", "Ratings given"),
                    Column("mean_rating", "Mean rating (1-5)", "figure"),
                ),
                (
                    {
                        "who": "child",
                        "ratings": count(len(child), suppress=suppress),
                        "mean_rating": derived(
                            sum(child) / len(child) if child else None, basis=len(child), suppress=suppress
                        ),
                    },
                    {
                        "who": "whānau",
                        "ratings": count(len(whanau), suppress=suppress),
                        "mean_rating": derived(
                            sum(whanau) / len(whanau) if whanau else None, basis=len(whanau), suppress=suppress
                        ),
                    },
                ),
                chart="mean_rating",
            ),
            Table(
                "ratings",
                "Ratings given, by rating",
                (Column("rating", "Rating", "label"), Column("child", "Child"), Column("whanau", "Whānau")),
                tuple(
                    {
                        "rating": str(r),
                        "child": count(child.count(r), suppress=suppress),
                        "whanau": count(whanau.count(r), suppress=suppress),
                    }
                    for r in RATINGS
                ),
                chart="whanau",
            ),
            Table(
                "comments",
                "Feedback in their own words",
                (Column("exits", "Exits in the period"), Column("comments", "Comments given")),
                ({"exits": count(len(exited), suppress=suppress), "comments": count(comments, suppress=suppress)},),
                note="The words themselves are personal and stay with the lead professional in the plans service.",
            ),
        ),
        suppress,
    )


def hub_report(
    concerns: Iterable[Concern], escalations: Iterable[Escalation], period: Period, *, suppress: bool
) -> Report:
    """The Children's Hub: concerns by priority, how fast critical escalations were acknowledged, re-escalations,
    and how often hub social workers overrode the screening tool."""
    screened = [c for c in concerns if period.holds(c.first_screened_at)]
    started = [e for e in escalations if period.holds(e.started_at)]
    by_priority = _grouped(screened, lambda c: [(month_of(c.first_screened_at), c.priority)])
    seconds = [e.seconds_to_acknowledge for e in started if e.seconds_to_acknowledge is not None]
    overrides = sum(c.overrides for c in screened)

    def figure(name: str, cell: Cell) -> dict[str, str | Cell]:
        return {"figure": name, "value": cell}

    return Report(
        "hub",
        "Children's Hub",
        (
            Table(
                "by_priority",
                "Concerns by priority (as it stands now) and month screened",
                (
                    Column("month", "Month", "label"),
                    Column("priority", "Priority", "label"),
                    Column("concerns", "Concerns"),
                ),
                tuple(
                    {"month": m, "priority": p, "concerns": count(len(g), suppress=suppress)}
                    for (m, p), g in sorted(by_priority, key=lambda item: (item[0][0], _rank(item[0][1])))
                ),
                chart="concerns",
            ),
            Table(
                "escalations",
                "Critical escalations to the national contact centre and Police",
                (Column("figure", "Figure", "label"), Column("value", "Value", "figure")),
                (
                    figure("Escalations started", count(len(started), suppress=suppress)),
                    figure("Acknowledged", count(len(seconds), suppress=suppress)),
                    figure(
                        "Median seconds to acknowledge",
                        derived(median(seconds) if seconds else None, basis=len(seconds), suppress=suppress),
                    ),
                    figure(
                        "90th percentile seconds to acknowledge",
                        derived(percentile(seconds, 90) if seconds else None, basis=len(seconds), suppress=suppress),
                    ),
                    figure(
                        "Longest seconds to acknowledge",
                        derived(max(seconds) if seconds else None, basis=len(seconds), suppress=suppress),
                    ),
                    figure(
                        "Re-escalations (steps taken for want of an acknowledgement)",
                        count(sum(e.re_escalations for e in started), suppress=suppress),
                    ),
                    figure(
                        "Escalations re-escalated at least once",
                        count(sum(e.re_escalations > 0 for e in started), suppress=suppress),
                    ),
                    figure(
                        "Exhausted (nobody acknowledged)", count(sum(e.exhausted for e in started), suppress=suppress)
                    ),
                    figure(
                        "Stood down by a duty manager", count(sum(e.stood_down for e in started), suppress=suppress)
                    ),
                    figure("Screening priorities overridden by hub staff", count(overrides, suppress=suppress)),
                ),
            ),
        ),
        suppress,
    )


def team_report(
    manager_id: str,
    journeys: Sequence[Journey],
    actions: Iterable[OverdueAction],
    reviews: Iterable[OverdueReview],
    capacities: Mapping[str, int] | None = None,
) -> Report:
    """A manager's own staff: each lead's caseload against their capacity (`capacities`, each lead's latest known
    maximum caseload) and overdue items, and the children whose lead they supervise."""
    capacities = capacities or {}
    mine = [j for j in journeys if j.open and j.case_id is not None and j.manager_id == manager_id]
    overdue_actions, overdue_reviews = open_overdue(mine, actions, reviews)
    actions_by_lead = tally(overdue_actions, "lead_practitioner_id")
    reviews_by_lead = tally(overdue_reviews, "lead_practitioner_id")
    actions_by_case = tally(overdue_actions, "case_id")
    reviews_by_case = tally(overdue_reviews, "case_id")
    leads: dict[str, list[Journey]] = defaultdict(list)
    for journey in mine:
        leads[journey.lead_practitioner_id or "unknown"].append(journey)
    return Report(
        "team",
        "Your team",
        (
            Table(
                "by_lead",
                "Caseloads against capacity, and overdue items, of the lead professionals you supervise",
                (
                    Column("lead", "Lead professional", "label"),
                    Column("open_cases", "Open cases"),
                    Column("capacity", "Capacity"),
                    Column("free_slots", "Free slots"),
                    Column("overdue_actions", "Overdue actions"),
                    Column("overdue_reviews", "Overdue reviews"),
                ),
                tuple(
                    {
                        "lead": lead,
                        "open_cases": Cell(len(cases)),
                        "capacity": Cell(capacities.get(lead)),
                        "free_slots": Cell(free_slots(len(cases), capacities.get(lead))),
                        "overdue_actions": Cell(actions_by_lead.get(lead, 0)),
                        "overdue_reviews": Cell(reviews_by_lead.get(lead, 0)),
                    }
                    for lead, cases in sorted(leads.items())
                ),
                chart="open_cases",
                note="Capacity is the lead's maximum caseload as of their latest assignment; blank if not known yet. "
                "Free slots: capacity less open cases, never below zero.",
            ),
            Table(
                "by_child",
                "Children whose lead professional you supervise",
                (
                    Column("child_id", "Child", "label"),
                    Column("case_id", "Case", "label"),
                    Column("lead", "Lead professional", "label"),
                    Column("stage", "Stage", "label"),
                    Column("overdue_actions", "Overdue actions"),
                    Column("overdue_reviews", "Overdue reviews"),
                ),
                tuple(
                    {
                        "child_id": j.child_id or "",
                        "case_id": j.case_id or "",
                        "lead": j.lead_practitioner_id or "",
                        "stage": j.where or "",
                        "overdue_actions": Cell(actions_by_case.get(j.case_id or "", 0)),
                        "overdue_reviews": Cell(reviews_by_case.get(j.case_id or "", 0)),
                    }
                    for j in sorted(mine, key=lambda j: (j.lead_practitioner_id or "", j.case_id or ""))
                ),
            ),
        ),
        suppressed=False,
        notes=("Open cases and overdue items as they stand now.",),
    )


# Helpers ------------------------------------------------------------------------------------------------------

CAPACITY_NOTE = (
    "Capacity: the sum of the team's leads' maximum caseloads, each as of the lead's latest assignment. Capacity "
    "used: the open cases of those leads as a share of it. A lead whose capacity is not known yet (last assigned "
    "before assignments carried it) is left out of both."
)


def team_capacity(cases: Iterable[Journey], capacities: Mapping[str, int]) -> tuple[int | None, int]:
    """(the summed capacity of the leads of these open cases whose capacity is known, or None if nobody's is;
    how many of the cases those leads hold)."""
    known = {j.lead_practitioner_id for j in cases if j.lead_practitioner_id in capacities}
    if not known:
        return None, 0
    held = sum(j.lead_practitioner_id in known for j in cases)
    return sum(capacities[lead] for lead in known if lead is not None), held


def free_slots(open_cases: int, capacity: int | None) -> int | None:
    """How many more cases a lead can take: capacity less open cases, never below zero; None if capacity unknown."""
    return None if capacity is None else max(capacity - open_cases, 0)


@dataclass(frozen=True, slots=True)
class Overdue:
    """An overdue action or review still open, with the case's lead and manager."""

    case_id: str
    lead_practitioner_id: str
    manager_id: str


def open_overdue(
    journeys: Iterable[Journey], actions: Iterable[OverdueAction], reviews: Iterable[OverdueReview]
) -> tuple[list[Overdue], list[Overdue]]:
    """Overdue items still open: the action not done, the review not held since it fell due, the case not closed."""
    cases = {j.case_id: j for j in journeys if j.case_id is not None and j.open}

    def overdue(case_id: str) -> Overdue | None:
        journey = cases.get(case_id)
        if journey is None:
            return None
        return Overdue(case_id, journey.lead_practitioner_id or "unknown", journey.manager_id or "unknown")

    open_actions = [o for a in actions if a.completed_at is None and (o := overdue(a.case_id))]
    open_reviews = [
        o
        for r in reviews
        if (o := overdue(r.case_id))
        and ((reviewed := cases[r.case_id].last_reviewed_at) is None or reviewed < r.due_at)
    ]
    return open_actions, open_reviews


def tally(items: Iterable[Overdue], key: Literal["case_id", "lead_practitioner_id", "manager_id"]) -> dict[str, int]:
    """How many overdue items per case, lead or manager."""
    return dict(Counter(getattr(item, key) for item in items))


def siblings_with_one_lead(journeys: Iterable[Journey]) -> tuple[int, int]:
    """(sibling groups with two or more children who have had a lead, groups whose children all have the same lead)."""
    latest: dict[str, Journey] = {}
    for journey in journeys:
        if journey.child_id and journey.sibling_group_id and journey.lead_practitioner_id:
            held = latest.get(journey.child_id)
            if held is None or (journey.first_lead_at or datetime.min.replace(tzinfo=NZ)) > (
                held.first_lead_at or datetime.min.replace(tzinfo=NZ)
            ):
                latest[journey.child_id] = journey
    leads: dict[str, set[str]] = defaultdict(set)
    children: Counter[str] = Counter()
    for journey in latest.values():
        group = journey.sibling_group_id or ""
        leads[group].add(journey.lead_practitioner_id or "")
        children[group] += 1
    groups = [g for g, n in children.items() if n >= 2]
    return len(groups), sum(len(leads[g]) == 1 for g in groups)


def may_read(principal: Principal, report: str) -> tuple[bool, str]:
    """Governance and the panel read de-identified aggregates; a manager reads their own team; nobody else."""
    if report == "team":
        if principal.has_role(MANAGER):
            return True, "manager: their own staff"
        return False, "the team report is for managers, about the staff they supervise"
    if principal.has_role(*AGGREGATE_READERS):
        held = sorted(principal.roles.intersection(AGGREGATE_READERS))[0]
        return True, f"{held}: de-identified aggregates"
    return False, f"reports are for the roles {', '.join(AGGREGATE_READERS)} (aggregates) and {MANAGER} (their team)"


def reports_for(principal: Principal) -> tuple[str, ...]:
    """The reports this person may read, in the order the page shows them."""
    return tuple(r for r in REPORTS if may_read(principal, r)[0])


REPORTS = ("referrals", "timeliness", "cases", "exits", "hub", "feedback", "team")


def _grouped(
    items: Iterable[T], keys: Callable[[T], Iterable[tuple[str, str]]]
) -> list[tuple[tuple[str, str], list[T]]]:
    groups: dict[tuple[str, str], list[T]] = defaultdict(list)
    for item in items:
        for key in keys(item):
            groups[key].append(item)
    return sorted(groups.items())


def _at(value: datetime | None) -> datetime:
    assert value is not None, "filtered by period first"
    return value


def _rank(priority: str) -> int:
    return PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES)
