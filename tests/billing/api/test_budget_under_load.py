"""The budget check under concurrent trace ingestion, through the live server: writer threads send
traces (new ones and resends that raise a trace's cost) while checker threads ask; every check
sees a consistent, never-decreasing spend, and the final counters equal the sum of the costs."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from billing.models import CustomerBudget
from billing.services.budgets import budget_set
from tenants.ratelimit import key_rate_reset
from tests.billing.helpers import counters, stored_cost, today_noon
from tests.fixtures.organizations import Org, unique
from tests.fixtures.server import LiveServer

WRITERS, CHECKERS, BATCHES, BATCH = 4, 3, 12, 25


@pytest.fixture
def roomy_rate(settings: Any, org_a: Org, committed_db: None) -> Iterator[None]:
    settings.API_RATE_LIMIT_PER_SECOND = 100_000
    settings.API_RATE_LIMIT_BURST = 100_000
    yield
    for key_id in org_a.organization.api_keys.values_list("id", flat=True):
        key_rate_reset(key_id)


def test_counters_equal_the_sum_of_costs_under_concurrent_ingestion(
    live: LiveServer, org_a: Org, roomy_rate: None
) -> None:
    customer = unique("load")
    budget = budget_set(organization=org_a.organization, customer_id=customer, monthly_cap_usd="100000")
    try:
        final_cost: dict[str, Decimal] = {}  # trace_id -> its last cost (what the stored trace holds)
        lock = threading.Lock()
        failures: list[str] = []
        done = threading.Event()
        seen: list[list[float]] = [[] for _ in range(CHECKERS)]

        def writer(w: int) -> None:
            api = live.api(org_a.secret_key)
            rng = random.Random(w)
            mine: list[str] = []
            for b in range(BATCHES):
                batch: list[dict[str, Any]] = []
                for i in range(BATCH):
                    if mine and rng.random() < 0.2:
                        # A resend raises the cost (the check must never see spend go down).
                        trace_id = rng.choice(mine)
                        with lock:
                            cost = final_cost[trace_id] + Decimal(rng.randint(1, 999)) / 10_000
                    else:
                        trace_id = f"{customer}-{w}-{b}-{i}"
                        cost = Decimal(rng.randint(1, 99_999)) / 1_000_000
                    if any(t["trace_id"] == trace_id for t in batch):
                        continue
                    batch.append(
                        {
                            "trace_id": trace_id,
                            "feature": "support-copilot",
                            "model": "gpt-4o-mini",
                            "customer_id": customer,
                            "cost_usd": float(cost),
                            "started_at": today_noon(),
                        }
                    )
                    with lock:
                        final_cost[trace_id] = cost
                    mine.append(trace_id)
                response = api.post("/api/v1/traces", {"batch": batch})
                if response.status_code != 200:
                    failures.append(f"writer {w}: {response.status_code} {response.text[:200]}")

        def checker(c: int) -> None:
            api = live.api(org_a.secret_key)
            while not done.is_set():
                response = api.get(f"/api/v1/budgets/check?customer_id={customer}")
                if response.status_code != 200:
                    failures.append(f"checker {c}: {response.status_code} {response.text[:200]}")
                    return
                seen[c].append(response.json()["spent_usd"])

        writers = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
        checkers = [threading.Thread(target=checker, args=(c,)) for c in range(CHECKERS)]
        for t in checkers + writers:
            t.start()
        for t in writers:
            t.join()
        done.set()
        for t in checkers:
            t.join()

        assert failures == []
        expected = sum(final_cost.values(), Decimal(0))
        assert counters(org_a, customer) == (expected, len(final_cost))
        assert stored_cost(org_a, customer) == (expected, len(final_cost))
        final = live.api(org_a.secret_key).get(f"/api/v1/budgets/check?customer_id={customer}").json()
        assert Decimal(str(final["spent_usd"])) == expected
        for values in seen:
            assert values, "a checker never got an answer"
            assert values == sorted(values), "a check saw spend go down"
            assert values[-1] <= float(expected) + 1e-9
    finally:
        CustomerBudget.objects.filter(id=budget.id).delete()
