"""The organization's Candor bill: its account, plan and subscription, and its monthly spend cap.

The cap is checked against this month's bill so far, computed from Candor's own usage ledger
(the projection to the month's end is shown beside it). At 80% and 100% the owners are
warned once a month (email, webhook, banner). At the cap, costly work stops: every judge is
paused (the runner reads the flag between batches) and ingestion answers 429 quota_exceeded
(tenants reads Organization.quota_exceeded_at where the API key is resolved). Raising the cap
resumes both at once. A payment that stays failed past the grace period stops work the same way.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from billing import gateway
from billing.models import AccountStatus, BillingAccount, CapState
from billing.plans import PLANS
from billing.selectors import bill_projection
from billing.services.notices import notice_send
from billing.services.shared import month_start, organization_schema, utc_now
from evaluation.models import Judge
from tenants.selectors import Organization
from tenants.services import organization_quota_set

CAP_PAUSE_REASON = "spend cap reached"
MAX_CAP_USD = Decimal("10000000")
WARN_AT = Decimal("0.8")


def account_get(*, organization: Organization) -> BillingAccount:
    account, _ = BillingAccount.objects.get_or_create(organization=organization)
    return account


def parse_usd(value: object, *, field: str, maximum: Decimal) -> Decimal | None:
    """A money amount from a form or the API: empty is None; negative, absurd or not a number is an error."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError({field: f"'{value}' is not an amount in USD, e.g. 250 or 12.50."}) from None
    if not amount.is_finite():
        raise ValidationError({field: "Give a finite amount in USD."})
    if amount < 0:
        raise ValidationError({field: "An amount cannot be negative."})
    if amount > maximum:
        raise ValidationError({field: f"{amount} is above the largest amount accepted here ({maximum:,} USD)."})
    return amount.quantize(Decimal("0.0001"))


@dataclass(frozen=True)
class CapChange:
    state: str
    bill_usd: Decimal
    cap_usd: Decimal | None


def cap_set(*, organization: Organization, cap_usd: object, now: datetime | None = None) -> CapChange:
    """Set (or, with None / "", remove) the monthly cap on the Candor bill and apply it at once.

    A cap below this month's bill so far is refused: it would stop everything at once, and the
    money is already owed. Remove the cap or set it at or above the bill."""
    amount = parse_usd(cap_usd, field="monthly_cap_usd", maximum=MAX_CAP_USD)
    now = now or utc_now()
    account = account_get(organization=organization)
    projection = bill_projection(account=account, now=now)
    if amount is not None and amount < projection.bill_to_date_usd:
        raise ValidationError(
            {
                "monthly_cap_usd": f"This month's bill is already ${projection.bill_to_date_usd:,.2f}; "
                f"a cap of ${amount:,.2f} is below it. Set at least ${projection.bill_to_date_usd:,.2f}, "
                "or remove the cap."
            },
            code="cap_below_spent",
        )
    account.monthly_cap_usd = amount.quantize(Decimal("0.01")) if amount is not None else None
    account.updated_at = timezone.now()
    account.save(update_fields=["monthly_cap_usd", "updated_at"])
    state = cap_evaluate(account=account, now=now)
    return CapChange(state, projection.bill_to_date_usd, account.monthly_cap_usd)


def cap_evaluate(*, account: BillingAccount, now: datetime | None = None) -> str:
    """Move the account's cap state from the ledger, warn once per level per month, and set the flags
    that pause judges and ingestion (or clear them); idempotent, so every sweep may call it."""
    now = now or utc_now()
    month = month_start(now.date())
    projection = bill_projection(account=account, now=now)
    bill, cap = projection.bill_to_date_usd, account.monthly_cap_usd
    if account.cap_month != month:
        account.cap_month, account.cap_warned = month, 0
    level = 0
    if cap is not None:
        level = 100 if bill >= cap else 80 if bill >= cap * WARN_AT else 0
    state = {100: CapState.CAPPED, 80: CapState.WARN, 0: CapState.UNDER}[level]
    for warn_level in (80, 100):
        if account.cap_warned < warn_level <= level:
            notice_send(
                organization=account.organization,
                key=f"cap:{month:%Y-%m}:{warn_level}",
                kind="spend_cap",
                subject=f"Candor bill at {warn_level}% of your monthly cap"
                + (": judges and ingestion are paused" if warn_level == 100 else ""),
                payload={"level": warn_level, "bill_to_date_usd": str(bill), "cap_usd": str(cap),
                         "projected_usd": str(projection.projected_usd), "month": month.isoformat()},
            )  # fmt: skip
    account.cap_warned = max(account.cap_warned, level)
    account.cap_state = state
    account.save(update_fields=["cap_state", "cap_warned", "cap_month"])
    _apply_work_flags(account, stop=state == CapState.CAPPED or account.status == AccountStatus.SUSPENDED)
    return state


def _apply_work_flags(account: BillingAccount, *, stop: bool) -> None:
    organization = account.organization
    organization_quota_set(organization_id=organization.id, exceeded=stop)
    with organization_schema(organization):
        if stop:
            # Judges someone paused by hand keep their own reason (and stay paused after a raise).
            Judge.objects.filter(paused=False).update(paused=True, paused_reason=CAP_PAUSE_REASON)
        else:
            Judge.objects.filter(paused=True, paused_reason=CAP_PAUSE_REASON).update(paused=False, paused_reason="")


# --- Plans and subscription ---------------------------------------------------------------


def checkout_start(*, organization: Organization, plan: str, email: str, return_url: str) -> str:
    """A Stripe Checkout Session to subscribe to a paid plan; returns where to send the owner."""
    if plan not in PLANS or not PLANS[plan].stripe_price:
        raise ValidationError({"plan": f"'{plan}' is not a plan you can subscribe to here."})
    account = account_get(organization=organization)
    fee, cap = PLANS[plan].monthly_usd, account.monthly_cap_usd
    if cap is not None and fee >= cap:
        # The fee alone would reach the cap: judges and ingestion would stop the moment the plan started.
        message = (
            f"The {PLANS[plan].name} plan costs ${fee:,.2f} a month, at or above your monthly cap of "
            f"${cap:,.2f}: subscribing would pause judges and ingestion at once. Raise or remove the cap first."
        )
        raise ValidationError({"plan": ValidationError(message, code="cap_below_fee")})  # fmt: skip
    if not account.stripe_customer_id:
        account.stripe_customer_id = gateway.customer_create(
            organization_id=organization.id, name=organization.name, email=email
        )
        account.save(update_fields=["stripe_customer_id"])
    return gateway.checkout_session_create(
        customer_id=account.stripe_customer_id,
        price_id=PLANS[plan].stripe_price,
        organization_id=organization.id,
        success_url=return_url + "?checkout=done",
        cancel_url=return_url + "?checkout=canceled",
        attempt=secrets.token_hex(8),
    )


def portal_start(*, organization: Organization, return_url: str) -> str:
    account = account_get(organization=organization)
    if not account.stripe_customer_id:
        raise ValidationError("Subscribe to a plan first: there is no Stripe customer to manage yet.")
    return gateway.portal_session_create(customer_id=account.stripe_customer_id, return_url=return_url)


def plan_for_price(price_id: str) -> str | None:
    for key, plan in PLANS.items():
        if plan.stripe_price and plan.stripe_price == price_id:
            return key
    return None


@transaction.atomic
def subscription_apply(*, account: BillingAccount, subscription: gateway.Subscription, at: datetime) -> str:
    """A subscription's state from Stripe, unless a later event about it was applied already."""
    if account.subscription_event_at is not None and at < account.subscription_event_at:
        return "skipped: older than the subscription event already applied"
    account.subscription_event_at = at
    account.stripe_subscription_id = subscription.id
    account.subscription_status = subscription.status
    account.current_period_end = subscription.current_period_end
    if subscription.status in ("canceled", "incomplete_expired"):
        account.plan, account.status = "free", AccountStatus.CANCELED
    else:
        account.plan = plan_for_price(subscription.price_id) or account.plan
        if subscription.status in ("active", "trialing") and account.status == AccountStatus.CANCELED:
            account.status = AccountStatus.ACTIVE
        if subscription.status in ("past_due", "unpaid"):
            payment_failed(account=account, save=False)
    account.updated_at = timezone.now()
    account.save()
    cap_evaluate(account=account)
    return f"applied: {subscription.status}, plan {account.plan}"


def payment_failed(*, account: BillingAccount, save: bool = True) -> None:
    if account.status in (AccountStatus.ACTIVE, AccountStatus.CANCELED) or account.grace_until is None:
        account.status = AccountStatus.PAST_DUE
        account.grace_until = timezone.now() + timedelta(days=settings.BILLING_GRACE_DAYS)
    if save:
        account.save(update_fields=["status", "grace_until"])


def payment_succeeded(*, account: BillingAccount) -> None:
    account.status, account.grace_until = AccountStatus.ACTIVE, None
    account.save(update_fields=["status", "grace_until"])
    cap_evaluate(account=account)


def grace_expire(*, account: BillingAccount, now: datetime | None = None) -> bool:
    """Past the grace period a failed payment suspends costly work (as the cap does); True when it did."""
    now = now or utc_now()
    if account.status == AccountStatus.PAST_DUE and account.grace_until is not None and account.grace_until <= now:
        account.status = AccountStatus.SUSPENDED
        account.save(update_fields=["status"])
        cap_evaluate(account=account, now=now)
        return True
    return False


def plan_set(*, organization: Organization, plan: str) -> None:
    """Set the plan directly (the demo, and installations billing outside Stripe)."""
    if plan not in PLANS:
        raise ValidationError({"plan": f"unknown plan '{plan}'"})
    account = account_get(organization=organization)
    account.plan = plan
    account.save(update_fields=["plan"])
    cap_evaluate(account=account)


def notify_webhook_set(*, organization: Organization, url: str) -> None:
    from evaluation.services.webhooks import url_problem

    url = url.strip()
    if url:
        problem = url_problem(url)
        if problem:
            raise ValidationError({"notify_webhook_url": problem})
    account = account_get(organization=organization)
    account.notify_webhook_url = url
    account.save(update_fields=["notify_webhook_url"])
