"""New Zealand working days, for response windows and deadlines (no I/O: public holidays come with the library)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

NZ = ZoneInfo("Pacific/Auckland")


@lru_cache(maxsize=32)
def _public_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("NZ", years=year))


def is_working_day(day: date) -> bool:
    """Monday to Friday, not a national public holiday (observed days included, Matariki included)."""
    return day.weekday() < 5 and day not in _public_holidays(day.year)


def add_working_days(start: datetime, days: int) -> datetime:
    """The end (23:59:59 NZ time) of the `days`-th working day after the NZ calendar day of `start`.

    A referral that arrives on a Friday evening with a one-working-day window is due by the end of Monday
    (Tuesday when Monday is a public holiday).
    """
    if days < 1:
        raise ValueError("a window is at least one working day")
    day = start.astimezone(NZ).date()
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if is_working_day(day):
            counted += 1
    return datetime.combine(day, time(23, 59, 59), tzinfo=NZ)
