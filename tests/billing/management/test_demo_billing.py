"""demo_billing gives an organization a plan, ledger, cap and budgets: the biggest customer is over
its budget (fallback), the smallest under it; running it twice changes nothing that matters."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command

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
