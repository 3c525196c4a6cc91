"""The real `stripe` library against the fake Stripe over HTTP: what Candor asks for (parameters and
idempotency keys), and usage reports that never bill twice, retried after failures and crashes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from billing.models import UsageLedger, UsageReport
from billing.services.accounts import account_get, cap_set, checkout_start, portal_start
from billing.services.ledger import ledger_refresh, usage_reports_prepare, usage_reports_send
from devtools.fake_stripe import FakeStripe
from tests.billing.helpers import send_traces, spend_traces
from tests.fixtures.organizations import Org


def test_a_plan_whose_fee_reaches_the_cap_is_refused_before_stripe(db: None, org_a: Org, owner_a: Client,
                                                                   fake_stripe: FakeStripe) -> None:  # fmt: skip
    # Subscribed, the Business fee ($499) alone would reach a $200 cap: judges and ingestion would stop at once.
    cap_set(organization=org_a.organization, cap_usd="200")
    with pytest.raises(ValidationError) as refused:
        checkout_start(organization=org_a.organization, plan="business", email="o@a.test", return_url="http://x/")
    assert refused.value.error_dict["plan"][0].code == "cap_below_fee"
    assert "$499.00" in str(refused.value) and "$200.00" in str(refused.value)
    assert fake_stripe.requests == []  # nothing created in Stripe
    page = owner_a.get(org_a.url("billing/")).content.decode()
    assert page.count("raise the cap to subscribe") == 1  # Business says why; Team ($99) offers Subscribe
    assert checkout_start(organization=org_a.organization, plan="team", email="o@a.test", return_url="http://x/")
    cap_set(organization=org_a.organization, cap_usd=None)
    assert checkout_start(organization=org_a.organization, plan="business", email="o@a.test", return_url="http://x/")


def test_checkout_creates_the_customer_once_and_a_subscription_session(db: None, org_a: Org,
                                                                       fake_stripe: FakeStripe) -> None:  # fmt: skip
    url = checkout_start(organization=org_a.organization, plan="team", email="owner@a.test",
                         return_url="http://localhost/o/org-alpha/billing/")  # fmt: skip
    assert url.startswith(fake_stripe.url + "/checkout/cs_")
    [customer] = fake_stripe.made("/v1/customers")
    assert customer.idempotency_key == f"candor-customer-{org_a.organization.id}"
    assert customer.params["metadata[candor_organization_id]"] == str(org_a.organization.id)
    [session] = fake_stripe.made("/v1/checkout/sessions")
    account = account_get(organization=org_a.organization)
    assert session.params["customer"] == account.stripe_customer_id
    assert session.params["mode"] == "subscription"
    assert session.params["line_items[0][price]"] == "price_team_fake"
    assert session.params["client_reference_id"] == str(org_a.organization.id)
    assert session.params["success_url"].endswith("?checkout=done")
    assert session.idempotency_key and session.idempotency_key.startswith(f"candor-checkout-{org_a.organization.id}-")
    checkout_start(organization=org_a.organization, plan="business", email="owner@a.test", return_url="http://x/")
    assert len(fake_stripe.made("/v1/customers")) == 1  # the customer is kept
    portal = portal_start(organization=org_a.organization, return_url="http://localhost/back")
    assert portal.startswith(fake_stripe.url + "/portal/bps_")
    assert fake_stripe.made("/v1/billing_portal/sessions")[0].params["return_url"] == "http://localhost/back"


def test_the_free_plan_and_unknown_plans_have_no_checkout(db: None, org_a: Org, fake_stripe: FakeStripe) -> None:
    for plan in ("free", "platinum"):
        with pytest.raises(ValidationError):
            checkout_start(organization=org_a.organization, plan=plan, email="o@a.test", return_url="http://x/")
    assert fake_stripe.requests == []


def _paying(org: Org, fake: FakeStripe) -> str:
    checkout_start(organization=org.organization, plan="team", email="o@a.test", return_url="http://x/")
    return account_get(organization=org.organization).stripe_customer_id


def test_usage_is_reported_once_with_stable_identifiers(db: None, org_a: Org, fake_stripe: FakeStripe) -> None:
    customer = _paying(org_a, fake_stripe)
    today = datetime.now(UTC).date()
    send_traces(org_a, spend_traces("c1", ["0.1"] * 7))
    counted = ledger_refresh(organization=org_a.organization, days=[today])
    assert counted[("events", today)] >= 7
    events_today = counted[("events", today)]
    assert usage_reports_prepare(organization=org_a.organization, since=today) == 1
    assert usage_reports_send(organization=org_a.organization) == 1
    [sent] = fake_stripe.made("/v1/billing/meter_events")
    identifier = f"candor-{org_a.organization.id}-events-{today:%Y%m%d}-0-{events_today}"
    assert sent.params["identifier"] == identifier and sent.idempotency_key == identifier
    assert sent.params["event_name"] == "candor_events"
    assert sent.params["payload[stripe_customer_id]"] == customer
    assert sent.params["payload[value]"] == str(events_today)
    # Nothing new: nothing sent. Three more traces: only the difference, under a new identifier.
    assert usage_reports_prepare(organization=org_a.organization, since=today) == 0
    send_traces(org_a, spend_traces("c1", ["0.1"] * 3))
    ledger_refresh(organization=org_a.organization, days=[today])
    usage_reports_prepare(organization=org_a.organization, since=today)
    usage_reports_send(organization=org_a.organization)
    assert fake_stripe.billed("candor_events", customer) == events_today + 3
    assert fake_stripe.made("/v1/billing/meter_events")[-1].params["identifier"].endswith(
        f"-{events_today}-{events_today + 3}")  # fmt: skip


def test_a_report_retried_after_a_failure_or_a_lost_answer_bills_once(db: None, org_a: Org,
                                                                       fake_stripe: FakeStripe) -> None:  # fmt: skip
    customer = _paying(org_a, fake_stripe)
    day = datetime.now(UTC).date().replace(day=1)
    UsageLedger.objects.create(organization=org_a.organization, meter="judge_runs", day=day, quantity=40)
    usage_reports_prepare(organization=org_a.organization, since=day)
    fake_stripe.fail_next("/v1/billing/meter_events", 500, times=3)  # the library retries twice itself
    assert usage_reports_send(organization=org_a.organization) == 0
    report = UsageReport.objects.get(organization=org_a.organization, meter="judge_runs")
    assert report.sent_at is None and report.attempts == 1 and report.last_error
    # Stripe takes it but the answer is lost (a crash between their commit and ours): still unsent here.
    fake_stripe.drop_answer_next("/v1/billing/meter_events", times=3)
    assert usage_reports_send(organization=org_a.organization) == 0
    assert fake_stripe.billed("candor_judge_runs", customer) == 40
    # The next sweep prepares nothing new and resends the same identifier: Stripe replays, nothing doubles.
    assert usage_reports_prepare(organization=org_a.organization, since=day) == 0
    assert usage_reports_send(organization=org_a.organization) == 1
    assert fake_stripe.billed("candor_judge_runs", customer) == 40
    identifiers = {r.params["identifier"] for r in fake_stripe.made("/v1/billing/meter_events")}
    assert identifiers == {report.identifier}


def test_without_stripe_nothing_is_sent(db: None, org_a: Org, settings: object) -> None:
    settings.STRIPE_SECRET_KEY = ""  # type: ignore[attr-defined]
    account = account_get(organization=org_a.organization)
    account.stripe_customer_id = "cus_x"
    account.save()
    day = datetime.now(UTC).date()
    UsageLedger.objects.create(organization=org_a.organization, meter="events", day=day, quantity=5)
    usage_reports_prepare(organization=org_a.organization, since=day)
    assert usage_reports_send(organization=org_a.organization) == 0
