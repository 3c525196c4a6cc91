"""GET /api/v1/alerts, /alerts/{id} and POST /alerts/{id}/resolve: what the portal shows, for on-call tools;
filters and pages, a resolution signed by the key, bad input named, and another organization's alert a 404."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.test import Client

from evaluation.models import Alert, AlertRule, Delivery, NotificationChannel
from feedback.models import Feature
from tests.evaluation.experiments_seed import new_feature
from tests.fixtures.organizations import in_tenant
from tests.helpers import assert_cross_tenant_404, error_code

T0 = datetime(2025, 5, 1, tzinfo=UTC)


def _alerts(org: Any, n: int = 3) -> tuple[str, list[int]]:
    with in_tenant(org):
        feature = Feature.objects.get(key=new_feature())
        rule = AlertRule.objects.create(feature=feature, name="thumbs", metric="thumbs_down_share", threshold=0.5)
        NotificationChannel.objects.get_or_create(kind="email", name="pm", email="pm@example.test")
        ids = []
        for i in range(n):
            at = T0 + timedelta(days=i)
            alert = Alert.objects.create(rule=rule, segment=f"metadata.auth=s{i}", opened_at=at, last_fired_at=at,
                                         value=0.7, baseline=0.3, opened_baseline=0.3, count=40,
                                         message=f"Thumbs-down share is 70% on s{i}",
                                         state="resolved" if i == 0 else "open",
                                         resolved_at=at + timedelta(hours=1) if i == 0 else None)  # fmt: skip
            ids.append(alert.id)
    return feature.key, ids


def test_list_filters_and_pages_newest_first(client_a: Client, org_a) -> None:  # type: ignore[no-untyped-def]
    feature, ids = _alerts(org_a)
    listed = client_a.get("/api/v1/alerts", {"feature": feature}).json()
    assert [a["id"] for a in listed["results"]] == ids[::-1] and listed["next_cursor"] is None
    first = listed["results"][0]
    assert first["feature"] == feature and first["rule"] == "thumbs" and first["segment"] == "metadata.auth=s2"
    assert first["state"] == "open" and first["opened_baseline"] == 0.3 and first["resolved_by"] is None
    assert first["message"] == "Thumbs-down share is 70% on s2" and first["opened_message"] is None
    opened = client_a.get("/api/v1/alerts", {"feature": feature, "state": "open"}).json()["results"]
    assert [a["id"] for a in opened] == ids[:0:-1]
    page = client_a.get("/api/v1/alerts", {"feature": feature, "limit": "2"}).json()
    rest = client_a.get("/api/v1/alerts", {"feature": feature, "limit": "2", "cursor": page["next_cursor"]}).json()
    assert [a["id"] for a in page["results"] + rest["results"]] == ids[::-1] and rest["next_cursor"] is None
    detail = client_a.get(f"/api/v1/alerts/{ids[1]}").json()
    assert detail["id"] == ids[1] and detail["state"] == "open"
    for query, field in (({"state": "shut"}, "state"), ({"cursor": "x"}, "cursor"), ({"limit": "0"}, "limit"),
                         ({"limit": "201"}, "limit"), ({"feature": "a\x00b"}, "feature")):  # fmt: skip
        response = client_a.get("/api/v1/alerts", query)
        assert response.status_code == 400 and response.json()["error"]["details"]["field"] == field, query


def test_resolve_signs_with_the_key_and_tells_the_channels(client_a: Client, org_a) -> None:  # type: ignore[no-untyped-def]
    _, ids = _alerts(org_a)
    response = client_a.post(f"/api/v1/alerts/{ids[2]}/resolve", {"note": "rolled back to v2.2"},
                             content_type="application/json")  # fmt: skip
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["resolved"] is True and body["alert"]["state"] == "resolved"
    assert body["alert"]["resolved_by"].startswith("API key ") and "rolled back to v2.2" in body["alert"]["resolution"]
    assert org_a.secret_key[:6] not in body["alert"]["resolved_by"]  # named, not spelled out
    again = client_a.post(f"/api/v1/alerts/{ids[2]}/resolve", {}, content_type="application/json").json()
    assert again["resolved"] is False and again["alert"]["resolution"] == body["alert"]["resolution"]
    empty = client_a.generic("POST", f"/api/v1/alerts/{ids[1]}/resolve")  # curl -X POST: no body, no note
    assert empty.status_code == 200 and empty.json()["resolved"] is True
    form = client_a.post(f"/api/v1/alerts/{ids[1]}/resolve", {"note": "x"})  # a form: JSON is what it takes
    assert form.status_code == 415
    with in_tenant(org_a):
        assert Delivery.objects.filter(alert_id=ids[2], event="resolved").count() == 1
    for body_text, code in (("{not json", "invalid_json"), ('{"note": 5}', "invalid_body"),
                            ('{"note": "x", "by": "me"}', "invalid_body"), ('["x"]', "invalid_body"),
                            ('{"note": "' + "x" * 501 + '"}', "invalid_body")):  # fmt: skip
        refused = client_a.post(f"/api/v1/alerts/{ids[2]}/resolve", body_text, content_type="application/json")
        assert refused.status_code == 400 and error_code(refused) == code, body_text
    missing = client_a.post("/api/v1/alerts/999999/resolve", {}, content_type="application/json")
    assert missing.status_code == 404 and error_code(missing) == "not_found"


def test_another_organizations_alerts_are_404s(client_a: Client, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    feature, ids = _alerts(org_b)
    assert_cross_tenant_404(client_a, f"/api/v1/alerts/{ids[1]}", leak=feature)
    assert_cross_tenant_404(client_a, f"/api/v1/alerts/{ids[1]}/resolve", method="post", leak=feature)
    assert feature not in client_a.get("/api/v1/alerts").content.decode()
    with in_tenant(org_b):
        assert Alert.objects.get(id=ids[1]).state == "open"
    assert client_a.get("/api/v1/alerts/99999999999999999999").status_code == 404
    # A POST to no endpoint is the API's JSON 404 too (it was the CSRF check's HTML 403).
    nowhere = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {org_a.secret_key}")
    for path in ("/api/v1/alerts/null/resolve", "/api/v1/nope"):
        response = nowhere.post(path, {}, content_type="application/json")
        assert response.status_code == 404 and error_code(response) == "not_found", path
    assert Client().get("/api/v1/alerts").status_code == 401  # a secret key is needed
