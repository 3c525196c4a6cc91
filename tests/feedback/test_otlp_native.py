"""The C mapping of protobuf exports (feedback/_otlp_wire.c) must map every export exactly as the Python does
(feedback.otlp.otlp_map with native=False), or hand it back. Seeded exports are built from what the mapping reads:
every attribute it knows under every value type (empty, blank, too long, NaN, bool beside int, lists, nested maps),
GenAI message lists of every shape, roots, orphans and parent cycles, several resources, events, status codes."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from feedback import otlp
from tests.feedback.test_otlp_compiled import _exports
from tests.feedback.test_otlp_wire import SLOTS, Wire

pytestmark = pytest.mark.skipif(otlp._native is None, reason="feedback._otlp_wire is not built: nothing to compare")

PROTOBUF = "application/x-protobuf"
MAPPED = ("span_id", "parent_span_id", "name", "kind", "start", "end", "model", "input_tokens", "output_tokens",
          "cost_usd", "attributes")  # fmt: skip
KEYS = [
    "candor.trace_id", "candor.feature", "candor.prompt_version", "candor.prompt_hash", "candor.prompt",
    "candor.customer_id", "candor.user_id", "user.id", "enduser.id", "candor.session_id", "session.id",
    "gen_ai.conversation.id", "candor.experiment", "candor.variant", "candor.input", "candor.output",
    "candor.ttft_ms", "candor.fallback", "candor.guardrail_blocked", "candor.cost_usd", "candor.metadata.team",
    "candor.metadata", "candor.metadata.", "gen_ai.request.model", "gen_ai.response.model", "llm.model_name",
    "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system", "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens", "llm.token_count.prompt", "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens", "llm.token_count.completion", "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cached_tokens", "gen_ai.usage.cost", "gen_ai.input.messages", "gen_ai.output.messages",
    "gen_ai.prompt", "gen_ai.completion", "gen_ai.prompt.0.role", "gen_ai.prompt.0.content",
    "gen_ai.prompt.1.content", "gen_ai.completion.0.content", "llm.input_messages.0.message.role",
    "llm.input_messages.0.message.content", "llm.output_messages.0.message.content", "gen_ai.operation.name",
    "openinference.span.kind", "gen_ai.tool.name", "db.system", "db.system.name", "retrieval.documents",
    "gen_ai.usage", "service.name", "http.status_code", "é.clé",
]  # fmt: skip
TEXTS = ["", " ", "gpt-4o-mini", "OpenAI", "gcp.gemini", "Mistral_AI", "support-copilot", "Support Copilot",
         "-lead", "a/b:c.d_e", "中文", "true", "no", "0.25", "1e3", "-3", "12", "chat", "embeddings",
         "execute_tool", "retrieval", "LLM", "RETRIEVER", "EMBEDDING", "TOOL", "chain", "\u00e9t\u00e9\n"]  # fmt: skip


class Exports:
    """Seeded OTLP exports of what the mapping reads."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def message(self) -> Any:
        rng = self.rng
        part = rng.choice([
            {"type": "text", "content": "Reset it in Settings."}, {"type": "input_text", "text": " hi "},
            {"type": "tool_call", "name": "lookup"}, {"type": "text", "content": ["a", {"text": "b"}]},
            {"content": 7}, {"message": {"content": "nested"}}, "plain part", None, 3.5, True,
        ])  # fmt: skip
        message: dict[str, Any] = {}
        if rng.random() < 0.8:
            message["role"] = rng.choice(["user", "assistant", "system", "developer", "tool", "", 5, None])
        elif rng.random() < 0.5:
            message["message"] = {"role": rng.choice(["user", "assistant"]), "content": "inner"}
        key = rng.choice(["parts", "content", "text", "message"])
        message[key] = [part, part] if rng.random() < 0.5 else part
        return message

    def messages(self) -> str:
        rng = self.rng
        shape = rng.randrange(7)
        if shape == 0:
            return rng.choice(["How do I reset my password?", "  ", "[not json", "{broken", "[1, 2]", '"x"', "{}"])
        if shape == 1:
            return json.dumps(self.message())
        if shape == 2:
            return "  " + json.dumps([self.message() for _ in range(rng.randrange(4))]) + "\n"
        if shape == 3:
            return '[{"role": "user", "content": NaN}]'
        return json.dumps([self.message() for _ in range(1 + rng.randrange(3))])

    def value(self, key: str) -> AnyValue:
        rng = self.rng
        if key.endswith(("messages", ".prompt", ".completion", "content")) and rng.random() < 0.8:
            return AnyValue(string_value=self.messages())
        kind = rng.randrange(12)
        if kind == 0:
            return AnyValue()  # no value at all: None
        if kind <= 4:
            text = rng.choice(TEXTS)
            if rng.random() < 0.03:
                text = "x" * rng.choice([101, 201, 300_001])
            return AnyValue(string_value=text)
        if kind <= 6:
            return AnyValue(int_value=rng.choice([-5, 0, 1, 7, 250, 10**12, 10**12 + 1, 2**63 - 1]))
        if kind == 7:
            return AnyValue(double_value=rng.choice([2.5, 3.0, -0.0, 0.1, math.nan, math.inf, 1e300]))
        if kind == 8:
            return AnyValue(bool_value=rng.random() < 0.5)
        if kind == 9:
            items = [self.value("item") for _ in range(rng.randrange(4))]
            flat = [item for item in items if item.WhichOneof("value") != "kvlist_value"]
            return AnyValue(array_value=ArrayValue(values=flat))
        if kind == 10:
            return AnyValue(kvlist_value=KeyValueList(values=[
                KeyValue(key=rng.choice(["input_tokens", "team", "a", ""]), value=self.value("inner"))
                for _ in range(rng.randrange(3))
            ]))  # fmt: skip
        return AnyValue(string_value=rng.choice(TEXTS) * rng.randrange(1, 3))

    def attributes(self, count: int) -> list[KeyValue]:
        return [KeyValue(key=(key := self.rng.choice(KEYS)), value=self.value(key)) for _ in range(count)]

    def request(self) -> ExportTraceServiceRequest:
        rng = self.rng
        request = ExportTraceServiceRequest()
        traces = [rng.randbytes(15) + bytes([1 + i]) for i in range(1 + rng.randrange(3))]
        spans: list[Span] = []
        for trace_id in traces:
            ids = [rng.randbytes(7) + bytes([1 + i]) for i in range(1 + rng.randrange(4))]
            for index, span_id in enumerate(ids):
                start = rng.choice([0, 1_733_000_000 * 10**9 + rng.randrange(10**12), 2**64 - 1])
                end = rng.choice([0, start, start + rng.randrange(5 * 10**9), max(0, start - 1)])
                # Roots, orphans (a parent not exported) and cycles: a first span with a parent now and then too.
                parent = b""
                if index or rng.random() < 0.3:
                    parent = rng.choice([b"", ids[0], rng.randbytes(8), ids[-1], b"\x00" * 8, b"\x01" * 3])
                span = Span(
                    trace_id=trace_id, span_id=span_id, parent_span_id=parent,
                    name=rng.choice(["chat gpt-4o", "Retrieve documents", "answer", "", "n" * 301, "tool"]),
                    kind=rng.choice([0, 1, 2, 3, 4, 5, 9]), start_time_unix_nano=start,  # type: ignore[arg-type]
                    end_time_unix_nano=min(end, 2**64 - 1),
                    attributes=self.attributes(rng.randrange(9)),
                    status=Status(code=rng.choice([0, 1, 2]), message=rng.choice(["", "boom"])),  # type: ignore[arg-type]
                )  # fmt: skip
                if rng.random() < 0.15:
                    event = span.events.add(name=rng.choice(["gen_ai.user.message", "gen_ai.choice", "log"]))
                    event.attributes.extend(
                        [KeyValue(key=rng.choice(["content", "message", "gen_ai.input.messages"]),
                                  value=AnyValue(string_value=self.messages()))]
                    )  # fmt: skip
                spans.append(span)
        rng.shuffle(spans)
        for start in range(0, len(spans), 1 + rng.randrange(len(spans))):
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.extend(self.attributes(rng.randrange(3)))
            if rng.random() < 0.7:
                resource_spans.resource.attributes.add(key="service.name", value=self.value("service.name"))
            scope = resource_spans.scope_spans.add()
            scope.scope.name = rng.choice(["", "openai.v2", "bench"])
            scope.spans.extend(spans[start : start + 1 + rng.randrange(3)])
        return request


def normal(value: Any) -> Any:
    """Comparable values: NaN equal to itself, -0.0 apart from 0.0, True apart from 1, Decimal by its text,
    dicts with their key order."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, Decimal):
        return ("decimal", str(value))
    if isinstance(value, dict):
        return [(k, normal(v)) for k, v in value.items()]
    if isinstance(value, list | tuple):
        return [normal(v) for v in value]
    return value


def mapped(body: bytes, native: bool) -> Any:
    try:
        traces = otlp.otlp_map(body, PROTOBUF, native=native)
    except ValueError as exc:
        return (type(exc).__name__, str(exc))
    # A trace's keys in any order (it goes on as JSON, to the traces API's decoding); all else in order.
    return normal(
        [
            (sorted(trace.items()), [[getattr(span, name) for name in MAPPED] for span in spans])
            for trace, spans in traces
        ]
    )


@pytest.mark.parametrize("block", range(3))
def test_the_c_mapping_maps_every_generated_export_as_the_python_does(block: int) -> None:
    taken = 0
    for seed in range(block * 400, (block + 1) * 400):
        body = Exports(seed).request().SerializeToString()
        taken += otlp._native.map(body, otlp._NATIVE_CONFIG) is not None
        assert mapped(body, native=True) == mapped(body, native=False), f"seed {seed}"
    # The C reading maps these itself (it hands back only bodies it does not read: bytes values, bad IDs).
    assert taken == 400, taken


def accepted_wire_bodies(count: int) -> Iterator[tuple[int, bytes]]:
    """The wire-level generator's bodies upb accepts (what reaches the C reading), with their seeds."""
    for seed in range(count):
        body = Wire(seed).request()
        try:
            ExportTraceServiceRequest.FromString(body)
        except DecodeError:
            continue
        yield seed, body


def test_the_c_mapping_maps_the_wire_level_bodies_as_the_python_does() -> None:
    taken = 0
    for seed, body in accepted_wire_bodies(600):
        taken += otlp._native.map(body, otlp._NATIVE_CONFIG) is not None
        assert mapped(body, native=True) == mapped(body, native=False), f"seed {seed}"
    assert taken > 80, taken  # 96 of 600: the rest have bytes values, bad IDs or broken text (handed back)


def test_the_c_mapping_maps_the_shipped_exports_as_the_python_does() -> None:
    taken = refused = 0
    for body, content_type in _exports():
        if content_type != PROTOBUF:
            continue
        assert mapped(body, native=True) == mapped(body, native=False), body[:80]
        try:
            _, inflated = otlp._decode(body, PROTOBUF, otlp.MAX_DECOMPRESSED_BYTES)
        except otlp.OtlpError:
            refused += 1
            continue
        taken += otlp._native.map(inflated, otlp._NATIVE_CONFIG) is not None
    # Every one upb accepts is mapped in C (gzip and empty ones too), not handed back to the Python.
    assert (taken, refused) == (12, 1)


def test_what_the_c_reading_hands_back_the_python_maps_or_refuses() -> None:
    bytes_value = Exports(1).request()
    bytes_value.resource_spans[0].scope_spans[0].spans[0].attributes.add(key="blob", value={"bytes_value": b"\x00\x01"})
    body = bytes_value.SerializeToString()
    assert otlp._native.map(body, otlp._NATIVE_CONFIG) is None
    ((trace, spans), *_) = [t for t in otlp.otlp_map(body, PROTOBUF) if any("blob" in s.attributes for s in t[1])]
    assert [s.attributes["blob"] for s in spans if "blob" in s.attributes] == ["AAE="]
    assert otlp._native.map(b"\x0a\x05\x12", otlp._NATIVE_CONFIG) is None  # truncated: the Python says why
    with pytest.raises(otlp.OtlpError):
        otlp.otlp_map(b"\x0a\x05\x12", PROTOBUF)


def test_the_c_reading_of_spans_equals_the_wire_reading() -> None:
    read = 0
    for seed, body in accepted_wire_bodies(600):
        spans = otlp._native.spans(body, otlp._Span)
        if spans is not None:
            read += 1
            assert [normal([getattr(s, name) for name in SLOTS]) for s in spans] == [
                normal([getattr(s, name) for name in SLOTS]) for s in otlp._wire_spans(body)
            ], f"seed {seed}"
    assert read > 80, read
