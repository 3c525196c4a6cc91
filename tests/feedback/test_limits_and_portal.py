"""Rate limits, CORS for the widget endpoint, and the trace explorer pages (in-process client)."""

from __future__ import annotations

import json
import uuid

import msgspec
import pytest
from django.test import Client

from feedback import services
from tenants.ratelimit import buckets
from tenants.schema import in_tenant
from tests.fixtures.organizations import unique
from tests.helpers import assert_cross_tenant_404


@pytest.fixture
def small_budget(settings):  # type: ignore[no-untyped-def]
    settings.API_RATE_LIMIT_PER_SECOND = 0.5
    settings.API_RATE_LIMIT_BURST = 3
    buckets._state.clear()
    yield
    buckets._state.clear()


def test_rate_limit_answers_429_with_retry_after(db: None, org_a, small_budget) -> None:  # type: ignore[no-untyped-def]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {org_a.secret_key}")
    codes = [client.get("/api/v1/traces").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = client.get("/api/v1/traces")
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    # The same code on every endpoint, the widget's included (tenants.ratelimit is shared by both doors).
    assert limited.json()["error"]["code"] == "rate_limited"


def test_widget_rate_limit_and_cors(db: None, org_a, small_budget) -> None:  # type: ignore[no-untyped-def]
    from tenants.services import api_key_set_origins

    key = org_a.organization.api_keys.get(kind="public")
    api_key_set_origins(key=key, allowed_origins=["https://shop.example.com"])
    client = Client()
    preflight = client.options("/api/v1/widget/events", HTTP_ORIGIN="https://shop.example.com")
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    body = {"key": org_a.public_key, "events": []}
    answers = [
        client.post("/api/v1/widget/events", json.dumps(body), content_type="text/plain",
                    HTTP_ORIGIN="https://shop.example.com")
        for _ in range(4)
    ]  # fmt: skip
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]  # an empty batch: nothing to store
    assert answers[3].status_code == 429
    assert answers[3]["Retry-After"] and answers[3]["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "Retry-After" in answers[3]["Access-Control-Expose-Headers"]


def test_widget_rejects_secret_keys_and_garbage(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    secret = client.post("/api/v1/widget/events", json.dumps({"key": org_a.secret_key, "events": []}),
                         content_type="text/plain", HTTP_ORIGIN="http://localhost")  # fmt: skip
    assert secret.status_code == 403 and secret.json()["error"]["code"] == "secret_key_in_browser"
    garbage = client.post("/api/v1/widget/events", b"\xff\xfe", content_type="text/plain")
    assert garbage.status_code == 400
    unknown = client.post("/api/v1/widget/events", json.dumps({"key": "pk_nope", "events": []}),
                          content_type="text/plain")  # fmt: skip
    assert unknown.status_code == 401


@pytest.fixture
def explorer(db: None, org_a):  # type: ignore[no-untyped-def]
    run = unique("ex")
    traces = [
        {"trace_id": f"{run}-sso", "feature": "support-copilot", "prompt_version": "pv-x", "metadata": {"auth": "sso"},
         "output": "Use your Okta dashboard.", "customer_id": "cus_big",
         "spans": [{"span_id": "a", "name": "retrieve", "kind": "retrieval", "start": "2025-01-01T00:00:00Z",
                    "end": "2025-01-01T00:00:01Z"}]},
        {"trace_id": f"{run}-pw", "feature": "support-copilot", "prompt_version": "pv-x",
         "metadata": {"auth": "password"}, "output": "Click forgot password."},
    ]  # fmt: skip
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode({"batch": traces}))
        edit = {
            "event_id": str(uuid.uuid4()),
            "trace_id": f"{run}-sso",
            "kind": "edit",
            "original_text": "Use your Okta dashboard.",
            "edited_text": "Open the Okta dashboard.",
        }
        services.feedback_ingest(body=msgspec.json.encode(edit))
    client = Client()
    client.force_login(org_a.owner)
    return run, client


def test_trace_explorer_filters_by_metadata_and_edit(explorer, org_a) -> None:  # type: ignore[no-untyped-def]
    run, client = explorer
    page = client.get(org_a.url("traces/"), {"metadata.auth": "sso", "prompt_version": "pv-x"})
    assert f"{run}-sso".encode() in page.content and f"{run}-pw".encode() not in page.content
    edited = client.get(org_a.url("traces/"), {"has_edit": "1", "q": f"{run}-sso"})
    assert f"{run}-sso".encode() in edited.content
    partial = client.get(org_a.url("traces/"), {"metadata.auth": "password"}, HTTP_HX_REQUEST="true")
    assert b"<html" not in partial.content and f"{run}-pw".encode() in partial.content
    bad = client.get(org_a.url("traces/"), {"since": "last tuesday"})
    assert bad.status_code == 200 and b"ISO 8601" in bad.content


def test_trace_page_shows_spans_and_the_edit_diff(explorer, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    run, client = explorer
    page = client.get(org_a.url(f"traces/{run}-sso"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "<del>Use</del>" in html and "<ins>Open</ins>" in html and "<del>your</del>" in html
    assert "wf-retrieval" in html and "cus_big" in html
    # org B's owner asking org A's URL, or org B's URL for org A's trace: 404 either way
    other = Client()
    other.force_login(org_b.owner)
    assert_cross_tenant_404(other, org_a.url(f"traces/{run}-sso"))
    assert_cross_tenant_404(other, org_b.url(f"traces/{run}-sso"))


def test_overview_shows_rollup_numbers(explorer, org_a) -> None:  # type: ignore[no-untyped-def]
    from feedback.rollups import rollups_refresh

    run, client = explorer
    with in_tenant(org_a.organization):
        rollups_refresh()
    page = client.get(org_a.url(""))
    assert b"support-copilot" in page.content and b"Widget events rejected" in page.content


def test_organization_price_overrides_the_default(db: None, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    from decimal import Decimal

    from feedback.models import ModelPrice, Trace

    owner = Client()
    owner.force_login(org_a.owner)
    form = {"provider": "", "model": "gpt-4o-mini", "input_per_mtok": "1", "output_per_mtok": "2",
            "effective_from": "2020-01-01 00:00"}  # fmt: skip
    assert owner.post(org_a.url("settings/prices/"), form).status_code == 302
    bad = owner.post(org_a.url("settings/prices/"), {**form, "input_per_mtok": "-1"})
    assert b"greater than or equal to 0" in bad.content
    trace_id = unique()
    with in_tenant(org_a.organization):
        body = {"trace_id": trace_id, "feature": "f", "provider": "openai", "model": "gpt-4o-mini",
                "input_tokens": 1_000_000, "output_tokens": 1_000_000}  # fmt: skip
        services.traces_ingest(body=msgspec.json.encode(body))
        trace = Trace.objects.get(trace_id=trace_id)
        price = ModelPrice.objects.get(model="gpt-4o-mini")
        assert trace.cost_usd == Decimal("3") and trace.cost_source == f"org:{price.id}"
    page = owner.get(org_a.url("settings/prices/"))
    assert b"gpt-4o-mini" in page.content and b"claude-3-5-haiku" in page.content
    # Org B has its own price table: A's price is invisible there, and B's URL cannot delete it.
    other = Client()
    other.force_login(org_b.owner)
    assert_cross_tenant_404(other, org_b.url(f"settings/prices/{price.id}/delete/"), "post")
    assert_cross_tenant_404(other, org_a.url("settings/prices/"))
    with in_tenant(org_a.organization):
        assert ModelPrice.objects.filter(id=price.id).exists()
    owner.post(org_a.url(f"settings/prices/{price.id}/delete/"))
    with in_tenant(org_a.organization):
        assert not ModelPrice.objects.filter(id=price.id).exists()
