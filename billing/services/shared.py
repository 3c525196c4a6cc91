"""What billing's services share: UTC months and days, and running a block in an organization's schema."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

from tenants.schema import activate_schema, activate_tenant, current_schema
from tenants.selectors import Organization


def utc_now() -> datetime:
    return datetime.now(UTC)


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_end(day: date) -> date:
    """The first day of the next month (periods are half-open)."""
    return day.replace(day=calendar.monthrange(day.year, day.month)[1]) + timedelta(days=1)


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@contextmanager
def organization_schema(organization: Organization) -> Iterator[None]:
    """Run a block in the organization's schema and return to whatever schema was active before
    (a portal request already in that schema keeps it; a sweep goes back to public)."""
    before = current_schema()
    activate_tenant(organization)
    try:
        yield
    finally:
        activate_schema(before)
