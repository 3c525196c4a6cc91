"""The billing banner on every portal page of an organization: cap warnings and failed payments."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from billing.models import AccountStatus, BillingAccount, CapState


def billing_banner(request: HttpRequest) -> dict[str, Any]:
    organization = getattr(request, "tenant", None)
    if organization is None:
        return {}
    account = (
        BillingAccount.objects.filter(organization=organization)
        .only("cap_state", "status", "grace_until", "monthly_cap_usd")
        .first()
    )
    if account is None:
        return {}
    if account.status == AccountStatus.SUSPENDED:
        text, level = (
            "Payment failed and the grace period is over: judges and ingestion are paused until it is paid.",
            "bad",
        )
    elif account.status == AccountStatus.PAST_DUE:
        until = f" until {account.grace_until:%Y-%m-%d}" if account.grace_until else ""
        text, level = f"Payment failed. Candor keeps working{until} (grace period); update the payment method.", "warn"
    elif account.cap_state == CapState.CAPPED:
        text, level = (f"Monthly spend cap (${account.monthly_cap_usd:,.2f}) reached: judges are paused and ingestion "
                       "answers 429 quota_exceeded until an owner raises the cap.", "bad")  # fmt: skip
    elif account.cap_state == CapState.WARN:
        text, level = f"The Candor bill is past 80% of its monthly cap (${account.monthly_cap_usd:,.2f}).", "warn"
    else:
        return {}
    return {"billing_banner": {"text": text, "level": level}}
