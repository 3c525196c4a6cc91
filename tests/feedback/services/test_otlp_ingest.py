"""OTLP ingestion against concurrent writers: the traces of an export not stored yet are copied straight in, the
stored ones merged. A trace another export is writing is waited for (each export locks its trace_ids before the
lookup), then found stored and merged; one the traces API writes between the lookup and the copy (it takes no such
lock) fails the copy, and every trace of the export merges instead. Nothing lost, nothing doubled, either way."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from django.db import connection, transaction
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from feedback import services
from feedback.models import Span, Trace
from feedback.otlp import otlp_map
from tests.fixtures.organizations import in_tenant

T0 = 1_733_000_000 * 10**9


def _export(*spans: OtlpSpan) -> bytes:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return request.SerializeToString()


def _span(
    trace_id: bytes, span_id: bytes, parent: bytes = b"", attributes: dict[str, object] | None = None
) -> OtlpSpan:
    values = [
        KeyValue(key=key, value=AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=str(v)))
        for key, v in (attributes or {}).items()
    ]
    return OtlpSpan(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=span_id.hex(),
                    start_time_unix_nano=T0 + (1000 if parent else 0), end_time_unix_nano=T0 + 2_000_000,
                    attributes=values)  # fmt: skip


@pytest.mark.parametrize("first_by", ["otlp", "rest"])
def test_a_trace_a_concurrent_writer_holds_is_waited_for_and_merged(committed_db, org_a, first_by) -> None:  # type: ignore[no-untyped-def]
    split, other = uuid.uuid4().bytes, uuid.uuid4().bytes
    root, child, lone = b"\x01" * 8, b"\x02" * 8, b"\x03" * 8
    # The SDK's first export: the LLM child alone (the trace is created from it); the second: its root, and a
    # trace of its own.
    llm = {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 40, "gen_ai.usage.output_tokens": 2}
    first = _export(_span(split, child, root, llm))
    # Or the same child sent through the traces API, under the trace's feature.
    usage = {"model": "gpt-4o-mini", "input_tokens": 40, "output_tokens": 2}
    rest_span = {"span_id": child.hex(), "parent_span_id": root.hex(), "kind": "llm", **usage}
    rest_first = {"trace_id": split.hex(), "feature": "race-copy", **usage, "spans": [rest_span]}
    second = _export(_span(split, root, attributes={"candor.feature": "race-copy"}), _span(other, lone))
    # Their features stored before (a feature the first export creates would hold the second before its lookup).
    warm = _export(
        _span(uuid.uuid4().bytes, root, attributes={"candor.feature": "race-copy"}), _span(uuid.uuid4().bytes, lone)
    )
    with in_tenant(org_a):
        services.otlp_ingest(traces=otlp_map(warm, "application/x-protobuf"))
    holding, errors = threading.Event(), []

    def first_export_held_open() -> None:
        try:
            with in_tenant(org_a), transaction.atomic():  # its commit waits until the second export is under way
                if first_by == "otlp":
                    services.otlp_ingest(traces=otlp_map(first, "application/x-protobuf"))
                else:
                    services.traces_ingest(body=json.dumps({"batch": [rest_first]}).encode())
                holding.set()
                time.sleep(1.0)
        except BaseException as exc:  # said by the assertion below
            errors.append(exc)
            holding.set()
        finally:
            connection.close()

    writer = threading.Thread(target=first_export_held_open)
    writer.start()
    assert holding.wait(30)
    try:
        with in_tenant(org_a):
            # An export: its trace lock waits for the first, whose trace the lookup then finds and the merge takes.
            # The traces API's: the lookup does not see the uncommitted trace, the copy waits for it, fails, and
            # every trace merges.
            result, item_errors = services.otlp_ingest(traces=otlp_map(second, "application/x-protobuf"))
    finally:
        writer.join()
    assert errors == [] and item_errors == []
    with in_tenant(org_a):
        stored = Trace.objects.get(trace_id=split.hex())
        assert stored.feature.key == "race-copy" and not stored.root_missing  # the root's, merged in
        assert (stored.input_tokens, stored.output_tokens, stored.model) == (40, 2, "gpt-4o-mini")
        assert Span.objects.filter(trace_id=split.hex()).count() == 2
        assert Trace.objects.filter(trace_id=other.hex()).count() == 1
        assert Span.objects.filter(trace_id=other.hex()).count() == 1
