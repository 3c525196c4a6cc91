"""The OTLP endpoint's span rows, built straight from the mapping: the very rows the REST path stores
for the same spans, or (for a span the REST checks would refuse) no rows, so the trace takes the REST
decoding and gets its per-item error."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from feedback.otlp import FEATURE_GUESSED, otlp_map, span_dict, span_rows_of
from feedback.schemas import FUTURE_SLACK, TraceIn, check_trace, decode_body
from feedback.services.otlp import _read_times
from feedback.services.shared import utc_now
from feedback.services.tables import SpanRow
from feedback.services.traces import _span_row

NS = 1_000_000_000
NOW = utc_now()
DAYS_10 = 10 * 86_400 * NS
T0 = int((NOW - timedelta(days=3)).timestamp()) * NS + 123_456_789  # sub-microsecond digits too


def _value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=_value(v)) for k, v in value.items()]))
    return AnyValue(string_value=value)


def _export(*spans: dict[str, Any]) -> bytes:
    """One trace of these spans (the first the root), each {name, start, end, attributes, status}."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    scope.scope.name = "tests"
    for i, spec in enumerate(spans):
        span = Span(
            trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
            span_id=bytes([0, 0, 0, 0, 0, 0, 0, i + 1]),
            parent_span_id=b"" if i == 0 else bytes([0, 0, 0, 0, 0, 0, 0, 1]),
            name=spec.get("name", f"span {i}"),
            kind=spec.get("kind", Span.SPAN_KIND_INTERNAL),
            start_time_unix_nano=spec.get("start", T0 + i * 1000),
            end_time_unix_nano=spec.get("end", T0 + 5 * NS),
            attributes=[KeyValue(key=k, value=_value(v)) for k, v in spec.get("attributes", {}).items()],
            status=Status(code=spec.get("status", 0), message=spec.get("status_message", "")),
        )
        scope.spans.append(span)
    return request.SerializeToString()


CHAT = {
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 120,
    "gen_ai.usage.output_tokens": 30,
    "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]',
}
# Exports whose spans the REST path takes as they are: the rows must be its rows.
TAKEN = {
    "genai": _export({"attributes": {"candor.feature": "f"}}, {"name": "chat", "attributes": CHAT}),
    "values of every kind": _export(
        {
            "attributes": {
                "s": "text",
                "empty": "",
                "i": -7,
                "f": 0.1,
                "big": 2**62,
                "nan": float("nan"),
                "inf": float("-inf"),
                "yes": True,
                "list": ["a", 1, 2.5, False],
                "nested": {"a": {"b": 1}, "c": [1, 2]},
                "raw": b"\x00\xff",
                "unicode": "caf\u00e9 \U0001f600",
                "escapes": 'quote" back\\slash \n',
            }
        }
    ),
    "costs and tokens": _export(
        {"attributes": {"candor.cost_usd": "0.1234567890123456789"}},  # more digits than a float holds
        {
            "name": "chat",
            "attributes": {**CHAT, "gen_ai.usage.cost": 999_999.99, "gen_ai.usage.output_tokens": 10**12 - 30},
        },
        {"name": "chat", "attributes": {**CHAT, "candor.cost_usd": 1e-9, "gen_ai.usage.input_tokens": "12"}},
    ),
    "times unset or odd": _export(
        {"start": 0, "end": 0},
        {"start": T0, "end": T0},  # no length
        {"start": T0 + 999, "end": T0 + 1_000},  # the same microsecond
        {"start": 1, "end": 2},  # 1970
        {"start": T0, "end": 0},
    ),
    "status and kind": _export(
        {"kind": Span.SPAN_KIND_SERVER, "status": 2, "status_message": "boom"},
        {"kind": Span.SPAN_KIND_CLIENT, "status": 1},
    ),
    "a model at the length limit": _export({"attributes": {"gen_ai.request.model": "m" * 200}}),
    "a name clipped": _export({"name": "n" * 500}),
}
# Spans the REST checks refuse: no rows, so the trace goes through them for the per-item error.
REFUSED = {
    "ends before it starts": (_export({"start": T0 + NS, "end": T0}), "spans.0.end"),
    "starts in the future": (
        _export({}, {"start": T0 + 10 * 86_400 * NS, "end": T0 + 11 * 86_400 * NS}),
        "spans.1.start",
    ),
    "a cost past the limit": (_export({"name": "chat", "attributes": {**CHAT, "candor.cost_usd": 2e6}}), "cost_usd"),
    "a model too long": (_export({"attributes": {"gen_ai.request.model": "m" * 201}}), "model"),  # the trace's too
    "NUL in a name": (_export({"name": "a\x00b"}), "spans.0.name"),
    "NUL in an attribute": (_export({"attributes": {"k": "a\x00b"}}), "spans.0.attributes.k"),
    "NUL in an attribute name": (_export({"attributes": {"k\x00": "v"}}), "spans.0.attributes"),
}


def _rows(body: bytes) -> tuple[list[SpanRow] | None, dict[str, Any], list[Any]]:
    ((trace, spans),) = otlp_map(body, "application/x-protobuf")
    times = iter(_read_times([at for span in spans for at in (span.start, span.end)]))
    rows = span_rows_of(spans, trace["trace_id"], times, NOW + FUTURE_SLACK, SpanRow)
    assert next(times, "consumed") == "consumed"  # every time read, whatever the answer
    return rows, trace, spans


def _rest(trace: dict[str, Any], spans: list[Any]) -> tuple[list[Any], list[Any]]:
    """What POST /api/v1/traces makes of the trace: its decoded item's span rows, and its errors."""
    item = {key: value for key, value in trace.items() if key != FEATURE_GUESSED}  # the endpoint's mark, not sent
    body = msgspec.json.encode({"batch": [{**item, "spans": [span_dict(span) for span in spans]}]})
    good, errors = decode_body(body, TraceIn, check_trace, NOW)
    return [_span_row(item.trace_id, span) for _, item in good for span in item.spans or ()], errors


@pytest.mark.parametrize("body", TAKEN.values(), ids=TAKEN.keys())
def test_span_rows_are_the_rest_paths_rows(body: bytes) -> None:
    rows, trace, spans = _rows(body)
    rest_rows, errors = _rest(trace, spans)
    assert not errors
    assert rows is not None
    built = [tuple(row) for row in rows]
    assert built == [tuple(row) for row in rest_rows]
    # Equal, and of the same types (a Decimal of the same digits, an aware UTC datetime, JSON text).
    assert [[type(v) for v in row] for row in built] == [[type(v) for v in row] for row in rest_rows]
    assert [[str(v) for v in row] for row in built] == [[str(v) for v in row] for row in rest_rows]


@pytest.mark.parametrize(("body", "field"), REFUSED.values(), ids=REFUSED.keys())
def test_spans_the_rest_checks_refuse_get_no_rows(body: bytes, field: str) -> None:
    rows, trace, spans = _rows(body)
    assert rows is None
    _, errors = _rest(trace, spans)
    assert [error.field for error in errors] == [field]


def test_one_refused_span_sends_the_whole_trace_through_the_rest_checks() -> None:
    body = _export({}, {"start": T0 + NS, "end": T0}, {})
    rows, _, _ = _rows(body)
    assert rows is None


def test_text_that_reads_like_a_nul_escape_takes_the_rest_decoding_which_stores_it() -> None:
    """The six characters \\u0000 look like a NUL in the encoded attributes: left to the REST decoding."""
    rows, trace, spans = _rows(_export({"attributes": {"note": "a literal \\u0000"}}))
    assert rows is None
    rest_rows, errors = _rest(trace, spans)
    assert not errors and '"a literal \\\\u0000"' in rest_rows[0].attributes
