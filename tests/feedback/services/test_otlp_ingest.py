"""OTLP ingestion against concurrent writers: the traces of an export not stored yet are copied straight in, the
stored ones merged. A trace another export is writing is waited for (each export locks its trace_ids before the
lookup), then found stored and merged; one the traces API writes between the lookup and the copy (it takes no such
lock) fails the copy, and every trace of the export merges instead. Nothing lost, nothing doubled, either way."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from django.db import connection, transaction
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from feedback import services
from feedback.enums import FeedbackSource
from feedback.models import Feature, FeedbackEvent, PromptVersion, RollupDirty, Span, SpendCounter, Trace
from feedback.otlp import otlp_map
from feedback.otlp_logs import GenAiMessage
from feedback.services import traces as traces_service
from feedback.services.otlp_logs import otlp_logs_ingest
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


def _split_exports(rng: random.Random, tag: str) -> list[bytes]:
    """Seeded GenAI traces cut into exports as an SDK's batches cut them (spans in end order, any count a batch):
    most traces continue in the next export. Some call several models, some send their own cost, some name no feature
    (the service's is guessed), and a few exports are sent twice (an exporter's retry)."""
    spans: list[OtlpSpan] = []
    for i in range(60):
        trace_id, root = uuid.uuid4().bytes, uuid.uuid4().bytes[:8]
        start = T0 + rng.randrange(3) * 86_400 * 10**9 + i * 10**9
        named: dict[str, object] = {"candor.customer_id": f"{tag}-cus-{rng.randrange(4)}"}
        if rng.random() < 0.8:
            named["candor.feature"] = f"{tag}-{rng.choice(['copilot', 'summarize'])}"
            named["candor.prompt_version"] = f"v{rng.randrange(3)}"
        if rng.random() < 0.15:
            named["candor.cost_usd"] = "0.0125"
        children: list[dict[str, object]] = [{"db.system": "postgresql"}]
        for _ in range(rng.choice([1, 1, 2, 3])):
            children.append({"gen_ai.request.model": rng.choice(["gpt-4o-mini", "gpt-4o"]), "gen_ai.system": "openai",
                             "gen_ai.usage.input_tokens": rng.randrange(1, 900),
                             "gen_ai.usage.output_tokens": rng.randrange(1, 300)})  # fmt: skip
        for n, attributes in enumerate(children):
            child = OtlpSpan(trace_id=trace_id, span_id=uuid.uuid4().bytes[:8], parent_span_id=root, name=f"c{n}",
                             start_time_unix_nano=start + n * 1000, end_time_unix_nano=start + (n + 1) * 10**6,
                             attributes=[KeyValue(key=k, value=_any(v)) for k, v in attributes.items()])  # fmt: skip
            spans.append(child)
        spans.append(OtlpSpan(trace_id=trace_id, span_id=root, name="answer", start_time_unix_nano=start,
                              end_time_unix_nano=start + 5 * 10**6,
                              attributes=[KeyValue(key=k, value=_any(v)) for k, v in named.items()]))  # fmt: skip
    exports, at = [], 0
    while at < len(spans):
        size = rng.randrange(1, 9)
        exports.append(_export(*spans[at : at + size]))
        at += size
        if rng.random() < 0.1:
            exports.append(exports[-1])
    return exports


def _any(value: object) -> AnyValue:
    return AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=str(value))


def _stored(tag: str) -> dict[str, Any]:
    """What the exports of ``tag`` left: traces and spans (all but ids and received times; features and prompt
    versions by name), spend counters, rollup marks."""
    features = dict(Feature.objects.values_list("id", "key"))
    versions = dict(PromptVersion.objects.values_list("id", "label"))
    traces: dict[str, dict[str, Any]] = {}
    for trace in Trace.objects.filter(customer_id__startswith=tag).values():
        row: dict[str, Any] = dict(trace)
        del row["id"], row["received_at"]
        row["feature_id"], row["prompt_version_id"] = (
            features[row["feature_id"]],
            versions.get(row["prompt_version_id"]),
        )
        traces[row["trace_id"]] = row
    spans: dict[tuple[str, str], dict[str, Any]] = {}
    for span in Span.objects.filter(trace_id__in=traces).values():
        spans[span["trace_id"], span["span_id"]] = dict(span)
    counters = SpendCounter.objects.filter(customer_id__startswith=tag)
    spend = sorted((c.customer_id, c.day, features[c.feature_id], c.model, c.cost_usd, c.traces)
                   for c in counters if c.traces or c.cost_usd)  # fmt: skip
    ours = {key for key in features.values() if key.startswith(tag)}
    marks = sorted((m.day, features[m.feature_id]) for m in RollupDirty.objects.all())
    marks = [(day, key) for day, key in marks if key in ours]
    return {"traces": traces, "spans": spans, "spend": spend, "marks": marks}


def test_stored_traces_merged_from_parameters_end_as_staged_ones_do(db, org_a, org_b, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The same exports, continuing most of their traces, through each merging path: the same rows and counts.
    tag = f"given-{uuid.uuid4().hex[:8]}"
    exports = _split_exports(random.Random(5), tag)
    with in_tenant(org_a):
        for body in exports:
            services.otlp_ingest(traces=otlp_map(body, "application/x-protobuf"))
        given = _stored(tag)
    monkeypatch.setattr(traces_service, "_MERGED_GIVEN_MAX", 0)  # every stored trace staged (_upsert)
    with in_tenant(org_b):
        for body in exports:
            services.otlp_ingest(traces=otlp_map(body, "application/x-protobuf"))
        staged = _stored(tag)
    assert len(given["traces"]) == 60 and len(given["spans"]) > 150 and given["spend"] and given["marks"]
    assert given == staged


def test_a_stored_trace_deleted_before_its_merge_is_stored_again(db, org_a) -> None:  # type: ignore[no-untyped-def]
    # Found stored, then deleted (by a purge that takes no trace lock) before its merge: it is inserted, not lost.
    # The deletion is a trigger on the export's own copy of its new trace, which runs between the two (it deletes the
    # trace as the first export left it, rootless: not as the merging path inserts it again).
    kept, new = uuid.uuid4().bytes, uuid.uuid4().bytes
    root, child = b"\x01" * 8, b"\x02" * 8
    first = _export(_span(kept, child, root, {"gen_ai.request.model": "gpt-4o-mini"}))
    second = _export(_span(kept, root, attributes={"candor.feature": "purged-between"}), _span(new, child))
    with in_tenant(org_a):
        services.otlp_ingest(traces=otlp_map(first, "application/x-protobuf"))
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE FUNCTION purge_kept() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"DELETE FROM feedback_trace WHERE trace_id = '{kept.hex()}' AND root_missing; RETURN NULL; END $$; "
                "CREATE TRIGGER purge_kept AFTER INSERT ON feedback_trace EXECUTE FUNCTION purge_kept()"
            )
        result, errors = services.otlp_ingest(traces=otlp_map(second, "application/x-protobuf"))
        assert errors == [] and result.accepted == 2
        stored = Trace.objects.get(trace_id=kept.hex())
        assert stored.feature.key == "purged-between" and not stored.root_missing
        assert Trace.objects.filter(trace_id=new.hex()).count() == 1


def test_an_export_sent_again_inside_a_callers_transaction_is_done_again_and_doubles_nothing(db, org_a) -> None:  # type: ignore[no-untyped-def]
    # The first attempt copies without savepoints: the stored span fails it, and it is undone to the caller's
    # savepoint (not the caller's whole transaction) and done again, merging. The second attempt starts from the
    # trace dicts as mapped: the first had taken the marks out of them (the child's root missing), and without them
    # the resent child would pass for the root: the trace's start and latency would become the child's.
    trace_id, root, child = uuid.uuid4().bytes, b"\x01" * 8, b"\x02" * 8
    llm = {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 3}
    llm_span = _span(trace_id, child, root, llm)
    whole = _export(_span(trace_id, root, attributes={"candor.feature": "sent-twice"}), llm_span)
    with in_tenant(org_a), transaction.atomic():
        first, errors = services.otlp_ingest(traces=otlp_map(whole, "application/x-protobuf"))
        rooted = Trace.objects.values_list("started_at", "latency_ms").get(trace_id=trace_id.hex())
        second, more_errors = services.otlp_ingest(traces=otlp_map(_export(llm_span), "application/x-protobuf"))
        assert errors == more_errors == [] and (first.accepted, second.accepted) == (1, 0)
        stored = Trace.objects.get(trace_id=trace_id.hex())
        assert (stored.feature.key, stored.root_missing) == ("sent-twice", False)
        assert (stored.started_at, stored.latency_ms) == rooted == (rooted[0], 2.0)  # the root's, not the child's
        assert (stored.input_tokens, stored.output_tokens) == (7, 3)
        assert Span.objects.filter(trace_id=trace_id.hex()).count() == 2
        assert SpendCounter.objects.filter(customer_id="", feature_id=stored.feature_id).get().traces == 1


def test_an_exports_merges_run_on_generic_plans_and_it_leaves_the_planner_as_it_was(committed_db, org_a) -> None:  # type: ignore[no-untyped-def]
    # A trace continued from an earlier export is merged by statements naming one trace_id, whose custom plans always
    # look cheaper: unforced, PostgreSQL planned each afresh at every run. The export forces generic plans for its own
    # transaction only: the next request on the connection (a REST batch, a portal page) plans as configured.
    # Each export once: a retried one rolls back, and psycopg forgets its prepared statements on a rollback.
    exports = list(dict.fromkeys(_split_exports(random.Random(11), f"plans-{uuid.uuid4().hex[:8]}")))
    with in_tenant(org_a):
        for body in exports:
            services.otlp_ingest(traces=otlp_map(body, "application/x-protobuf"))
        with connection.cursor() as cursor:
            cursor.execute("SHOW plan_cache_mode")
            assert cursor.fetchone() == ("auto",)
            # psycopg prepares a statement on its fifth run on a connection: the merges ran more often than that.
            cursor.execute(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE ltrim(statement, E' \\n') LIKE 'UPDATE feedback_trace t SET%%\"model\" = COALESCE%%'"
            )
            (generic, custom), *others = cursor.fetchall()
    assert others == [] and generic > 0 and custom == 0


def _advisory_locks_held() -> Counter[str]:
    """The advisory locks this connection's transaction holds, by mode."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT mode FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted")
        return Counter(mode for (mode,) in cursor.fetchall())


def test_an_export_takes_a_lock_per_id_and_the_organizations_gate_shared(db, org_a) -> None:  # type: ignore[no-untyped-def]
    traces = [uuid.uuid4().bytes for _ in range(5)]
    body = _export(*(_span(trace_id, b"\x01" * 8) for trace_id in traces))
    with in_tenant(org_a):
        result, errors = services.otlp_ingest(traces=otlp_map(body, "application/x-protobuf"))
        assert errors == [] and result.accepted == 5
        # Held until the test's transaction ends: the gate and the OTel ids shared, the trace_ids exclusively.
        assert _advisory_locks_held() == Counter({"ShareLock": 1 + 5, "ExclusiveLock": 5})


def test_an_export_of_more_ids_than_the_lock_table_holds_takes_the_gate_alone(db, org_a) -> None:  # type: ignore[no-untyped-def]
    # 20,000 one-span traces in one export (1.1 MB): a lock per OTel id and per trace_id was 40,000 locks, past
    # PostgreSQL's shared lock table, and the export failed whole ("out of shared memory"), every time it was sent.
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for _ in range(20_000):
        spans.append(_span(uuid.uuid4().bytes, b"\x01" * 8, attributes={"candor.feature": "many-traces"}))
    body = request.SerializeToString()
    with in_tenant(org_a):
        result, errors = services.otlp_ingest(traces=otlp_map(body, "application/x-protobuf"))
        assert errors == [] and result.accepted == 20_000
        assert _advisory_locks_held() == Counter({"ExclusiveLock": 1})  # the organization's gate, nothing else
        stored = Trace.objects.filter(feature__key="many-traces").values("trace_id")
        assert stored.count() == Span.objects.filter(trace_id__in=stored).count() == 20_000


@pytest.mark.parametrize(("traces", "held"), [(3, {"ShareLock": 1, "ExclusiveLock": 3}), (1_500, {"ExclusiveLock": 1})])
def test_a_log_export_locks_its_ids_or_past_the_limit_the_gate_alone(db, org_a, traces, held) -> None:  # type: ignore[no-untyped-def]
    messages = [
        GenAiMessage(uuid.uuid4().hex, uuid.uuid4().hex, "", "gen_ai.user.message", "INPUT", 0, "hello", T0)
        for _ in range(traces)
    ]
    with in_tenant(org_a):
        result = otlp_logs_ingest(messages=messages)
        assert (result.stored, result.waiting) == (traces, traces)
        assert _advisory_locks_held() == Counter(held)


def test_feedback_on_a_trace_a_later_export_continues_moves_with_the_trace(db, org_a) -> None:  # type: ignore[no-untyped-def]
    # The first export holds the LLM child alone (its feature only guessed), the second the root naming the feature:
    # the merge moves the trace, and the feedback given meanwhile moves with it (feature, version, day).
    trace_id, root, child = uuid.uuid4().bytes, b"\x01" * 8, b"\x02" * 8
    first = _export(_span(trace_id, child, root, {"gen_ai.request.model": "gpt-4o-mini"}))
    named: dict[str, object] = {"candor.feature": "moved-by-its-root", "candor.prompt_version": "v7"}
    second = _export(_span(trace_id, root, attributes=named))
    event_id = uuid.uuid4().hex
    thumb = {"event_id": event_id, "trace_id": trace_id.hex(), "kind": "thumb", "value": 1}
    with in_tenant(org_a):
        services.otlp_ingest(traces=otlp_map(first, "application/x-protobuf"))
        services.feedback_ingest(body=json.dumps({"batch": [thumb]}).encode(), source=FeedbackSource.API)
        guessed = Trace.objects.get(trace_id=trace_id.hex())
        event = FeedbackEvent.objects.get(event_id=event_id)
        assert guessed.feature_guessed and event.feature_id == guessed.feature_id
        services.otlp_ingest(traces=otlp_map(second, "application/x-protobuf"))
        trace = Trace.objects.select_related("feature").get(trace_id=trace_id.hex())
        event.refresh_from_db()
        assert trace.feature.key == "moved-by-its-root" and trace.prompt_version_id is not None
        assert (event.feature_id, event.prompt_version_id) == (trace.feature_id, trace.prompt_version_id)
