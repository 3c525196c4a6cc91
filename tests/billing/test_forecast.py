"""Month forecasts on plain numbers: the completed days' rate, today counted but not extrapolated
(early in a day, a straight line over "days so far, today as a whole one" understated the month),
and the 1st's floor so its first minutes do not explode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from billing.forecast import FIRST_DAY_FLOOR, MonthElapsed, month_elapsed, month_forecast


def forecast(month_to_date: str, today: str, now: datetime) -> Decimal:
    result = month_forecast(month_to_date=Decimal(month_to_date), today=Decimal(today), elapsed=month_elapsed(now))
    return result.quantize(Decimal("0.0001"))


def test_the_month_elapsed_counts_full_days_and_the_part_of_today_gone() -> None:
    assert month_elapsed(datetime(2026, 12, 5, 3, 30, tzinfo=UTC)) == MonthElapsed(31, 4, Decimal(12_600))
    assert month_elapsed(datetime(2027, 2, 1, tzinfo=UTC)) == MonthElapsed(28, 0, Decimal(0))
    assert month_elapsed(datetime(2028, 2, 29, 18, tzinfo=UTC)).days_in_month == 29
    # Another zone is converted: 00:30 at +05:00 on the 5th is 19:30 UTC on the 4th.
    elsewhere = month_elapsed(datetime(2026, 12, 5, 0, 30, tzinfo=timezone(timedelta(hours=5))))
    assert (elsewhere.days_completed, elsewhere.hours_today) == (3, Decimal("19.5"))
    assert month_elapsed(datetime(2026, 12, 5, 3, 30)) == month_elapsed(datetime(2026, 12, 5, 3, 30, tzinfo=UTC))


def test_early_in_a_day_the_forecast_is_the_completed_days_rate_not_today_as_a_full_day() -> None:
    # The reviewer's case: $2.95 over Dec 1-4, $0.02 of Dec 5 by 03:30 UTC. The completed days run at
    # 2.95 / 4 = 0.7375 a day; left: 31 - 4 - 3.5/24 = 26.854166... days;
    # 2.97 + 0.7375 * 26.854166... = 2.97 + 19.804947916... = 22.774947916...
    # (The old straight line, 2.97 / 5 * 31 = 18.414, took Dec 5 for a whole day.)
    assert forecast("2.97", "0.02", datetime(2026, 12, 5, 3, 30, tzinfo=UTC)) == Decimal("22.7749")


def test_a_spike_today_is_counted_once_not_extrapolated() -> None:
    # Feb 2027 (28 days), 18:00 on the 15th: $128 over 14 full days (rate 128/14 a day), $12 today.
    # Left: 28 - 14 - 0.75 = 13.25 days; 140 + 128 * 13.25 / 14 = 140 + 1696 / 14 = 261.142857...
    assert forecast("140", "12", datetime(2027, 2, 15, 18, tzinfo=UTC)) == Decimal("261.1429")


def test_on_the_first_the_rate_is_todays_with_a_floor() -> None:
    assert FIRST_DAY_FLOOR == Decimal("0.25")
    # Noon on the 1st, $0.50 so far: 1.00 a day; 0.50 + 1.00 * 30.5 = 31.00.
    assert forecast("0.50", "0.50", datetime(2026, 12, 1, 12, tzinfo=UTC)) == Decimal("31.0000")
    # 00:05 on the 1st, $0.01: today counts as a quarter of a day, so 0.04 a day (not 0.01 / (5/1440) = 2.88);
    # left 31 - 5/1440 = 30.996527... days; 0.01 + 0.04 * 30.996527... = 1.249861...
    assert forecast("0.01", "0.01", datetime(2026, 12, 1, 0, 5, tzinfo=UTC)) == Decimal("1.2499")
    assert forecast("0", "0", datetime(2026, 12, 1, 0, 0, tzinfo=UTC)) == Decimal("0")


def test_at_the_last_moment_of_the_month_the_forecast_is_the_month() -> None:
    last = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    # One second of the month left, at 30 / 30 = 1 a day: 31 + 1/86400 = 31.0000115...
    assert forecast("31", "1", last) == Decimal("31.0000")


def test_a_customer_that_began_mid_month_runs_at_its_own_days_rate() -> None:
    """Began on the 20th: its rate is the average of the 20th to yesterday, not of the whole month so far
    (the days before it began diluted it: a $100-a-day customer forecast at $27 a day)."""
    now = datetime(2026, 12, 25, 12, tzinfo=UTC)  # 24 completed days; the 20th to the 24th are 5 of them
    elapsed = month_elapsed(now)
    began = month_forecast(month_to_date=Decimal(550), today=Decimal(50), elapsed=elapsed, first_day=20)
    # 550 + 500 / 5 * (31 - 24 - 0.5) = 550 + 100 * 6.5 = 1200
    assert began == Decimal(1200)
    diluted = month_forecast(month_to_date=Decimal(550), today=Decimal(50), elapsed=elapsed)
    assert diluted.quantize(Decimal("0.0001")) == Decimal("685.4167")  # 550 + 500 / 24 * 6.5
    # From the 1st, or unknown: the same as before; a spend that began today is taken as the 1st's is.
    assert month_forecast(month_to_date=Decimal(550), today=Decimal(50), elapsed=elapsed, first_day=1) == diluted
    today_only = month_forecast(month_to_date=Decimal(5), today=Decimal(5), elapsed=elapsed, first_day=25)
    assert today_only == Decimal(5) + Decimal(5) / Decimal("0.5") * Decimal("6.5")
