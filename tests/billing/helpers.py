"""Shared set-up for billing's tests: traces through the real ingest service, counters read back."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
from django.db import connection

from feedback import services
from tests.fixtures.organizations import Org, in_tenant, unique


def today_noon() -> str:
    return datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0).isoformat()


def send_traces(org: Org, traces: list[dict[str, Any]]) -> services.IngestResult:
    with in_tenant(org):
        result = services.traces_ingest(body=msgspec.json.encode({"batch": traces}))
    assert not result.errors, result.errors
    return result


def spend_traces(customer_id: str, costs: list[str], *, feature: str = "support-copilot", model: str = "gpt-4o-mini",
                 prefix: str | None = None, **extra: Any) -> list[dict[str, Any]]:  # fmt: skip
    prefix = prefix or unique("sp")
    started_at = extra.pop("started_at", None) or today_noon()  # every trace's (it was popped for the first only)
    return [
        {"trace_id": f"{prefix}-{i}", "feature": feature, "model": model, "customer_id": customer_id,
         "cost_usd": float(cost), "started_at": started_at, **extra}
        for i, cost in enumerate(costs)
    ]  # fmt: skip


def counters(org: Org, customer_id: str) -> tuple[Decimal, int]:
    """(cost, traces) the spend counters hold for a customer, over every day."""
    with in_tenant(org), connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(cost_usd), 0), coalesce(sum(traces), 0) FROM feedback_spendcounter "
            "WHERE customer_id = %s",
            [customer_id],
        )
        cost, n = cursor.fetchone()
    return Decimal(cost), int(n)


def stored_cost(org: Org, customer_id: str) -> tuple[Decimal, int]:
    """(cost, traces) of the stored traces themselves: what the counters must equal."""
    with in_tenant(org), connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(cost_usd), 0), count(*) FROM feedback_trace WHERE customer_id = %s", [customer_id]
        )
        cost, n = cursor.fetchone()
    return Decimal(cost), int(n)
