"""Trace ingestion: resends merge into the stored trace and its spans, and costs follow the merged row."""

from __future__ import annotations

import json

import pytest

from feedback.models import Span, Trace
from tests.fixtures.api import post_json
from tests.fixtures.organizations import in_tenant, unique


def test_resend_keeps_client_cost_and_recomputes_computed_cost(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    paid, computed = unique(), unique()
    base = {"feature": "f", "provider": "openai", "model": "gpt-4o-mini"}
    post_json(client_a, "/api/v1/traces", json.dumps({"batch": [
        {"trace_id": paid, **base, "cost_usd": 7.0},
        {"trace_id": computed, **base, "input_tokens": 1_000_000},
    ]}).encode())  # fmt: skip
    post_json(client_a, "/api/v1/traces", json.dumps({"batch": [
        {"trace_id": paid, **base, "input_tokens": 1_000_000},
        {"trace_id": computed, **base, "output_tokens": 1_000_000},
    ]}).encode())  # fmt: skip
    with in_tenant(org_a):
        paid_row = Trace.objects.get(trace_id=paid)
        assert (float(paid_row.cost_usd or 0), paid_row.cost_source) == (7.0, "client")
        # 1M input at $0.15 + 1M output at $0.60, from the merged tokens
        assert float(Trace.objects.get(trace_id=computed).cost_usd or 0) == pytest.approx(0.75)


def test_resent_span_merges_instead_of_wiping(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    trace_id = unique()
    span = {"span_id": "l1", "name": "chat", "kind": "llm", "model": "gpt-4o-mini", "input_tokens": 10,
            "attributes": {"a": 1}}  # fmt: skip
    post_json(client_a, "/api/v1/traces", json.dumps({"trace_id": trace_id, "feature": "f", "spans": [span]}).encode())
    later = {"span_id": "l1", "end": "2025-01-01T00:00:01Z", "attributes": {"b": 2}}
    post_json(client_a, "/api/v1/traces", json.dumps({"trace_id": trace_id, "feature": "f", "spans": [later]}).encode())
    with in_tenant(org_a):
        stored = Span.objects.get(trace_id=trace_id, span_id="l1")
        assert (stored.name, stored.kind, stored.model, stored.input_tokens) == ("chat", "llm", "gpt-4o-mini", 10)
        assert stored.attributes == {"a": 1, "b": 2} and stored.end is not None


def test_resend_with_an_unpriced_model_clears_the_stale_cost(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    trace_id = unique()
    first = {"trace_id": trace_id, "feature": "f", "model": "gpt-4o-mini", "input_tokens": 1_000_000}
    post_json(client_a, "/api/v1/traces", json.dumps(first).encode())
    response = post_json(client_a, "/api/v1/traces", json.dumps({**first, "model": "no-such-model"}).encode())
    assert response.json()["warnings"][0]["field"] == "model"
    with in_tenant(org_a):
        row = Trace.objects.get(trace_id=trace_id)
        assert row.cost_usd is None and row.cost_source == ""


def test_repeats_of_a_span_within_one_batch_merge(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    trace_id = unique()
    spans = [
        {"span_id": "s1", "name": "chat", "kind": "llm", "input_tokens": 7, "attributes": {"a": 1}},
        {"span_id": "s1", "end": "2025-01-01T00:00:01Z", "attributes": {"b": 2}},
    ]
    post_json(client_a, "/api/v1/traces", json.dumps({"trace_id": trace_id, "feature": "f", "spans": spans}).encode())
    with in_tenant(org_a):
        span = Span.objects.get(trace_id=trace_id, span_id="s1")
        assert (span.name, span.kind, span.input_tokens, span.attributes) == ("chat", "llm", 7, {"a": 1, "b": 2})
        assert span.end is not None


def test_a_prompt_version_widens_its_first_and_last_seen_and_fills_its_text(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    from feedback.models import PromptVersion

    label, feature = unique("pv"), unique("feat")

    def send(day: str, **fields: object) -> None:
        body = {"trace_id": unique(), "feature": feature, "prompt_version": label,
                "started_at": f"2025-02-{day}T10:00:00Z", **fields}  # fmt: skip
        assert post_json(client_a, "/api/v1/traces", json.dumps(body).encode()).status_code == 200

    send("10")
    send("05", model="gpt-4o-mini")  # earlier: first_seen moves back; the empty model is filled
    send("20", model="gpt-4o")  # later: last_seen moves on; the model already set stays
    send("12")  # inside the range: nothing moves
    with in_tenant(org_a):
        version = PromptVersion.objects.get(label=label)
        assert (version.first_seen.day, version.last_seen.day, version.model) == (5, 20, "gpt-4o-mini")
        assert version.feature.key == feature


def test_concurrent_batches_registering_and_widening_the_same_versions_all_commit(committed_db, org_a) -> None:  # type: ignore[no-untyped-def]
    """Batches that each bring new prompt versions and widen versions others registered, at once:
    every batch commits (no deadlock between the new versions' inserts and the widenings)."""
    import threading

    import msgspec
    from django.db import connection

    from feedback import services
    from feedback.models import PromptVersion

    prefix = unique("pvrace")
    # Thread t sends rounds of batches naming versions t, t+1 and t+2 (of 6), days moving both ways.
    bodies = [[msgspec.json.encode({"batch": [
        {"trace_id": f"{prefix}-{t}-{r}-{i}", "feature": "race", "prompt_version": f"{prefix}-v{(t + i) % 6}",
         "started_at": f"2025-03-{1 + (r * 7 + i * 3 + t) % 28:02d}T00:00:00Z"}
        for i in range(3)]}) for r in range(8)] for t in range(4)]  # fmt: skip
    errors: list[BaseException] = []

    def send(own: list[bytes]) -> None:
        try:
            with in_tenant(org_a):
                for body in own:
                    services.traces_ingest(body=body)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(own,)) for own in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with in_tenant(org_a):
        assert Trace.objects.filter(trace_id__startswith=prefix).count() == 4 * 8 * 3
        assert PromptVersion.objects.filter(label__startswith=prefix).count() == 6
