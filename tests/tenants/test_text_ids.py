"""IDs an organization chooses (trace_id, customer_id) may hold a line break (the APIs take any text without NUL):
Django's path converter stopped at one, so linking such a trace or customer raised, and the trace explorer, the
spend page and the budgets page answered 500 for the whole organization. Their pages open too."""

from __future__ import annotations

import json
from urllib.parse import quote

from django.test import Client

from billing.services.budgets import budget_set
from tests.fixtures.api import post_json
from tests.fixtures.organizations import unique
from tests.helpers import assert_cross_tenant_404


def test_ids_with_a_line_break_are_linked_and_open(client_a, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    trace_id, customer = unique("tr") + "\nsecond line", unique("cus") + "\nteam"
    body = {"trace_id": trace_id, "feature": "f", "customer_id": customer, "model": "gpt-4o-mini", "input_tokens": 10}
    assert post_json(client_a, "/api/v1/traces", json.dumps(body).encode()).status_code == 200
    budget_set(organization=org_a.organization, customer_id=customer + "\nbudget", monthly_cap_usd="5")
    owner = Client()
    owner.force_login(org_a.owner)
    for page in ("traces/", "spend/", "spend/budgets/", "customers/"):
        assert owner.get(org_a.url(page)).status_code == 200, page
    explorer = owner.get(org_a.url("traces/")).content.decode()
    assert quote(trace_id, safe="/") in explorer
    assert owner.get(org_a.url(f"traces/{quote(trace_id)}")).status_code == 200
    assert owner.get(org_a.url(f"spend/customers/{quote(customer)}/")).status_code == 200
    assert client_a.get(f"/api/v1/traces/{quote(trace_id)}").json()["trace_id"] == trace_id
    assert client_a.get(f"/api/v1/customers/{quote(customer)}/spend").json()["customer_id"] == customer
    other = Client()
    other.force_login(org_b.owner)
    assert_cross_tenant_404(other, org_a.url(f"traces/{quote(trace_id)}"))
    assert_cross_tenant_404(other, org_b.url(f"traces/{quote(trace_id)}"))
