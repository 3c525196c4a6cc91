"""Recount every organization's spend counters from its stored traces (once, for traces stored before
the counters existed; ingestion keeps them current after that)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import connection, transaction

from billing.services.shared import organization_schema
from feedback.services.spend import spend_counters_rebuild
from tenants.selectors import organization_get, organization_ids


class Command(BaseCommand):
    help = "Rebuild feedback_spendcounter in every organization's schema from its traces."

    def handle(self, *args: Any, **options: Any) -> None:
        for organization_id in organization_ids():
            organization = organization_get(organization_id)
            if organization is None:
                continue
            with organization_schema(organization), transaction.atomic(), connection.cursor() as cursor:
                rows = spend_counters_rebuild(cursor.cursor)
            self.stdout.write(f"{organization.slug}: {rows} counter rows")
