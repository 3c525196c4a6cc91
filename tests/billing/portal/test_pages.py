"""Billing's portal pages: plan and cap (owner only to change; Stripe not configured said plainly),
spend by customer with the over-budget one flagged, a customer's page, budgets, features; roles;
and another organization's customers, budgets and pages are 404."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.test import Client

from billing.models import CapState, CustomerBudget, UsageLedger
from billing.selectors import customers_spend
from billing.services.accounts import account_get, plan_set
from billing.services.budgets import budget_set
from devtools.fake_stripe import FakeStripe
from tenants.services import member_ensure
from tests.billing.helpers import send_traces, spend_traces
from tests.fixtures.organizations import PASSWORD, Org, in_tenant, unique
from tests.helpers import assert_cross_tenant_404


def test_plan_page_without_stripe_and_setting_the_cap(db: None, org_a: Org, owner_a: Client, settings: object) -> None:
    settings.STRIPE_SECRET_KEY = ""  # type: ignore[attr-defined]
    UsageLedger.objects.create(organization=org_a.organization, meter="events",
                               day=datetime.now(UTC).date().replace(day=1), quantity=100_000)  # fmt: skip
    page = owner_a.get(org_a.url("billing/"))
    assert page.status_code == 200
    assert b"Stripe is not configured" in page.content and b"$10.00" in page.content
    assert b" judge runs included" in page.content  # the meter named in words
    below = owner_a.post(org_a.url("billing/"), {"monthly_cap_usd": "5"})
    assert below.status_code == 200 and b"already $10.00" in below.content
    assert owner_a.post(org_a.url("billing/"), {"monthly_cap_usd": "12"}).status_code == 302
    account = account_get(organization=org_a.organization)
    assert account.cap_state == CapState.WARN
    page = owner_a.get(org_a.url("billing/"))
    assert b"past 80%" in page.content  # the banner
    checkout = owner_a.post(org_a.url("billing/checkout/"), {"plan": "team"})
    assert checkout.status_code == 302  # back to the page with a message, no Stripe call
    assert owner_a.post(org_a.url("billing/"), {"monthly_cap_usd": "abc"}).status_code == 200


def test_only_an_owner_changes_the_cap_and_viewers_do_not_see_billing(db: None, org_a: Org) -> None:
    admin = member_ensure(organization=org_a.organization, email=f"{unique('adm')}@a.test", password=PASSWORD,
                          role="admin").user  # fmt: skip
    viewer = member_ensure(organization=org_a.organization, email=f"{unique('v')}@a.test", password=PASSWORD,
                           role="viewer").user  # fmt: skip
    client = Client()
    client.force_login(admin)
    assert client.get(org_a.url("billing/")).status_code == 200
    client.post(org_a.url("billing/"), {"monthly_cap_usd": "999"})
    assert account_get(organization=org_a.organization).monthly_cap_usd is None
    client.force_login(viewer)
    refused = client.get(org_a.url("billing/"))
    # The product's own page, saying which role the page needs (it was the browser's bare "403 Forbidden").
    assert refused.status_code == 403 and b"<h1>Not allowed</h1>" in refused.content
    assert b"This page needs the admin role or higher." in refused.content
    assert client.get(org_a.url("spend/")).status_code == 200
    assert client.post(org_a.url("spend/budgets/"), {"monthly_cap_usd": "1", "over_action": "block"}).status_code == 403


def test_spend_pages_show_customers_against_budgets(db: None, org_a: Org, owner_a: Client) -> None:
    over, under = unique("over"), unique("under")
    budget_set(organization=org_a.organization, monthly_cap_usd="5")
    send_traces(org_a, spend_traces(over, ["4", "3"]) + spend_traces(under, ["1"]))
    page = owner_a.get(org_a.url("spend/")).content.decode()
    assert over in page and under in page and "over its monthly budget" in page
    detail = owner_a.get(org_a.url(f"spend/customers/{over}/")).content.decode()
    assert "$7.00" in detail and 'id="check-action">block<' in detail
    assert 'data-testid="budgets-which"' not in detail  # one budget: nothing to choose between
    # Several budgets apply: the page says which one decides (a PM saw a fall-back one beside a blocking default).
    budget_set(organization=org_a.organization, customer_id=over, model="gpt-4o", monthly_cap_usd="3",
               over_action="fallback", fallback_model="gpt-4o-mini")  # fmt: skip
    several = owner_a.get(org_a.url(f"spend/customers/{over}/")).content.decode()
    assert 'data-testid="budgets-which"' in several and "the strictest answer decides" in several
    assert owner_a.get(org_a.url("spend/features/")).status_code == 200
    assert owner_a.get(org_a.url(f"spend/customers/{unique('nobody')}/")).status_code == 404


def test_the_spend_page_shows_a_month_that_is_over(db: None, org_a: Org, org_b: Org, owner_a: Client) -> None:
    """The spend page had this month alone: a PM asked for last month's by customer. ?month=YYYY-MM shows a month
    that is over, linked from the page; a month out of reach is a 404, and another organization's spend is not in it."""
    now = datetime.now(UTC)
    last = (now.replace(day=1) - timedelta(days=1)).replace(day=15, hour=12, minute=0, second=0, microsecond=0)
    earlier, theirs = unique("earlier"), unique("theirs")
    send_traces(org_a, spend_traces(earlier, ["2.5", "1.25"], started_at=last.isoformat()))
    send_traces(org_b, spend_traces(theirs, ["9"], started_at=last.isoformat()))
    page = owner_a.get(org_a.url("spend/")).content.decode()
    month = f"{last:%Y-%m}"
    assert f'<a href="?month={month}">{last:%b %Y}</a>' in page and earlier not in page  # not this month's
    assert 'id="forecast-basis"' in page  # this month: budgets and forecasts
    past = owner_a.get(org_a.url("spend/"), {"month": month})
    assert past.status_code == 200
    row = past.content.decode().split(f'data-customer="{earlier}"', 1)[1].split("</tr>", 1)[0]
    assert ">2<" in row and "$3.75" in row and theirs not in past.content.decode()
    assert "Forecast" not in past.content.decode()  # a month that is over has none
    # Its customer opens on that month (it opened on this one: $0 where the month had $3.75).
    link = f"{org_a.url(f'spend/customers/{earlier}/')}?month={month}"
    assert f'href="{link}"' in past.content.decode()
    detail = owner_a.get(link).content.decode()
    assert (
        f"LLM spend in {last:%B %Y}" in detail and 'id="month-usd">$3.75<' in detail and 'id="forecast"' not in detail
    )
    assert 'id="month-usd">$0.00<' in owner_a.get(org_a.url(f"spend/customers/{earlier}/")).content.decode()
    # A month not understood, or to come, shows this month and says so (it was a 404 that blamed the sign-in).
    for bad in ("2026-13", "last", f"{now.year + 1}-01"):
        shown = owner_a.get(org_a.url("spend/"), {"month": bad})
        assert shown.status_code == 200 and shown.context["past"] is None
        assert "not shown: use YYYY-MM" in shown.content.decode()
    assert owner_a.get(org_a.url("spend/"), {"month": "1999-01"}).context["past"] == []  # long before: nothing spent
    assert owner_a.get(org_a.url("spend/"), {"month": f"{now:%Y-%m}"}).context["past"] is None


def test_budgets_page_sets_and_removes(db: None, org_a: Org, owner_a: Client) -> None:
    customer = unique("c")
    bad = owner_a.post(org_a.url("spend/budgets/"), {"customer_id": customer, "monthly_cap_usd": "-3",
                                                      "over_action": "block"})  # fmt: skip
    assert bad.status_code == 200 and b"cannot be negative" in bad.content
    response = owner_a.post(
        org_a.url("spend/budgets/"),
        {"customer_id": customer, "monthly_cap_usd": "30", "over_action": "fallback", "fallback_model": "small"},
    )
    assert response.status_code == 302
    budget = CustomerBudget.objects.get(organization=org_a.organization, customer_id=customer)
    assert customer in owner_a.get(org_a.url("spend/budgets/")).content.decode()
    assert owner_a.post(org_a.url(f"spend/budgets/{budget.id}/remove/")).status_code == 302
    assert not CustomerBudget.objects.filter(id=budget.id).exists()


def test_a_budget_naming_a_feature_by_its_display_name_is_refused_and_an_unknown_key_is_said(
    db: None, org_a: Org, owner_a: Client
) -> None:
    """A PM typed the feature as the portal shows it ("Support Copilot"): saved without a word, it never applied."""
    form = {"customer_id": unique("c"), "monthly_cap_usd": "5", "over_action": "block"}
    named = owner_a.post(org_a.url("spend/budgets/"), {**form, "feature": "Support Copilot"})
    assert named.status_code == 200 and b"is not a feature key" in named.content
    unknown = owner_a.post(org_a.url("spend/budgets/"), {**form, "feature": "no-such-feature"}, follow=True)
    assert b"No trace names the feature" in unknown.content


def test_another_organizations_spend_is_not_found(db: None, org_a: Org, org_b: Org, owner_a: Client) -> None:
    theirs = unique("theirs")
    send_traces(org_b, spend_traces(theirs, ["2"]))
    budget = budget_set(organization=org_b.organization, customer_id=theirs, monthly_cap_usd="1")
    assert_cross_tenant_404(owner_a, org_a.url(f"spend/customers/{theirs}/"), leak="$2.00")
    assert_cross_tenant_404(owner_a, org_a.url(f"spend/budgets/{budget.id}/remove/"), method="post")
    assert CustomerBudget.objects.filter(id=budget.id).exists()
    assert theirs not in owner_a.get(org_a.url("spend/")).content.decode()
    assert theirs not in owner_a.get(org_a.url("spend/budgets/")).content.decode()
    for path in ("billing/", "spend/", "spend/budgets/", "spend/features/", f"spend/customers/{theirs}/"):
        assert_cross_tenant_404(owner_a, org_b.url(path))


def test_subscribe_and_manage_go_to_stripe(db: None, org_a: Org, owner_a: Client, fake_stripe: FakeStripe) -> None:
    UsageLedger.objects.create(organization=org_a.organization, meter="events",
                               day=datetime.now(UTC).date().replace(day=1), quantity=3_900)  # fmt: skip
    page = owner_a.get(org_a.url("billing/")).content.decode()
    assert "Stripe is not configured" not in page and "Subscribe" in page
    # No subscription yet: nothing is reported, and the ledger says so rather than "behind" for ever.
    assert "3,900 (not sent: no Stripe subscription yet)" in page and "badge bad" not in page
    assert "Stripe's metering catches up" not in page
    # The plan it is on, set without Stripe (as the demo sets Team), can still be subscribed to.
    plan_set(organization=org_a.organization, plan="team")
    page = owner_a.get(org_a.url("billing/")).content.decode()
    team = page.split("<h2>Plans</h2>")[1].split(">Team<")[1].split('<div class="card">')[0]
    assert 'name="plan" value="team"' in team and "current" in team
    # And the page says it is not paid for yet, rather than "Team · status Active" beside a Subscribe button.
    assert "not subscribed yet" in team and 'id="not-subscribed"' in page and "nothing is charged" in page
    assert "/month · status not subscribed" in page  # not "status Active" beside "Not subscribed on Stripe yet"
    # Nor does it call the month's amount a bill beside that ("$99 bill" and "nothing is charged", from the PM review).
    label = page.split('id="bill-label">')[1].split("</div>")[0]
    assert "Bill this month" not in label and "not charged: no subscription" in label
    response = owner_a.post(org_a.url("billing/checkout/"), {"plan": "team"})
    assert response.status_code == 302 and response["Location"].startswith(fake_stripe.url + "/checkout/")
    assert fake_stripe.made("/v1/checkout/sessions")[0].params["success_url"].startswith("http://testserver/o/")
    manage = owner_a.post(org_a.url("billing/manage/"))
    assert manage.status_code == 302 and manage["Location"].startswith(fake_stripe.url + "/portal/")
    fake_stripe.fail_next("/v1/billing_portal/sessions", 400)
    refused = owner_a.post(org_a.url("billing/manage/"), follow=True)
    assert refused.status_code == 200 and b"Stripe:" in refused.content


def test_customer_ids_with_slashes_and_spaces_link_and_open(db: None, org_a: Org, owner_a: Client) -> None:
    odd = f"acme/eu west?{unique('x')}#1"
    send_traces(org_a, spend_traces(odd, ["2.5"]))
    page = owner_a.get(org_a.url("spend/"))
    assert page.status_code == 200
    from django.urls import reverse

    url = reverse("billing:customer", args=(org_a.slug, odd))
    assert url.encode() in page.content
    detail = owner_a.get(url)
    assert detail.status_code == 200 and b"$2.50" in detail.content


def test_the_checkout_message_shows_once(db: None, org_a: Org, owner_a: Client) -> None:
    back = owner_a.get(org_a.url("billing/?checkout=done"), follow=True)
    assert back.status_code == 200 and b"Checkout complete" in back.content
    # The page the owner lands on is the plain one: reloading it (as the message suggests) does not repeat it.
    landed = back.wsgi_request.get_full_path()
    assert landed == org_a.url("billing/")
    assert b"Checkout complete" not in owner_a.get(landed).content
    canceled = owner_a.get(org_a.url("billing/?checkout=canceled"), follow=True)
    assert b"Checkout canceled" in canceled.content and canceled.wsgi_request.get_full_path() == org_a.url("billing/")


def test_a_customer_on_course_to_exceed_its_budget_is_not_ok(db: None, org_a: Org, owner_a: Client) -> None:
    """Under its budget so far, over it by the month-end forecast: the page says so, with the forecast."""
    customer = unique("course")
    now = datetime.now(UTC)
    send_traces(org_a, spend_traces(customer, ["1"], started_at=now.replace(hour=0, minute=0, second=1).isoformat()))
    with in_tenant(org_a):
        row = next(c for c in customers_spend(organization=org_a.organization) if c.customer_id == customer)
    assert row.forecast_usd > row.month_usd == Decimal("1")
    cap = ((row.month_usd + row.forecast_usd) / 2).quantize(Decimal("0.0001"))  # between spend and forecast
    budget_set(organization=org_a.organization, customer_id=customer, monthly_cap_usd=cap)
    page = owner_a.get(org_a.url("spend/")).content.decode()
    cells = page.split(f'data-customer="{customer}"', 1)[1].split("</tr>", 1)[0]
    assert "on course to exceed" in cells and f"forecast ${row.forecast_usd:.2f}" in cells
    assert ">ok<" not in cells and "over its monthly budget" not in page
