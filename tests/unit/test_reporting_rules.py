"""Reporting's rules: response windows, percentiles, small-count suppression and who reads which report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.assignment.app import Settings as AssignmentSettings
from services.panel.app import Settings as PanelSettings
from services.plans.app import Settings as PlansSettings
from services.reporting.domain import (
    CONFIRMATION_WORKING_DAYS,
    DECISION,
    DECISION_WORKING_DAYS,
    LEAD,
    REVIEW_INTERVAL_DAYS,
    Cell,
    Journey,
    OverdueAction,
    OverdueReview,
    Period,
    cases_report,
    count,
    derived,
    exits_report,
    feedback_report,
    free_slots,
    may_read,
    median,
    percentile,
    referrals_report,
    siblings_with_one_lead,
    team_capacity,
    team_report,
    timeliness_report,
)
from shared.security import Principal

# Friday 7 March 2025, 10:00 NZ time (21:00 UTC the day before).
FRIDAY = datetime(2025, 3, 6, 21, 0, tzinfo=UTC)
GOVERNANCE = Principal("lgg-1", "tairawhiti-lgg", frozenset({"governance_group"}))
PANEL = Principal("panel-1", "childrens-team", frozenset({"panel_member"}))
MANAGER = Principal("mgr-1", "oranga-tamariki", frozenset({"manager"}))
PRACTITIONER = Principal("prac-1", "health-nz", frozenset({"practitioner"}))


def journey(n: int, **facts: object) -> Journey:
    values: dict[str, object] = {"referral_id": f"r-{n}", "child_id": f"c-{n}", "received_at": FRIDAY} | facts
    return Journey(**values)  # type: ignore[arg-type]


def test_the_windows_are_the_ones_the_services_run_by() -> None:
    assert PanelSettings().response_window_working_days == DECISION_WORKING_DAYS
    assert AssignmentSettings().confirmation_window_working_days == CONFIRMATION_WORKING_DAYS
    assert PlansSettings().review_interval_days == REVIEW_INTERVAL_DAYS


def test_a_panel_decision_on_a_friday_referral_is_due_five_working_days_later() -> None:
    due = DECISION.due(FRIDAY)
    assert due is not None and due.date().isoformat() == "2025-03-14"  # the next Friday, end of day NZ time
    lead_due = LEAD.due(FRIDAY)
    assert lead_due is not None and lead_due.date().isoformat() == "2025-03-18"  # two more working days


def test_percentiles_interpolate_between_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert median(values) == 3.0
    assert percentile(values, 90) == pytest.approx(7.6)
    assert percentile([5.0], 90) == 5.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_counts_from_one_to_four_are_suppressed_and_zero_is_shown() -> None:
    assert count(3, suppress=True) == Cell(None, suppressed=True)
    assert count(0, suppress=True) == Cell(0)
    assert count(5, suppress=True) == Cell(5)
    assert count(3, suppress=False) == Cell(3)
    assert Cell(None, suppressed=True).text() == "<5"


def test_a_median_over_fewer_than_five_children_is_suppressed() -> None:
    assert derived(2.5, basis=4, suppress=True) == Cell(None, suppressed=True)
    assert derived(2.54, basis=5, suppress=True) == Cell(2.5)
    assert derived(None, basis=0, suppress=True) == Cell(None)


def test_governance_sees_referrals_by_agency_with_small_counts_suppressed() -> None:
    journeys = [journey(n, agency="health-nz", decision="accepted") for n in range(6)]
    journeys += [
        journey(10 + n, agency="police", decision="declined", decline_reason="below_threshold") for n in range(2)
    ]
    report = referrals_report(journeys, Period(), suppress=True)
    rows = {row["agency"]: row for row in report.tables[0].rows}
    assert rows["health-nz"]["received"] == Cell(6) and rows["health-nz"]["accepted"] == Cell(6)
    assert rows["police"]["received"] == Cell(None, suppressed=True)
    as_json = report.as_json()["tables"][0]["rows"]  # type: ignore[index]
    police = next(r for r in as_json if r["agency"] == "police")
    assert police["received"] is None and "received" in police["suppressed"] and "declined" in police["suppressed"]
    assert ["by_agency", "2025-03", "police", "<5", "0", "<5", "0"] in report.csv_rows()


def test_the_period_counts_referrals_by_the_month_they_arrived() -> None:
    journeys = [journey(n, agency="health-nz") for n in range(5)]
    journeys += [journey(9, agency="health-nz", received_at=FRIDAY + timedelta(days=40))]
    assert len(referrals_report(journeys, Period("2025-03", "2025-03"), suppress=True).tables[0].rows) == 1
    assert len(referrals_report(journeys, Period("2025-04", None), suppress=True).tables[0].rows) == 1


def test_late_decisions_and_ones_still_waiting_past_the_window_are_breaches() -> None:
    on_time = [journey(n, decision="accepted", decided_at=FRIDAY + timedelta(days=2)) for n in range(4)]
    late = [journey(5, decision="declined", decided_at=FRIDAY + timedelta(days=10))]
    waiting = [journey(6)]
    report = timeliness_report(on_time + late + waiting, Period(), now=FRIDAY + timedelta(days=30), suppress=False)
    decision = report.tables[0].rows[0]
    assert decision["reached"] == Cell(5) and decision["median_days"] == Cell(2.0)
    assert decision["waiting"] == Cell(1) and decision["breached"] == Cell(2)
    lead = report.tables[0].rows[1]
    assert lead["waiting"] == Cell(4)  # accepted and still without a lead; the declined one expects none
    suppressed = timeliness_report(on_time + late + waiting, Period(), now=FRIDAY, suppress=True).tables[0].rows[0]
    assert suppressed["median_days"] == Cell(2.0) and suppressed["breached"] == Cell(None, suppressed=True)


def test_exit_feedback_is_reported_as_ratings_and_a_count_of_comments() -> None:
    closed = FRIDAY + timedelta(days=90)
    journeys = [
        journey(n, case_id=f"case-{n}", opened_at=FRIDAY, closed_at=closed, exit_reason="goals_achieved",
                child_rating=4 + n % 2, whanau_rating=5, feedback_comments=1)
        for n in range(6)
    ]  # fmt: skip
    report = feedback_report(journeys, Period(), suppress=True)
    summary = {row["who"]: row for row in report.tables[0].rows}
    assert summary["child"]["mean_rating"] == Cell(4.5) and summary["whānau"]["mean_rating"] == Cell(5.0)
    assert report.tables[2].rows[0]["comments"] == Cell(6)
    exits = exits_report(journeys, Period(), suppress=True).tables[0].rows[0]
    assert exits["exits"] == Cell(6) and exits["median_days"] == Cell(90.0)


def test_siblings_who_share_a_lead_count_as_kept_together() -> None:
    journeys = [
        journey(1, sibling_group_id="g1", lead_practitioner_id="lead-a"),
        journey(2, sibling_group_id="g1", lead_practitioner_id="lead-a"),
        journey(3, sibling_group_id="g2", lead_practitioner_id="lead-a"),
        journey(4, sibling_group_id="g2", lead_practitioner_id="lead-b"),
        journey(5, sibling_group_id="g3", lead_practitioner_id="lead-c"),  # an only child assigned so far
    ]
    assert siblings_with_one_lead(journeys) == (2, 1)


def test_a_manager_sees_only_the_children_whose_lead_they_supervise() -> None:
    mine = journey(1, case_id="case-1", lead_practitioner_id="lead-a", manager_id="mgr-1", stage="implement")
    theirs = journey(2, case_id="case-2", lead_practitioner_id="lead-b", manager_id="mgr-2", stage="plan")
    report = team_report(
        "mgr-1",
        [mine, theirs],
        [OverdueAction("a-1", "case-1", "2025-03-01", None), OverdueAction("a-2", "case-2", "2025-03-01", None)],
        [OverdueReview("case-1", FRIDAY)],
    )
    by_lead, by_child = report.tables
    assert [row["lead"] for row in by_lead.rows] == ["lead-a"]
    assert by_lead.rows[0]["overdue_actions"] == Cell(1) and by_lead.rows[0]["overdue_reviews"] == Cell(1)
    assert [row["child_id"] for row in by_child.rows] == ["c-1"]


def test_a_review_held_after_it_fell_due_is_no_longer_overdue() -> None:
    reviewed = journey(1, case_id="case-1", lead_practitioner_id="lead-a", manager_id="mgr-1", last_reviewed_at=FRIDAY)
    report = team_report("mgr-1", [reviewed], [], [OverdueReview("case-1", FRIDAY - timedelta(days=1))])
    assert report.tables[0].rows[0]["overdue_reviews"] == Cell(0)


def open_case(n: int, lead: str, manager: str = "mgr-1") -> Journey:
    return journey(n, case_id=f"case-{n}", lead_practitioner_id=lead, manager_id=manager, stage="implement")


def test_a_teams_capacity_sums_its_leads_known_capacities_and_counts_only_their_cases() -> None:
    cases = [open_case(1, "lead-a"), open_case(2, "lead-a"), open_case(3, "lead-b"), open_case(4, "lead-c")]
    assert team_capacity(cases, {"lead-a": 6, "lead-b": 4, "lead-z": 99}) == (10, 3)  # lead-c's is not known
    assert team_capacity(cases, {}) == (None, 0)
    assert free_slots(2, 6) == 4 and free_slots(7, 6) == 0 and free_slots(1, None) is None


def test_capacity_is_shown_to_governance_and_the_share_used_is_suppressed_under_five_children() -> None:
    big = [open_case(n, "lead-a" if n < 6 else "lead-b") for n in range(8)]  # mgr-1: 8 cases, two leads
    small = [open_case(10 + n, "lead-c", "mgr-2") for n in range(3)]  # mgr-2: 3 cases, one lead
    capacities = {"lead-a": 10, "lead-b": 6, "lead-c": 12}
    report = cases_report(big + small, [], [], suppress=True, capacities=capacities)
    by_team = {row["team"]: row for row in next(t for t in report.tables if t.key == "by_team").rows}
    assert by_team["team of mgr-1"]["capacity"] == Cell(16)
    assert by_team["team of mgr-1"]["capacity_used"] == Cell(50.0)  # 8 of 16
    assert by_team["team of mgr-2"]["capacity"] == Cell(12)  # staff, not children: never suppressed
    assert by_team["team of mgr-2"]["capacity_used"] == Cell(None, suppressed=True)
    unsuppressed = cases_report(small, [], [], suppress=False, capacities=capacities)
    assert unsuppressed.tables[1].rows[0]["capacity_used"] == Cell(25.0)
    unknown = cases_report(big, [], [], suppress=True).tables[1].rows[0]
    assert unknown["capacity"] == Cell(None) and unknown["capacity_used"] == Cell(None)
    assert not any("not in its public events" in t.note for t in report.tables)


def test_a_manager_sees_each_leads_capacity_and_free_slots() -> None:
    cases = [open_case(1, "lead-a"), open_case(2, "lead-a"), open_case(3, "lead-b"), open_case(4, "lead-c")]
    report = team_report("mgr-1", cases, [], [], {"lead-a": 5, "lead-b": 1})
    by_lead = {row["lead"]: row for row in report.tables[0].rows}
    assert (by_lead["lead-a"]["capacity"], by_lead["lead-a"]["free_slots"]) == (Cell(5), Cell(3))
    assert (by_lead["lead-b"]["capacity"], by_lead["lead-b"]["free_slots"]) == (Cell(1), Cell(0))
    assert (by_lead["lead-c"]["capacity"], by_lead["lead-c"]["free_slots"]) == (Cell(None), Cell(None))
    assert report.as_json()["tables"][0]["rows"][0]["free_slots"] == 3  # type: ignore[index]


@pytest.mark.parametrize(
    ("principal", "report", "allowed"),
    [
        (GOVERNANCE, "referrals", True),
        (PANEL, "hub", True),
        (GOVERNANCE, "team", False),
        (MANAGER, "team", True),
        (MANAGER, "referrals", False),
        (PRACTITIONER, "referrals", False),
        (PRACTITIONER, "team", False),
    ],
)
def test_who_reads_which_report(principal: Principal, report: str, allowed: bool) -> None:
    assert may_read(principal, report)[0] is allowed
