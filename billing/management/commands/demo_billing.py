"""make demo: the demo organization's plan, usage ledger, a monthly spend cap and customer budgets,
with one customer over its budget (the check answers fallback) and the rest under (no Stripe keys)."""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from billing.models import CustomerBudget
from billing.selectors import budget_check, customers_spend
from billing.services.accounts import account_get, cap_set, plan_set
from billing.services.budgets import budget_set
from billing.services.ledger import ledger_refresh
from billing.services.shared import month_start, organization_schema, utc_now
from feedback.services.spend import spend_counters_rebuild
from tenants.selectors import organization_find

FALLBACK_MODEL = "gpt-4o-mini"


_USAGE_AS_IF_LIVE = """
DELETE FROM feedback_usagecounter;
INSERT INTO feedback_usagecounter (day, kind, quantity)
SELECT (received_at AT TIME ZONE 'UTC')::date, 'traces', count(*) FROM (
    SELECT LEAST(COALESCE(started_at, received_at), received_at) AS received_at FROM feedback_trace
) t GROUP BY 1;
INSERT INTO feedback_usagecounter (day, kind, quantity)
SELECT (LEAST(occurred_at, received_at) AT TIME ZONE 'UTC')::date, 'feedback', count(*) FROM feedback_feedbackevent
GROUP BY 1;
"""


class Command(BaseCommand):
    help = "Give the demo organization (acme) a plan, ledger, spend cap and customer budgets; idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", default="acme", help="organization slug (default acme)")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = organization_find(options["org"])
        if organization is None:
            raise CommandError(f"No organization '{options['org']}': run `manage.py demo_setup` first.")
        now = utc_now()
        today = now.date()
        with organization_schema(organization), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT EXISTS (SELECT 1 FROM feedback_spendcounter)")
            (counted,) = cursor.fetchone()
            if not counted:  # traces loaded before the counters existed
                spend_counters_rebuild(cursor.cursor)
        plan_set(organization=organization, plan="team")
        # A month of demo traffic was loaded at once: its usage is counted as if received when it happened
        # (each trace on its day, each feedback event on its own), so the ledger, the bill to date and its
        # projection read like a live organization's, not like a month booked on one day.
        with organization_schema(organization), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_USAGE_AS_IF_LIVE)
        month = month_start(today)
        month_days = [month + timedelta(days=i) for i in range((today - month).days + 1)]
        ledger_refresh(organization=organization, days=month_days)
        account = account_get(organization=organization)
        if account.monthly_cap_usd is None:
            cap_set(organization=organization, cap_usd="250")
        with organization_schema(organization):
            spenders = customers_spend(organization=organization, now=now)
        if not spenders:
            # Not an error for `make demo`: plan, ledger and cap are set; budgets need some spend to show.
            self.stdout.write("No customer spend this month yet (load demo traces with demo_setup): budgets skipped.")
            return
        over, under = spenders[0], spenders[-1]
        # The default: three times the second-largest customer's month, so every other customer is under.
        second = spenders[1].month_usd if len(spenders) > 1 else over.month_usd
        CustomerBudget.objects.filter(organization=organization).delete()
        budget_set(organization=organization, monthly_cap_usd=max(second * 3, Decimal("1")).quantize(Decimal("1")),
                   thresholds=[80, 90, 100])  # fmt: skip
        budget_set(
            organization=organization, customer_id=over.customer_id,
            monthly_cap_usd=(over.month_usd * Decimal("0.8")).quantize(Decimal("0.01")),
            over_action="fallback", fallback_model=FALLBACK_MODEL,
        )  # fmt: skip
        with organization_schema(organization):
            over_check = budget_check(organization_id=organization.id, customer_id=over.customer_id, today=today)
            under_check = budget_check(organization_id=organization.id, customer_id=under.customer_id, today=today)
        self.stdout.write(
            f"Billing demo for {organization.slug}: plan Team, cap $250/month (no Stripe keys: ledger, cap and "
            f"budgets work without them).\n"
            f"  {over.customer_id}: ${over.month_usd:.2f} this month against ${over.month_usd * Decimal('0.8'):.2f} "
            f"-> allowed={over_check.allowed} action={over_check.action} fallback_model={over_check.fallback_model}\n"
            f"  {under.customer_id}: ${under.month_usd:.2f} this month -> allowed={under_check.allowed} "
            f"action={under_check.action}\n"
            f"  curl -H 'Authorization: Bearer <secret key>' "
            f"'http://localhost:{os.environ.get('PORT', '8000')}/api/v1/budgets/check?customer_id={over.customer_id}'"
        )
