"""Stripe webhooks through Candor's endpoint: signatures verified with the real library (bad,
stale), events stored by ID and processed once (redelivery, replay), unknown types kept and
ignored, out-of-order subscription events, payment failure with a grace period and its banner."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from django.test import Client
from django.utils import timezone

from billing.models import AccountStatus, StripeEvent
from billing.services.accounts import account_get, grace_expire
from devtools.fake_stripe import FakeStripe
from tests.fixtures.organizations import Org
from tests.fixtures.stripe import WEBHOOK_SECRET

URL = "/billing/stripe/webhook"


def deliver(fake: FakeStripe, event: dict[str, Any], *, secret: str = WEBHOOK_SECRET,
            timestamp: int | None = None) -> Any:  # fmt: skip
    payload = json.dumps(event)
    return Client().post(URL, payload, content_type="application/json",
                         HTTP_STRIPE_SIGNATURE=fake.sign(payload, secret, timestamp))  # fmt: skip


def _customer(org: Org) -> str:
    account = account_get(organization=org.organization)
    account.stripe_customer_id = f"cus_{org.slug}"
    account.save()
    return account.stripe_customer_id


def _subscription(customer: str, status: str, price: str = "price_team_fake") -> dict[str, Any]:
    return {"id": "sub_1", "object": "subscription", "customer": customer, "status": status,
            "current_period_end": int(time.time()) + 30 * 86400,
            "items": {"object": "list", "data": [{"price": {"id": price}}]}}  # fmt: skip


def test_bad_and_stale_signatures_are_refused_and_nothing_is_stored(db: None, fake_stripe: FakeStripe) -> None:
    event = fake_stripe.event("invoice.paid", {"customer": "cus_x"})
    assert deliver(fake_stripe, event, secret="whsec_wrong").status_code == 400
    stale = deliver(fake_stripe, event, timestamp=int(time.time()) - 3600)
    assert stale.status_code == 400 and stale.json()["error"]["code"] == "bad_signature"
    tampered = Client().post(URL, json.dumps(event) + " ", content_type="application/json",
                             HTTP_STRIPE_SIGNATURE=fake_stripe.sign(json.dumps(event), WEBHOOK_SECRET))  # fmt: skip
    assert tampered.status_code == 400
    assert Client().post(URL, "{}", content_type="application/json").status_code == 400
    assert not StripeEvent.objects.filter(stripe_id=event["id"]).exists()


def test_unconfigured_webhooks_answer_503(db: None, settings: Any) -> None:
    settings.STRIPE_WEBHOOK_SECRET = ""
    assert (
        Client().post(URL, "{}", content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=x").status_code == 503
    )


def test_an_event_is_processed_once_however_often_it_comes(db: None, org_a: Org, fake_stripe: FakeStripe) -> None:
    customer = _customer(org_a)
    event = fake_stripe.event("customer.subscription.updated", _subscription(customer, "active"))
    first = deliver(fake_stripe, event)
    assert first.status_code == 200 and first.json()["processed"]
    account = account_get(organization=org_a.organization)
    assert (account.plan, account.subscription_status) == ("team", "active")
    account.plan = "business"  # changed since: a replay must not set it back
    account.save()
    again = deliver(fake_stripe, event)
    assert again.status_code == 200 and again.json()["deliveries"] == 2
    assert account_get(organization=org_a.organization).plan == "business"
    assert StripeEvent.objects.filter(stripe_id=event["id"]).count() == 1


def test_unknown_types_are_stored_and_ignored(db: None, fake_stripe: FakeStripe) -> None:
    event = fake_stripe.event("radar.early_fraud_warning.created", {"id": "issfr_1"})
    response = deliver(fake_stripe, event)
    assert response.status_code == 200 and response.json()["outcome"].startswith("ignored")
    assert StripeEvent.objects.get(stripe_id=event["id"]).processed_at is not None


def test_an_older_subscription_event_arriving_late_is_skipped(db: None, org_a: Org, fake_stripe: FakeStripe) -> None:
    customer = _customer(org_a)
    now = int(time.time())
    canceled = fake_stripe.event("customer.subscription.deleted", _subscription(customer, "canceled"), created=now)
    created = fake_stripe.event("customer.subscription.created", _subscription(customer, "active"), created=now - 60)
    deliver(fake_stripe, canceled)
    late = deliver(fake_stripe, created)
    assert late.json()["outcome"].startswith("skipped")
    account = account_get(organization=org_a.organization)
    assert (account.plan, account.status) == ("free", AccountStatus.CANCELED)


def test_payment_failed_then_grace_then_paid(db: None, org_a: Org, owner_a: Client, fake_stripe: FakeStripe) -> None:
    customer = _customer(org_a)
    deliver(fake_stripe, fake_stripe.event("invoice.payment_failed", {"id": "in_1", "customer": customer}))
    account = account_get(organization=org_a.organization)
    assert account.status == AccountStatus.PAST_DUE and account.grace_until is not None
    assert account.grace_until > timezone.now() + timedelta(days=6)
    page = owner_a.get(org_a.url("traces/"))
    assert b"Payment failed" in page.content and b"grace period" in page.content
    assert not grace_expire(account=account)  # still within the grace period
    assert grace_expire(account=account, now=account.grace_until + timedelta(seconds=1))
    assert account_get(organization=org_a.organization).status == AccountStatus.SUSPENDED
    org_a.organization.refresh_from_db()
    assert org_a.organization.quota_exceeded_at is not None  # suspended: work stops as at the cap
    deliver(fake_stripe, fake_stripe.event("invoice.paid", {"id": "in_1", "customer": customer}))
    assert account_get(organization=org_a.organization).status == AccountStatus.ACTIVE
    org_a.organization.refresh_from_db()
    assert org_a.organization.quota_exceeded_at is None
    assert b"Payment failed" not in owner_a.get(org_a.url("traces/")).content


def test_checkout_completed_links_the_subscription(db: None, org_a: Org, fake_stripe: FakeStripe) -> None:
    account_get(organization=org_a.organization)
    session = {"id": "cs_1", "object": "checkout.session", "customer": "cus_new", "subscription": "sub_9",
               "client_reference_id": str(org_a.organization.id), "mode": "subscription"}  # fmt: skip
    response = deliver(fake_stripe, fake_stripe.event("checkout.session.completed", session))
    assert response.json()["outcome"].startswith("applied")
    account = account_get(organization=org_a.organization)
    assert (account.stripe_customer_id, account.stripe_subscription_id) == ("cus_new", "sub_9")
    sub = _subscription("cus_new", "active", price="price_business_fake")
    deliver(fake_stripe, fake_stripe.event("customer.subscription.created", sub))
    assert account_get(organization=org_a.organization).plan == "business"


def test_an_event_for_no_known_organization_is_kept_and_ignored(db: None, fake_stripe: FakeStripe) -> None:
    event = fake_stripe.event("invoice.paid", {"id": "in_2", "customer": "cus_nobody"})
    assert deliver(fake_stripe, event).json()["outcome"] == "ignored: no organization for this customer"
    assert StripeEvent.objects.filter(stripe_id=event["id"]).exists()


def test_an_older_invoice_event_arriving_late_is_skipped(db: None, org_a: Org, fake_stripe: FakeStripe) -> None:
    customer = _customer(org_a)
    now = int(time.time())
    deliver(fake_stripe, fake_stripe.event("invoice.paid", {"id": "in_3", "customer": customer}, created=now))
    late = deliver(fake_stripe, fake_stripe.event("invoice.payment_failed", {"id": "in_2", "customer": customer},
                                                  created=now - 3600))  # fmt: skip
    assert late.json()["outcome"].startswith("skipped")
    assert account_get(organization=org_a.organization).status == AccountStatus.ACTIVE


def test_a_first_event_names_its_organization_by_metadata(db: None, org_a: Org, fake_stripe: FakeStripe) -> None:
    from billing.models import BillingAccount

    BillingAccount.objects.filter(organization=org_a.organization).delete()
    sub = dict(_subscription("cus_fresh", "active"), metadata={"candor_organization_id": str(org_a.organization.id)})
    response = deliver(fake_stripe, fake_stripe.event("customer.subscription.created", sub))
    assert response.json()["outcome"].startswith("applied")
    account = account_get(organization=org_a.organization)
    assert (account.plan, account.stripe_customer_id) == ("team", "cus_fresh")
