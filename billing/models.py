"""Billing's tables, all in the public schema and keyed by organization: the organization's plan,
subscription and spend cap (its **Candor bill**), the usage ledger and what was reported to
Stripe, Stripe's webhook events, and the budgets on its end-customers' **LLM spend**.

Every read of a tenant's rows filters on ``organization`` (billing.selectors), because these
tables are shared by every organization.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class AccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Payment failed (grace period)"
    SUSPENDED = "suspended", "Payment failed (grace period over)"
    CANCELED = "canceled", "Canceled"


class CapState(models.TextChoices):
    UNDER = "under", "Under the cap"
    WARN = "warn", "Past 80% of the cap"
    CAPPED = "capped", "Cap reached"


class BillingAccount(models.Model):
    organization = models.OneToOneField(
        "tenants.Organization", on_delete=models.CASCADE, related_name="billing_account"
    )
    plan = models.CharField(max_length=20, default="free")
    status = models.CharField(max_length=12, choices=AccountStatus.choices, default=AccountStatus.ACTIVE)
    stripe_customer_id = models.CharField(max_length=100, blank=True, default="")
    stripe_subscription_id = models.CharField(max_length=100, blank=True, default="")
    subscription_status = models.CharField(max_length=30, blank=True, default="")  # Stripe's own word
    # The `created` time of the last subscription event applied: an older one arriving later is skipped.
    subscription_event_at = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    # Likewise for invoice events (paid / payment failed): a late older one changes nothing.
    payment_event_at = models.DateTimeField(null=True, blank=True)
    grace_until = models.DateTimeField(null=True, blank=True)
    monthly_cap_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    cap_state = models.CharField(max_length=8, choices=CapState.choices, default=CapState.UNDER)
    # Highest warning sent this month (0, 80, 100) and the month it belongs to.
    cap_warned = models.PositiveSmallIntegerField(default=0)
    cap_month = models.DateField(null=True, blank=True)
    notify_webhook_url = models.URLField(max_length=500, blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now)

    @property
    def subscribed(self) -> bool:
        """A Stripe subscription charges the plan (one cancelled or expired keeps its ID, and charges nothing)."""
        return bool(self.stripe_subscription_id) and self.subscription_status not in ("canceled", "incomplete_expired")


class UsageLedger(models.Model):
    """Candor's own count of billable usage per organization x meter x UTC day (recounted, never added to)."""

    organization = models.ForeignKey("tenants.Organization", on_delete=models.CASCADE, related_name="+")
    meter = models.CharField(max_length=20)  # billing.plans.METERS
    day = models.DateField()
    quantity = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "meter", "day"], name="ledger_once_per_day")]


class UsageReport(models.Model):
    """One Stripe meter event: written before it is sent, under an identifier derived from the ledger,
    so a report retried after a crash is the same event (Stripe de-duplicates on the identifier)."""

    organization = models.ForeignKey("tenants.Organization", on_delete=models.CASCADE, related_name="+")
    meter = models.CharField(max_length=20)
    day = models.DateField()
    identifier = models.CharField(max_length=100, unique=True)
    quantity = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["organization", "meter", "day"])]


class StripeEvent(models.Model):
    """A webhook event, stored by its Stripe ID before it is processed; processed once."""

    stripe_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    created = models.DateTimeField()  # Stripe's own time of the event
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    deliveries = models.PositiveIntegerField(default=1)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=200, blank=True, default="")


class OverAction(models.TextChoices):
    BLOCK = "block", "Block the call"
    FALLBACK = "fallback", "Fall back to a cheaper model"


class CustomerBudget(models.Model):
    """A cap on one end-customer's LLM spend (customer_id ""): the organization's default for every
    customer without an override), optionally narrowed to one feature and/or one model."""

    organization = models.ForeignKey("tenants.Organization", on_delete=models.CASCADE, related_name="+")
    customer_id = models.CharField(max_length=200, blank=True, default="")
    feature = models.CharField(max_length=100, blank=True, default="")  # a feature key; "" any
    model = models.CharField(max_length=200, blank=True, default="")  # "" any
    daily_cap_usd = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    monthly_cap_usd = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    thresholds = models.JSONField(default=list)  # percents, e.g. [80, 90, 100]
    over_action = models.CharField(max_length=8, choices=OverAction.choices, default=OverAction.BLOCK)
    fallback_model = models.CharField(max_length=200, blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["customer_id", "feature", "model"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "customer_id", "feature", "model"], name="budget_scope")
        ]


class Notice(models.Model):
    """A warning sent once (email and webhook): the spend cap at 80/100% of a month, or a customer's
    budget past one of its thresholds in a day or month."""

    organization = models.ForeignKey("tenants.Organization", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=400)  # what makes it once: "cap:2026-12:80", "budget:<id>:<cust>:month:..."
    kind = models.CharField(max_length=20)  # "spend_cap" or "customer_budget"
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivery_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["organization", "key"], name="notice_once")]
