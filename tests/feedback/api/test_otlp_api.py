"""OTLP end to end: the official opentelemetry-sdk exporter sends real spans to the live server."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
import requests
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from tests.fixtures.organizations import unique
from tests.helpers import assert_cross_tenant_404


def _provider(live, key: str, compression: Compression = Compression.NoCompression) -> TracerProvider:  # type: ignore[no-untyped-def]
    exporter = OTLPSpanExporter(
        endpoint=f"{live.url}/api/v1/otlp/v1/traces",
        headers={"Authorization": f"Bearer {key}"},
        compression=compression,
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def test_sdk_exporter_spans_become_a_trace(live, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    trace_id = unique("otel")
    provider = _provider(live, org_a.secret_key, Compression.Gzip)
    tracer = provider.get_tracer("candor-tests")
    with tracer.start_as_current_span("answer-ticket") as root:
        root.set_attribute("candor.trace_id", trace_id)
        root.set_attribute("candor.feature", "support-copilot")
        root.set_attribute("candor.prompt_version", "support-v2.3")
        root.set_attribute("candor.customer_id", "cus_otel")
        root.set_attribute("candor.metadata.auth", "sso")
        with tracer.start_as_current_span("retrieve") as retrieve:
            retrieve.set_attribute("db.system", "pgvector")
        with tracer.start_as_current_span("chat gpt-4o-mini") as llm:
            llm.set_attribute("candor.trace_id", trace_id)
            llm.set_attribute("gen_ai.system", "openai")
            llm.set_attribute("gen_ai.request.model", "gpt-4o-mini")
            llm.set_attribute("gen_ai.usage.input_tokens", 1200)
            llm.set_attribute("gen_ai.usage.output_tokens", 300)
            llm.set_attribute("gen_ai.prompt", "Where is my parcel?")
            llm.set_attribute("gen_ai.completion", "It arrives on Tuesday.")
    provider.force_flush()
    provider.shutdown()

    got = live.api(org_a.secret_key).get(f"/api/v1/traces/{trace_id}")
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["feature"] == "support-copilot" and body["prompt_version"] == "support-v2.3"
    assert body["model"] == "gpt-4o-mini" and body["provider"] == "openai"
    assert (body["input_tokens"], body["output_tokens"]) == (1200, 300)
    assert body["output"] == "It arrives on Tuesday."
    assert body["customer_id"] == "cus_otel" and body["metadata"]["auth"] == "sso"
    assert body["cost_usd"] is not None  # computed from the price table
    kinds = {s["name"]: s["kind"] for s in body["spans"]}
    assert kinds == {"answer-ticket": "other", "retrieve": "retrieval", "chat gpt-4o-mini": "llm"}
    assert_cross_tenant_404(live.api(org_b.secret_key), f"/api/v1/traces/{trace_id}")


def test_error_span_marks_the_trace(live, org_a) -> None:  # type: ignore[no-untyped-def]
    trace_id = unique("otel")
    provider = _provider(live, org_a.secret_key)
    with provider.get_tracer("t").start_as_current_span("summarize") as span:
        span.set_attribute("candor.trace_id", trace_id)
        span.set_attribute("candor.feature", "summarize")
        span.set_status(Status(StatusCode.ERROR, "upstream timeout"))
    provider.shutdown()
    assert live.api(org_a.secret_key).get(f"/api/v1/traces/{trace_id}").json()["status"] == "error"


def test_otlp_bad_input_and_keys(live, org_a) -> None:  # type: ignore[no-untyped-def]
    url = f"{live.url}/api/v1/otlp/v1/traces"
    auth = {"Authorization": f"Bearer {org_a.secret_key}"}
    garbage = requests.post(
        url, data=b"\x00\xffnot protobuf", headers={**auth, "Content-Type": "application/x-protobuf"}
    )
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "invalid_otlp"
    wrong_type = requests.post(url, data=b"<xml/>", headers={**auth, "Content-Type": "application/xml"})
    # OTLP/HTTP: an unsupported Content-Type is 415 Unsupported Media Type (it was a 400).
    assert wrong_type.status_code == 415 and wrong_type.json()["error"]["code"] == "unsupported_media_type"
    no_key = requests.post(url, data=gzip.compress(b""), headers={"Content-Type": "application/x-protobuf"})
    assert no_key.status_code == 401
    public = requests.post(url, data=b"", headers={"Authorization": f"Bearer {org_a.public_key}",
                                                   "Content-Type": "application/x-protobuf"})  # fmt: skip
    assert public.status_code == 403
    empty = requests.post(url, data=b"{}", headers={**auth, "Content-Type": "application/json"})
    assert empty.status_code == 200 and empty.headers["Content-Type"].startswith("application/json")


def test_clipped_text_is_reported_not_silent(live, org_a) -> None:  # type: ignore[no-untyped-def]
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    from tests.feedback.test_otlp import _one_span_request

    body = _one_span_request({"gen_ai.request.model": "gpt-4o-mini", "gen_ai.completion": "x" * 250_000,
                              "candor.feature": "summarize"})  # fmt: skip
    response = requests.post(
        f"{live.url}/api/v1/otlp/v1/traces",
        data=body,
        headers={"Authorization": f"Bearer {org_a.secret_key}", "Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert "output clipped to 200,000 characters" in answer.partial_success.error_message


def test_a_feature_name_that_is_no_key_is_stored_under_the_key_it_makes(live, org_a) -> None:  # type: ignore[no-untyped-def]
    """candor.feature "Support Copilot" (the display name, with a space) rejected the whole trace in the OTLP
    answer, which the SDK exporters drop: the spans were lost without a word. Now the trace is stored under
    the key the name makes, the trace says what was sent, and so does the answer."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    from tests.feedback.test_otlp import _one_span_request

    auth = {"Authorization": f"Bearer {org_a.secret_key}", "Content-Type": "application/x-protobuf"}
    for sent, stored in (("Support Copilot", "Support-Copilot"), ("  ünïcode feature!  ", "n-code-feature"),
                         ("ok-key-", "ok-key-")):  # fmt: skip
        trace_id = unique("feat")
        body = _one_span_request({"candor.trace_id": trace_id, "candor.feature": sent,
                                  "gen_ai.request.model": "gpt-4o-mini"})  # fmt: skip
        response = requests.post(f"{live.url}/api/v1/otlp/v1/traces", data=body, headers=auth)
        answer = ExportTraceServiceResponse.FromString(response.content)
        assert response.status_code == 200 and answer.partial_success.rejected_spans == 0
        got = requests.get(f"{live.url}/api/v1/traces/{trace_id}", headers={"Authorization": auth["Authorization"]})
        assert got.status_code == 200 and got.json()["feature"] == stored, got.content
        if sent == stored:  # a valid key stays as it is, with nothing to say
            assert "candor_feature_sent" not in got.json()["metadata"] and not answer.partial_success.error_message
        else:
            assert got.json()["metadata"]["candor_feature_sent"] == sent
            assert f"candor.feature {sent!r} is not a feature key" in answer.partial_success.error_message
            assert f"stored under {stored!r}" in answer.partial_success.error_message


def test_a_token_count_that_is_no_count_is_kept_and_said_not_dropped(live, org_a) -> None:  # type: ignore[no-untyped-def]
    """gen_ai.usage.input_tokens = -5 vanished: the trace had no input tokens, nothing said why, and the value
    was gone. It is still not counted (the REST path refuses it; instrumentation cannot be told), but the span
    keeps it in its attributes, the trace's metadata names it and so does the OTLP answer."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    from tests.feedback.test_otlp import _one_span_request

    trace_id = unique("neg")
    body = _one_span_request({"candor.trace_id": trace_id, "candor.feature": "summarize",
                              "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": -5,
                              "gen_ai.usage.output_tokens": 40})  # fmt: skip
    auth = {"Authorization": f"Bearer {org_a.secret_key}"}
    response = requests.post(f"{live.url}/api/v1/otlp/v1/traces", data=body,
                             headers={**auth, "Content-Type": "application/x-protobuf"})  # fmt: skip
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert response.status_code == 200 and answer.partial_success.rejected_spans == 0
    assert f"trace {trace_id}: gen_ai.usage.input_tokens not a token count" in answer.partial_success.error_message
    stored = requests.get(f"{live.url}/api/v1/traces/{trace_id}", headers=auth).json()
    assert stored["input_tokens"] is None and stored["output_tokens"] == 40
    assert stored["metadata"]["candor_not_counted"] == "gen_ai.usage.input_tokens"
    [span] = stored["spans"]
    assert span["input_tokens"] is None and span["attributes"]["gen_ai.usage.input_tokens"] == -5
    assert "gen_ai.usage.output_tokens" not in span["attributes"]  # a count is a span field, not an attribute


def test_a_trace_exported_in_two_requests_sums_both_and_a_resend_doubles_nothing(live, org_a, committed_db) -> None:  # type: ignore[no-untyped-def]
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from feedback.models import Span, SpendCounter, Trace
    from tests.fixtures.organizations import in_tenant

    customer, feature = unique("cus"), unique("feat")
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("candor-tests")
    with tracer.start_as_current_span("answer", attributes={"candor.feature": feature, "candor.customer_id": customer}):
        for tokens in (1000, 3000):
            attributes = {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
                          "gen_ai.usage.input_tokens": tokens, "gen_ai.usage.output_tokens": tokens // 10}  # fmt: skip
            with tracer.start_as_current_span("chat", attributes=attributes):
                pass
    spans = exporter.get_finished_spans()  # in end order: both calls, then the root
    otel_id = format(spans[0].context.trace_id, "032x")
    # The first call in one export; the second and the root (with the candor.* attributes) in the next.
    first, second = (encode_spans(part).SerializeToString() for part in (spans[:1], spans[1:]))
    headers = {"Authorization": f"Bearer {org_a.secret_key}", "Content-Type": "application/x-protobuf"}
    for body in (first, second, first, second):  # the exporter retried both
        assert requests.post(f"{live.url}/api/v1/otlp/v1/traces", data=body, headers=headers).status_code == 200

    with in_tenant(org_a):
        trace = Trace.objects.get(trace_id=otel_id)
        assert (trace.input_tokens, trace.output_tokens) == (4000, 400)
        assert trace.feature.key == feature and trace.customer_id == customer
        # gpt-4o-mini: $0.15 / M input, $0.60 / M output, for the calls of both exports
        assert float(trace.cost_usd or 0) == pytest.approx((4000 * 0.15 + 400 * 0.60) / 1e6)
        assert Span.objects.filter(trace_id=otel_id).count() == 3
        counted = SpendCounter.objects.filter(customer_id=customer)
        assert sum(c.traces for c in counted) == 1
        assert sum(c.cost_usd for c in counted) == trace.cost_usd


def test_cached_tokens_of_a_trace_in_two_exports_count_as_the_mapping_counts_them(live, org_a, committed_db) -> None:  # type: ignore[no-untyped-def]
    """Summing a split trace's spans again cast gen_ai.usage.cached_tokens to bigint: "many" was a 500 that lost
    the export, and the other cached keys the mapping reads (cache_read.input_tokens, today's) were not read."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from feedback.models import Trace
    from tests.fixtures.organizations import in_tenant

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("candor-tests")
    cached: list[dict[str, Any]] = [
        {"gen_ai.usage.cached_tokens": "many"},
        {"gen_ai.usage.cache_read.input_tokens": 30},
        {"gen_ai.usage.cached_tokens": "12"},
        {"gen_ai.usage.cached_tokens": "9" * 140_000},  # past what a numeric holds: a cast was a 500 again
    ]
    with tracer.start_as_current_span("answer", attributes={"candor.feature": unique("feat")}):
        for extra in cached:
            attributes = {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
                          "gen_ai.usage.input_tokens": 100, **extra}  # fmt: skip
            with tracer.start_as_current_span("chat", attributes=attributes):
                pass
    spans = exporter.get_finished_spans()
    otel_id = format(spans[0].context.trace_id, "032x")
    headers = {"Authorization": f"Bearer {org_a.secret_key}", "Content-Type": "application/x-protobuf"}
    for part in (spans[:1], spans[1:]):
        body = encode_spans(part).SerializeToString()
        assert requests.post(f"{live.url}/api/v1/otlp/v1/traces", data=body, headers=headers).status_code == 200
    with in_tenant(org_a):
        trace = Trace.objects.get(trace_id=otel_id)
    assert (trace.input_tokens, trace.cached_tokens) == (400, 42)  # "many" counts for nothing, as in one export


def test_an_export_joining_a_trace_priced_from_its_rest_spans_keeps_their_prices(live, org_a, committed_db) -> None:  # type: ignore[no-untyped-def]
    """A REST trace priced span by span (one span's cost as sent) was repriced at the trace's model when an OTLP
    export joined it: the sent cost was lost and later spans never summed again."""
    from feedback.models import Trace
    from tests.fixtures.organizations import in_tenant

    trace_id, feature = unique("mix"), unique("feat")
    auth = {"Authorization": f"Bearer {org_a.secret_key}"}
    spans = [{"span_id": "a", "kind": "llm", "model": "gpt-4o-mini", "input_tokens": 1_000_000},
             {"span_id": "b", "kind": "llm", "cost_usd": 0.5}]  # fmt: skip
    sent = requests.post(f"{live.url}/api/v1/traces", json={"trace_id": trace_id, "feature": feature, "spans": spans},
                         headers=auth)  # fmt: skip
    assert sent.status_code == 200
    attributes = [{"key": "candor.trace_id", "value": {"stringValue": trace_id}},
                  {"key": "candor.feature", "value": {"stringValue": feature}}]  # fmt: skip
    export = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": uuid.uuid4().hex, "spanId": uuid.uuid4().hex[:16], "name": "lookup",
        "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
        "attributes": attributes}]}]}]}  # fmt: skip
    joined = requests.post(f"{live.url}/api/v1/otlp/v1/traces", json=export, headers=auth)
    assert joined.status_code == 200, joined.content
    with in_tenant(org_a):
        trace = Trace.objects.get(trace_id=trace_id)
    assert (float(trace.cost_usd or 0), trace.cost_source) == (pytest.approx(0.65), "spans")
    assert trace.input_tokens == 1_000_000


@pytest.mark.parametrize("split", [False, True], ids=["one export", "two exports"])
def test_a_trace_calling_several_models_is_priced_span_by_span(live, org_a, committed_db, split: bool) -> None:  # type: ignore[no-untyped-def]
    """All of a trace's tokens were priced at its first LLM span's model: gpt-4o-mini's rates for a gpt-4o call
    too (11x under). Each span is priced at its own model now, in one export or across two."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from feedback.models import SpendCounter, Trace
    from tests.fixtures.organizations import in_tenant

    customer = unique("cus")
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("candor-tests")
    root: dict[str, str] = {"candor.feature": unique("feat"), "candor.customer_id": customer}
    with tracer.start_as_current_span("answer", attributes=root):
        for model, tokens_in, tokens_out in (("gpt-4o-mini", 1000, 200), ("gpt-4o", 2000, 300)):
            attributes: dict[str, str | int] = {"gen_ai.system": "openai", "gen_ai.request.model": model,
                          "gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out}  # fmt: skip
            with tracer.start_as_current_span("chat", attributes=attributes):
                pass
    spans = exporter.get_finished_spans()
    otel_id = format(spans[0].context.trace_id, "032x")
    headers = {"Authorization": f"Bearer {org_a.secret_key}", "Content-Type": "application/x-protobuf"}
    for part in (spans[:1], spans[1:]) if split else (spans,):
        body = encode_spans(part).SerializeToString()
        assert requests.post(f"{live.url}/api/v1/otlp/v1/traces", data=body, headers=headers).status_code == 200
    with in_tenant(org_a):
        trace = Trace.objects.get(trace_id=otel_id)
        counted = list(SpendCounter.objects.filter(customer_id=customer))
    # gpt-4o-mini: 1000 x $0.15 + 200 x $0.60 a million; gpt-4o: 2000 x $2.50 + 300 x $10.00 a million
    assert float(trace.cost_usd or 0) == pytest.approx(0.00027 + 0.008)
    assert (trace.input_tokens, trace.output_tokens, trace.cost_source) == (3000, 500, "spans")
    # The trace names one model: its first LLM call's, or across exports the later export's (a merge's later wins).
    assert trace.model == ("gpt-4o" if split else "gpt-4o-mini")
    assert sum(c.traces for c in counted) == 1 and sum(c.cost_usd for c in counted) == trace.cost_usd
    per_model = {c.model: c.cost_usd for c in counted if c.cost_usd}  # a budget by model counts each model's own
    assert per_model == {"gpt-4o-mini": Decimal("0.00027"), "gpt-4o": Decimal("0.008")}


def test_a_time_to_first_token_past_the_root_span_is_left_out_and_said(live, org_a) -> None:  # type: ignore[no-untyped-def]
    """candor.ttft_ms past the root span's own duration (its latency) is stored as the traces API stores it: the
    trace without it, and the OTLP answer says so."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    from tests.feedback.test_otlp import _one_span_request

    trace_id = unique("ttft")
    body = _one_span_request({"candor.trace_id": trace_id, "candor.feature": "summarize", "candor.ttft_ms": 25})
    auth = {"Authorization": f"Bearer {org_a.secret_key}"}
    response = requests.post(f"{live.url}/api/v1/otlp/v1/traces", data=body,
                             headers={**auth, "Content-Type": "application/x-protobuf"})  # fmt: skip
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert response.status_code == 200 and answer.partial_success.rejected_spans == 0
    said = f"trace {trace_id}: ttft_ms 25 is longer than latency_ms 10 (the whole call): stored without it"
    assert said in answer.partial_success.error_message
    stored = requests.get(f"{live.url}/api/v1/traces/{trace_id}", headers=auth).json()
    assert stored["ttft_ms"] is None and stored["latency_ms"] == 10


def _export(spans: list[dict[str, Any]], trace_hex: str) -> dict[str, Any]:
    """An OTLP JSON export of ``spans`` ({name, id, parent?, attributes}) in one trace."""

    def one(span: dict[str, Any]) -> dict[str, Any]:
        attributes = [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
                      for k, v in span["attributes"].items()]  # fmt: skip
        return {"traceId": trace_hex, "spanId": span["id"], "parentSpanId": span.get("parent", ""),
                "name": span["name"], "startTimeUnixNano": str(span.get("start", 1_700_000_000_000_000_000)),
                "endTimeUnixNano": str(span.get("start", 1_700_000_000_000_000_000) + 10**9),
                "attributes": attributes}  # fmt: skip

    return {"resourceSpans": [{"scopeSpans": [{"spans": [one(span) for span in spans]}]}]}


def _chat(span_id: str, model: str | None, tokens: int) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.system": "openai", "gen_ai.usage.input_tokens": tokens}
    if model:
        attributes["gen_ai.request.model"] = model
    return {"name": "chat", "id": span_id, "parent": "a" * 16, "attributes": attributes}


def test_a_trace_priced_per_model_takes_its_root_span_last(live, org_a, committed_db) -> None:  # type: ignore[no-untyped-def]
    """Three exports of one trace (a gpt-4o-mini call, a gpt-4o call, then the root span alone, as the SDK's batch
    processor sends them): the third was a 500 that lost it (the trace's cost per model read back as text)."""
    from feedback.models import Trace
    from tests.feedback.services.test_traces import _counters_match_a_rebuild
    from tests.fixtures.organizations import in_tenant

    customer, trace_hex = unique("cus"), uuid.uuid4().hex
    auth = {"Authorization": f"Bearer {org_a.secret_key}"}
    root = {
        "name": "answer",
        "id": "a" * 16,
        "attributes": {"candor.feature": unique("feat"), "candor.customer_id": customer},
    }
    for spans in ([_chat("b" * 16, "gpt-4o-mini", 1_000_000)], [_chat("c" * 16, "gpt-4o", 1_000_000)], [root]):
        answer = requests.post(f"{live.url}/api/v1/otlp/v1/traces", json=_export(spans, trace_hex), headers=auth)
        assert answer.status_code == 200, answer.content
    with in_tenant(org_a):
        trace = Trace.objects.get(trace_id=trace_hex)
    # Priced at the spans' time (November 2023): gpt-4o's first list price, $5.00 a million input tokens.
    assert float(trace.cost_usd or 0) == pytest.approx(0.15 + 5.00) and trace.cost_source == "spans"
    _counters_match_a_rebuild(org_a, customer)


def test_a_span_naming_no_model_counts_as_the_traces_model(live, org_a, committed_db) -> None:  # type: ignore[no-untyped-def]
    """A span with no model beside a gpt-4o one: the export counted two models, the re-sum one (''), and the trace
    was left unpriced with a warning about a merge. Each span is priced, the model-less one at the trace's model."""
    from feedback.models import Trace
    from tests.fixtures.organizations import in_tenant

    trace_hex = uuid.uuid4().hex
    root = {"name": "answer", "id": "a" * 16, "attributes": {"candor.feature": unique("feat")}}
    # An OpenInference LLM span that names no model (an LLM span by its kind, not by a model attribute).
    unnamed = {"name": "llm", "id": "b" * 16, "parent": "a" * 16, "start": 1_700_000_000_000_000_001,
               "attributes": {"openinference.span.kind": "LLM", "llm.token_count.prompt": 1_000_000}}  # fmt: skip
    spans: list[dict[str, Any]] = [root, unnamed,
             {**_chat("c" * 16, "gpt-4o", 1_000_000), "start": 1_700_000_000_000_000_002}]  # fmt: skip
    answer = requests.post(f"{live.url}/api/v1/otlp/v1/traces", json=_export(spans, trace_hex),
                           headers={"Authorization": f"Bearer {org_a.secret_key}"})  # fmt: skip
    assert answer.status_code == 200 and "merged" not in answer.text, answer.content
    with in_tenant(org_a):
        trace = Trace.objects.get(trace_id=trace_hex)
    assert float(trace.cost_usd or 0) == pytest.approx(5.00 + 5.00)  # gpt-4o in November 2023: $5.00 a million


def test_an_orphan_is_adopted_only_into_a_stored_trace(live, org_a, committed_db) -> None:  # type: ignore[no-untyped-def]
    """An export linking an orphan (spans stored under their bare OTel ID) to a trace whose item it refused deleted
    the orphan and left its spans under no trace; into a stored trace whose item it refused, the trace took the
    orphan's model and the spend counters kept the old one."""
    from feedback.models import Span, Trace
    from tests.feedback.services.test_traces import _counters_match_a_rebuild
    from tests.fixtures.organizations import in_tenant

    auth = {"Authorization": f"Bearer {org_a.secret_key}"}
    future = 4_000_000_000_000_000_000  # 2096: refused
    customer = unique("cus")
    stored = unique("tr")
    body = {"trace_id": stored, "feature": "f", "customer_id": customer, "cost_usd": 1.0}
    sent = requests.post(f"{live.url}/api/v1/traces", headers=auth, json=body)
    assert sent.status_code == 200
    for real in (stored, unique("never")):
        orphan = uuid.uuid4().hex
        first = requests.post(f"{live.url}/api/v1/otlp/v1/traces", headers=auth,
                              json=_export([_chat("b" * 16, "gpt-4o", 1000)], orphan))  # fmt: skip
        assert first.status_code == 200
        linking = {"name": "answer", "id": "a" * 16, "start": future,
                   "attributes": {"candor.trace_id": real, "candor.feature": "f"}}  # fmt: skip
        second = requests.post(f"{live.url}/api/v1/otlp/v1/traces", json=_export([linking], orphan), headers=auth)
        assert second.status_code == 200 and "future" in second.text, second.content
        with in_tenant(org_a):
            assert Trace.objects.filter(trace_id=orphan).exists() or Trace.objects.filter(trace_id=real).exists()
            assert all(
                Trace.objects.filter(trace_id=s.trace_id).exists() for s in Span.objects.filter(span_id="b" * 16)
            )
    _counters_match_a_rebuild(org_a, customer)


def test_an_otlp_export_stores_the_rows_its_rest_batch_stores(live, org_a, org_b, committed_db) -> None:  # type: ignore[no-untyped-def]
    """The OTLP path writes exactly what POST /api/v1/traces writes for the traces the export maps to."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from feedback.models import Feature, Span, SpendCounter, Trace
    from feedback.otlp import otlp_parse
    from tests.fixtures.organizations import in_tenant

    feature = unique("feat")
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("candor-tests")
    for i in range(3):
        root_attributes: dict[str, str | bool] = {
                           "candor.feature": feature, "candor.customer_id": f"cus_{i}", "candor.prompt_version": "v1",
                           "candor.metadata.plan": "pro", "candor.fallback": i == 1, "session.id": f"s{i}"}  # fmt: skip
        with tracer.start_as_current_span("answer", attributes=root_attributes):
            with tracer.start_as_current_span("retrieve", attributes={"db.system": "pgvector", "retrieval.k": 4}):
                pass
            chat: dict[str, str | int | float | tuple[str, ...]] = {
                    "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 10**i, "gen_ai.usage.output_tokens": 7,
                    "gen_ai.request.temperature": 0.25, "gen_ai.response.finish_reasons": ("stop",),
                    "gen_ai.prompt": f"question {i}", "gen_ai.completion": f"answer {i}"}  # fmt: skip
            if i == 2:
                chat["candor.cost_usd"] = 0.123456789  # more decimals than the column keeps
            with tracer.start_as_current_span("chat", attributes=chat) as span:
                span.set_status(Status(StatusCode.ERROR, "rate limited") if i == 1 else Status(StatusCode.OK))
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    headers = {"Authorization": f"Bearer {org_a.secret_key}", "Content-Type": "application/x-protobuf"}
    assert requests.post(f"{live.url}/api/v1/otlp/v1/traces", data=body, headers=headers).status_code == 200
    items = otlp_parse(body, "application/x-protobuf")
    rest = live.api(org_b.secret_key).post("/api/v1/traces", json={"batch": items})
    assert rest.status_code == 200, rest.text

    def stored(org):  # type: ignore[no-untyped-def]
        with in_tenant(org):
            traces = {t["trace_id"]: t for t in Trace.objects.filter(feature__key=feature).values()}
            for t in traces.values():
                for column in ("id", "received_at", "feature_id", "prompt_version_id"):
                    del t[column]
            spans = list(Span.objects.filter(trace_id__in=traces).order_by("trace_id", "span_id").values())
            counters = SpendCounter.objects.filter(feature_id=Feature.objects.get(key=feature).id)
            spend = sorted(counters.values_list("customer_id", "day", "model", "cost_usd", "traces"))
        return traces, spans, spend

    otlp_rows, rest_rows = stored(org_a), stored(org_b)
    assert len(otlp_rows[0]) == 3 and len(otlp_rows[1]) == 9
    assert otlp_rows == rest_rows


def test_bad_traces_of_an_export_are_refused_one_by_one_and_the_rest_stored(live, org_a, committed_db) -> None:  # type: ignore[no-untyped-def]
    import time

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from feedback.models import Span, Trace
    from tests.fixtures.organizations import in_tenant

    good, long_customer, nul, future = (unique(name) for name in ("good", "long", "nul", "future"))
    # A candor.trace_id no trace can have (too long; a NUL) is refused as its trace, not a 500 of the export.
    long_id, nul_id = "t" * 201, unique("nul-id") + "\x00"
    ids = (good, long_customer, nul, future, long_id, nul_id)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("candor-tests")
    in_two_days = time.time_ns() + 2 * 86_400 * 10**9
    for trace_id, attributes, start in (
        (good, {}, None),
        (long_customer, {"candor.customer_id": "c" * 201}, None),
        (nul, {"gen_ai.prompt": "a\x00b"}, None),
        (future, {}, in_two_days),
        (long_id, {}, None),
        (nul_id, {}, None),
    ):
        with tracer.start_as_current_span("answer", start_time=start, attributes={"candor.trace_id": trace_id}):
            with tracer.start_as_current_span("chat", attributes={"gen_ai.request.model": "gpt-4o-mini", **attributes}):
                pass
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    response = requests.post(f"{live.url}/api/v1/otlp/v1/traces", data=body, headers={
        "Authorization": f"Bearer {org_a.secret_key}", "Content-Type": "application/x-protobuf"})  # fmt: skip
    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 10  # two spans of each refused trace
    message = partial.error_message
    assert f"trace {long_customer}: customer_id" in message
    assert f"trace {nul}: input text must not contain NUL" in message
    assert f"trace {future}: started_at" in message and "in the future" in message
    assert f"trace {long_id}: trace_id" in message and f"trace {nul_id!s}: trace_id" in message
    with in_tenant(org_a):
        assert list(Trace.objects.filter(trace_id__in=ids[:4]).values_list("trace_id", flat=True)) == [good]
        assert not Trace.objects.filter(trace_id__startswith="t" * 200).exists()
        assert Span.objects.filter(trace_id=good).count() == 2


def test_a_span_with_unreadable_ids_is_refused_alone_and_the_rest_of_the_export_kept(  # type: ignore[no-untyped-def]
    live, org_a, committed_db
) -> None:
    """One bad span ID refused the whole export with a 400 (exporters drop a 400: every good span lost). Now the
    span alone is refused in partial_success, by protobuf and by JSON alike."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    from feedback.models import Trace
    from tests.fixtures.organizations import in_tenant

    url = f"{live.url}/api/v1/otlp/v1/traces"
    auth = {"Authorization": f"Bearer {org_a.secret_key}"}
    good_pb, good_json = unique("pb"), unique("js")

    def span(candor_id: str, trace_hex: str, span_id: str, name: str) -> dict[str, Any]:
        return {"traceId": trace_hex, "spanId": span_id, "name": name, "startTimeUnixNano": "1764940000000000000",
                "endTimeUnixNano": "1764940001000000000",
                "attributes": [{"key": "candor.trace_id", "value": {"stringValue": candor_id}}]}  # fmt: skip

    document = {"resourceSpans": [
        {"scopeSpans": [{"spans": [span(good_json, uuid.uuid4().hex, "b7ad6b7169203331", "good")]}]},
        {"scopeSpans": [{"spans": [span(unique("x"), uuid.uuid4().hex, "zz", "not hex"),
                                   span(unique("y"), "00" * 16, "b7ad6b7169203331", "zero trace")]}]},
    ]}  # fmt: skip
    answer = requests.post(url, data=json.dumps(document), headers={**auth, "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "span 'not hex' has an invalid span_id ('zz': neither 16 hex digits nor base64)" in partial["errorMessage"]
    assert "span 'zero trace' has an invalid trace_id (16 bytes; must be 16 non-zero bytes)" in partial["errorMessage"]
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0] = span(
        good_pb, uuid.uuid4().hex, "b7ad6b7169203331", "good"
    )
    document["resourceSpans"][1]["scopeSpans"][0]["spans"][0]["spanId"] = "b7ad6b71"  # 4 bytes by hex
    body = json_format.ParseDict(
        {"resourceSpans": [{"scopeSpans": [{"spans": [
            {**s, "traceId": base64.b64encode(bytes.fromhex(s["traceId"])).decode(),
             "spanId": base64.b64encode(bytes.fromhex(s["spanId"])).decode()}
            for s in rs["scopeSpans"][0]["spans"]]}]} for rs in document["resourceSpans"]]},
        ExportTraceServiceRequest(),
    ).SerializeToString()  # fmt: skip
    answer = requests.post(url, data=body, headers={**auth, "Content-Type": "application/x-protobuf"})
    assert answer.status_code == 200
    partial_pb = ExportTraceServiceResponse.FromString(answer.content).partial_success
    assert partial_pb.rejected_spans == 2 and "invalid span_id (4 bytes" in partial_pb.error_message
    with in_tenant(org_a):
        assert set(Trace.objects.filter(trace_id__in=[good_json, good_pb]).values_list("trace_id", flat=True)) == {
            good_json, good_pb}  # fmt: skip


def test_a_later_export_without_candor_feature_leaves_the_trace_where_it_is(live, org_a, committed_db) -> None:  # type: ignore[no-untyped-def]
    """A child span exported after its root (a slow tool call, a retried export) names no candor.feature: its
    export's trace takes the service name as its feature, and merged over the stored trace it moved the trace
    there, out of the feature its root named (and made a feature of the service). The other way round (children
    first, then the root) the root's feature takes the trace, as before."""
    from feedback.models import Feature, Trace
    from tests.fixtures.organizations import in_tenant

    feature, late_service, early_service = unique("feat"), unique("svc"), unique("svc")
    headers = {"Authorization": f"Bearer {org_a.secret_key}", "Content-Type": "application/json"}
    root = {"name": "answer", "id": "a" * 16, "attributes": {"candor.feature": feature, "candor.customer_id": "c1"}}
    late = _chat("b" * 16, "gpt-4o-mini", 100)
    early = _chat("c" * 16, "gpt-4o-mini", 50)

    def send(spans: list[dict[str, Any]], trace_hex: str) -> None:
        body = _export(spans, trace_hex)
        service = late_service if trace_hex == first else early_service
        body["resourceSpans"][0]["resource"] = {
            "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
        }
        answer = requests.post(f"{live.url}/api/v1/otlp/v1/traces", json=body, headers=headers)
        assert answer.status_code == 200, answer.text

    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    send([root], first)
    send([late], first)  # after its root
    send([early], second)  # before its root
    send([root], second)
    with in_tenant(org_a):
        for otel_id in (first, second):
            trace = Trace.objects.select_related("feature").get(trace_id=otel_id)
            assert (trace.feature.key, trace.customer_id) == (feature, "c1")
            assert trace.input_tokens in (100, 50)
            assert not trace.feature_guessed
        assert not Trace.objects.filter(feature__key__in=(late_service, early_service)).exists()
    send([late], first)  # the late child resent: the trace stays named
    with in_tenant(org_a):
        assert Trace.objects.get(trace_id=first).feature.key == feature
        # The late child's export made no feature of its service; the early one did, before its root came.
        assert not Feature.objects.filter(key=late_service).exists()
        assert Feature.objects.filter(key=early_service).exists()


def test_a_later_child_of_a_trace_named_by_candor_trace_id_keeps_its_feature(live, org_a, committed_db) -> None:  # type: ignore[no-untyped-def]
    """The stored trace's feature is read with the OTel links (one statement): for a child that names no feature,
    under the Candor trace_id its OTel trace is linked to, and under the candor.trace_id a child gives itself."""
    from feedback.models import Feature, Trace
    from tests.fixtures.organizations import in_tenant

    feature, service, real = unique("feat"), unique("svc"), unique("trace")
    headers = {"Authorization": f"Bearer {org_a.secret_key}", "Content-Type": "application/json"}
    otel = uuid.uuid4().hex
    root = {"name": "answer", "id": "a" * 16, "attributes": {"candor.trace_id": real, "candor.feature": feature}}
    linked = _chat("b" * 16, "gpt-4o-mini", 100)  # only its OTel trace id: the link names its trace
    explicit = _chat("c" * 16, "gpt-4o-mini", 50)
    explicit["attributes"]["candor.trace_id"] = real

    def send(spans: list[dict[str, Any]]) -> None:
        body = _export(spans, otel)
        resource = [{"key": "service.name", "value": {"stringValue": service}}]
        body["resourceSpans"][0]["resource"] = {"attributes": resource}
        answer = requests.post(f"{live.url}/api/v1/otlp/v1/traces", json=body, headers=headers)
        assert answer.status_code == 200, answer.text

    for spans in ([root], [linked], [explicit]):
        send(spans)
        with in_tenant(org_a):
            trace = Trace.objects.select_related("feature").get(trace_id=real)
            assert (trace.feature.key, trace.feature_guessed) == (feature, False)
    with in_tenant(org_a):
        assert trace.input_tokens == 150
        assert not Trace.objects.filter(trace_id=otel).exists()
        assert not Feature.objects.filter(key=service).exists()


def test_a_child_exported_apart_from_its_root_neither_loses_its_error_nor_takes_the_roots_times(  # type: ignore[no-untyped-def]
    live, org_a, committed_db
) -> None:
    """The SDK's batch processor splits traces across exports, children usually first: the root's export set the
    trace's status from the root alone (a child's error was lost: the trace read "ok"), and a child exported after
    its root replaced the root's start and latency with its own."""
    from feedback.models import Trace
    from tests.fixtures.organizations import in_tenant

    headers = {"Authorization": f"Bearer {org_a.secret_key}", "Content-Type": "application/json"}
    t0 = 1_700_000_000_000_000_000
    root = {"name": "answer", "id": "a" * 16, "start": t0, "attributes": {"candor.feature": unique("feat")}}
    child = {**_chat("b" * 16, "gpt-4o-mini", 100), "start": t0 + 500_000_000}  # 0.5 s after the root, 3 s long

    def send(span: dict[str, Any], trace_hex: str) -> None:
        body = _export([span], trace_hex)
        body["resourceSpans"][0]["resource"] = {"attributes": [{"key": "service.name", "value": {"stringValue": "a"}}]}
        if span is child:
            sent = body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
            sent["status"] = {"code": 2, "message": "rate limited"}
            sent["endTimeUnixNano"] = str(t0 + 3_500_000_000)
        answer = requests.post(f"{live.url}/api/v1/otlp/v1/traces", json=body, headers=headers)
        assert answer.status_code == 200, answer.text

    early, late = uuid.uuid4().hex, uuid.uuid4().hex
    for trace_hex, order in ((early, (child, root)), (late, (root, child, child))):
        for span in order:
            send(span, trace_hex)
    with in_tenant(org_a):
        for trace_hex in (early, late):
            trace = Trace.objects.get(trace_id=trace_hex)
            assert trace.status == "error"
            assert trace.started_at.timestamp() == 1_700_000_000  # the root's start, not its child's
            assert trace.latency_ms == 1000.0 and not trace.root_missing  # the root's 1 s, not its child's 3
    # Only the child, so far: its start stands, and the root's export then takes over.
    alone = uuid.uuid4().hex
    send(child, alone)
    with in_tenant(org_a):
        trace = Trace.objects.get(trace_id=alone)
        assert (trace.started_at.timestamp(), trace.status, trace.root_missing) == (1_700_000_000.5, "error", True)
