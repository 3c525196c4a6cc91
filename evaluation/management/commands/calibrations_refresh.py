"""Recompute every organization's calibrations now (what the beat does every 15 s): copy widget
labels, mark what new labels and scores touched, refresh it. `make demo` runs it once its labels
are in, so the calibration pages open on a computed report."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from evaluation.services.calibration_refresh import calibration_sweep
from tenants.schema import activate_public, activate_tenant
from tenants.selectors import organization_find, organizations_each


class Command(BaseCommand):
    help = "Recompute the calibration reports that new labels or scores touched, for one or every organization."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", default="", help="one organization (default: every one)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["slug"]:
            for each in organizations_each():  # inside each organization's schema in turn
                self._sweep(each.slug)
            return
        one = organization_find(options["slug"])
        if one is None:
            self.stderr.write(f"No organization {options['slug']!r}.")
            return
        activate_tenant(one)
        try:
            self._sweep(one.slug)
        finally:
            activate_public()

    def _sweep(self, slug: str) -> None:
        stats = calibration_sweep()
        refreshed = stats.refreshed
        while stats.refreshed:  # more than a batch was due
            stats = calibration_sweep()
            refreshed += stats.refreshed
        self.stdout.write(f"{slug}: {refreshed} calibration(s) recomputed")
