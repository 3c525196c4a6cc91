"""OTLP -> Candor trace mapping, fed with spans from the real OpenTelemetry SDK.

Pure Python: no Django, no database. Spans are recorded by a real TracerProvider,
encoded by the real OTLP exporter encoder, then parsed back by ``feedback.otlp``.
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from feedback.otlp import OtlpError, otlp_map, otlp_parse, otlp_response

T0 = 1_735_732_800_000_000_000  # 2025-01-01T12:00:00Z in ns
MS = 1_000_000


def _child(tracer: trace_api.Tracer, parent: trace_api.Span, name: str, **kwargs: Any):
    return tracer.start_span(name, context=trace_api.set_span_in_context(parent), **kwargs)


def _record_spans() -> list[ReadableSpan]:
    """Two traces: a RAG answer (root, retrieval, LLM, tool) and a failed one."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": "support-copilot",
                "candor.metadata.region": "eu-west",
            }
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("candor.tests", "1.0")

    # Trace 1: root -> retrieval, LLM call (current semconv), tool call.
    root = tracer.start_span(
        "POST /answer",
        kind=SpanKind.SERVER,
        start_time=T0,
        attributes={
            "candor.trace_id": "tr_support_1",
            "candor.customer_id": "cus_acme",
            "candor.user_id": "usr_42",
            "candor.session_id": "ses_9",
            "candor.metadata.auth": "sso",
            "candor.metadata.plan": "enterprise",
            "http.route": "/answer",
        },
    )
    retrieval = _child(
        tracer,
        root,
        "vector search",
        start_time=T0 + 5 * MS,
        attributes={"db.system": "pgvector", "db.operation": "SELECT", "k": 5},
    )
    retrieval.end(end_time=T0 + 45 * MS)
    llm = _child(
        tracer,
        root,
        "chat claude-3-5-haiku",
        kind=SpanKind.CLIENT,
        start_time=T0 + 50 * MS,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-3-5-haiku",
            "gen_ai.response.model": "claude-3-5-haiku-20241022",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 180,
            "gen_ai.usage.cache_read.input_tokens": 800,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.input.messages": json.dumps(
                [
                    {
                        "role": "system",
                        "parts": [{"type": "text", "content": "Be kind."}],
                    },
                    {
                        "role": "user",
                        "parts": [{"type": "text", "content": "How do I reset SSO?"}],
                    },
                ]
            ),
            "gen_ai.output.messages": json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": "Ask your IdP admin."}],
                        "finish_reason": "stop",
                    }
                ]
            ),
            "candor.feature": "support-copilot-v",
            "candor.prompt_version": "support-v2.3",
            "candor.prompt_hash": "abc123",
            "candor.metadata.auth": "password",  # the root's value wins
            "candor.cost_usd": 0.0021,
        },
    )
    llm.end(end_time=T0 + 950 * MS)
    tool = _child(
        tracer,
        root,
        "execute_tool lookup_ticket",
        start_time=T0 + 960 * MS,
        attributes={
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "lookup",
        },
    )
    tool.end(end_time=T0 + 990 * MS)
    root.end(end_time=T0 + 1_000 * MS)

    # Trace 2 (later): older attribute names, content in span events, an error, no
    # candor.feature (falls back to service.name).
    root2 = tracer.start_span(
        "summarize",
        start_time=T0 + 60_000 * MS,
        attributes={"candor.fallback": True, "candor.experiment": "exp1"},
    )
    llm2 = _child(
        tracer,
        root2,
        "chat gemini",
        start_time=T0 + 60_010 * MS,
        attributes={
            "gen_ai.system": "gcp.gemini",
            "gen_ai.request.model": "gemini-2.0-flash",
            "gen_ai.usage.prompt_tokens": 300,
            "gen_ai.usage.completion_tokens": 50,
        },
    )
    llm2.add_event("gen_ai.user.message", {"content": "Summarize this memo."})
    llm2.add_event("gen_ai.choice", {"index": 0, "message": json.dumps({"content": "Memo."})})
    llm2.end(end_time=T0 + 60_400 * MS)
    llm3 = _child(
        tracer,
        root2,
        "chat gemini again",
        start_time=T0 + 60_500 * MS,
        attributes={
            "gen_ai.system": "gcp.gemini",
            "gen_ai.response.model": "gemini-2.0-flash",
            "gen_ai.usage.prompt_tokens": 100,
            "gen_ai.usage.completion_tokens": 20,
            "gen_ai.completion": "Final memo summary.",
        },
    )
    llm3.set_status(Status(StatusCode.ERROR, "rate limited"))
    llm3.end(end_time=T0 + 60_700 * MS)
    root2.end(end_time=T0 + 61_000 * MS)

    spans = list(exporter.get_finished_spans())
    provider.shutdown()
    return spans


@pytest.fixture(scope="module")
def spans() -> list[ReadableSpan]:
    return _record_spans()


@pytest.fixture(scope="module")
def protobuf_body(spans: list[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def _b64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def to_otlp_json(request: Any) -> bytes:
    """Protobuf JSON mapping -> OTLP JSON (hex ids, integer enums), as sent."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    for rs in document.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = _b64_to_hex(span[key])
    return json.dumps(document).encode()


def test_protobuf_maps_traces(protobuf_body: bytes) -> None:
    traces = otlp_parse(protobuf_body, "application/x-protobuf")
    assert [t["trace_id"] for t in traces] == ["tr_support_1", traces[1]["trace_id"]]
    first, second = traces

    spans = first.pop("spans")
    assert first == {
        "trace_id": "tr_support_1",
        "feature": "support-copilot-v",  # candor.feature beats service.name
        "prompt_version": "support-v2.3",
        "prompt_hash": "abc123",
        "customer_id": "cus_acme",
        "user_id": "usr_42",
        "session_id": "ses_9",
        "model": "claude-3-5-haiku",
        "provider": "anthropic",
        "input_tokens": 1200,
        "output_tokens": 180,
        "cached_tokens": 800,
        "input": "How do I reset SSO?",
        "output": "Ask your IdP admin.",
        "cost_usd": pytest.approx(0.0021),
        "status": "ok",
        "metadata": {
            "auth": "sso",
            "plan": "enterprise",
            "region": "eu-west",
            "otel_trace_id": first["metadata"]["otel_trace_id"],
        },
        "started_at": "2025-01-01T12:00:00.000000Z",
        "latency_ms": 1000.0,
    }
    assert len(first["metadata"]["otel_trace_id"]) == 32

    assert [(s["name"], s["kind"]) for s in spans] == [
        ("POST /answer", "other"),
        ("vector search", "retrieval"),
        ("chat claude-3-5-haiku", "llm"),
        ("execute_tool lookup_ticket", "tool"),
    ]
    root, retrieval, llm, tool = spans
    assert root["parent_span_id"] is None
    assert {
        retrieval["parent_span_id"],
        llm["parent_span_id"],
        tool["parent_span_id"],
    } == {root["span_id"]}
    assert all(len(s["span_id"]) == 16 for s in spans)
    assert root["start"] == "2025-01-01T12:00:00.000000Z"
    assert root["end"] == "2025-01-01T12:00:01.000000Z"
    assert llm["start"] == "2025-01-01T12:00:00.050000Z"
    assert llm["model"] == "claude-3-5-haiku"
    assert (llm["input_tokens"], llm["output_tokens"]) == (1200, 180)
    assert llm["cost_usd"] == pytest.approx(0.0021)
    assert retrieval["model"] is None and retrieval["input_tokens"] is None
    # Remaining attributes are kept flat; mapped ones (model, tokens, candor.*) are not.
    assert llm["attributes"]["gen_ai.response.model"] == "claude-3-5-haiku-20241022"
    assert llm["attributes"]["gen_ai.request.temperature"] == 0.2
    assert llm["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]
    assert llm["attributes"]["otel.span_kind"] == "client"
    assert "gen_ai.request.model" not in llm["attributes"]
    assert "gen_ai.usage.input_tokens" not in llm["attributes"]
    assert not any(k.startswith("candor.") for s in spans for k in s["attributes"])
    assert retrieval["attributes"]["k"] == 5
    assert root["attributes"]["http.route"] == "/answer"
    for span in spans:
        assert set(span) == {
            "span_id",
            "parent_span_id",
            "name",
            "kind",
            "start",
            "end",
            "model",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "attributes",
        }
        json.dumps(span)  # JSON-serializable as is

    # Second trace: older names, events, error status, service.name as the feature.
    assert len(second["trace_id"]) == 32
    assert second["trace_id"] == second["metadata"]["otel_trace_id"]
    assert second["feature"] == "support-copilot"
    assert second["status"] == "error"
    assert second["model"] == "gemini-2.0-flash"
    assert second["provider"] == "google"
    assert second["input_tokens"] == 400  # summed over both LLM spans
    assert second["output_tokens"] == 70
    assert second["input"] == "Summarize this memo."  # first LLM span, from an event
    assert second["output"] == "Final memo summary."  # last LLM span, older attribute
    assert second["fallback"] is True
    assert second["experiment"] == "exp1"
    assert second["started_at"] == "2025-01-01T12:01:00.000000Z"
    assert second["latency_ms"] == 1000.0
    # None-valued keys are omitted, never sent as null.
    for absent in (
        "prompt_version",
        "customer_id",
        "cost_usd",
        "cached_tokens",
        "variant",
    ):
        assert absent not in second
    assert None not in second.values()
    error_span = next(s for s in second["spans"] if s["name"] == "chat gemini again")
    assert error_span["attributes"]["otel.status_code"] == "ERROR"
    assert error_span["attributes"]["otel.status_message"] == "rate limited"
    assert error_span["model"] == "gemini-2.0-flash"


def test_json_encoding_gives_the_same_traces(spans: list[ReadableSpan], protobuf_body: bytes) -> None:
    body = to_otlp_json(encode_spans(spans))
    assert b'"traceId": "' in body and b"==" not in body  # hex ids, as OTLP JSON has
    from_json = otlp_parse(body, "application/json; charset=utf-8")
    assert from_json == otlp_parse(protobuf_body, "application/x-protobuf")


def test_hand_written_otlp_json() -> None:
    """A payload in the shape of the OTLP spec's JSON example (intValue as strings)."""
    payload = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {
                            "key": "service.name",
                            "value": {"stringValue": "search-answers"},
                        },
                        {
                            "key": "candor.customer_id",
                            "value": {"stringValue": "cus_globex"},
                        },
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "my.library", "version": "1.0.0"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "parentSpanId": "",
                                "name": "chat gpt-4o-mini",
                                "kind": 3,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661500000000",
                                "attributes": [
                                    {
                                        "key": "gen_ai.request.model",
                                        "value": {"stringValue": "gpt-4o-mini"},
                                    },
                                    {
                                        "key": "gen_ai.system",
                                        "value": {"stringValue": "openai"},
                                    },
                                    {
                                        "key": "gen_ai.usage.input_tokens",
                                        "value": {"intValue": "321"},
                                    },
                                    {
                                        "key": "gen_ai.usage.output_tokens",
                                        "value": {"intValue": 54},
                                    },
                                    {
                                        "key": "gen_ai.prompt.0.role",
                                        "value": {"stringValue": "system"},
                                    },
                                    {
                                        "key": "gen_ai.prompt.0.content",
                                        "value": {"stringValue": "You answer."},
                                    },
                                    {
                                        "key": "gen_ai.prompt.1.role",
                                        "value": {"stringValue": "user"},
                                    },
                                    {
                                        "key": "gen_ai.prompt.1.content",
                                        "value": {"stringValue": "best laptop?"},
                                    },
                                    {
                                        "key": "gen_ai.completion.0.content",
                                        "value": {"stringValue": "It depends."},
                                    },
                                    {
                                        "key": "candor.guardrail_blocked",
                                        "value": {"boolValue": False},
                                    },
                                    {
                                        "key": "candor.metadata.tier",
                                        "value": {"intValue": "3"},
                                    },
                                    {
                                        "key": "tags",
                                        "value": {
                                            "arrayValue": {
                                                "values": [
                                                    {"stringValue": "a"},
                                                    {"stringValue": "b"},
                                                ]
                                            }
                                        },
                                    },
                                    {
                                        "key": "http",
                                        "value": {
                                            "kvlistValue": {
                                                "values": [
                                                    {
                                                        "key": "status",
                                                        "value": {"intValue": "200"},
                                                    }
                                                ]
                                            }
                                        },
                                    },
                                ],
                                "status": {},
                                "someFutureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    (trace,) = otlp_parse(json.dumps(payload).encode(), "application/json")
    spans = trace.pop("spans")
    assert trace == {
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "feature": "search-answers",
        "customer_id": "cus_globex",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "input_tokens": 321,
        "output_tokens": 54,
        "input": "best laptop?",
        "output": "It depends.",
        "status": "ok",
        "guardrail_blocked": False,
        "metadata": {"tier": "3", "otel_trace_id": "5b8efff798038103d269b633813fc60c"},
        "started_at": "2018-12-13T14:51:00.000000Z",
        "latency_ms": 1500.0,
    }
    (span,) = spans
    assert span["span_id"] == "eee19b7ec3c1b174"
    assert span["parent_span_id"] is None
    assert span["kind"] == "llm"
    assert span["attributes"]["tags"] == ["a", "b"]
    assert span["attributes"]["http.status"] == 200  # kvlist flattened
    assert span["attributes"]["otel.scope.name"] == "my.library"


def test_gzip_body_is_inflated(protobuf_body: bytes) -> None:
    assert otlp_parse(gzip.compress(protobuf_body), "application/x-protobuf") == otlp_parse(
        protobuf_body, "application/x-protobuf"
    )


def test_spans_of_one_trace_across_resources_form_one_trace(
    spans: list[ReadableSpan],
) -> None:
    # Two services exporting parts of one distributed trace, in two resourceSpans.
    first_trace = [s for s in spans if s.name in ("POST /answer", "vector search")]
    other = [s for s in spans if s.name == "chat claude-3-5-haiku"]
    request = encode_spans(first_trace)
    request.resource_spans.extend(encode_spans(other).resource_spans)
    traces = otlp_parse(request.SerializeToString(), "application/x-protobuf")
    assert len(traces) == 1
    assert traces[0]["trace_id"] == "tr_support_1"
    assert traces[0]["model"] == "claude-3-5-haiku"
    assert len(traces[0]["spans"]) == 3


def test_partial_batch_without_root_uses_earliest_orphan(
    spans: list[ReadableSpan],
) -> None:
    # BatchSpanProcessor may export children before their root.
    children = [s for s in spans if s.name in ("vector search", "chat claude-3-5-haiku")]
    body = encode_spans(children).SerializeToString()
    (trace,) = otlp_parse(body, "application/x-protobuf")
    # candor.trace_id sat on the root, which is not in this batch: the OTel id is used,
    # and metadata.otel_trace_id lets the server join the two halves.
    assert trace["trace_id"] == trace["metadata"]["otel_trace_id"]
    assert trace["prompt_version"] == "support-v2.3"
    assert trace["started_at"] == "2025-01-01T12:00:00.005000Z"
    assert trace["latency_ms"] == 40.0


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", "application/x-protobuf"),
        (b"", "application/json"),
        (b"{}", "application/json"),
        (b'{"resourceSpans": []}', "application/json"),
    ],
)
def test_empty_request_gives_no_traces(body: bytes, content_type: str) -> None:
    assert otlp_parse(body, content_type) == []


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"\xff\xfe garbage \x00\x01", "application/x-protobuf", "protobuf"),
        (b"not json", "application/json", "JSON"),
        (b"  \n", "application/json", "not valid JSON"),  # whitespace alone is no JSON text (an empty body is)
        (b"[1, 2]", "application/json", "object"),
        (b'{"resourceSpans": "nope"}', "application/json", "OTLP JSON"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz!"}]}]}]}',
            "application/json",
            "OTLP JSON",
        ),
        # A string where a message belongs would parse as an empty message: an export of nothing.
        (b'{"resourceSpans": [{"resource": {}, "scopeSpans": ["AAA"]}]}', "application/json", r"scopeSpans\[0\]"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": ["x"]}]}]}', "application/json", "must be an object"),
        (b'{"resourceSpans": [{"scopeSpans": {"spans": []}}]}', "application/json", "must be a list"),
        (b'{"resourceSpans": [{"resource": "svc"}]}', "application/json", r"resourceSpans\[0\]\.resource"),
        # The protobuf parser would read these as an enum number 0 and as empty bytes.
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"status": {"code": 2.5e-42}}]}]}]}',
            "application/json",
            "name or a whole number",
        ),
        (
            b'{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": {"bytesValue": "!!"}}]}}]}',
            "application/json",
            "must be base64",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "1_000"}]}]}]}',
            "application/json",
            "not a valid integer",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", "too deeply"),
        (b"{}", "text/plain", "content type"),
        (b"{}", "", "content type"),
        (b"\x1f\x8bnot really gzip", "application/x-protobuf", "gzip"),
    ],
)
def test_bad_input_raises_otlp_error(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(OtlpError, match=message):
        otlp_parse(body, content_type)


def test_invalid_span_ids_are_rejected() -> None:
    payload = {
        "resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "", "spanId": "eee19b7ec3c1b174", "name": "x"}]}]}]
    }
    with pytest.raises(OtlpError, match="trace_id"):
        otlp_parse(json.dumps(payload).encode(), "application/json")


def test_with_a_collector_a_json_span_with_an_unreadable_id_is_refused_alone() -> None:
    def span(name: str, span_id: str) -> dict[str, Any]:
        return {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": span_id, "name": name}

    # A hex id ending in a newline passed a "$" match and then failed the parser: the whole body refused.
    payload = {"resourceSpans": [{"scopeSpans": [{"spans": [
        span("good", "b7ad6b7169203331"), span("newline", "b7ad6b716920333\n"), span("not hex", "zz")]}]}]}  # fmt: skip
    refused: list[str] = []
    ((trace, spans),) = otlp_map(json.dumps(payload).encode(), "application/json", refused=refused)
    assert [s.name for s in spans] == ["good"]
    assert refused == [
        "span 'newline' has an invalid span_id ('b7ad6b716920333\\n': neither 16 hex digits nor base64)",
        "span 'not hex' has an invalid span_id ('zz': neither 16 hex digits nor base64)",
    ]
    with pytest.raises(OtlpError):  # without a collector, as before: the body is refused
        otlp_map(json.dumps(payload).encode(), "application/json")


def test_otlp_error_is_a_value_error() -> None:
    assert issubclass(OtlpError, ValueError)


def _one_span_request(attributes: dict[str, Any], name: str = "step", service: str = "svc") -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("t").start_span(name, start_time=T0, attributes=attributes)
    span.end(end_time=T0 + 10 * MS)
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def test_service_name_is_made_a_valid_feature_key() -> None:
    (trace,) = otlp_parse(_one_span_request({}, service="My Support Bot (beta)"), "application/x-protobuf")
    assert trace["feature"] == "My-Support-Bot-beta"
    (trace,) = otlp_parse(_one_span_request({}, service="  "), "application/x-protobuf")
    assert trace["feature"] == "unknown_service"


def test_long_texts_are_clipped_to_the_api_limits() -> None:
    body = _one_span_request({"gen_ai.request.model": "m", "gen_ai.completion": "x" * 250_000}, name="n" * 400)
    (trace,) = otlp_parse(body, "application/x-protobuf")
    assert len(trace["output"]) == 200_000 and trace["output"].endswith("\u2026")
    assert trace["metadata"]["candor_clipped"] == "output"  # the clip is recorded, never silent
    assert len(trace["spans"][0]["name"]) == 300


def test_embeddings_are_retrieval_and_not_counted_as_the_llm_call() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "search"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    root = tracer.start_span("answer", start_time=T0, attributes={"candor.cost_usd": "0.5"})
    embed = _child(
        tracer,
        root,
        "embeddings text-embedding-3-small",
        start_time=T0 + MS,
        attributes={
            "gen_ai.operation.name": "embeddings",
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.usage.input_tokens": 12,
            "candor.cost_usd": 0.1,
        },
    )
    embed.end(end_time=T0 + 2 * MS)
    chat = _child(
        tracer,
        root,
        "chat",
        start_time=T0 + 3 * MS,
        attributes={
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 10,
            "candor.metadata.team": "search",
            "candor.guardrail_blocked": "true",
        },
    )
    chat.end(end_time=T0 + 4 * MS)
    root.end(end_time=T0 + 5 * MS)
    (trace,) = otlp_parse(encode_spans(exporter.get_finished_spans()).SerializeToString(), "application/x-protobuf")
    assert trace["model"] == "gpt-4o"
    assert (trace["input_tokens"], trace["output_tokens"]) == (100, 10)
    assert trace["cost_usd"] == 0.5  # the root's cost is the trace's; span costs not added on top
    assert trace["guardrail_blocked"] is True
    assert trace["metadata"]["team"] == "search"
    kinds = {s["name"]: s["kind"] for s in trace["spans"]}
    assert kinds == {"answer": "other", "embeddings text-embedding-3-small": "retrieval", "chat": "llm"}
    embed_span = next(s for s in trace["spans"] if s["kind"] == "retrieval")
    assert embed_span["model"] == "text-embedding-3-small" and embed_span["cost_usd"] == 0.1


def test_mapped_traces_pass_the_api_schema(protobuf_body: bytes) -> None:
    """The dicts decode with the traces API's own msgspec struct (when Django-free)."""
    try:
        import msgspec

        from feedback.schemas import TraceIn
    except Exception as exc:  # the schemas module may grow a Django import
        pytest.skip(f"feedback.schemas not importable without Django: {exc}")
    for trace in otlp_parse(protobuf_body, "application/x-protobuf"):
        decoded = msgspec.json.decode(json.dumps(trace), type=TraceIn)
        assert decoded.trace_id == trace["trace_id"]
        assert len(decoded.spans or ()) == len(trace["spans"])


def test_otlp_response_in_the_request_encoding() -> None:
    body, content_type = otlp_response("application/x-protobuf")
    assert content_type == "application/x-protobuf"
    assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")

    body, content_type = otlp_response("application/x-protobuf", rejected_spans=3, error_message="bad feature")
    partial = ExportTraceServiceResponse.FromString(body).partial_success
    assert (partial.rejected_spans, partial.error_message) == (3, "bad feature")

    body, content_type = otlp_response("application/json; charset=utf-8", rejected_spans=2, error_message="x")
    assert content_type == "application/json"
    assert json.loads(body) == {"partialSuccess": {"rejectedSpans": "2", "errorMessage": "x"}}
    assert json.loads(otlp_response("application/json")[0]) == {}


@pytest.mark.parametrize(
    "value",
    [
        {"stringValue": "1e3000000"},
        {"stringValue": "1e5000"},
        {"doubleValue": "Infinity"},
        {"doubleValue": 2.5},
        {"intValue": "-5"},
    ],  # fmt: skip
)
def test_token_counts_that_are_no_count_are_left_empty(value: dict[str, object]) -> None:
    """Not a whole count up to 10^12: left empty, never rounded (2.5), never a 500 or a held worker (1e3000000)."""
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "chat",
        "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.usage.input_tokens", "value": value},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "7"}},
        ],
    }
    payload = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    (trace,) = otlp_parse(json.dumps(payload).encode(), "application/json")
    (llm,) = trace["spans"]
    assert llm.get("input_tokens") is None and llm["output_tokens"] == 7


def test_span_times_are_written_as_datetime_writes_them() -> None:
    """The mapping writes span times (OTLP nanoseconds) as RFC 3339 text from cached pieces: exactly what
    datetime.isoformat writes for the moment, cut to whole microseconds, or None when unset; OTLP's
    unsigned 64-bit nanoseconds end in 2554, all of it tried."""
    import random

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    rng = random.Random(11)
    second = 1_000_000_000
    edges = [0, 1, 999, 1000, 1001, second - 1, second, T0, T0 + 999_999_999, 2**63 - 1, 2**64 - 1]
    moments = edges + [rng.randrange(1, 2**64) for _ in range(3000)]
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i, ns in enumerate(moments):
        spans.add(trace_id=(i + 1).to_bytes(16, "big"), span_id=b"\x01" * 8, name="s", start_time_unix_nano=ns,
                  end_time_unix_nano=ns)  # fmt: skip
    traces = otlp_parse(request.SerializeToString(), "application/x-protobuf")
    written = {int(t["metadata"]["otel_trace_id"], 16) - 1: t["spans"][0]["start"] for t in traces}
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for i, ns in enumerate(moments):
        expected = None
        if ns > 0:
            moment = epoch + timedelta(microseconds=ns // 1000)
            expected = moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
        assert written[i] == expected, ns
