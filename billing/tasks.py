"""Billing's Celery tasks: thin interfaces to its services (a dispatcher fans out per organization)."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task

from billing import gateway
from billing.models import Notice
from billing.services import ledger
from billing.services.accounts import account_get, cap_evaluate, grace_expire
from billing.services.budgets import budget_thresholds_sweep
from billing.services.notices import notice_deliver as deliver
from billing.services.shared import utc_now
from billing.services.webhooks import stripe_events_retry
from tenants.selectors import Organization, organization_get, organization_ids

logger = logging.getLogger("candor.billing")


@shared_task(time_limit=120, soft_time_limit=100)
def billing_sweep() -> None:
    """Every minute (beat): each organization's ledger, cap, budgets and usage reports; stuck webhooks."""
    for organization_id in organization_ids():
        billing_organization.delay(organization_id)
    stripe_events_retry()


@shared_task(time_limit=120, soft_time_limit=100)
def billing_organization(organization_id: int) -> None:
    organization = organization_get(organization_id)
    if organization is None:
        return
    billing_refresh(organization=organization)


def billing_refresh(*, organization: Organization) -> None:
    """Recount, move the cap, warn on budgets, report usage: the sweep's work for one organization."""
    now = utc_now()
    ledger.ledger_refresh(organization=organization, days=ledger.ledger_days(now.date(), organization=organization))
    ledger.usage_counters_compact(organization=organization, before=now.date() - timedelta(days=1))
    account = account_get(organization=organization)
    grace_expire(account=account, now=now)
    cap_evaluate(account=account, now=now)
    budget_thresholds_sweep(organization=organization, today=now.date())
    if account.stripe_customer_id and gateway.configured():
        ledger.usage_reports_prepare(organization=organization, since=ledger.reporting_since(now.date()))
        ledger.usage_reports_send(organization=organization)


@shared_task(time_limit=30, soft_time_limit=25, autoretry_for=(Exception,), retry_backoff=30, max_retries=5)
def notice_deliver(notice_id: int) -> None:
    notice = Notice.objects.filter(id=notice_id).first()
    if notice is not None:
        deliver(notice=notice)
