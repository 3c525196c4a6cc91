"""Customers' month forecasts on the spend pages' selectors: early in a day, the month is forecast
from the completed days' rate, not from "the days so far, today as a whole one" (which understated
it by ~20% at 03:30 UTC on the 5th)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.template.loader import render_to_string
from django.test import Client

from billing.selectors import CustomerDetail, customer_detail, customers_spend
from billing.services.budgets import budget_set
from tests.billing.helpers import send_traces, spend_traces
from tests.fixtures.organizations import Org, in_tenant, unique

# A fixed month of 31 days, in the past, so the numbers do not move with the clock.
EARLY_ON_THE_5TH = datetime(2026, 3, 5, 3, 30, tzinfo=UTC)


def march(customer_id: str, day: int, cost: str, hour: int = 12) -> list[dict[str, object]]:
    return spend_traces(customer_id, [cost], started_at=datetime(2026, 3, day, hour, tzinfo=UTC).isoformat())


def _basis(detail: CustomerDetail) -> str:
    """What the customer's page says its forecast rests on."""
    return render_to_string("billing/_forecast_basis.html", {"elapsed": detail.elapsed, "days": detail.rate_days})


def test_early_in_a_day_the_forecast_uses_the_completed_days(db: None, org_a: Org, org_b: Org) -> None:
    customer = unique("early")
    # $2.95 over Mar 1-4, $0.02 of Mar 5 by 02:00; one trace in April, after "now", counts for nothing.
    send_traces(org_a, march(customer, 1, "0.70") + march(customer, 2, "0.80") + march(customer, 3, "0.75")
                + march(customer, 4, "0.70") + march(customer, 5, "0.02", hour=2)
                + spend_traces(customer, ["9"], started_at="2026-04-02T12:00:00+00:00"))  # fmt: skip
    # The same customer ID at another organization, spending far more: not counted here.
    send_traces(org_b, march(customer, 2, "50"))
    # Rate 2.95 / 4 = 0.7375 a day; left 31 - 4 - 3.5/24 = 26.854166... days;
    # 2.97 + 0.7375 * 26.854166... = 22.774947916... (the old 2.97 / 5 * 31 gave 18.4140).
    expected = Decimal("22.7749")
    with in_tenant(org_a):
        row = next(c for c in customers_spend(organization=org_a.organization, now=EARLY_ON_THE_5TH)
                   if c.customer_id == customer)  # fmt: skip
        detail = customer_detail(organization=org_a.organization, customer_id=customer, now=EARLY_ON_THE_5TH)
    assert (row.month_usd, row.today_usd, row.forecast_usd) == (Decimal("2.97"), Decimal("0.02"), expected)
    assert detail is not None
    assert (detail.month_usd, detail.forecast_usd) == (Decimal("2.97"), expected)
    assert (detail.elapsed.days_completed, detail.elapsed.hours_today) == (4, Decimal("3.5"))
    with in_tenant(org_b):
        theirs = customer_detail(organization=org_b.organization, customer_id=customer, now=EARLY_ON_THE_5TH)
        listed = next(c for c in customers_spend(organization=org_b.organization, now=EARLY_ON_THE_5TH)
                      if c.customer_id == customer)  # fmt: skip
    assert listed.forecast_usd == Decimal("497.5694")  # the list and the customer's page agree
    # Org B: $50 on Mar 2 (its first day), nothing since: the rate is that of Mar 2-4, 50 / 3 a day (not
    # diluted by Mar 1, before it began: 50 / 4); 50 + 50/3 * 26.854166... = 497.569444...
    assert theirs is not None and theirs.forecast_usd == Decimal("497.5694")
    # And each page says so: the average of the 4 full days, or of the 3 since the spend began.
    assert (detail.rate_days, theirs.rate_days) == (4, 3)
    ours_basis = render_to_string("billing/_forecast_basis.html", {"elapsed": detail.elapsed, "days": detail.rate_days})
    their_basis = render_to_string(
        "billing/_forecast_basis.html", {"elapsed": theirs.elapsed, "days": theirs.rate_days}
    )
    assert "at the average of its 4 full days (today" in ours_basis
    assert "at the average of its 3 full days since its spend began" in their_basis


def test_a_spend_that_began_today_says_its_forecast_is_todays_rate(db: None, org_a: Org) -> None:
    """Its page said "the average of its 4 full days" beside a forecast made from today's first hours
    (every full day at $0.00, $0.15 forecast from $0.0023 by 09:30)."""
    customer = unique("today")
    send_traces(org_a, march(customer, 5, "0.02", hour=2))
    with in_tenant(org_a):
        detail = customer_detail(organization=org_a.organization, customer_id=customer, now=EARLY_ON_THE_5TH)
    assert detail is not None and detail.rate_days == 0
    # 3.5 h of the 5th, taken as 6: 0.08 a day; 0.02 + 0.08 * 26.854166... = 2.1683333...
    assert detail.forecast_usd == Decimal("2.1683")
    basis = _basis(detail)
    assert basis.startswith("spend began today: the rate of today's first 3.5 h (taken as at least 6 h)"), basis


def test_on_the_first_the_forecast_is_todays_rate_with_a_floor(db: None, org_a: Org) -> None:
    customer = unique("first")
    send_traces(org_a, march(customer, 1, "0.10", hour=0))
    with in_tenant(org_a):
        at_1am = customer_detail(organization=org_a.organization, customer_id=customer,
                                 now=datetime(2026, 3, 1, 1, tzinfo=UTC))  # fmt: skip
        at_6pm = customer_detail(organization=org_a.organization, customer_id=customer,
                                 now=datetime(2026, 3, 1, 18, tzinfo=UTC))  # fmt: skip
    assert at_1am is not None and at_6pm is not None
    # 01:00: one hour is taken as six (the floor): 0.40 a day; 0.10 + 0.40 * (31 - 1/24) = 12.483333...
    assert at_1am.forecast_usd == Decimal("12.4833")
    # 18:00: 0.10 over 0.75 of a day: 0.10 * 31 / 0.75 = 4.133333...
    assert at_6pm.forecast_usd == Decimal("4.1333")


def test_the_pages_say_what_the_forecast_rests_on(db: None, org_a: Org, owner_a: Client) -> None:
    customer = unique("c")
    send_traces(org_a, spend_traces(customer, ["1"]))
    spend = owner_a.get(org_a.url("spend/")).content.decode()
    detail = owner_a.get(org_a.url(f"spend/customers/{customer}/")).content.decode()
    plan = owner_a.get(org_a.url("billing/")).content.decode()
    if datetime.now(UTC).day > 1:
        assert "at the average of its" in spend and "full day" in spend and "began this month" in spend
        assert "spend began today: the rate of today" in detail  # the customer's first spend is today's
        assert "full day" in plan and "h of today (UTC)" in plan and "at the average of its" in plan
    else:
        assert "no full day yet" in spend and "no full day yet" in detail and "no full day yet" in plan
    assert "day 1 of" not in plan and "straight line" not in plan


def test_a_forecast_past_the_budget_is_its_own_status_while_spend_is_under_it(db: None, org_a: Org) -> None:
    """$2.97 spent by early on the 5th, forecast $22.77: against a $10 budget that is not "ok" but on
    course to exceed; "over" and "warn" keep meaning spend so far against the cap (the budget check's)."""
    statuses = {}
    for cap in ("2", "3.5", "10", "30"):
        customer = unique("course")
        budget_set(organization=org_a.organization, customer_id=customer, monthly_cap_usd=cap)
        send_traces(org_a, march(customer, 1, "0.70") + march(customer, 2, "0.80") + march(customer, 3, "0.75")
                    + march(customer, 4, "0.70") + march(customer, 5, "0.02", hour=2))  # fmt: skip
        with in_tenant(org_a):
            row = next(c for c in customers_spend(organization=org_a.organization, now=EARLY_ON_THE_5TH)
                       if c.customer_id == customer)  # fmt: skip
        assert (row.month_usd, row.forecast_usd) == (Decimal("2.97"), Decimal("22.7749"))
        statuses[cap] = (row.status, row.forecast_over)
    assert statuses == {
        "2": ("over", False),
        "3.5": ("forecast over", True),  # past 80% as well: the forecast says more
        "10": ("forecast over", True),
        "30": ("ok", False),
    }
