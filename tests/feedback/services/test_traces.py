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


# --- Usage from spans: a trace that sends no tokens or cost of its own --------------------------


def _trace(org, trace_id: str) -> Trace:  # type: ignore[no-untyped-def]
    with in_tenant(org):
        return Trace.objects.get(trace_id=trace_id)


def _llm(span_id: str, **fields: object) -> dict[str, object]:
    return {"span_id": span_id, "name": "chat", "kind": "llm", **fields}


def test_a_trace_with_usage_only_on_its_spans_sums_them_each_priced_at_its_model(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    trace_id = unique()
    spans = [
        _llm("a", model="gpt-4o-mini", input_tokens=1_000_000, output_tokens=1_000_000, start="2025-03-01T10:00:00Z"),
        _llm("b", model="gpt-4o", input_tokens=1_000_000, start="2025-03-01T10:00:01Z"),
        _llm("c", cost_usd=0.5, start="2025-03-01T10:00:02Z"),  # its cost as sent
        {"span_id": "r", "name": "search", "kind": "retrieval", "input_tokens": 999},  # not an LLM call
    ]
    body = {"trace_id": trace_id, "feature": "f", "provider": "openai", "started_at": "2025-03-01T10:00:00Z",
            "spans": spans}  # fmt: skip
    response = post_json(client_a, "/api/v1/traces", json.dumps(body).encode())
    assert response.status_code == 200 and response.json().get("warnings", []) == []
    row = _trace(org_a, trace_id)
    # gpt-4o-mini: 1M in at $0.15 + 1M out at $0.60; gpt-4o: 1M in at $2.50; the third span's $0.50
    assert (row.input_tokens, row.output_tokens) == (2_000_000, 1_000_000)
    assert float(row.cost_usd or 0) == pytest.approx(0.15 + 0.60 + 2.50 + 0.5)
    assert (row.cost_source, row.model) == ("spans", "gpt-4o-mini")  # the first LLM span's model


def test_later_spans_move_the_sums_and_usage_the_trace_sends_itself_wins(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    trace_id = unique()
    base = {"trace_id": trace_id, "feature": "f", "model": "gpt-4o-mini"}
    post_json(client_a, "/api/v1/traces", json.dumps({**base, "spans": [_llm("a", input_tokens=1_000_000)]}).encode())
    assert float(_trace(org_a, trace_id).cost_usd or 0) == pytest.approx(0.15)
    # A later batch brings the next LLM call: the sums take it in.
    post_json(client_a, "/api/v1/traces", json.dumps({**base, "spans": [_llm("b", output_tokens=1_000_000)]}).encode())
    row = _trace(org_a, trace_id)
    assert (row.input_tokens, row.output_tokens, row.cost_source) == (1_000_000, 1_000_000, "spans")
    assert float(row.cost_usd or 0) == pytest.approx(0.75)
    # A resend with no spans and no usage, to another model: the spans are priced at it.
    post_json(client_a, "/api/v1/traces", json.dumps({**base, "model": "gpt-4o"}).encode())
    assert float(_trace(org_a, trace_id).cost_usd or 0) == pytest.approx(2.50 + 10.00)
    # The trace says its own usage: it wins over the spans', now and after.
    post_json(client_a, "/api/v1/traces", json.dumps({**base, "input_tokens": 10, "output_tokens": 10}).encode())
    post_json(client_a, "/api/v1/traces", json.dumps({**base, "spans": [_llm("c", input_tokens=5_000_000)]}).encode())
    row = _trace(org_a, trace_id)
    assert (row.input_tokens, row.output_tokens) == (10, 10) and row.cost_source.startswith("default:")


def test_a_trace_that_sends_usage_keeps_it_whatever_its_spans_say(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    paid, counted = unique(), unique()
    spans = [_llm("a", model="gpt-4o", input_tokens=1_000_000)]
    post_json(client_a, "/api/v1/traces", json.dumps({"batch": [
        {"trace_id": paid, "feature": "f", "cost_usd": 0.01, "spans": spans},
        {"trace_id": counted, "feature": "f", "model": "gpt-4o-mini", "input_tokens": 1_000_000, "spans": spans},
    ]}).encode())  # fmt: skip
    assert (float(_trace(org_a, paid).cost_usd or 0), _trace(org_a, paid).input_tokens) == (0.01, None)
    assert float(_trace(org_a, counted).cost_usd or 0) == pytest.approx(0.15)


def test_a_span_model_with_no_price_keeps_the_tokens_and_says_so(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    trace_id = unique()
    spans = [_llm("x", model="no-such-model", input_tokens=7)]
    body = {"batch": [{"trace_id": unique(), "feature": "f"}, {"trace_id": trace_id, "feature": "f", "spans": spans}]}
    warnings = post_json(client_a, "/api/v1/traces", json.dumps(body).encode()).json()["warnings"]
    assert [(w["index"], w["field"]) for w in warnings] == [(1, "spans")]
    assert "no-such-model" in warnings[0]["message"] and "'x'" in warnings[0]["message"]
    row = _trace(org_a, trace_id)
    assert (row.input_tokens, row.cost_usd, row.model) == (7, None, "no-such-model")


def test_spend_counters_follow_usage_from_spans(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    from django.db.models import Sum

    from feedback.models import SpendCounter

    customer, trace_id = unique("cus"), unique()
    base = {"trace_id": trace_id, "feature": "f", "customer_id": customer, "started_at": "2025-03-01T10:00:00Z"}
    post_json(client_a, "/api/v1/traces", json.dumps({**base, "spans": [_llm("a", model="gpt-4o-mini",
              input_tokens=1_000_000)]}).encode())  # fmt: skip
    post_json(client_a, "/api/v1/traces", json.dumps({**base, "spans": [_llm("b", model="gpt-4o-mini",
              output_tokens=1_000_000)]}).encode())  # fmt: skip
    with in_tenant(org_a):
        counters = SpendCounter.objects.filter(customer_id=customer)
        assert list(counters.values_list("model", "traces")) == [("gpt-4o-mini", 1)]
        assert float(counters.aggregate(total=Sum("cost_usd"))["total"]) == pytest.approx(0.75)
        stored = Trace.objects.filter(customer_id=customer).aggregate(total=Sum("cost_usd"))["total"]
        assert float(stored) == pytest.approx(0.75)


def test_a_cost_too_large_to_store_is_left_empty_with_a_warning(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime
    from decimal import Decimal

    from feedback.services.prices import model_price_create

    model = unique("huge")
    with in_tenant(org_a):
        model_price_create(provider="acme", model=model, input_per_mtok=Decimal("5000"),
                           output_per_mtok=Decimal("5000"), cached_per_mtok=None,
                           effective_from=datetime(2020, 1, 1, tzinfo=UTC))  # fmt: skip
    sent, spanned, kept = unique(), unique(), unique()
    body = {"batch": [
        {"trace_id": kept, "feature": "f"},
        {"trace_id": sent, "feature": "f", "provider": "acme", "model": model, "input_tokens": 10**12},
        {"trace_id": spanned, "feature": "f", "provider": "acme",
         "spans": [_llm("a", model=model, input_tokens=10**12)]},
    ]}  # fmt: skip
    response = post_json(client_a, "/api/v1/traces", json.dumps(body).encode())
    assert response.status_code == 200, response.content  # it was a 500 that lost the whole batch
    assert response.json()["accepted"] == 3
    assert sorted((w["index"], w["field"]) for w in response.json()["warnings"]) == [(1, "cost_usd"), (2, "spans")]
    assert "past the largest" in response.json()["warnings"][0]["message"]
    assert _trace(org_a, sent).cost_usd is None and _trace(org_a, spanned).input_tokens == 10**12


def test_usage_a_trace_sends_replaces_its_spans_usage_whole(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    """A trace priced from its spans that then sends one count of its own kept the spans' other count (billed on
    a mix of the two)."""
    trace_id = unique()
    base = {"trace_id": trace_id, "feature": "f", "model": "gpt-4o-mini"}
    post_json(client_a, "/api/v1/traces", json.dumps({**base, "spans": [_llm("a", output_tokens=1_000_000)]}).encode())
    assert _trace(org_a, trace_id).cost_source == "spans"
    post_json(client_a, "/api/v1/traces", json.dumps({**base, "input_tokens": 1_000_000}).encode())
    row = _trace(org_a, trace_id)
    assert (row.input_tokens, row.output_tokens) == (1_000_000, None)
    assert float(row.cost_usd or 0) == pytest.approx(0.15) and row.cost_source.startswith("default:")


def test_spans_without_a_model_are_priced_at_the_first_spans_model_on_every_send(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    """The first pass found no price for a model-less span (the trace named none) and the next, finding the first
    span's model taken by the trace, priced it: a resend changed the cost."""
    trace_id = unique()
    spans = [_llm("a", model="gpt-4o-mini", input_tokens=1_000_000, start="2025-03-01T10:00:00Z"),
             _llm("b", input_tokens=1_000_000, start="2025-03-01T10:00:01Z")]  # fmt: skip
    first = post_json(
        client_a, "/api/v1/traces", json.dumps({"trace_id": trace_id, "feature": "f", "spans": spans}).encode()
    )
    assert first.json().get("warnings", []) == []
    assert float(_trace(org_a, trace_id).cost_usd or 0) == pytest.approx(0.30)
    post_json(client_a, "/api/v1/traces", json.dumps({"trace_id": trace_id, "feature": "f"}).encode())
    assert float(_trace(org_a, trace_id).cost_usd or 0) == pytest.approx(0.30)


def test_span_token_sums_past_what_a_trace_counts_are_no_count(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    trace_id = unique()
    spans = [_llm(name, model="gpt-4o-mini", input_tokens=10**12) for name in ("a", "b")]
    body = {"trace_id": trace_id, "feature": "f", "spans": spans}
    [warning] = post_json(client_a, "/api/v1/traces", json.dumps(body).encode()).json()["warnings"]
    assert warning["field"] == "spans" and "add up past" in warning["message"]
    row = _trace(org_a, trace_id)
    assert (row.input_tokens, row.cost_usd) == (None, None)


def test_a_trace_calling_several_models_counts_its_spend_per_model(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    """All of an agent trace's spend was counted under its first call's model: a budget narrowed to gpt-4o saw none
    of its gpt-4o calls, and one narrowed to gpt-4o-mini saw all of them. Each model counts its own cost now; the
    trace counts once, under its own model. A rebuild of the counters from the traces counts the same."""
    from decimal import Decimal

    from django.db import connection

    from feedback.models import SpendCounter
    from feedback.services.spend import spend_counters_rebuild

    customer, trace_id = unique("cus"), unique()
    spans = [_llm("a", model="gpt-4o-mini", input_tokens=1_000_000, start="2025-03-01T10:00:00Z"),
             _llm("b", model="gpt-4o", input_tokens=1_000_000, start="2025-03-01T10:00:01Z"),
             _llm("c", model="gpt-4o", cost_usd=0.25, start="2025-03-01T10:00:02Z")]  # fmt: skip
    body = {"trace_id": trace_id, "feature": "f", "customer_id": customer, "started_at": "2025-03-01T10:00:00Z"}
    post_json(client_a, "/api/v1/traces", json.dumps({**body, "spans": spans}).encode())

    def counted() -> dict[str, tuple[Decimal, int]]:
        with in_tenant(org_a):
            rows = SpendCounter.objects.filter(customer_id=customer).values_list("model", "cost_usd", "traces")
            return {model: (cost, traces) for model, cost, traces in rows if (cost, traces) != (0, 0)}

    assert counted() == {"gpt-4o-mini": (Decimal("0.15"), 1), "gpt-4o": (Decimal("2.75"), 0)}
    row = _trace(org_a, trace_id)
    assert row.cost_usd == Decimal("2.9") and row.cost_by_model == {"gpt-4o-mini": "0.15000000", "gpt-4o": "2.75000000"}
    # The trace sends its own usage: its spend is its own again, under its model.
    post_json(
        client_a, "/api/v1/traces", json.dumps({**body, "model": "gpt-4o-mini", "input_tokens": 1_000_000}).encode()
    )
    assert counted() == {"gpt-4o-mini": (Decimal("0.15"), 1)} and _trace(org_a, trace_id).cost_by_model is None
    another = {**body, "trace_id": unique(), "spans": spans}
    post_json(client_a, "/api/v1/traces", json.dumps(another).encode())
    before = counted()
    with in_tenant(org_a), connection.cursor() as cursor:
        spend_counters_rebuild(cursor.cursor)
    assert counted() == before == {"gpt-4o-mini": (Decimal("0.30"), 2), "gpt-4o": (Decimal("2.75"), 0)}


def _counters_match_a_rebuild(org, customer: str) -> None:  # type: ignore[no-untyped-def]
    """The customer's spend counters equal what a recount of the stored traces gives (rows at zero aside)."""
    from django.db import connection, transaction

    from feedback.models import SpendCounter
    from feedback.services.spend import spend_counters_rebuild

    def counted() -> dict[tuple[object, ...], tuple[object, int]]:
        rows = SpendCounter.objects.filter(customer_id=customer).values_list("day", "feature_id", "model", "cost_usd",
                                                                            "traces")  # fmt: skip
        return {(d, f, m): (c, n) for d, f, m, c, n in rows if (c, n) != (0, 0)}

    with in_tenant(org):
        kept = counted()
        with transaction.atomic(), connection.cursor() as cursor:
            spend_counters_rebuild(cursor.cursor)
        assert kept == counted()


def test_a_trace_priced_per_model_is_resent_and_summed_again(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    """A resend of a trace priced span by span across several models (its next LLM call, or its metadata alone)
    was a 500 that lost the batch: its cost per model came back from the database as text."""
    customer, trace_id = unique("cus"), unique()
    body = {"trace_id": trace_id, "feature": "f", "customer_id": customer, "started_at": "2025-03-01T10:00:00Z"}
    spans = [_llm("a", model="gpt-4o-mini", input_tokens=1_000_000, start="2025-03-01T10:00:00Z"),
             _llm("b", model="gpt-4o", input_tokens=1_000_000, start="2025-03-01T10:00:01Z")]  # fmt: skip
    assert post_json(client_a, "/api/v1/traces", json.dumps({**body, "spans": spans}).encode()).status_code == 200
    later = [_llm("c", model="gpt-4o", output_tokens=1_000_000, start="2025-03-01T10:00:02Z")]
    assert post_json(client_a, "/api/v1/traces", json.dumps({**body, "spans": later}).encode()).status_code == 200
    resent = {**body, "metadata": {"auth": "sso"}}
    assert post_json(client_a, "/api/v1/traces", json.dumps(resent).encode()).status_code == 200
    row = _trace(org_a, trace_id)
    assert float(row.cost_usd or 0) == pytest.approx(0.15 + 2.50 + 10.00)
    assert row.cost_by_model == {"gpt-4o-mini": "0.15000000", "gpt-4o": "12.50000000"}
    _counters_match_a_rebuild(org_a, customer)


def test_a_guessed_feature_never_moves_a_named_trace_and_a_named_one_moves_a_guessed_one(db, org_a) -> None:  # type: ignore[no-untyped-def]
    """The merge rule itself (tables.FEATURE), for two OTLP exports of one trace racing past the endpoint's look at
    the stored trace: a write whose feature is only the service's name keeps the stored trace's named feature."""
    from feedback.schemas import TraceIn
    from feedback.services.traces import traces_store

    named, guessed_first, both_guessed = unique(), unique(), unique()

    def store(trace_id: str, feature: str, guessed: bool) -> None:
        item = TraceIn(trace_id=trace_id, feature=feature)
        traces_store(items=[(0, item)], expect_known=True, feature_guessed={trace_id} if guessed else set())

    with in_tenant(org_a):
        for trace_id, writes in (
            (named, [("root-feature", False), ("support-app", True)]),
            (guessed_first, [("support-app", True), ("root-feature", False)]),
            (both_guessed, [("support-app", True), ("support-worker", True)]),
        ):
            for feature, guessed in writes:
                store(trace_id, feature, guessed)
        stored = {t.trace_id: (t.feature.key, t.feature_guessed) for t in Trace.objects.select_related("feature")}
    assert stored[named] == ("root-feature", False)
    assert stored[guessed_first] == ("root-feature", False)
    assert stored[both_guessed] == ("support-worker", True)
