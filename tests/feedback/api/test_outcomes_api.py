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
