"""POST /api/v1/otlp/v1/logs on the live server: GenAI log events fill their trace's input and output
whichever arrives first, are stored once however often they are resent, and bad input gets a clear answer."""

from __future__ import annotations

import gzip
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django.conf import settings
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from feedback.models import GenAiMessage
from tests.feedback.test_otlp_logs import export, record
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.server import LiveServer

PROTOBUF = "application/x-protobuf"


def genai_trace(
    trace_id: str, *, calls: int = 1, span_text: bool = False, candor_on_root: bool = True
) -> list[ReadableSpan]:
    """A root span (candor.* attributes) and its LLM calls, as openai-v2 shapes them (no text on the span)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("candor-tests")
    with tracer.start_as_current_span("answer-ticket") as root:
        root.set_attribute("candor.trace_id", trace_id)
        root.set_attribute("candor.feature", "support-copilot")
        for _ in range(calls):
            with tracer.start_as_current_span("chat gpt-4o-mini") as llm:
                llm.set_attribute("gen_ai.system", "openai")
                llm.set_attribute("gen_ai.operation.name", "chat")
                llm.set_attribute("gen_ai.request.model", "gpt-4o-mini")
                llm.set_attribute("gen_ai.usage.input_tokens", 100)
                llm.set_attribute("gen_ai.usage.output_tokens", 20)
                if span_text:
                    llm.set_attribute("gen_ai.prompt", "Text from the span")
                    llm.set_attribute("gen_ai.completion", "Answer from the span")
    provider.shutdown()
    return list(memory.get_finished_spans())


def llm_spans(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith("chat")]


def call_logs(span: ReadableSpan, question: str, answer: str) -> list[Any]:
    trace, span_id = span.context.trace_id.to_bytes(16, "big"), span.context.span_id.to_bytes(8, "big")
    at = span.start_time or 1
    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
    return [
        record("gen_ai.system.message", {"content": "You are a support agent."}, at=at, trace=trace, span=span_id),
        record("gen_ai.user.message", {"content": question}, at=at + 1, trace=trace, span=span_id),
        record("gen_ai.choice", choice, at=at + 2, trace=trace, span=span_id),
    ]


def post(
    live: LiveServer, key: str, what: str, body: bytes, content_type: str = PROTOBUF, **headers: str
) -> requests.Response:
    return requests.post(
        f"{live.url}/api/v1/otlp/v1/{what}",
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": content_type, **headers},
        timeout=60,
    )


def post_logs(live: LiveServer, key: str, records: list[Any]) -> ExportLogsServiceResponse:
    response = post(live, key, "logs", export(*records))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == PROTOBUF
    return ExportLogsServiceResponse.FromString(response.content)


def post_spans(live: LiveServer, key: str, spans: list[ReadableSpan]) -> None:
    response = post(live, key, "traces", encode_spans(spans).SerializeToString())
    assert response.status_code == 200, response.text
    assert not ExportTraceServiceResponse.FromString(response.content).partial_success.error_message


def stored(live: LiveServer, org: Org, trace_id: str) -> dict[str, Any]:
    response = live.api(org.secret_key).get(f"/api/v1/traces/{trace_id}")
    assert response.status_code == 200, response.text
    return response.json()


def messages_of(org: Org, spans: list[ReadableSpan]) -> int:
    with in_tenant(org):
        return GenAiMessage.objects.filter(otel_trace_id=format(spans[0].context.trace_id, "032x")).count()


def test_a_log_before_its_span_is_kept_then_joined(live: LiveServer, org_a: Org, committed_db: None) -> None:
    trace_id = unique("logs")
    spans = genai_trace(trace_id)
    answer = post_logs(live, org_a.secret_key, call_logs(llm_spans(spans)[0], "Where is my parcel?", "Tuesday."))
    assert answer.partial_success.rejected_log_records == 0
    kept = f"3 GenAI messages wait for their trace's spans (kept {settings.GENAI_MESSAGE_RETENTION_DAYS} days)"
    assert kept in answer.partial_success.error_message

    post_spans(live, org_a.secret_key, spans)
    body = stored(live, org_a, trace_id)
    assert (body["input"], body["output"]) == ("Where is my parcel?", "Tuesday.")
    assert (body["model"], body["provider"], body["input_tokens"], body["output_tokens"]) == (
        "gpt-4o-mini", "openai", 100, 20)  # fmt: skip
    assert body["cost_usd"] is not None


def test_a_log_after_its_span_fills_the_trace_and_a_resend_is_stored_once(
    live: LiveServer, org_a: Org, committed_db: None
) -> None:
    trace_id = unique("logs")
    spans = genai_trace(trace_id)
    post_spans(live, org_a.secret_key, spans)
    assert stored(live, org_a, trace_id)["input"] == ""

    logs = call_logs(llm_spans(spans)[0], "Cancel my order", "Done: order cancelled.")
    for _ in range(2):  # an exporter retrying the same request
        answer = post_logs(live, org_a.secret_key, logs)
        assert not answer.HasField("partial_success")
    body = stored(live, org_a, trace_id)
    assert (body["input"], body["output"]) == ("Cancel my order", "Done: order cancelled.")
    assert messages_of(org_a, spans) == 3


def test_later_calls_logged_later_move_the_output_to_the_last_call(
    live: LiveServer, org_a: Org, committed_db: None
) -> None:
    trace_id = unique("logs")
    spans = genai_trace(trace_id, calls=2)
    first, second = llm_spans(spans)
    post_logs(live, org_a.secret_key, call_logs(first, "Refund me", "Let me check the order."))
    post_spans(live, org_a.secret_key, spans)
    assert stored(live, org_a, trace_id)["output"] == "Let me check the order."
    post_logs(live, org_a.secret_key, call_logs(second, "(tool result)", "Refunded 20 EUR."))
    body = stored(live, org_a, trace_id)
    assert (body["input"], body["output"]) == ("Refund me", "Refunded 20 EUR.")


def test_text_from_span_attributes_is_not_replaced_by_logs(live: LiveServer, org_a: Org, committed_db: None) -> None:
    trace_id = unique("logs")
    spans = genai_trace(trace_id, span_text=True)
    post_spans(live, org_a.secret_key, spans)
    post_logs(live, org_a.secret_key, call_logs(llm_spans(spans)[0], "Text from the log", "Answer from the log"))
    body = stored(live, org_a, trace_id)
    assert (body["input"], body["output"]) == ("Text from the span", "Answer from the span")


def test_trace_stored_under_its_otel_id_then_adopted_keeps_the_log_text(
    live: LiveServer, org_a: Org, committed_db: None
) -> None:
    """The child spans come first (stored under the OTel id), the logs, then the root naming candor.trace_id."""
    trace_id = unique("logs")
    spans = genai_trace(trace_id)
    root = [s for s in spans if s.name == "answer-ticket"]
    post_spans(live, org_a.secret_key, llm_spans(spans))
    post_logs(live, org_a.secret_key, call_logs(llm_spans(spans)[0], "Adopt me", "Adopted."))
    post_spans(live, org_a.secret_key, root)
    body = stored(live, org_a, trace_id)
    assert (body["input"], body["output"], body["feature"]) == ("Adopt me", "Adopted.", "support-copilot")


def test_another_organizations_logs_never_reach_this_trace(
    live: LiveServer, org_a: Org, org_b: Org, committed_db: None
) -> None:
    trace_id = unique("logs")
    spans = genai_trace(trace_id)
    post_spans(live, org_a.secret_key, spans)
    answer = post_logs(live, org_b.secret_key, call_logs(llm_spans(spans)[0], "B's question", "B's answer"))
    assert "wait for their trace" in answer.partial_success.error_message  # B has no such trace
    assert stored(live, org_a, trace_id)["input"] == ""
    assert messages_of(org_a, spans) == 0


def test_spans_and_logs_sent_at_the_same_moment_always_join(live: LiveServer, org_a: Org, committed_db: None) -> None:
    """No arrival order, not even a tie, loses the text (the two paths lock each OTel trace id)."""
    traces = [(unique("race"), i) for i in range(40)]

    def send(item: tuple[str, int]) -> None:
        trace_id, i = item
        spans = genai_trace(trace_id)
        logs = call_logs(llm_spans(spans)[0], f"question {i}", f"answer {i}")
        start = threading.Barrier(2)

        def logs_side() -> None:
            start.wait()
            post_logs(live, org_a.secret_key, logs)

        def spans_side() -> None:
            start.wait()
            post_spans(live, org_a.secret_key, spans)

        with ThreadPoolExecutor(2) as pair:
            for future in [pair.submit(logs_side), pair.submit(spans_side)]:
                future.result()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, traces))
    for trace_id, i in traces:
        body = stored(live, org_a, trace_id)
        assert (body["input"], body["output"]) == (f"question {i}", f"answer {i}"), trace_id


# --- Bad input ----------------------------------------------------------------------------------


def test_bad_ids_and_other_logs_are_refused_per_record_and_the_rest_kept(
    live: LiveServer, org_a: Org, committed_db: None
) -> None:
    trace_id = unique("logs")
    spans = genai_trace(trace_id)
    post_spans(live, org_a.secret_key, spans)
    good = call_logs(llm_spans(spans)[0], "Kept question", "Kept answer")
    bad = [
        record("gen_ai.user.message", {"content": "x"}, at=1, trace=b"\x01" * 8),
        record("gen_ai.user.message", {"content": "x"}, at=1, span=b"\x01" * 4),
        record("gen_ai.user.message", {"content": "x"}, at=1, trace=b""),
        record("http.request", "GET /", at=1),
    ]
    answer = post_logs(live, org_a.secret_key, [*bad, *good])
    assert answer.partial_success.rejected_log_records == 4
    message = answer.partial_success.error_message
    assert "trace_id must be 16 non-zero bytes (got 8)" in message and "span_id must be 8" in message
    assert "'http.request' is not a GenAI event" in message
    body = stored(live, org_a, trace_id)
    assert (body["input"], body["output"]) == ("Kept question", "Kept answer")
    assert messages_of(org_a, spans) == 3


@pytest.mark.parametrize("what", ["logs", "traces"])
def test_unreadable_bodies_are_a_clear_4xx(live: LiveServer, org_a: Org, what: str) -> None:
    key = org_a.secret_key
    whole = export(*call_logs(llm_spans(genai_trace(unique("bad")))[0], "q", "a"))
    if what == "traces":
        whole = encode_spans(genai_trace(unique("bad"))).SerializeToString()
    truncated = post(live, key, what, whole[: len(whole) - 5])
    assert truncated.status_code == 400 and truncated.json()["error"]["code"] == "invalid_otlp"
    wrong_type = post(live, key, what, whole, content_type="text/csv")
    assert wrong_type.status_code == 415 and "content type" in wrong_type.json()["error"]["message"]
    bomb = gzip.compress(b"\x00" * (6 * 1024 * 1024))  # 6 KB on the wire, 6 MB inflated: past the 5 MB limit
    bombed = post(live, key, what, bomb, **{"Content-Encoding": "gzip"})
    assert bombed.status_code == 413 and bombed.json()["error"]["code"] == "too_large"
    assert "inflates past" in bombed.json()["error"]["message"]
    compressed = post(live, key, what, gzip.compress(whole), **{"Content-Encoding": "gzip"})
    assert compressed.status_code == 200, compressed.text
    public = post(live, org_a.public_key, what, whole)
    assert public.status_code == 403
