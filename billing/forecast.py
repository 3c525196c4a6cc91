"""Forecasts of a UTC month's total from the month so far (customers' LLM spend, the Candor bill's
meters): plain numbers, no Django, so the arithmetic is tested on its own."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

# On the 1st there is no completed day to take a rate from, only today so far. A rate from its first
# minutes would explode ($0.01 in 5 minutes is $89 a month), so today counts as at least this much of a day.
FIRST_DAY_FLOOR = Decimal("0.25")
_SECONDS_A_DAY = 86_400


@dataclass(frozen=True)
class MonthElapsed:
    """How much of the UTC month is gone at one moment."""

    days_in_month: int
    days_completed: int  # whole UTC days of the month before today
    seconds_today: Decimal  # of today (UTC) gone

    @property
    def today_fraction(self) -> Decimal:
        """The share of today gone, 0 <= f < 1."""
        return self.seconds_today / _SECONDS_A_DAY

    @property
    def hours_today(self) -> Decimal:
        return self.seconds_today / 3600

    @property
    def days_left(self) -> Decimal:
        """From now to the month's end, in days (the rest of today included)."""
        return self.days_in_month - self.days_completed - self.today_fraction


def month_elapsed(now: datetime) -> MonthElapsed:
    """The month's progress at ``now`` (a naive time is taken as UTC)."""
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    seconds = now.hour * 3600 + now.minute * 60 + now.second + Decimal(now.microsecond) / 1_000_000
    return MonthElapsed(
        days_in_month=calendar.monthrange(now.year, now.month)[1],
        days_completed=now.day - 1,
        seconds_today=Decimal(seconds),
    )


def rate_days(elapsed: MonthElapsed, first_day: int | None = None) -> int:
    """The completed days whose average is the forecast's rate (``month_forecast``): the month's, or those
    from ``first_day`` on; 0 when there is none and today's rate stands in."""
    completed = elapsed.days_completed
    if first_day is not None and 1 < first_day <= completed + 1:
        completed -= first_day - 1
    return completed


def month_forecast(
    *, month_to_date: Decimal, today: Decimal, elapsed: MonthElapsed, first_day: int | None = None
) -> Decimal:
    """The month's total: what is spent so far, plus the rest of the month at the run rate.

    The run rate is the average of the month's completed UTC days: (month_to_date - today) /
    days_completed. Today's spend so far is counted as it is but not extrapolated, because usage is
    not spread evenly over a day (at 03:30 UTC most of a day's traffic is usually still to come), so
    "today so far / the fraction of today gone" would swing with the hour. Only the rest of today
    (at most one day's worth of the rate) is assumed to run at the average rate.

    On the 1st no day is complete: the rate is today's spend so far over the fraction of today gone,
    with that fraction at least FIRST_DAY_FLOOR (a quarter of a day), so the first minutes of a month
    give a modest number rather than an explosion; before 06:00 UTC on the 1st it understates.

    ``first_day``: the day of the month the spend began (a customer that started mid-month), when
    known. The rate is then the average of the completed days from that one on, not diluted by the
    days before it began; a spend that began today is taken as the 1st's is.
    """
    completed = rate_days(elapsed, first_day)
    if completed:
        rate = (month_to_date - today) / completed
    else:
        rate = today / max(elapsed.today_fraction, FIRST_DAY_FLOOR)
    return month_to_date + rate * elapsed.days_left
