"""Bad input that once broke whole batches, resends that once corrupted rows, and races."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import msgspec
import pytest
from django.core.management import call_command
from django.test import Client

from feedback import services
from feedback.models import FeedbackEvent, Span, Trace
from feedback.rollups import feedback_rejoin
from tests.fixtures.organizations import in_tenant, unique


def post(client: Client, path: str, body: bytes) -> Any:
    return client.post(path, body, content_type="application/json")


@pytest.fixture
def api(db: None, org_a) -> Client:  # type: ignore[no-untyped-def]
    return Client(HTTP_AUTHORIZATION=f"Bearer {org_a.secret_key}")


def test_non_canonical_uuids_are_stored_canonically_and_dedupe(api, org_a) -> None:  # type: ignore[no-untyped-def]
    trace_id = unique()
    plain = uuid.uuid4()
    batch = [
        {"event_id": f"urn:uuid:{plain}", "trace_id": trace_id, "kind": "copy"},
        {"event_id": str(plain).upper(), "trace_id": trace_id, "kind": "copy"},
        {"event_id": "{" + str(uuid.uuid4()) + "}", "trace_id": trace_id, "kind": "retry"},
    ]
    response = post(api, "/api/v1/feedback", json.dumps({"batch": batch}).encode())
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 2, "duplicates": 1, "errors": []}
    with in_tenant(org_a):
        assert FeedbackEvent.objects.filter(event_id=plain).count() == 1


def test_bad_keys_and_deep_nesting_are_item_errors(api) -> None:  # type: ignore[no-untyped-def]
    good = unique()
    deep = "[" * 5000 + "]" * 5000
    body = (
        f'{{"batch": [{{"trace_id": "{good}", "feature": "f"}},'
        ' {"trace_id": "x1", "feature": "f", "metadata": {"\\ud800": "v"}}]}'
    ).encode()
    response = post(api, "/api/v1/traces", body)
    assert response.status_code == 207, response.content
    assert response.json()["errors"][0]["index"] == 1 and response.json()["accepted"] == 1
    nested = post(api, "/api/v1/traces", f'{{"trace_id": "x", "feature": "f", "metadata": {{"a": {deep}}}}}'.encode())
    assert nested.status_code == 400 and nested.json()["error"]["code"] in {"too_deep", "invalid"}


def test_non_ascii_token_is_rejected_not_a_500(db: None, org_b) -> None:  # type: ignore[no-untyped-def]
    from tenants.models import Organization
    from tenants.services import api_key_set_origins

    Organization.objects.filter(id=org_b.organization.id).update(require_signed_tokens=True, widget_signing_secret="s")
    api_key_set_origins(key=org_b.organization.api_keys.get(kind="public"), allowed_origins=["https://a.test"])
    event = {"event_id": str(uuid.uuid4()), "trace_id": "t", "kind": "copy", "token": "v1.9999999999.\u00e9"}
    response = Client().post("/api/v1/widget/events", json.dumps({"key": org_b.public_key, "events": [event]}),
                             content_type="text/plain", HTTP_ORIGIN="https://a.test")  # fmt: skip
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "token"


def test_widget_nan_in_one_event_keeps_the_others(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from tenants.services import api_key_set_origins

    api_key_set_origins(key=org_a.organization.api_keys.get(kind="public"), allowed_origins=["https://a.test"])
    good = str(uuid.uuid4())
    body = (
        f'{{"key": "{org_a.public_key}", "events": [{{"event_id": "{good}", "trace_id": "t", "kind": "copy"}},'
        f' {{"event_id": "{uuid.uuid4()}", "trace_id": "t", "kind": "dwell", "value": NaN}}]}}'
    )
    response = Client().post("/api/v1/widget/events", body, content_type="text/plain", HTTP_ORIGIN="https://a.test")
    assert response.status_code == 207, response.content
    assert response.json()["accepted"] == 1 and response.json()["errors"][0] == {
        "index": 1, "field": "value", "message": "NaN is not a number (JSON has no NaN or Infinity)"}  # fmt: skip


def test_resend_keeps_client_cost_and_recomputes_computed_cost(api, org_a) -> None:  # type: ignore[no-untyped-def]
    paid, computed = unique(), unique()
    base = {"feature": "f", "provider": "openai", "model": "gpt-4o-mini"}
    post(api, "/api/v1/traces", json.dumps({"batch": [
        {"trace_id": paid, **base, "cost_usd": 7.0},
        {"trace_id": computed, **base, "input_tokens": 1_000_000},
    ]}).encode())  # fmt: skip
    post(api, "/api/v1/traces", json.dumps({"batch": [
        {"trace_id": paid, **base, "input_tokens": 1_000_000},
        {"trace_id": computed, **base, "output_tokens": 1_000_000},
    ]}).encode())  # fmt: skip
    with in_tenant(org_a):
        paid_row = Trace.objects.get(trace_id=paid)
        assert (float(paid_row.cost_usd or 0), paid_row.cost_source) == (7.0, "client")
        # 1M input at $0.15 + 1M output at $0.60, from the merged tokens
        assert float(Trace.objects.get(trace_id=computed).cost_usd or 0) == pytest.approx(0.75)


def test_resent_span_merges_instead_of_wiping(api, org_a) -> None:  # type: ignore[no-untyped-def]
    trace_id = unique()
    span = {"span_id": "l1", "name": "chat", "kind": "llm", "model": "gpt-4o-mini", "input_tokens": 10,
            "attributes": {"a": 1}}  # fmt: skip
    post(api, "/api/v1/traces", json.dumps({"trace_id": trace_id, "feature": "f", "spans": [span]}).encode())
    later = {"span_id": "l1", "end": "2025-01-01T00:00:01Z", "attributes": {"b": 2}}
    post(api, "/api/v1/traces", json.dumps({"trace_id": trace_id, "feature": "f", "spans": [later]}).encode())
    with in_tenant(org_a):
        stored = Span.objects.get(trace_id=trace_id, span_id="l1")
        assert (stored.name, stored.kind, stored.model, stored.input_tokens) == ("chat", "llm", "gpt-4o-mini", 10)
        assert stored.attributes == {"a": 1, "b": 2} and stored.end is not None


def test_feedback_racing_its_trace_is_mended_before_rollups(committed_db, org_a) -> None:  # type: ignore[no-untyped-def]
    """Trace and feedback batches committed concurrently: whatever the interleaving, the
    rejoin before each rollup refresh leaves no feedback detached from an existing trace."""
    prefix = unique("race")
    traces = [{"trace_id": f"{prefix}-{i}", "feature": "race"} for i in range(200)]
    events = [{"event_id": str(uuid.uuid4()), "trace_id": f"{prefix}-{i}", "kind": "copy"} for i in range(200)]
    errors: list[BaseException] = []

    def run(fn, body) -> None:  # type: ignore[no-untyped-def]
        from django.db import connection

        try:
            with in_tenant(org_a):
                fn(body=msgspec.json.encode({"batch": body}))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(services.feedback_ingest, events[i::4])) for i in range(4)]
    threads += [threading.Thread(target=run, args=(services.traces_ingest, traces[i::4])) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with in_tenant(org_a):
        feedback_rejoin()
        assert FeedbackEvent.objects.filter(trace_id__startswith=prefix).count() == 200
        assert not FeedbackEvent.objects.filter(trace_id__startswith=prefix, feature__isnull=True).exists()


def test_unknown_organization_segments_are_404(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(org_a.owner)
    for path in ["/o/ORG-ALPHA/traces/", "/o/org_alpha/settings/members/", "/o/%20/"]:
        assert client.get(path).status_code == 404, path
    assert Client().get("/o/org_alpha/settings/members/").status_code == 404


def test_openapi_schema_is_valid_and_complete() -> None:
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_odd_keys_and_paths_never_500(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    body = '{"key": "pk_\\ud800", "events": []}'
    widget = Client().post("/api/v1/widget/events", body, content_type="text/plain", HTTP_ORIGIN="https://a.test")
    assert widget.status_code == 401
    client = Client()
    client.force_login(org_a.owner)
    assert client.get("/o/%00/").status_code == 404
    assert Client(HTTP_AUTHORIZATION="Bearer sk_\u00e9\u00e9").get("/api/v1/traces").status_code == 401


def test_resend_with_an_unpriced_model_clears_the_stale_cost(api, org_a) -> None:  # type: ignore[no-untyped-def]
    trace_id = unique()
    first = {"trace_id": trace_id, "feature": "f", "model": "gpt-4o-mini", "input_tokens": 1_000_000}
    post(api, "/api/v1/traces", json.dumps(first).encode())
    response = post(api, "/api/v1/traces", json.dumps({**first, "model": "no-such-model"}).encode())
    assert response.json()["warnings"][0]["field"] == "model"
    with in_tenant(org_a):
        row = Trace.objects.get(trace_id=trace_id)
        assert row.cost_usd is None and row.cost_source == ""


def test_repeats_of_a_span_within_one_batch_merge(api, org_a) -> None:  # type: ignore[no-untyped-def]
    trace_id = unique()
    spans = [
        {"span_id": "s1", "name": "chat", "kind": "llm", "input_tokens": 7, "attributes": {"a": 1}},
        {"span_id": "s1", "end": "2025-01-01T00:00:01Z", "attributes": {"b": 2}},
    ]
    post(api, "/api/v1/traces", json.dumps({"trace_id": trace_id, "feature": "f", "spans": spans}).encode())
    with in_tenant(org_a):
        span = Span.objects.get(trace_id=trace_id, span_id="s1")
        assert (span.name, span.kind, span.input_tokens, span.attributes) == ("chat", "llm", 7, {"a": 1, "b": 2})
        assert span.end is not None
