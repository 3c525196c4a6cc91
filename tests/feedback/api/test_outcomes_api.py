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


def test_an_outcome_tied_by_session_shows_on_the_trace_it_is_counted_for(api_a, org_a) -> None:  # type: ignore[no-untyped-def]
    """An outcome sent with a session_id only was accepted and counted, yet no read showed where it landed."""
    from feedback.rollups import outcomes_attribute
    from tests.fixtures.organizations import in_tenant

    session, earlier, last = unique("sess"), unique(), unique()
    feature = unique("feat")
    assert api_a.post("/api/v1/traces", {"batch": [
        {"trace_id": earlier, "feature": feature, "session_id": session, "started_at": "2026-01-01T10:00:00Z"},
        {"trace_id": last, "feature": feature, "session_id": session, "started_at": "2026-01-01T10:05:00Z"},
    ]}).ok  # fmt: skip
    outcome = {"outcome_id": unique("oc"), "name": "purchase", "session_id": session,
               "occurred_at": "2026-01-01T10:09:00Z"}  # fmt: skip
    assert api_a.post("/api/v1/outcomes", outcome).json()["accepted"] == 1
    with in_tenant(org_a):
        outcomes_attribute()  # what the rollup worker does within seconds
    (shown,) = api_a.get(f"/api/v1/traces/{last}").json()["outcomes"]
    assert (shown["outcome_id"], shown["tied_by"], shown["session_id"]) == (outcome["outcome_id"], "session", session)
    assert api_a.get(f"/api/v1/traces/{earlier}").json()["outcomes"] == []
    direct = {"outcome_id": unique("oc"), "name": "refund", "trace_id": earlier}
    assert api_a.post("/api/v1/outcomes", direct).json()["accepted"] == 1
    assert [o["tied_by"] for o in api_a.get(f"/api/v1/traces/{earlier}").json()["outcomes"]] == ["trace"]
