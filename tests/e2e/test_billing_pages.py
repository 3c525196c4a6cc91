"""Real Chromium: an owner sets the monthly spend cap and sees the bill's projection and the banner;
a PM's spend page flags the customer over its budget and its page says the check falls back; an owner
subscribes through (fake) Stripe Checkout and cancels in its billing portal, Stripe's webhooks setting
the plan."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from billing.models import BillingAccount, CustomerBudget, Notice, UsageLedger
from billing.services.budgets import budget_set
from devtools.fake_stripe import FakeStripe
from tenants.services import organization_quota_set
from tests.billing.helpers import send_traces, spend_traces
from tests.fixtures.browser import log_in
from tests.fixtures.organizations import Org, unique
from tests.fixtures.stripe import PRICES, WEBHOOK_SECRET

pytestmark = pytest.mark.browser


@pytest.fixture
def clean_billing(committed_db: None, org_a: Org) -> Iterator[None]:
    yield
    for model in (BillingAccount, CustomerBudget, Notice, UsageLedger):
        model.objects.filter(organization=org_a.organization).delete()
    organization_quota_set(organization_id=org_a.organization.id, exceeded=False)


def test_owner_sets_a_cap_and_sees_spend(live: Any, context: Any, org_a: Org, clean_billing: None) -> None:
    over, under = unique("over"), unique("under")
    send_traces(org_a, spend_traces(over, ["6", "5"]) + spend_traces(under, ["0.5"]))
    budget_set(organization=org_a.organization, monthly_cap_usd="10", over_action="fallback",
               fallback_model="gpt-4o-mini")  # fmt: skip
    UsageLedger.objects.create(organization=org_a.organization, meter="events",
                               day=datetime.now(UTC).date().replace(day=1), quantity=150_000)  # fmt: skip
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 500 else None)
    log_in(page, live.url, org_a.owner.email)

    page.click("summary:has-text('Settings')")
    page.click("text=Plan and billing")
    assert page.locator("#stripe-off").is_visible()  # the test server has no Stripe keys
    assert page.locator("#bill-to-date").inner_text() == "$20.00"  # 100,000 events past the free 50,000
    assert page.locator("#bill-projected").inner_text().startswith("$")
    page.fill("input[name=monthly_cap_usd]", "24")
    page.click("#cap-form button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert page.locator("#cap").inner_text() == "$24.00"
    assert "past 80%" in page.locator("#billing-banner").inner_text()
    page.fill("input[name=monthly_cap_usd]", "20")
    page.click("#cap-form button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "judges are paused" in page.locator("#billing-banner").inner_text()

    page.click("nav >> text=Spend")
    row = page.locator(f"tr[data-customer='{over}']")
    assert "over" in row.inner_text() and "$11.00" in row.inner_text()
    # Under its budget so far: "ok", or "on course to exceed" when its month-end forecast passes the budget.
    status = page.locator(f"tr[data-customer='{under}'] td").last.inner_text()
    assert status == "ok" or status.startswith("on course to exceed"), status
    row.locator("a").first.click()
    page.wait_for_load_state("networkidle")
    assert page.locator("#check-action").inner_text() == "fallback"
    assert "gpt-4o-mini" in page.content()
    assert problems == []


def test_owner_subscribes_in_stripe_checkout_and_cancels_in_its_portal(  # type: ignore[no-untyped-def]
    live: Any, context: Any, org_a: Org, clean_billing: None, fake_stripe: FakeStripe
) -> None:
    fake_stripe.webhook_url, fake_stripe.webhook_secret = f"{live.url}/billing/stripe/webhook", WEBHOOK_SECRET
    try:
        page = context.new_page()
        problems: list[str] = []
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 500 else None)
        log_in(page, live.url, org_a.owner.email)
        page.goto(f"{live.url}{org_a.url('billing/')}")
        assert page.locator("#stripe-off").count() == 0 and page.locator("#plan-name").inner_text() == "Free"
        page.locator(".card", has=page.locator(".stat-label", has_text="Business")).locator("button").click()
        page.wait_for_url(f"{fake_stripe.url}/checkout/*")
        assert page.locator("#price").inner_text() == PRICES["business"]
        page.click("#pay")  # the fake sends its webhooks to Candor, then returns to the success URL
        # Back at the success URL, which says so once and drops its query (a reload does not repeat it).
        page.wait_for_url(lambda url: url.endswith("/billing/"))
        assert page.locator("#plan-name").inner_text() == "Business"
        assert "Checkout complete" in page.locator(".messages").inner_text()
        assert page.locator("#bill-label").text_content() == "Bill this month so far"
        assert fake_stripe.deliveries == [("checkout.session.completed", 200), ("customer.subscription.created", 200)]
        account = BillingAccount.objects.get(organization=org_a.organization)
        assert account.stripe_subscription_id in fake_stripe.subscriptions and account.subscription_status == "active"

        page.click("text=Manage payment and invoices in Stripe")
        page.wait_for_url(f"{fake_stripe.url}/portal/*")
        page.click("button.cancel")
        page.wait_for_url("**/billing/")
        assert page.locator("#plan-name").inner_text() == "Free"
        assert "Stripe: canceled" in page.content()
        # A cancelled subscription keeps its ID and charges nothing: the month's amount is no bill.
        assert "not charged: no subscription" in (page.locator("#bill-label").text_content() or "")
        assert fake_stripe.deliveries[-1] == ("customer.subscription.deleted", 200)

        # Back out of a second checkout: nothing bought, said so.
        page.locator(".card", has=page.locator(".stat-label", has_text="Team")).locator("button").click()
        page.wait_for_url(f"{fake_stripe.url}/checkout/*")
        page.click("#cancel")
        page.wait_for_url(lambda url: url.endswith("/billing/"))
        assert "nothing was bought" in page.locator(".messages").inner_text()
        assert page.locator("#plan-name").inner_text() == "Free"
        assert problems == []
    finally:
        fake_stripe.webhook_url = fake_stripe.webhook_secret = ""
