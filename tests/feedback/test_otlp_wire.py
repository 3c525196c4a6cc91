"""The OTLP endpoint reads a protobuf body's spans straight from its bytes once upb has accepted it
(feedback.otlp._wire_spans). That reading must equal upb's own (_iter_spans over the parsed message) for
every body upb accepts: seeded bodies built at the wire level with what real exporters never send but a
parser must take (fields in any order, a singular field or message twice, a oneof switching case, fields
of the wrong wire type, unknown fields and groups, negative enums, NaN) are read both ways and compared."""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from feedback import otlp
from feedback.otlp import OtlpError
from tests.feedback.test_otlp import _record_spans

SLOTS = ("trace_id", "span_id", "parent_span_id", "name", "kind", "start_ns", "end_ns", "attrs", "events",
         "status_code", "status_message", "resource", "scope")  # fmt: skip


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint((number << 3) | wire)


def length(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def fixed64(number: int, value: int) -> bytes:
    return tag(number, 1) + struct.pack("<Q", value & ((1 << 64) - 1))


class Wire:
    """Seeded generator of OTLP trace export bodies, field by field."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def text(self) -> bytes:
        alphabet = ["a", "b", "é", "中", "😀", " ", "\x00", "[", "{", '"']
        text = "".join(self.rng.choice(alphabet) for _ in range(self.rng.randrange(6))).encode()
        return text + b"\xff" if self.chance(0.003) else text  # not UTF-8: upb refuses the body

    def unknown(self) -> bytes:
        """A field no OTLP message here defines, of any wire type (a group now and then)."""
        number = self.rng.randrange(17, 60)
        wire = self.rng.choice([0, 1, 2, 5, 3])
        if wire == 0:
            return tag(number, 0) + varint(self.rng.getrandbits(64))
        if wire == 1:
            return fixed64(number, self.rng.getrandbits(64))
        if wire == 5:
            return tag(number, 5) + struct.pack("<I", self.rng.getrandbits(32))
        if wire == 3:
            inner = tag(self.rng.randrange(1, 9), 0) + varint(self.rng.randrange(300))
            return tag(number, 3) + inner + length(2, self.text()) + tag(number, 4)
        return length(number, self.text())

    def message(self, fields: list[bytes]) -> bytes:
        """Fields in any order, sometimes with unknown ones among them."""
        fields = fields + [self.unknown() for _ in range(self.rng.choice([0, 0, 0, 1, 2]))]
        self.rng.shuffle(fields)
        return b"".join(fields)

    def wrong_wire(self, number: int) -> bytes:
        """A known field sent with a wire type its type does not have: the parser keeps it as unknown."""
        return tag(number, 0) + varint(7) if self.chance(0.5) else tag(number, 5) + b"\x01\x02\x03\x04"

    def any_value(self, depth: int = 0) -> bytes:
        parts = []
        for _ in range(self.rng.choice([0, 1, 1, 1, 1, 2, 3])):  # none, one case, or several (the last wins)
            case = self.rng.choice([1, 1, 1, 2, 3, 4, 7] + ([5, 6] if depth < 3 else []))
            if case == 1:
                parts.append(length(1, self.text()))
            elif case == 2:
                parts.append(tag(2, 0) + varint(self.rng.choice([0, 1, 2, 1 << 40])))
            elif case == 3:
                parts.append(tag(3, 0) + varint(self.rng.choice([0, 5, -1, -(1 << 63), (1 << 63) - 1, 1 << 62])))
            elif case == 4:
                value = self.rng.choice([0.5, -0.0, math.inf, math.nan, 1e308, 3.0])
                parts.append(tag(4, 1) + struct.pack("<d", value))
            elif case == 7:
                parts.append(length(7, self.rng.randbytes(self.rng.randrange(5))))
            elif case == 5:
                parts.append(length(5, self.message([length(1, self.any_value(depth + 1))
                                                     for _ in range(self.rng.randrange(3))])))  # fmt: skip
            else:
                parts.append(length(6, self.message([length(1, self.key_value(depth + 1))
                                                     for _ in range(self.rng.randrange(3))])))  # fmt: skip
        if self.chance(0.1):
            parts.append(self.wrong_wire(self.rng.choice([1, 5, 6, 7])))
        return b"".join(parts)  # in order: which case comes last matters

    def key_value(self, depth: int = 0) -> bytes:
        keys = ["gen_ai.system", "candor.feature", "k", "é", ""]
        fields = [length(1, self.rng.choice(keys).encode())]
        if self.chance(0.1):
            fields.append(length(1, self.rng.choice(keys).encode()))  # the key twice: the last wins
        for _ in range(self.rng.choice([0, 1, 1, 1, 2])):  # the value twice: merged
            fields.append(length(2, self.any_value(depth)))
        return b"".join(fields)

    def attributes(self, number: int) -> list[bytes]:
        return [length(number, self.key_value()) for _ in range(self.rng.randrange(4))]

    def span_id(self, size: int) -> bytes:
        roll = self.rng.random()
        if roll < 0.03:
            return bytes(size)  # all zero: refused
        if roll < 0.05:
            return self.rng.randbytes(size - 1)  # wrong length: refused
        return self.rng.randbytes(size)

    def span(self) -> bytes:
        fields = [length(1, self.span_id(16)), length(2, self.span_id(8)), length(5, self.text())]
        if self.chance(0.1):
            fields.append(length(1, self.span_id(16)))  # the trace_id twice: the last wins (order is shuffled)
        if self.chance(0.6):
            fields.append(length(4, self.rng.choice([self.span_id(8), bytes(8), b""])))
        if self.chance(0.7):
            fields.append(tag(6, 0) + varint(self.rng.choice([0, 1, 3, 5, 9, -1, 1 << 33])))
        for number in (7, 8):
            if self.chance(0.8):
                fields.append(fixed64(number, self.rng.choice([0, 1_735_732_800_000_000_000, (1 << 64) - 1])))
            if self.chance(0.05):
                fields.append(tag(number, 0) + varint(5))  # a time as a varint: not this field, skipped
        fields += self.attributes(9)
        for _ in range(self.rng.randrange(3)):
            event = [fixed64(1, self.rng.getrandbits(60)), length(2, self.text()), *self.attributes(3)]
            fields.append(length(11, self.message(event)))
        for _ in range(self.rng.choice([0, 1, 1, 2])):  # status twice: merged, field by field
            status = []
            if self.chance(0.7):
                status.append(tag(3, 0) + varint(self.rng.choice([0, 1, 2, 7, -2])))
            if self.chance(0.5):
                status.append(length(2, self.text()))
            fields.append(length(15, self.message(status)))
        if self.chance(0.3):
            fields.append(length(13, self.message([length(1, self.span_id(16)), *self.attributes(4)])))  # a link
        if self.chance(0.3):
            fields.append(tag(16, 5) + struct.pack("<I", 0x301))  # flags
        if self.chance(0.2):
            fields.append(length(3, b"congo=t61rcWkgMzE"))  # trace_state
        if self.chance(0.05):
            fields.append(self.wrong_wire(self.rng.choice([1, 2, 5, 9, 11, 15])))
        return self.message(fields)

    def request(self) -> bytes:
        resource_spans = []
        for _ in range(self.rng.randrange(1, 3)):
            fields = []
            for _ in range(self.rng.choice([0, 1, 1, 2])):  # the resource twice: merged
                fields.append(length(1, self.message(self.attributes(1))))
            for _ in range(self.rng.randrange(1, 3)):
                scope = []
                for _ in range(self.rng.choice([0, 1, 1, 2])):  # the scope twice: the last name wins
                    scope.append(length(1, self.message([length(1, self.text()), length(2, b"1.0")])))
                scope += [length(2, self.span()) for _ in range(self.rng.randrange(4))]
                fields.append(length(2, self.message(scope)))
            resource_spans.append(length(1, self.message(fields)))
        return b"".join(resource_spans)


def normal(value: Any) -> Any:
    """Comparable values: NaN equal to itself, -0.0 apart from 0.0, True apart from 1, dicts with their key order."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, dict):
        return [(k, normal(v)) for k, v in value.items()]
    if isinstance(value, list | tuple):
        return [normal(v) for v in value]
    return value


def read(body: bytes, how: str) -> Any:
    try:
        if how == "upb":
            spans = list(otlp._iter_spans(ExportTraceServiceRequest.FromString(body)))
        else:
            spans = otlp._wire_spans(body)
    except OtlpError as exc:
        return ("refused", str(exc))
    return [normal([getattr(span, name) for name in SLOTS]) for span in spans]


@pytest.mark.parametrize("block", range(4))
def test_the_wire_reading_equals_upbs_on_every_body_upb_accepts(block: int) -> None:
    accepted = refused = spans = refused_ids = 0
    for seed in range(block * 500, (block + 1) * 500):
        body = Wire(seed).request()
        try:
            ExportTraceServiceRequest.FromString(body)
        except DecodeError:
            refused += 1
            continue
        accepted += 1
        expected = read(body, "upb")
        assert read(body, "wire") == expected, f"seed {seed}"
        if isinstance(expected, list):
            spans += len(expected)
        else:
            refused_ids += 1
    # The bodies exercise what they should: most are read, some refused by upb or for their IDs.
    assert accepted > 400 and spans > 700 and refused > 5 and refused_ids > 20, (accepted, refused, spans, refused_ids)


def test_the_bench_and_sdk_shaped_bodies_read_alike() -> None:
    body = encode_spans(_record_spans()).SerializeToString()
    assert read(body, "wire") == read(body, "upb") and len(read(body, "wire")) > 3


def test_invalid_ids_are_refused_with_the_same_message_either_way() -> None:
    span = length(1, bytes(16)) + length(2, b"\x01" * 8) + length(5, b"chat")
    body = length(1, length(2, length(2, span)))
    assert read(body, "wire") == read(body, "upb") == ("refused", read(body, "upb")[1])
    assert "invalid trace_id" in read(body, "wire")[1]


def test_with_a_collector_a_span_with_bad_ids_is_refused_alone_the_same_way_either_way() -> None:
    bad = length(1, bytes(16)) + length(2, b"\x01" * 8) + length(5, b"chat")
    short = length(1, b"\x02" * 16) + length(2, b"\x03" * 4) + length(5, b"tool")
    good = length(1, b"\x04" * 16) + length(2, b"\x05" * 8) + length(5, b"answer")
    body = length(1, length(2, length(2, bad) + length(2, good) + length(2, short)))
    by_wire: list[str] = []
    by_upb: list[str] = []
    wire = otlp._wire_spans(body, by_wire)
    upb = list(otlp._iter_spans(ExportTraceServiceRequest.FromString(body), by_upb))
    assert [s.name for s in wire] == [s.name for s in upb] == ["answer"]
    assert (
        by_wire
        == by_upb
        == [
            "span 'chat' has an invalid trace_id (16 bytes; must be 16 non-zero bytes)",
            "span 'tool' has an invalid span_id (4 bytes; must be 8 non-zero bytes)",
        ]
    )


def test_a_truncated_body_the_wire_reading_is_given_anyway_is_a_clear_error() -> None:
    body = Wire(3).request()
    with pytest.raises(OtlpError, match="not a valid OTLP protobuf"):
        otlp._wire_spans(body[: len(body) // 2])
