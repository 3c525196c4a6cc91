"""Spend counters move in the ingest transaction: new traces, resends that change cost or customer,
a computed cost, and batches that repeat a trace; they always equal the stored traces' costs."""

from __future__ import annotations

from decimal import Decimal

from billing.selectors import budget_check
from tests.billing.helpers import counters, send_traces, spend_traces, stored_cost
from tests.fixtures.organizations import Org, unique


def test_new_traces_are_counted_per_customer(db: None, org_a: Org) -> None:
    alice, bob = unique("alice"), unique("bob")
    send_traces(org_a, spend_traces(alice, ["0.10", "0.25"]) + spend_traces(bob, ["1.5"]))
    assert counters(org_a, alice) == (Decimal("0.35"), 2)
    assert counters(org_a, bob) == (Decimal("1.5"), 1)


def test_a_resend_moves_cost_and_customer_instead_of_adding(db: None, org_a: Org) -> None:
    alice, bob = unique("alice"), unique("bob")
    traces = spend_traces(alice, ["0.10", "0.20", "0.30"])
    send_traces(org_a, traces)
    # Resent: the first with a higher cost, the second now for bob; a new one rides in the same batch.
    resend = [dict(traces[0], cost_usd=0.5), dict(traces[1], customer_id=bob), *spend_traces(alice, ["0.05"])]
    send_traces(org_a, resend)
    assert counters(org_a, alice) == (Decimal("0.85"), 3)  # 0.5 + 0.3 + 0.05
    assert counters(org_a, bob) == (Decimal("0.2"), 1)
    assert counters(org_a, alice) == stored_cost(org_a, alice)
    send_traces(org_a, resend)  # the same batch again changes nothing
    assert counters(org_a, alice) == stored_cost(org_a, alice)
    assert counters(org_a, bob) == stored_cost(org_a, bob)


def test_a_computed_cost_is_counted(db: None, org_a: Org) -> None:
    carol = unique("carol")
    send_traces(org_a, [{"trace_id": unique("t"), "feature": "f", "model": "gpt-4o-mini", "provider": "openai",
                         "input_tokens": 1_000_000, "output_tokens": 0, "customer_id": carol}])  # fmt: skip
    cost, n = counters(org_a, carol)
    assert n == 1 and cost > 0
    assert (cost, n) == stored_cost(org_a, carol)


def test_the_check_reads_the_counters_of_its_own_organization_only(db: None, org_a: Org, org_b: Org) -> None:
    from billing.services.budgets import budget_set

    dave = unique("dave")
    send_traces(org_b, spend_traces(dave, ["9.0"]))
    budget_set(organization=org_a.organization, customer_id="", monthly_cap_usd="5")
    budget_set(organization=org_b.organization, customer_id="", monthly_cap_usd="5")
    in_a = _check_in(org_a, dave)
    with_b_schema = _check_in(org_b, dave)
    assert in_a.spent_usd == 0 and in_a.allowed  # org A has never seen dave; its default applies
    assert with_b_schema.spent_usd == Decimal("9") and not with_b_schema.allowed


def _check_in(org: Org, customer_id: str):  # type: ignore[no-untyped-def]
    from tests.fixtures.organizations import in_tenant

    with in_tenant(org):
        return budget_check(organization_id=org.organization.id, customer_id=customer_id)
