"""Stripe's webhook events: verified on the raw body, stored first by their Stripe ID, processed once.

Redeliveries find the stored row (counted, not processed again); an event whose processing
failed stays unprocessed and the sweep tries it again. Subscription events carry Stripe's
`created` time: one older than the last applied is recorded and skipped, so out-of-order
delivery never rolls a subscription back. Unknown types are stored and marked ignored.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing import gateway
from billing.models import BillingAccount, StripeEvent
from billing.services.accounts import account_get, payment_failed, payment_succeeded, subscription_apply
from tenants.selectors import organization_get

logger = logging.getLogger("candor.billing")

SUBSCRIPTION_EVENTS = {
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
}


def stripe_event_receive(*, payload: bytes, signature: str) -> StripeEvent:
    """Verify, store (once per Stripe ID) and process. Raises gateway.BadSignature on a bad or stale signature."""
    event = gateway.webhook_event(payload=payload, signature=signature)
    created = datetime.fromtimestamp(int(event.get("created") or 0), tz=UTC)
    row, new = StripeEvent.objects.get_or_create(
        stripe_id=event["id"][:100], defaults={"type": event["type"][:100], "created": created, "payload": event}
    )
    if not new:
        StripeEvent.objects.filter(id=row.id).update(deliveries=F("deliveries") + 1)
    if row.processed_at is None:
        stripe_event_process(event_id=row.id)
    row.refresh_from_db()
    return row


def stripe_event_process(*, event_id: int) -> str:
    """Process a stored event unless it was processed already (the row is locked meanwhile)."""
    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().get(id=event_id)
        if event.processed_at is not None:
            return event.outcome
        outcome = _handle(event)
        event.processed_at = timezone.now()
        event.outcome = outcome[:200]
        event.save(update_fields=["processed_at", "outcome"])
    return outcome


def _account_for(obj: dict[str, Any]) -> BillingAccount | None:
    metadata = obj.get("metadata") or {}
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    account = None
    if customer:
        account = BillingAccount.objects.select_related("organization").filter(stripe_customer_id=customer).first()
    org_id = str(metadata.get("candor_organization_id") or obj.get("client_reference_id") or "")
    if account is None and org_id.isdigit() and len(org_id) < 19:
        organization = organization_get(int(org_id))
        account = account_get(organization=organization) if organization is not None else None
    return account


def _handle(event: StripeEvent) -> str:
    obj = ((event.payload or {}).get("data") or {}).get("object") or {}
    if not isinstance(obj, dict):
        return "ignored: no data.object"
    if event.type not in SUBSCRIPTION_EVENTS | {
        "checkout.session.completed", "invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed",
    }:  # fmt: skip
        return f"ignored: Candor does not act on {event.type}"
    account = _account_for(obj)
    if account is None:
        return "ignored: no organization for this customer"
    if event.type == "checkout.session.completed":
        if obj.get("customer") and not account.stripe_customer_id:
            account.stripe_customer_id = str(obj["customer"])
        if obj.get("subscription"):
            account.stripe_subscription_id = str(obj["subscription"])
        account.save(update_fields=["stripe_customer_id", "stripe_subscription_id"])
        return "applied: checkout completed (the subscription events set the plan)"
    if event.type in SUBSCRIPTION_EVENTS:
        if obj.get("customer") and not account.stripe_customer_id:
            account.stripe_customer_id = str(obj["customer"])
            account.save(update_fields=["stripe_customer_id"])
        subscription = gateway.subscription_from(obj)
        if event.type == "customer.subscription.deleted":
            subscription = gateway.Subscription(subscription.id, "canceled", subscription.price_id, None)
        return subscription_apply(account=account, subscription=subscription, at=event.created)
    if account.payment_event_at is not None and event.created < account.payment_event_at:
        return "skipped: older than the invoice event already applied"
    account.payment_event_at = event.created
    account.save(update_fields=["payment_event_at"])
    if event.type == "invoice.payment_failed":
        payment_failed(account=account)
        return f"applied: payment failed, grace until {account.grace_until:%Y-%m-%d}"
    payment_succeeded(account=account)
    return "applied: invoice paid"


def stripe_events_retry(*, limit: int = 100) -> int:
    """Process events stored but not processed (a crash, or a failure the last time)."""
    done = 0
    for event_id in (
        StripeEvent.objects.filter(processed_at__isnull=True).order_by("created").values_list("id", flat=True)[:limit]
    ):
        try:
            stripe_event_process(event_id=event_id)
            done += 1
        except Exception:
            logger.exception("stripe event %s failed again", event_id)
    return done
