"""The customers page: each feature's success for a customer, flagged only when clearly below the same
feature's other customers; no success summed across features whose success means different things."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from evaluation.reports.measures import JudgedSums, Measures
from evaluation.reports.selectors import Window, customers_report
from feedback.models import Feature
from tests.evaluation.experiments_seed import ingest, new_feature, traffic
from tests.fixtures.organizations import in_tenant

START = datetime(2025, 1, 6, tzinfo=UTC)
RATE = {"cus_bad": 0.25, "cus_close": 0.55}  # the others: 0.6


def test_a_customer_clearly_below_the_features_other_customers_is_flagged(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    customers = ["cus_bad", "cus_close", "cus_a", "cus_b", "cus_c"]
    with in_tenant(org_a):
        key = new_feature()
        ingest(*traffic(
            feature=key, start=START, hours=24 * 7, count=2000, rng=random.Random(5),
            fields=lambda i: {"customer_id": customers[i % 5], "cost_usd": 0.01},
            success=lambda t: RATE.get(t["customer_id"], 0.6),
        ))  # fmt: skip
        # A quieter feature whose key sorts first: its column comes after the busier one's.
        quiet = new_feature()
        Feature.objects.filter(key=quiet).update(key=f"a-{quiet}")
        ingest(*traffic(feature=f"a-{quiet}", start=START, hours=24, count=20, rng=random.Random(6),
                        fields=lambda i: {"customer_id": "cus_a", "cost_usd": 0.01}))  # fmt: skip
        report = customers_report(window=Window(START, START + timedelta(days=7)))
    rows = {c["customer_id"]: c for c in report["customers"]}
    cells = {customer: [q for q in rows[customer]["quality"][:1]] for customer in customers}
    assert [f["key"] for f in report["features"]] == [key, f"a-{quiet}"]  # the busiest column first
    assert report["features"][0] == {"key": key, "source": "outcomes"}
    assert all(len(q) == 1 and q[0]["feature"] == key and q[0]["source"] == "outcomes" for q in cells.values())
    assert [customer for customer in customers if cells[customer][0]["below"]] == ["cus_bad"]
    bad = cells["cus_bad"][0]
    assert bad["success"]["high"] < 0.35 and 0.55 < bad["others"] < 0.6  # the others: 0.6, 0.6, 0.6 and 0.55
    assert rows["cus_bad"]["below"] == 1 and "successes" not in rows["cus_bad"]


def test_measures_without_a_part_are_the_rest() -> None:
    part = Measures(traces=3, cost_usd=0.5, outcome_traces=1, latency_sketch={4: 2}, judged=JudgedSums(scored=2, w=2.0))
    rest = Measures(
        traces=7, cost_usd=1.5, outcome_traces=5, latency_sketch={4: 1, 9: 3}, judged=JudgedSums(scored=5, w=6.0)
    )
    whole = Measures().add(part).add(rest)
    left = whole.without(part)
    assert (left.traces, left.cost_usd, left.outcome_traces) == (7, 1.5, 5)
    assert {k: v for k, v in left.latency_sketch.items() if v} == {4: 1, 9: 3}
    assert (left.judged.scored, left.judged.w) == (5, 6.0)
