"""The budget check of API.md and the budgets / customer spend endpoints: answers, bad input as
400 (never 500), and another organization's budgets and customers as 404 or unseen."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from billing.services.budgets import budget_set
from tests.billing.helpers import send_traces, spend_traces
from tests.fixtures.organizations import Org, unique
from tests.helpers import assert_cross_tenant_404, error_code


def test_the_check_answers_the_contract(db: None, org_a: Org, client_a: Client) -> None:
    over, under = unique("over"), unique("under")
    budget_set(organization=org_a.organization, monthly_cap_usd="5", over_action="fallback",
               fallback_model="gpt-4o-mini")  # fmt: skip
    send_traces(org_a, spend_traces(over, ["3", "2.5"]) + spend_traces(under, ["1"]))
    body = client_a.get(f"/api/v1/budgets/check?customer_id={over}").json()
    assert set(body) >= {"allowed", "spent_usd", "cap_usd", "remaining_usd", "period_end", "action", "fallback_model"}
    assert (body["allowed"], body["action"], body["fallback_model"]) == (False, "fallback", "gpt-4o-mini")
    assert (body["spent_usd"], body["cap_usd"], body["remaining_usd"]) == (5.5, 5.0, 0.0)
    assert body["period_end"].endswith("T00:00:00Z")
    ok = client_a.get(f"/api/v1/budgets/check?customer_id={under}&estimated_cost_usd=0.5").json()
    assert (ok["allowed"], ok["action"], ok["remaining_usd"]) == (True, "allow", 4.0)
    warn = client_a.get(f"/api/v1/budgets/check?customer_id={under}&estimated_cost_usd=3.5").json()
    assert (warn["allowed"], warn["action"]) == (True, "warn")


def test_the_check_never_falls_back_to_the_model_asked_about(db: None, org_a: Org, org_b: Org,
                                                              client_a: Client) -> None:  # fmt: skip
    customer = unique("acme")
    budget_set(organization=org_a.organization, monthly_cap_usd="2", over_action="fallback",
               fallback_model="gpt-4o-mini")  # fmt: skip
    send_traces(org_a, spend_traces(customer, ["1.5", "1.5"], model="gpt-4o-mini"))
    # Org B: the same customer ID, under its own budget that falls back to another model, and no spend.
    budget_set(organization=org_b.organization, customer_id=customer, monthly_cap_usd="100", over_action="fallback",
               fallback_model="claude-haiku")  # fmt: skip
    query = f"customer_id={customer}&feature=support-copilot&estimated_cost_usd=0.01"
    body = client_a.get(f"/api/v1/budgets/check?{query}&model=gpt-4o-mini").json()
    assert set(body) >= {"allowed", "spent_usd", "cap_usd", "remaining_usd", "period_end", "action", "fallback_model"}
    assert (body["allowed"], body["action"], body["fallback_model"]) == (False, "block", None)
    assert (body["spent_usd"], body["cap_usd"], body["remaining_usd"], body["period"]) == (3.0, 2.0, 0.0, "month")
    assert "the model this call already uses" in body["reason"]
    assert body["budget"] == {"customer_id": None, "feature": None, "model": None}
    routed = client_a.get(f"/api/v1/budgets/check?{query}&model=gpt-4o").json()
    assert (routed["allowed"], routed["action"], routed["fallback_model"]) == (False, "fallback", "gpt-4o-mini")
    assert "already uses" not in routed["reason"]
    # Org B's key sees its own budget and none of org A's spend.
    theirs = Client(HTTP_AUTHORIZATION=f"Bearer {org_b.secret_key}")
    b = theirs.get(f"/api/v1/budgets/check?{query}&model=gpt-4o-mini").json()
    assert (b["allowed"], b["action"], b["spent_usd"], b["cap_usd"], b["reason"]) == (True, "allow", 0.0, 100.0, None)


@pytest.mark.parametrize(
    "query",
    ["", "customer_id=", "customer_id=a&estimated_cost_usd=-1", "customer_id=a&estimated_cost_usd=abc",
     "customer_id=a&estimated_cost_usd=NaN", "customer_id=a&estimated_cost_usd=1e400", "customer_id=" + "x" * 201,
     "customer_id=a%00b"],
)  # fmt: skip
def test_bad_check_input_is_a_400(db: None, client_a: Client, query: str) -> None:
    response = client_a.get(f"/api/v1/budgets/check?{query}")
    assert response.status_code == 400 and error_code(response) == "invalid_parameter"


def test_budgets_are_set_listed_and_removed(db: None, client_a: Client) -> None:
    customer = unique("c")
    created = client_a.post("/api/v1/budgets", {"customer_id": customer, "daily_cap_usd": 2, "monthly_cap_usd": 20,
                                                "thresholds": [50, 100]}, content_type="application/json")  # fmt: skip
    assert created.status_code == 200, created.content
    budget = created.json()
    assert (budget["daily_cap_usd"], budget["monthly_cap_usd"], budget["thresholds"]) == (2.0, 20.0, [50, 100])
    assert budget["id"] in [b["id"] for b in client_a.get("/api/v1/budgets").json()["results"]]
    assert client_a.get(f"/api/v1/budgets/{budget['id']}").json()["customer_id"] == customer
    assert client_a.delete(f"/api/v1/budgets/{budget['id']}").status_code == 204
    assert client_a.get(f"/api/v1/budgets/{budget['id']}").status_code == 404


@pytest.mark.parametrize(
    "body",
    [{"monthly_cap_usd": -5}, {"monthly_cap_usd": 1e12}, {}, {"monthly_cap_usd": 5, "over_action": "fallback"},
     {"monthly_cap_usd": 5, "thresholds": [0]}, {"monthly_cap_usd": "lots"}],
)  # fmt: skip
def test_bad_budgets_are_a_400(db: None, client_a: Client, body: dict[str, Any]) -> None:
    response = client_a.post("/api/v1/budgets", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"customer_id": "c1 "}, "customer_id"), ({"customer_id": " c1"}, "customer_id"),
     ({"feature": "Support Copilot"}, "feature"), ({"model": "gpt-4o "}, "model")],
)  # fmt: skip
def test_an_id_that_would_not_match_as_sent_is_refused_not_trimmed(
    db: None, client_a: Client, body: dict[str, Any], field: str
) -> None:
    """Budget IDs were trimmed where traces and the check take them as sent: a budget for "c1 " replaced c1's (its
    monthly cap gone) and never applied to "c1 "; a display name for a feature never matched its key."""
    kept = client_a.post("/api/v1/budgets", {"customer_id": "c1", "monthly_cap_usd": 10},
                         content_type="application/json")  # fmt: skip
    assert kept.status_code == 200
    response = client_a.post("/api/v1/budgets", {**body, "daily_cap_usd": 0.01}, content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert client_a.get(f"/api/v1/budgets/{kept.json()['id']}").json()["monthly_cap_usd"] == 10.0


def test_a_misspelt_budget_field_is_refused_by_name_and_the_schema_says_caps_are_never_negative(
    db: None, client_a: Client
) -> None:
    body = {"customer_id": unique("c"), "monthly_cap_usd": 10, "daly_cap_usd": 1, "batch": []}
    response = client_a.post("/api/v1/budgets", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == {"batch": ["unknown field: check its spelling"],
                                                   "daly_cap_usd": ["unknown field: check its spelling"]}  # fmt: skip
    # A budget sent back as it was read (its id included) is taken: create or replace by read-modify-write.
    made = client_a.post("/api/v1/budgets", {"customer_id": body["customer_id"], "monthly_cap_usd": 10},
                         content_type="application/json").json()  # fmt: skip
    again = client_a.post("/api/v1/budgets", {**made, "monthly_cap_usd": 12}, content_type="application/json")
    assert again.status_code == 200 and again.json()["monthly_cap_usd"] == 12.0
    odd = client_a.post("/api/v1/budgets", {**made, "id": {}}, content_type="application/json")
    assert odd.status_code == 400 and "id" in odd.json()["error"]["details"]
    schema = client_a.get("/api/v1/schema/?format=json").json()["components"]["schemas"]["BudgetRequest"]
    assert schema["additionalProperties"] is False
    for cap in ("daily_cap_usd", "monthly_cap_usd"):
        assert schema["properties"][cap]["minimum"] == 0 and "exclusiveMinimum" not in schema["properties"][cap]


def test_customer_spend(db: None, org_a: Org, client_a: Client) -> None:
    customer = unique("c")
    send_traces(org_a, spend_traces(customer, ["1.25", "0.75"]))
    body = client_a.get(f"/api/v1/customers/{customer}/spend").json()
    assert body["month_usd"] == 2.0 and sum(d["traces"] for d in body["days"]) == 2
    assert body["forecast_usd"] >= 2.0 and body["check"]["allowed"]


def test_a_customer_with_a_budget_and_no_spend_yet_has_spent_nothing(
    db: None, org_a: Org, org_b: Org, client_a: Client, owner_a: Client
) -> None:
    """A customer given a budget before its first trace was a 404 ("no spend recorded"), page and API."""
    customer = unique("c")
    budget_set(organization=org_a.organization, customer_id=customer, monthly_cap_usd="5")
    body = client_a.get(f"/api/v1/customers/{customer}/spend").json()
    assert (body["customer_id"], body["month_usd"], body["forecast_usd"]) == (customer, 0.0, 0.0)
    assert body["check"]["allowed"] and body["check"]["cap_usd"] == 5.0
    page = owner_a.get(org_a.url(f"spend/customers/{customer}/"))
    assert page.status_code == 200 and "$5.00" in page.content.decode()
    # Listed on the spend page at zero, and its budget links its page.
    assert f'spend/customers/{customer}/"' in owner_a.get(org_a.url("spend/")).content.decode()
    assert f'spend/customers/{customer}/"' in owner_a.get(org_a.url("spend/budgets/")).content.decode()
    # Another organization's budget for it says nothing here; nor does a customer no one has heard of.
    theirs = unique("c")
    budget_set(organization=org_b.organization, customer_id=theirs, monthly_cap_usd="5")
    assert_cross_tenant_404(client_a, f"/api/v1/customers/{theirs}/spend", leak=theirs)
    assert client_a.get(f"/api/v1/customers/{unique('c')}/spend").status_code == 404


def test_another_organizations_budgets_and_customers_are_not_found(db: None, org_a: Org, org_b: Org,
                                                                   client_a: Client) -> None:  # fmt: skip
    theirs = unique("theirs")
    budget = budget_set(organization=org_b.organization, customer_id=theirs, monthly_cap_usd="1")
    send_traces(org_b, spend_traces(theirs, ["7"]))
    assert_cross_tenant_404(client_a, f"/api/v1/budgets/{budget.id}", leak=theirs)
    assert_cross_tenant_404(client_a, f"/api/v1/budgets/{budget.id}", method="delete")
    assert_cross_tenant_404(client_a, f"/api/v1/customers/{theirs}/spend", leak=theirs)
    assert theirs not in client_a.get("/api/v1/budgets").content.decode()
    # Org A's check knows nothing of org B's customer: no budget of B, none of B's spend.
    check = client_a.get(f"/api/v1/budgets/check?customer_id={theirs}").json()
    assert check["allowed"] and check["spent_usd"] in (None, 0.0) and check["cap_usd"] != 1.0


def test_customer_spend_for_an_id_with_a_slash(db: None, org_a: Org, client_a: Client) -> None:
    from urllib.parse import quote

    odd = f"team/{unique('c')}"
    send_traces(org_a, spend_traces(odd, ["1"]))
    body = client_a.get(f"/api/v1/customers/{quote(odd, safe='/')}/spend").json()
    assert body["customer_id"] == odd and body["month_usd"] == 1.0


def test_checks_have_a_budget_of_their_own(db: None, org_a: Org, client_a: Client, small_budget: None,
                                           settings: Any) -> None:  # fmt: skip
    """Checking before every LLM call never spends the budget the key's traces are sent with; the
    checks' own (per-process) budget answers 429 with Retry-After once spent."""
    from tenants.ratelimit import key_check_rate_reset

    settings.BUDGET_CHECK_RATE_PER_SECOND = 0.5
    settings.BUDGET_CHECK_RATE_BURST = 5
    key_id = org_a.organization.api_keys.get(kind="secret").id
    key_check_rate_reset(key_id)
    try:
        checks = [client_a.get(f"/api/v1/budgets/check?customer_id={unique()}").status_code for _ in range(6)]
        # The key's API budget is 3 at once (small_budget): all 3 are still there after 5 checks.
        writes = [client_a.get("/api/v1/budgets").status_code for _ in range(4)]
        refused = client_a.get(f"/api/v1/budgets/check?customer_id={unique()}")
    finally:
        key_check_rate_reset(key_id)
    assert checks == [200] * 5 + [429]
    assert writes == [200, 200, 200, 429]
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert error_code(refused) == "rate_limited"


def test_the_check_refuses_missing_wrong_and_public_keys(db: None, org_a: Org) -> None:
    path = "/api/v1/budgets/check?customer_id=c1"
    missing = Client().get(path)
    wrong = Client(HTTP_AUTHORIZATION="Bearer sk_not_a_key").get(path)
    public = Client(HTTP_AUTHORIZATION=f"Bearer {org_a.public_key}").get(path)
    assert (missing.status_code, error_code(missing)) == (401, "not_authenticated")
    assert (wrong.status_code, error_code(wrong)) == (401, "invalid_key")
    assert missing["WWW-Authenticate"] == wrong["WWW-Authenticate"] == 'Bearer realm="api"'
    assert (public.status_code, error_code(public)) == (403, "public_key_not_allowed")


def test_budgets_are_cursor_paginated(db: None, org_a: Org, org_b: Org, client_a: Client) -> None:
    ours = {budget_set(organization=org_a.organization, customer_id=unique("pc"), monthly_cap_usd="5").id
            for _ in range(3)}  # fmt: skip
    theirs = budget_set(organization=org_b.organization, customer_id=unique("pc"), monthly_cap_usd="5").id
    seen: list[int] = []
    cursor = ""
    while True:
        body = client_a.get("/api/v1/budgets", {"limit": "1", **({"cursor": cursor} if cursor else {})}).json()
        assert len(body["results"]) <= 1
        seen += [b["id"] for b in body["results"]]
        if body["next_cursor"] is None:
            break
        cursor = body["next_cursor"]
    assert seen == sorted(set(seen)) and ours <= set(seen) and theirs not in seen  # each once, oldest first
    whole = client_a.get("/api/v1/budgets").json()
    assert [b["id"] for b in whole["results"]] == seen and whole["next_cursor"] is None
    for query, field in (({"cursor": "zzz"}, "cursor"), ({"cursor": "abc"}, "cursor"), ({"limit": "0"}, "limit"),
                         ({"limit": "501"}, "limit"), ({"limit": "two"}, "limit")):  # fmt: skip
        response = client_a.get("/api/v1/budgets", query)
        assert response.status_code == 400 and response.json()["error"]["details"]["field"] == field, query
        assert error_code(response) == "invalid_filter" and field in response.json()["error"]["message"]


def test_schema_declares_the_budget_lists_paging(client_a: Client) -> None:
    schema = client_a.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    listing = schema["paths"]["/api/v1/budgets"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"cursor", "limit"} and "400" in listing["responses"]
    assert "next_cursor" in str(schema["components"]["schemas"]["BudgetList"])
