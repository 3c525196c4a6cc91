"""POST /api/v1/outcomes against the live server."""

from __future__ import annotations

from tests.fixtures.organizations import unique


def test_outcomes_idempotent_and_need_a_link(api_a) -> None:  # type: ignore[no-untyped-def]
    tid = unique()
    outcome = {"outcome_id": unique("oc"), "name": "purchase", "trace_id": tid, "value_usd": 42.5}
    assert api_a.post("/api/v1/outcomes", outcome).json()["accepted"] == 1
    assert api_a.post("/api/v1/outcomes", outcome).json()["duplicates"] == 1
    orphan = api_a.post("/api/v1/outcomes", {"outcome_id": unique("oc"), "name": "purchase"})
    assert orphan.status_code == 400 and orphan.json()["errors"][0]["field"] == "trace_id"


def test_an_outcome_id_twice_in_one_batch_keeps_the_first_as_across_batches(api_a) -> None:  # type: ignore[no-untyped-def]
    tid = unique()
    assert api_a.post("/api/v1/traces", {"trace_id": tid, "feature": unique("feat")}).ok
    first = {"outcome_id": unique("oc"), "name": "purchase", "trace_id": tid, "customer_id": "cus_1", "value_usd": 1}
    second = {key: value for key, value in first.items() if key != "customer_id"} | {"value_usd": 2}
    answer = api_a.post("/api/v1/outcomes", {"batch": [first, second]}).json()
    assert answer == {"accepted": 1, "duplicates": 1, "errors": []}
    (stored,) = api_a.get(f"/api/v1/traces/{tid}").json()["outcomes"]
    assert (stored["value_usd"], stored["customer_id"]) == (1.0, "cus_1")
