"""The one place Candor talks to Stripe, through the official `stripe` library.

Everything else in billing calls these functions with Candor's own words; none of them
imports `stripe`. Each write carries an idempotency key, so a retried call never creates
a second customer, session or meter event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    import stripe


class StripeNotConfigured(Exception):
    """No STRIPE_SECRET_KEY: the demo and any installation that bills some other way."""


class GatewayError(Exception):
    """Stripe refused or could not be reached; the message is safe to show."""


def configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def _stripe() -> Any:
    # Imported on first use: the library loads hundreds of modules (about 2 s on a busy machine),
    # which every web process would otherwise pay on its first request, Stripe or not.
    import stripe

    return stripe


def _client() -> stripe.StripeClient:
    if not configured():
        raise StripeNotConfigured("Stripe is not configured (STRIPE_SECRET_KEY is empty).")
    base = settings.STRIPE_API_BASE
    addresses: Any = {"api": base, "files": base, "connect": base, "meter_events": base} if base else {}
    return _stripe().StripeClient(settings.STRIPE_SECRET_KEY, base_addresses=addresses, max_network_retries=2)


def _call(fn: Any, params: dict[str, Any], idempotency_key: str | None = None) -> Any:
    options: Any = {"idempotency_key": idempotency_key} if idempotency_key else {}
    try:
        return fn(params=params, options=options)
    except _stripe().StripeError as exc:
        raise GatewayError(f"Stripe: {exc.user_message or exc.__class__.__name__}") from exc


def customer_create(*, organization_id: int, name: str, email: str) -> str:
    customer = _call(
        _client().v1.customers.create,
        {"name": name, "email": email, "metadata": {"candor_organization_id": str(organization_id)}},
        idempotency_key=f"candor-customer-{organization_id}",
    )
    return str(customer.id)


def checkout_session_create(
    *, customer_id: str, price_id: str, organization_id: int, success_url: str, cancel_url: str, attempt: str
) -> str:
    """A Checkout Session for a subscription to one plan's price; returns the URL to send the owner to.

    ``attempt`` (one per click) makes the idempotency key: the library's own retries of that click
    get the same session, a new click a new one (a session expires; reusing an old one would fail)."""
    session = _call(
        _client().v1.checkout.sessions.create,
        {
            "mode": "subscription",
            "customer": customer_id,
            "line_items": [{"price": price_id, "quantity": 1}],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": str(organization_id),
            "subscription_data": {"metadata": {"candor_organization_id": str(organization_id)}},
        },
        idempotency_key=f"candor-checkout-{organization_id}-{attempt}",
    )
    return str(session.url)


def portal_session_create(*, customer_id: str, return_url: str) -> str:
    session = _call(_client().v1.billing_portal.sessions.create, {"customer": customer_id, "return_url": return_url})
    return str(session.url)


@dataclass(frozen=True)
class Subscription:
    id: str
    status: str
    price_id: str
    current_period_end: datetime | None


def subscription_retrieve(*, subscription_id: str) -> Subscription:
    try:
        sub = _client().v1.subscriptions.retrieve(subscription_id)
    except _stripe().StripeError as exc:
        raise GatewayError(f"Stripe: {exc.user_message or exc.__class__.__name__}") from exc
    return subscription_from(sub.to_dict())


def subscription_from(data: dict[str, Any]) -> Subscription:
    """A subscription object (from the API or a webhook payload) in Candor's words."""
    items = (data.get("items") or {}).get("data") or []
    price = (items[0].get("price") or {}).get("id", "") if items else ""
    end = data.get("current_period_end") or (items[0].get("current_period_end") if items else None)
    return Subscription(
        id=str(data.get("id", "")),
        status=str(data.get("status", "")),
        price_id=str(price),
        current_period_end=datetime.fromtimestamp(int(end), tz=UTC) if end else None,
    )


def meter_event_send(*, event_name: str, customer_id: str, value: int, identifier: str, timestamp: int) -> None:
    """One Billing Meter event; ``identifier`` is Stripe's de-duplication key and our idempotency key."""
    _call(
        _client().v1.billing.meter_events.create,
        {
            "event_name": event_name,
            "payload": {"stripe_customer_id": customer_id, "value": str(value)},
            "identifier": identifier,
            "timestamp": timestamp,
        },
        idempotency_key=identifier,
    )


class BadSignature(Exception):
    pass


def webhook_event(*, payload: bytes, signature: str) -> dict[str, Any]:
    """Verify a webhook body's Stripe-Signature (raw bytes, 5-minute tolerance) and parse it."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise StripeNotConfigured("STRIPE_WEBHOOK_SECRET is empty: webhooks cannot be verified.")
    try:
        _stripe().WebhookSignature.verify_header(payload.decode("utf-8"), signature, secret, tolerance=300)
    except (_stripe().SignatureVerificationError, UnicodeDecodeError) as exc:
        raise BadSignature(str(exc) or "bad signature") from exc
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise BadSignature("the body is not JSON") from exc
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise BadSignature("the body is not a Stripe event")
    return event
