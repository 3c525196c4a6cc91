"""OTLP logs decoding (feedback.otlp_logs): GenAI events become messages tied to their span; the rest is
refused, saying why."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from feedback.otlp import OtlpError, OtlpTooLarge
from feedback.otlp_logs import otlp_logs_parse, otlp_logs_response

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")
LIMIT = 5 * 1024 * 1024


def any_value(value: Any) -> AnyValue:
    if isinstance(value, dict):
        return AnyValue(
            kvlist_value=KeyValueList(values=[KeyValue(key=k, value=any_value(v)) for k, v in value.items()])
        )
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(string_value=str(value))


def record(event: str, body: Any, *, at: int, trace: bytes = TRACE, span: bytes = SPAN, as_attribute: bool = False,
           attributes: dict[str, Any] | None = None) -> LogRecord:  # fmt: skip
    """A log record as opentelemetry-instrumentation-openai-v2 emits it (older SDKs name the event in an attribute)."""
    attrs = {"gen_ai.system": "openai", **(attributes or {})}
    if as_attribute:
        attrs["event.name"] = event
    log = LogRecord(
        time_unix_nano=at,
        trace_id=trace,
        span_id=span,
        event_name="" if as_attribute else event,
        attributes=[KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()],
    )
    if body is not None:
        log.body.CopyFrom(any_value(body))
    return log


def export(*records: LogRecord) -> bytes:
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.extend(records)
    return request.SerializeToString()


def openai_v2_call(at: int = 1_700_000_000_000_000_000, span: bytes = SPAN) -> list[LogRecord]:
    return [
        record("gen_ai.system.message", {"content": "You are a support agent."}, at=at, span=span),
        record("gen_ai.user.message", {"content": "Where is my parcel?"}, at=at + 1, span=span),
        record("gen_ai.choice", {"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "It arrives on Tuesday."}},
               at=at + 2, span=span),
    ]  # fmt: skip


def test_openai_v2_events_become_messages_of_their_span() -> None:
    parsed = otlp_logs_parse(export(*openai_v2_call()), "application/x-protobuf", max_bytes=LIMIT)
    assert (parsed.records, parsed.rejected) == (3, 0)
    assert [(m.otel_trace_id, m.span_id, m.role, m.text) for m in parsed.messages] == [
        (TRACE.hex(), SPAN.hex(), "system", "You are a support agent."),
        (TRACE.hex(), SPAN.hex(), "user", "Where is my parcel?"),
        (TRACE.hex(), SPAN.hex(), "choice", "It arrives on Tuesday."),
    ]
    assert len({m.record_key for m in parsed.messages}) == 3


def test_event_name_in_an_attribute_typed_content_parts_and_json_text() -> None:
    parts = [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "x"}}]
    answer = {"index": 0, "message": {"role": "assistant", "content": '{"verdict": 1}'}}  # JSON is text too
    parsed = otlp_logs_parse(
        export(
            record("gen_ai.user.message", {"content": parts}, at=1, as_attribute=True),
            record("gen_ai.choice", answer, at=2),
            record("gen_ai.choice", {"index": 1, "message": {"role": "assistant"}}, at=2),  # a tool call: no text
        ),
        "application/x-protobuf",
        max_bytes=LIMIT,
    )
    assert [(m.role, m.position, m.text) for m in parsed.messages] == [
        ("user", 0, "Hi"),
        ("choice", 0, '{"verdict": 1}'),
        ("choice", 1, ""),
    ]


def test_operation_details_event_holds_input_and_output() -> None:
    inputs = [{"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
              {"role": "user", "parts": [{"type": "text", "content": "Summarise this."}]}]  # fmt: skip
    outputs = [{"role": "assistant", "parts": [{"type": "text", "content": "Done."}], "finish_reason": "stop"}]
    details = record(
        "gen_ai.client.inference.operation.details",
        None,
        at=5,
        attributes={"gen_ai.input.messages": json.dumps(inputs), "gen_ai.output.messages": json.dumps(outputs)},
    )
    parsed = otlp_logs_parse(export(details), "application/x-protobuf", max_bytes=LIMIT)
    assert [(m.role, m.text) for m in parsed.messages] == [
        ("system", "Be brief."),
        ("user", "Summarise this."),
        ("choice", "Done."),
    ]


def test_json_encoding_with_hex_ids_gives_the_same_messages() -> None:
    body = export(*openai_v2_call())
    document = json_format.MessageToDict(ExportLogsServiceRequest.FromString(body))
    for log in document["resourceLogs"][0]["scopeLogs"][0]["logRecords"]:
        log["traceId"], log["spanId"] = TRACE.hex(), SPAN.hex()
    from_json = otlp_logs_parse(json.dumps(document).encode(), "application/json", max_bytes=LIMIT)
    assert from_json.messages == otlp_logs_parse(body, "application/x-protobuf", max_bytes=LIMIT).messages


def test_records_that_cannot_be_kept_are_counted_and_named_and_the_rest_kept() -> None:
    good = openai_v2_call()
    parsed = otlp_logs_parse(
        export(
            record("gen_ai.user.message", {"content": "no trace"}, at=1, trace=b""),
            record("gen_ai.user.message", {"content": "short trace"}, at=1, trace=TRACE[:8]),
            record("gen_ai.user.message", {"content": "long span"}, at=1, span=SPAN + b"\x01"),
            record("gen_ai.user.message", {"content": "zero trace"}, at=1, trace=bytes(16)),
            record("app.started", "hello", at=1),
            *good,
        ),
        "application/x-protobuf",
        max_bytes=LIMIT,
    )
    assert (parsed.records, parsed.rejected, len(parsed.messages)) == (8, 5, 3)
    assert "trace_id must be 16 non-zero bytes (got 0)" in parsed.reasons[0]
    assert "(got 8)" in parsed.reasons[1] and "span_id must be 8 non-zero bytes (got 9)" in parsed.reasons[2]
    assert "'app.started' is not a GenAI event" in parsed.reasons[4]


def test_a_record_without_span_id_is_tied_to_its_trace() -> None:
    parsed = otlp_logs_parse(
        export(record("gen_ai.user.message", {"content": "Hi"}, at=1, span=b"")), "application/x-protobuf",
        max_bytes=LIMIT,
    )  # fmt: skip
    assert [(m.span_id, m.text) for m in parsed.messages] == [("", "Hi")]


def test_nul_is_replaced_and_long_text_clipped() -> None:
    document = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"traceId": TRACE.hex(), "spanId": SPAN.hex(), "eventName": "gen_ai.user.message",
         "body": {"kvlistValue": {"values": [{"key": "content", "value": {"stringValue": "a\u0000b"}}]}}},
        {"traceId": TRACE.hex(), "spanId": SPAN.hex(), "eventName": "gen_ai.user.message", "timeUnixNano": "7",
         "body": {"stringValue": "x" * 250_000}},
    ]}]}]}  # fmt: skip
    parsed = otlp_logs_parse(json.dumps(document).encode(), "application/json", max_bytes=LIMIT)
    assert parsed.messages[0].text == "a\ufffdb"
    assert len(parsed.messages[1].text) == 200_000 and parsed.messages[1].text.endswith("\u2026")


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (export(*openai_v2_call())[:-7], "application/x-protobuf", "protobuf"),  # truncated
        (b"\xff\xfe garbage \x00\x01", "application/x-protobuf", "protobuf"),
        (b"{}", "text/plain", "content type"),
        (b"{}", "", "content type"),
        (b"not json", "application/json", "JSON"),
        (b'{"resourceLogs": "nope"}', "application/json", "must be a list"),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": ["x"]}]}]}', "application/json", "must be an object"),
        (b"\x1f\x8bnot really gzip", "application/x-protobuf", "gzip"),
        (
            b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "\\ud800"}}]}]}]}',
            "application/json",
            "surrogate",
        ),
    ],
)
def test_unreadable_bodies_raise_otlp_error(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(OtlpError, match=message):
        otlp_logs_parse(body, content_type, max_bytes=LIMIT)


def test_gzip_bomb_is_refused_past_the_body_limit_and_small_gzip_is_read() -> None:
    bomb = gzip.compress(b"\x00" * (LIMIT + 1))
    assert len(bomb) < 10_000
    with pytest.raises(OtlpTooLarge, match="inflates past"):
        otlp_logs_parse(bomb, "application/x-protobuf", max_bytes=LIMIT)
    small = export(*openai_v2_call())
    assert len(otlp_logs_parse(gzip.compress(small), "application/x-protobuf", max_bytes=LIMIT).messages) == 3


def test_response_carries_partial_success_in_the_request_encoding() -> None:
    payload, media_type = otlp_logs_response("application/x-protobuf", 2, "two refused")
    answer = ExportLogsServiceResponse.FromString(payload)
    assert media_type == "application/x-protobuf"
    assert (answer.partial_success.rejected_log_records, answer.partial_success.error_message) == (2, "two refused")
    payload, media_type = otlp_logs_response("application/json")
    assert (json.loads(payload), media_type) == ({}, "application/json")
