"""demo_billing gives an organization a plan, ledger, cap and budgets: the biggest customer is over
its budget (fallback), the smallest under it; running it twice changes nothing that matters."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command
from django.db import connection

from billing.models import CustomerBudget
from billing.selectors import budget_check
from billing.services.accounts import account_get
from tests.billing.helpers import counters, send_traces, spend_traces
from tests.fixtures.organizations import Org, in_tenant, unique


def test_demo_billing_puts_one_customer_over_and_one_under(db: None, org_a: Org) -> None:
    big, small = unique("big"), unique("small")
    send_traces(org_a, spend_traces(big, ["500"] * 3) + spend_traces(small, ["0.001"]))
    for _ in range(2):
        out = StringIO()
        call_command("demo_billing", "--org", org_a.slug, stdout=out)
    account = account_get(organization=org_a.organization)
    assert account.plan == "team" and account.monthly_cap_usd is not None
    assert CustomerBudget.objects.filter(organization=org_a.organization, customer_id=big).count() == 1
    with in_tenant(org_a):
        over = budget_check(organization_id=org_a.organization.id, customer_id=big)
        under = budget_check(organization_id=org_a.organization.id, customer_id=small)
    assert (over.allowed, over.action, over.fallback_model) == (False, "fallback", "gpt-4o-mini")
    assert (under.allowed, under.action) == (True, "allow")
    assert "action=fallback" in out.getvalue()


def test_rebuilding_the_counters_gives_the_same_counts(db: None, org_a: Org) -> None:
    customer = unique("c")
    send_traces(org_a, spend_traces(customer, ["1.5", "2.25"]))
    before = counters(org_a, customer)
    call_command("billing_rebuild_counters", stdout=StringIO())
    assert counters(org_a, customer) == before == (before[0], 2)


def test_demo_usage_is_counted_on_the_days_it_happened(db: None, org_a: Org) -> None:
    """The demo loads a month of traffic at once: booked on the day it was loaded, the bill projected that
    day times the month (the demo read 121% of its cap). Each trace counts on its own day instead."""
    from datetime import UTC, datetime, time, timedelta

    from billing.models import UsageLedger
    from billing.services.shared import month_start

    today = datetime.now(UTC).date()
    first = month_start(today)
    days = sorted({first, first + (today - first) // 2, today})

    def happened() -> dict[object, int]:  # what the schema already holds, per day (other tests' rows too)
        with in_tenant(org_a), connection.cursor() as cursor:
            cursor.execute(
                "SELECT d, count(*) FROM (SELECT (LEAST(COALESCE(started_at, received_at), received_at) AT TIME ZONE"
                " 'UTC')::date d FROM feedback_trace UNION ALL SELECT (LEAST(occurred_at, received_at) AT TIME ZONE"
                " 'UTC')::date FROM feedback_feedbackevent) x GROUP BY d"
            )
            return dict(cursor.fetchall())

    before = happened()
    traces = []
    for n, day in enumerate(days, start=1):  # 1 trace on the first day, 2 on the next...
        at = datetime.combine(day, time(0, 30), UTC).isoformat()
        traces += spend_traces(unique("c"), ["0.01"] * n, prefix=unique(f"d{n}"), started_at=at)
    send_traces(org_a, traces)
    call_command("demo_billing", "--org", org_a.slug, stdout=StringIO())
    ledger = dict(
        UsageLedger.objects.filter(organization=org_a.organization, meter="events").values_list("day", "quantity")
    )
    assert {day: ledger[day] - before.get(day, 0) for day in days} == {day: n for n, day in enumerate(days, start=1)}
    assert all(quantity == before.get(day, 0) for day, quantity in ledger.items() if day not in days and day >= first)
    assert today + timedelta(days=1) not in ledger
