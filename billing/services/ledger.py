"""The usage ledger (Candor's own count of billable units) and its reports to Stripe Billing Meters.

The ledger is recounted from what ingestion and the judges wrote (feedback's usage counters,
evaluation's scores), never added to, so a recount is idempotent. A report is first written as
a row whose identifier says which units it covers (meter, day, units reported before it); only
then is it sent, with that identifier as Stripe's de-duplication key and our idempotency key.
A report retried after a crash is therefore the same event, and nothing is billed twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing import gateway
from billing.models import BillingAccount, UsageLedger, UsageReport
from billing.plans import METERS
from billing.services.shared import midnight, month_start, organization_schema, utc_now
from feedback.services.spend import usage_counters_fold
from tenants.selectors import Organization

logger = logging.getLogger("candor.billing")

# Judge runs are scores Candor produced (external scores are sent in, not run).
_JUDGE_RUNS = """
SELECT (scored_at AT TIME ZONE 'UTC')::date, count(*) FROM evaluation_score
WHERE scored_at >= %s AND scored_at < %s AND status IN ('ok', 'error') AND sampling_design <> 'external'
GROUP BY 1
"""


def ledger_refresh(*, organization: Organization, days: Iterable[date]) -> dict[tuple[str, date], int]:
    """Recount the organization's usage on these UTC days into the ledger; returns what it counted."""
    days = sorted(set(days))
    if not days:
        return {}
    counted: dict[tuple[str, date], int] = {(meter, day): 0 for meter in METERS for day in days}
    with organization_schema(organization), connection.cursor() as cursor:
        cursor.execute("SELECT day, sum(quantity) FROM feedback_usagecounter WHERE day = ANY(%s) GROUP BY day", [days])
        for day, quantity in cursor.fetchall():
            counted[("events", day)] = int(quantity)
        cursor.execute(_JUDGE_RUNS, [midnight(days[0]), midnight(days[-1] + timedelta(days=1))])
        for day, quantity in cursor.fetchall():
            if ("judge_runs", day) in counted:
                counted[("judge_runs", day)] = int(quantity)
    now = timezone.now()
    for (meter, day), quantity in counted.items():
        UsageLedger.objects.update_or_create(
            organization=organization, meter=meter, day=day, defaults={"quantity": quantity, "updated_at": now}
        )
    return counted


def usage_reports_prepare(*, organization: Organization, since: date) -> int:
    """Write a report row for every ledger day whose units were not all reported yet; returns how many."""
    created = 0
    with transaction.atomic():
        # One preparer per organization at a time: the sums below must not race.
        BillingAccount.objects.select_for_update().filter(organization=organization).first()
        reported = {
            (r["meter"], r["day"]): r["total"]
            for r in UsageReport.objects.filter(organization=organization, day__gte=since)
            .values("meter", "day")
            .annotate(total=Sum("quantity"))
        }
        for row in UsageLedger.objects.filter(organization=organization, day__gte=since).order_by("day", "meter"):
            before = int(reported.get((row.meter, row.day)) or 0)
            if row.quantity > before:
                UsageReport.objects.create(
                    organization=organization,
                    meter=row.meter,
                    day=row.day,
                    # Units (before, quantity] of this meter on this day: the same units, the same identifier.
                    identifier=f"candor-{organization.id}-{row.meter}-{row.day:%Y%m%d}-{before}-{row.quantity}",
                    quantity=row.quantity - before,
                )
                created += 1
    return created


def usage_reports_send(*, organization: Organization) -> int:
    """Send every unsent report of the organization to Stripe; returns how many were sent."""
    account = BillingAccount.objects.filter(organization=organization).first()
    if account is None or not account.stripe_customer_id or not gateway.configured():
        return 0
    sent = 0
    for report in UsageReport.objects.filter(organization=organization, sent_at__isnull=True).order_by("id"):
        report.attempts += 1
        try:
            gateway.meter_event_send(
                event_name=settings.STRIPE_METER_EVENTS[report.meter],
                customer_id=account.stripe_customer_id,
                value=report.quantity,
                identifier=report.identifier,
                # Stripe accepts events up to 35 days old: a day's units are stamped at its noon.
                timestamp=int((midnight(report.day) + timedelta(hours=12)).timestamp()),
            )
        except gateway.GatewayError as exc:
            report.last_error = str(exc)[:500]
            report.save(update_fields=["attempts", "last_error"])
            logger.warning("usage report %s failed: %s", report.identifier, exc)
            continue
        report.sent_at = timezone.now()
        report.last_error = ""
        report.save(update_fields=["attempts", "sent_at", "last_error"])
        sent += 1
    return sent


def ledger_days(now: date | None = None, *, organization: Organization | None = None) -> list[date]:
    """The days a sweep recounts: from the last day in the ledger (the month's first day when there
    is none; at most 35 days back) through today, and always yesterday (late scores, batches
    straddling midnight). A sweep that did not run for a while catches up."""
    today = now or utc_now().date()
    first = today - timedelta(days=1)
    if organization is not None:
        last = UsageLedger.objects.filter(organization=organization).order_by("-day").values_list("day", flat=True)
        first = min(first, last[0] if last else month_start(today))
    first = max(first, today - timedelta(days=35))
    return [first + timedelta(days=i) for i in range((today - first).days + 1)]


def usage_counters_compact(*, organization: Organization, before: date) -> None:
    """Fold the per-batch usage counter rows of finished days into one row per day and kind."""
    with organization_schema(organization), transaction.atomic(), connection.cursor() as cursor:
        usage_counters_fold(cursor.cursor, before=before)


def reporting_since(today: date) -> date:
    # Stripe takes meter events up to 35 days back; past that a day's units are final.
    return max(month_start(today) - timedelta(days=3), today - timedelta(days=30))
