"""The OTLP endpoint's spans written in C as binary COPY rows (feedback.otlp.span_copy_of) must store exactly what
span_rows_of's rows store, in the same order, or be left to those rows: whenever span_rows_of refuses a trace's
spans, and for what the C does not write itself (a cost, a span_id twice). Compared in PostgreSQL, value by value:
both are copied into tables of the span columns and read back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from feedback import otlp, services
from feedback.models import Span, Trace
from feedback.otlp import MappedSpan, otlp_map, postgres_micros, span_copy_of, span_rows_of
from feedback.schemas import FUTURE_SLACK
from feedback.services.columns import copy_encoded, copy_rows, quoted
from feedback.services.otlp import _read_times, _span_copies
from feedback.services.shared import raw_cursor, utc_now
from feedback.services.tables import SPANS, SpanRow
from tests.feedback.services.test_otlp_span_rows import REFUSED, TAKEN, _export
from tests.feedback.test_otlp_native import Exports
from tests.fixtures.organizations import in_tenant

pytestmark = pytest.mark.skipif(otlp._native is None, reason="feedback._otlp_wire is not built: rows path only")

NOW = utc_now()
T0 = int((NOW - timedelta(days=2)).timestamp()) * 1_000_000_000
LIMIT = NOW + FUTURE_SLACK
LIMIT_US = postgres_micros(LIMIT)
TRACE_ID = "trace-\u00e9-1"


def _rows(spans: list[MappedSpan], trace_id: str = TRACE_ID) -> list[SpanRow] | None:
    times = iter(_read_times([at for span in spans for at in (span.start, span.end)]))
    return span_rows_of(spans, trace_id, times, LIMIT, SpanRow)


class Stored:
    """Two temporary tables of the span columns (and the order rows came in): one copied from rows, one from C."""

    def __init__(self) -> None:
        self.cursor = raw_cursor()
        columns = ", ".join(f"{quoted(c.name)} {c.pg_type}" for c in SPANS.columns)
        for name in ("from_rows", "from_c"):
            self.cursor.execute(f"CREATE TEMP TABLE {name} (n serial, {columns})")

    def read(self, table: str) -> list[tuple[Any, ...]]:
        names = ", ".join(quoted(c.name) for c in SPANS.columns)
        self.cursor.execute(f"SELECT {names}, attributes::text FROM {table} ORDER BY n")
        return self.cursor.fetchall()

    def both(self, rows: list[SpanRow], copied: bytes) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        self.cursor.execute("TRUNCATE from_rows, from_c")
        # As _store_spans writes the rows path's rows: ordered by their key.
        copy_rows(self.cursor, SPANS, sorted(rows, key=lambda row: row[0]), into="from_rows")  # one trace: by span_id
        copy_encoded(self.cursor, SPANS, [copied], into="from_c")
        return self.read("from_rows"), self.read("from_c")


@pytest.fixture
def stored(db) -> Iterator[Stored]:  # type: ignore[no-untyped-def]
    with transaction.atomic():
        yield Stored()


@pytest.mark.parametrize("body", TAKEN.values(), ids=TAKEN.keys())
def test_spans_the_rest_path_takes_store_as_their_rows_do(stored: Stored, body: bytes) -> None:
    ((trace, spans),) = otlp_map(body, "application/x-protobuf")
    rows = _rows(spans)
    copied = span_copy_of(spans, TRACE_ID, LIMIT_US)
    assert rows is not None
    if any(span.cost_usd is not None for span in spans):
        assert copied is None  # a numeric the rows path writes
        return
    assert copied is not None
    from_rows, from_c = stored.both(rows, copied)
    assert from_c == from_rows and len(from_c) == len(spans)


@pytest.mark.parametrize(("body", "field"), REFUSED.values(), ids=REFUSED.keys())
def test_spans_the_rest_checks_refuse_are_left_to_the_rows_path(body: bytes, field: str) -> None:
    ((trace, spans),) = otlp_map(body, "application/x-protobuf")
    assert _rows(spans) is None
    assert span_copy_of(spans, trace["trace_id"], LIMIT_US) is None


def test_generated_exports_store_alike_and_most_are_written_in_c(stored: Stored) -> None:
    written = declined = compared = 0
    for seed in range(300):
        for trace, spans in otlp_map(Exports(seed).request().SerializeToString(), "application/x-protobuf"):
            rows = _rows(spans, trace["trace_id"])
            copied = span_copy_of(spans, trace["trace_id"], LIMIT_US)
            if rows is None:
                assert copied is None, f"seed {seed}"
                continue
            if copied is None:
                declined += 1
                continue
            written += 1
            from_rows, from_c = stored.both(rows, copied)
            assert from_c == from_rows, f"seed {seed}"
            compared += len(from_c)
    # Declined: traces with a span's cost (the generated attributes carry costs often), or a span_id twice.
    assert written > 100 and compared > 300, (written, declined, compared)


def test_a_span_id_twice_is_left_to_the_rows_path_which_merges_it(stored: Stored) -> None:
    ((_, spans),) = otlp_map(_export({"name": "a"}, {"name": "b"}), "application/x-protobuf")
    spans[1].span_id = spans[0].span_id
    assert _rows(spans) is not None
    assert span_copy_of(spans, TRACE_ID, LIMIT_US) is None


def test_rows_come_ordered_by_span_id_whatever_the_export_order(stored: Stored) -> None:
    ((_, spans),) = otlp_map(_export({}, {"name": "b"}, {"name": "c"}), "application/x-protobuf")
    spans.reverse()
    spans[0].span_id = "\u00e9" + spans[0].span_id  # past ASCII: UTF-8's order is the code points'
    copied = span_copy_of(spans, TRACE_ID, LIMIT_US)
    rows = _rows(spans)
    assert copied is not None and rows is not None
    from_rows, from_c = stored.both(rows, copied)
    assert [row[0] for row in from_c] == sorted(span.span_id for span in spans)
    assert from_c == from_rows


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-02-29T00:00:00.000000Z", None),  # no such day
        ("1900-02-29T00:00:00.000000Z", None),  # a century: no leap day
        ("2100-02-29T00:00:00.000000Z", None),
        ("2026-04-31T00:00:00.000000Z", None),
        ("2026-01-01T24:00:00.000000Z", None),
        ("2026-01-01T23:60:00.000000Z", None),
        ("2026-01-01T23:59:60.000000Z", None),
        ("2026-01-01T00:00:00.000000+", None),  # not iso's form
        ("2026-01-01 00:00:00.000000Z", None),
        ("2026-01-01T00:00:00Z", None),
        (None, "2026-13-01T00:00:00.000000Z"),
        (None, "2026-00-10T00:00:00.000000Z"),
        (None, "2026-01-00T00:00:00.000000Z"),
    ],
)
def test_times_iso_never_writes_are_left_to_the_rows_path(start: str | None, end: str | None) -> None:
    ((_, spans),) = otlp_map(_export({}), "application/x-protobuf")
    spans[0].start, spans[0].end = start, end
    assert span_copy_of(spans, TRACE_ID, LIMIT_US) is None


def test_times_at_the_edges_store_as_their_rows_do(stored: Stored) -> None:
    ((_, spans),) = otlp_map(_export({}, {}, {}, {}), "application/x-protobuf")
    times = [
        ("2000-01-01T00:00:00.000000Z", "2000-01-01T00:00:00.000001Z"),  # PostgreSQL's epoch
        ("1970-01-01T00:00:00.000001Z", "1999-12-31T23:59:59.999999Z"),  # before it: negative
        ("2024-02-29T23:59:59.999999Z", "2400-02-29T12:00:00.000000Z"),  # leap days (the end is in the future)
        (LIMIT.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), None),  # the limit itself: taken
    ]
    for span, (start, end) in zip(spans, times, strict=True):
        span.start, span.end = start, end
    assert _rows(spans) is None and span_copy_of(spans, TRACE_ID, LIMIT_US) is None  # an end past the limit
    spans[2].end = None
    rows, copied = _rows(spans), span_copy_of(spans, TRACE_ID, LIMIT_US)
    assert rows is not None and copied is not None
    from_rows, from_c = stored.both(rows, copied)
    assert from_c == from_rows
    spans[3].start = (LIMIT + timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert _rows(spans) is None and span_copy_of(spans, TRACE_ID, LIMIT_US) is None
    # An end at the limit is taken, a microsecond past it not (a client whose clock runs ahead).
    spans[3].start = "2026-01-01T00:00:00.000000Z"
    spans[3].end = LIMIT.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert _rows(spans) is not None and span_copy_of(spans, TRACE_ID, LIMIT_US) is not None
    spans[3].end = (LIMIT + timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert _rows(spans) is None and span_copy_of(spans, TRACE_ID, LIMIT_US) is None


def test_leap_days_and_month_ends_store_as_their_rows_do(stored: Stored) -> None:
    days = ["1972-02-29", "2000-02-29", "2024-02-29", "2025-12-31", "2026-01-31", "2026-04-30", "2026-02-28"]
    ((_, spans),) = otlp_map(_export(*({} for _ in days)), "application/x-protobuf")
    for span, day in zip(spans, days, strict=True):
        span.start, span.end = f"{day}T00:00:00.000000Z", f"{day}T23:59:59.999999Z"
    rows, copied = _rows(spans), span_copy_of(spans, TRACE_ID, LIMIT_US)
    assert rows is not None and copied is not None
    from_rows, from_c = stored.both(rows, copied)
    assert from_c == from_rows and len(from_c) == len(days)


def test_an_export_written_in_c_stores_no_span_of_a_trace_the_rest_checks_refuse(db, org_a) -> None:  # type: ignore[no-untyped-def]
    """The spans of every trace are written in C (one COPY), but only those of the traces the decoding takes."""
    good, refused = uuid.uuid4().bytes, uuid.uuid4().bytes
    body = _two_traces(good, refused)
    mapped = otlp_map(body, "application/x-protobuf")
    assert _span_copies(mapped, utc_now() + FUTURE_SLACK) is not None  # the C path, for the whole export
    with in_tenant(org_a):
        _, errors = services.otlp_ingest(traces=mapped)
        assert [error.field for error in errors] == ["trace_id"]
        assert sorted(Span.objects.values_list("trace_id", flat=True)) == [good.hex(), good.hex()]
        assert list(Trace.objects.values_list("trace_id", flat=True)) == [good.hex()]


def _two_traces(good: bytes, refused: bytes) -> bytes:
    """A trace of two spans, and one whose candor.trace_id the traces API refuses (too long)."""
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for trace_id, span_id, parent, trace_attribute in (
        (good, b"\x01" * 8, b"", ""), (good, b"\x02" * 8, b"\x01" * 8, ""), (refused, b"\x03" * 8, b"", "x" * 300)
    ):  # fmt: skip
        attributes = [KeyValue(key="candor.feature", value=AnyValue(string_value="copy-path"))]
        if trace_attribute:
            attributes.append(KeyValue(key="candor.trace_id", value=AnyValue(string_value=trace_attribute)))
        spans.append(OtlpSpan(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name="step",
                              start_time_unix_nano=T0, end_time_unix_nano=T0 + 2_000_000,
                              attributes=attributes))  # fmt: skip
    return request.SerializeToString()
