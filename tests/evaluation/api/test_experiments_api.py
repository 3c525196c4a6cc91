"""GET /api/v1/experiments and /api/v1/experiments/{key}: the shape API users build on, the schema
describes them, and another organization's experiment is a 404."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from django.test import Client

from tests.evaluation.experiments_seed import holdback_experiment, ingest, new_feature, traffic
from tests.fixtures.organizations import in_tenant, unique
from tests.helpers import assert_cross_tenant_404, error_code

START = datetime(2025, 3, 1, tzinfo=UTC)


def _experiment(org) -> str:  # type: ignore[no-untyped-def]
    key = unique("exp")
    with in_tenant(org):
        feature = new_feature(segment_keys=["plan"])
        rng = random.Random(3)
        arms = ["holdback" if i % 10 == 0 else "ai" for i in range(3000)]
        ingest(
            *traffic(
                feature=feature,
                start=START,
                hours=24 * 5,
                count=3000,
                rng=rng,
                fields=lambda i: {
                    "experiment": key,
                    "variant": arms[i],
                    "fallback": arms[i] == "holdback",
                    "metadata": {"plan": "trial" if i % 97 == 1 else "pro" if (i // 10) % 2 else "free"},
                },  # fmt: skip
                success=lambda t: 0.3 if t["variant"] == "holdback" else 0.55,
            )
        )
        holdback_experiment(key, feature, started_at=START)
    return key


def test_list_and_detail(client_a: Client, org_a) -> None:  # type: ignore[no-untyped-def]
    key = _experiment(org_a)
    listed = {e["key"]: e for e in client_a.get("/api/v1/experiments").json()["results"]}
    assert listed[key]["verdict"]["decision"] in ("ship", "keep_running", "stop")
    assert [a["name"] for a in listed[key]["arms"]] == ["holdback", "ai"]
    response = client_a.get(f"/api/v1/experiments/{key}")
    assert response.status_code == 200
    body = response.json()
    assert body["key"] == key and body["control"] == "holdback" and body["primary_metric"]["source"] == "conversion"
    ai = next(a for a in body["arms"] if a["name"] == "ai")
    assert set(ai["metric"]) >= {"value", "low", "high", "n"} and set(ai["lift"]) >= {"value", "low", "high"}
    assert ai["significant"] and body["verdict"]["decision"] == "ship" and body["verdict"]["arm"] == "ai"
    assert set(body["srm"]) == {"chi2", "p_value", "mismatch", "observed", "expected"}
    assert body["sequential_test"]["name"].startswith("mSPRT") and body["plan"]["per_arm"] > 0
    segments = body["segments"]
    assert segments["keys"] == ["plan"] and [r["segment"] for r in segments["rows"]][2] == "metadata.plan=trial"
    trial = segments["rows"][2]["arms"][1]
    assert trial["arm"] == "ai" and trial["lift"] is None  # ~30 traces: too few to compare
    assert segments["comparisons"] == 2  # the lifts computed: the rare plan's is not counted
    for row in segments["rows"][:2]:
        control, treated = row["arms"]
        assert control["arm"] == "holdback" and control["lift"] is None and treated["arm"] == "ai"
        assert treated["lift"]["low"] < treated["lift"]["value"] < treated["lift"]["high"]
    assert segments["differs"] == []  # both plans get the same lift: nothing singled out
    assert "segments" not in listed[key]


def test_unknown_and_other_organizations_experiments_are_404(client_a: Client, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    missing = client_a.get("/api/v1/experiments/no-such-experiment")
    assert missing.status_code == 404 and error_code(missing) == "not_found"
    theirs = _experiment(org_b)
    assert_cross_tenant_404(client_a, f"/api/v1/experiments/{theirs}", leak=theirs)
    assert theirs not in client_a.get("/api/v1/experiments").content.decode()


def test_schema_describes_both_endpoints(client_a: Client) -> None:
    schema = client_a.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    assert "/api/v1/experiments" in schema["paths"] and "/api/v1/experiments/{key}" in schema["paths"]
    detail = schema["paths"]["/api/v1/experiments/{key}"]["get"]
    assert {"200", "404"} <= set(detail["responses"])


def _bare_experiment(org) -> str:  # type: ignore[no-untyped-def]
    """An experiment (on a feature of its own) with no traffic yet: enough to be listed."""
    key = unique("pexp")
    with in_tenant(org):
        holdback_experiment(key, new_feature(), started_at=START, holdback_share=0.5)
    return key


def test_experiments_are_cursor_paginated_by_key(client_a: Client, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    ours = {_bare_experiment(org_a) for _ in range(3)}
    theirs = _bare_experiment(org_b)
    seen: list[str] = []
    cursor = ""
    while True:
        body = client_a.get("/api/v1/experiments", {"limit": "1", **({"cursor": cursor} if cursor else {})}).json()
        assert len(body["results"]) <= 1
        seen += [e["key"] for e in body["results"]]
        if body["next_cursor"] is None:
            break
        cursor = body["next_cursor"]
    assert seen == sorted(set(seen)) and ours <= set(seen) and theirs not in seen  # each once, in key order
    whole = client_a.get("/api/v1/experiments").json()
    assert [e["key"] for e in whole["results"]] == seen and whole["next_cursor"] is None
    for query, field in (({"cursor": "zzz"}, "cursor"), ({"cursor": "abc"}, "cursor"), ({"limit": "0"}, "limit"),
                         ({"limit": "501"}, "limit"), ({"limit": "two"}, "limit")):  # fmt: skip
        response = client_a.get("/api/v1/experiments", query)
        assert response.status_code == 400 and response.json()["error"]["details"]["field"] == field, query
        assert error_code(response) == "invalid_filter" and field in response.json()["error"]["message"]


def test_schema_declares_the_experiment_lists_paging(client_a: Client) -> None:
    schema = client_a.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    listing = schema["paths"]["/api/v1/experiments"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"cursor", "limit"} and "400" in listing["responses"]
