"""The billing sweep through a real Celery worker: ingestion counted into the ledger, the cap moved."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import connection

from billing.models import BillingAccount, CapState, UsageLedger
from billing.tasks import billing_organization
from tests.billing.helpers import spend_traces
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.server import ApiClient, wait_for


def _usage_today(org: Org) -> int:
    with in_tenant(org), connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(quantity), 0) FROM feedback_usagecounter WHERE day = %s",
                       [datetime.now(UTC).date()])  # fmt: skip
        return int(cursor.fetchone()[0])


def test_the_sweep_counts_ingestion_into_the_ledger(celery_worker: None, committed_db: None, api_a: ApiClient,
                                                    org_a: Org) -> None:  # fmt: skip
    today = datetime.now(UTC).date()
    try:
        assert api_a.post("/api/v1/traces", {"batch": spend_traces(unique("c"), ["0.01"] * 12)}).status_code == 200
        expected = _usage_today(org_a)
        assert expected >= 12
        billing_organization.delay(org_a.organization.id)

        def counted() -> bool:
            row = UsageLedger.objects.filter(organization=org_a.organization, meter="events", day=today).first()
            # The task commits the ledger, then moves the account's cap: wait for both.
            moved = BillingAccount.objects.filter(organization=org_a.organization, cap_month__isnull=False).exists()
            return row is not None and row.quantity == expected and moved

        wait_for(counted, timeout=240)  # the worker may first work through earlier tests' queued tasks
        account = BillingAccount.objects.get(organization=org_a.organization)
        assert account.cap_state == CapState.UNDER and account.cap_month == today.replace(day=1)
    finally:
        UsageLedger.objects.filter(organization=org_a.organization).delete()
        BillingAccount.objects.filter(organization=org_a.organization).delete()
