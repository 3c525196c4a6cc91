"""GET /api/v1/features and /api/v1/features/{key}/report: shape, bad input, and tenancy."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from evaluation.reports.selectors import features_list
from feedback.models import Feature
from tests.evaluation.reports.seed import seed_feature
from tests.fixtures.organizations import in_tenant, unique
from tests.fixtures.rollups import rollups_settled
from tests.helpers import assert_cross_tenant_404, error_code


@pytest.fixture
def feature(db: None, org_a) -> str:  # type: ignore[no-untyped-def]
    key = seed_feature(org_a, traces=40)
    with in_tenant(org_a):
        Feature.objects.filter(key=key).update(value_per_success_usd=Decimal("4"))
        rollups_settled()
    return key


def test_features_list_and_report(client_a: Client, feature: str) -> None:
    listed = {f["key"]: f for f in client_a.get("/api/v1/features").json()["results"]}
    assert listed[feature]["value_per_success_usd"] == 4.0
    assert listed[feature]["first_seen"] == "2025-03-10" and listed[feature]["last_seen"] == "2025-03-11"
    response = client_a.get(f"/api/v1/features/{feature}/report", {"since": "2025-03-10", "until": "2025-03-12",
                                                                   "group_by": "metadata.auth"})  # fmt: skip
    assert response.status_code == 200
    body = response.json()
    assert body["feature"] == feature and body["group_by"] == "metadata.auth"
    assert body["window"] == {"since": "2025-03-10T00:00:00+00:00", "until": "2025-03-12T00:00:00+00:00"}
    assert sum(g["traces"] for g in body["groups"]) == 40
    group = body["groups"][0]
    for name in ("group", "traces", "explicit_feedback_rate", "thumbs_up_share", "mean_rating", "edit_rate",
                 "mean_edit_distance", "implicit_rates", "fallback_rate", "guardrail_block_rate", "error_rate",
                 "success", "successes", "cost_usd", "cost_per_success_usd", "value_usd", "roi", "latency_ms",
                 "ttft_ms", "cost_per_success", "roi_interval"):  # fmt: skip
        assert name in group
    per_success, roi = group["cost_per_success"], group["roi_interval"]
    assert per_success["low"] <= per_success["value"] <= per_success["high"]
    assert roi["low"] <= roi["value"] <= roi["high"]
    assert set(group["success"]) >= {"value", "low", "high", "source"} and group["success"]["source"] == "outcomes"
    assert set(group["latency_ms"]) == {"p50", "p95", "p99"} and set(group["ttft_ms"]) == {"p50", "p95"}
    assert group["value_usd"] == pytest.approx(group["successes"] * 4)


def test_features_are_cursor_paginated_by_key(client_a: Client, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        for key in ("pg-c", "pg-a", "pg-e", "pg-b", "pg-d"):
            Feature.objects.get_or_create(key=key, defaults={"name": f"Paged {key}"})
        every = [f["key"] for f in features_list()]
        assert {"pg-a", "pg-b", "pg-c", "pg-d", "pg-e"} <= set(every)
    seen: list[str] = []
    cursor, pages = "", 0
    while True:
        body = client_a.get("/api/v1/features", {"limit": "2", **({"cursor": cursor} if cursor else {})}).json()
        assert len(body["results"]) <= 2
        seen += [f["key"] for f in body["results"]]
        pages += 1
        if body["next_cursor"] is None:
            break
        cursor = body["next_cursor"]
    assert seen == every and pages == -(-len(every) // 2)
    assert client_a.get("/api/v1/features", {"cursor": "00ff"}).status_code == 200  # a place, if not one given out
    whole = client_a.get("/api/v1/features").json()
    assert [f["key"] for f in whole["results"]] == every and whole["next_cursor"] is None
    for query, field in (({"cursor": "!!"}, "cursor"), ({"cursor": "abc"}, "cursor"), ({"limit": "0"}, "limit"),
                         ({"limit": "501"}, "limit"), ({"limit": "two"}, "limit")):  # fmt: skip
        response = client_a.get("/api/v1/features", query)
        assert response.status_code == 400 and response.json()["error"]["details"]["field"] == field, query


def test_a_feature_left_with_no_trace_that_nobody_set_up_is_not_listed(client_a: Client, org_a) -> None:  # type: ignore[no-untyped-def]
    """An OTLP export of a trace's child spans names the trace after its service.name; when the span carrying
    candor.feature arrives, the trace moves to its real feature and the first is left empty (the API listed
    such phantoms for ever). A trace resent under another feature leaves the same: it goes unlisted, while a
    feature someone set up stays listed without traces."""
    trace_id, phantom, real, named = unique("tr"), unique("svc"), unique("feat"), unique("named")
    for feature in (phantom, real):
        response = client_a.post("/api/v1/traces", {"trace_id": trace_id, "feature": feature},
                                 content_type="application/json")  # fmt: skip
        assert response.status_code == 200, response.content
    with in_tenant(org_a):
        Feature.objects.create(key=named, name="Set up, no traces yet")
    listed = [f["key"] for f in client_a.get("/api/v1/features", {"limit": "500"}).json()["results"]]
    assert real in listed and named in listed and phantom not in listed
    assert client_a.get(f"/api/v1/traces/{trace_id}").json()["feature"] == real


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "2025-03-12", "until": "2025-03-10"}, "since"),
        ({"since": "2023-01-01", "until": "2025-03-10"}, "until"),
        ({"group_by": "provider"}, "group_by"),
        ({"group_by": "metadata."}, "group_by"),
        ({"since": "last tuesday"}, "since"),
        ({"until": "2025-02-30"}, "until"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(client_a: Client, feature: str, query, field) -> None:  # type: ignore[no-untyped-def]
    response = client_a.get(f"/api/v1/features/{feature}/report", query)
    assert response.status_code == 400, response.content
    assert error_code(response) == "invalid_parameter" and response.json()["error"]["details"]["field"] == field


def test_any_iso_offset_is_read_as_its_utc_time(client_a: Client, feature: str) -> None:
    """Kiribati's +14:00 (and any offset to ±23:59, as the trace list takes) was a 400 here: each is read as
    its UTC time, and the window the report answers with says so."""
    for since, until, utc in (
        ("2025-03-02T00:00:00+14:00", "2025-03-10T00:00:00-23:00",
         ("2025-03-01T10:00:00+00:00", "2025-03-10T23:00:00+00:00")),
        ("2025-03-02T09:30+05:30", "2025-03-10", ("2025-03-02T04:00:00+00:00", "2025-03-10T00:00:00+00:00")),
    ):  # fmt: skip
        response = client_a.get(f"/api/v1/features/{feature}/report", {"since": since, "until": until})
        assert response.status_code == 200, response.content
        window = response.json()["window"]
        assert (window["since"], window["until"]) == utc
    response = client_a.get(f"/api/v1/features/{feature}/report", {"since": "2025-03-02T00:00:00+24:00"})
    assert response.status_code == 400 and response.json()["error"]["details"]["field"] == "since"


def test_unknown_feature_and_other_organizations_feature_are_404(feature: str, org_b) -> None:  # type: ignore[no-untyped-def]
    other = Client(HTTP_AUTHORIZATION=f"Bearer {org_b.secret_key}")
    assert_cross_tenant_404(other, "/api/v1/features/no-such-feature/report")
    assert_cross_tenant_404(other, f"/api/v1/features/{feature}/report", leak=feature)
    assert feature not in other.get("/api/v1/features").content.decode()


def test_report_needs_a_secret_key(feature: str) -> None:
    assert Client().get(f"/api/v1/features/{feature}/report").status_code == 401
