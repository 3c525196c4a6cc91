"""OTLP adoption: store traces mapped from OpenTelemetry exports (feedback.otlp does the mapping).

SDKs export the spans of one trace in several requests (children usually before their
root), so OTel trace IDs are linked to Candor trace IDs, and what was stored under a bare
OTel ID before the link existed (spans, feedback, outcomes) is moved to its real trace.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from django.db import transaction
from psycopg.errors import UniqueViolation

from feedback.enums import SpanKind, TraceStatus
from feedback.otlp import (
    FEATURE_GUESSED,
    ROOT_MISSING,
    MappedSpan,
    postgres_micros,
    span_copy_of,
    span_dict,
    span_rows_of,
)
from feedback.prices import COST_FROM_CLIENT, COST_FROM_SPANS, PriceBook
from feedback.schemas import FUTURE_SLACK, MAX_ID, ItemError, TraceIn, check_trace, decode_body
from feedback.services.columns import fetch_as, select_list
from feedback.services.otlp_logs import genai_messages_join, otel_lock_links
from feedback.services.prices import SPAN_CACHED_TOKENS, price_book_load, traces_reprice, traces_usage_from_spans
from feedback.services.shared import IngestResult, raw_cursor, utc_now
from feedback.services.spend import spend_difference, spend_of_stored
from feedback.services.tables import Partition, PricedTrace, SpanRow
from feedback.services.traces import SharedCounts, feedback_join, traces_store
from tenants.schema import search_path_reset

_json = msgspec.json.Encoder()

# The real trace keeps what it has; the orphan (spans stored under the bare OTel ID) fills gaps.
_ADOPT_ORPHAN = f"""
WITH moved AS (
    UPDATE feedback_span SET trace_id = %(new)s
    WHERE trace_id = %(old)s
      AND span_id NOT IN (SELECT span_id FROM feedback_span WHERE trace_id = %(new)s)
)
UPDATE feedback_trace t SET
    model = COALESCE(NULLIF(t.model, ''), o.model),
    provider = COALESCE(NULLIF(t.provider, ''), o.provider),
    input = COALESCE(NULLIF(t.input, ''), o.input),
    output = COALESCE(NULLIF(t.output, ''), o.output),
    status = CASE WHEN o.status = '{TraceStatus.ERROR}' THEN '{TraceStatus.ERROR}' ELSE t.status END,
    started_at = LEAST(t.started_at, o.started_at),
    metadata = o.metadata || t.metadata
FROM feedback_trace o
WHERE t.trace_id = %(new)s AND o.trace_id = %(old)s
"""
# Trace tokens are the sum over all stored LLM spans, whichever export brought them. Summed trace by
# trace through the span key's index: filtered by an ID list, the planner's stale counts scanned the
# whole span table (7.6 ms at 18,000 spans, growing with the table).
# Also returns the models of those spans ('' for none): a trace that called several is priced span by span.
_TOKENS_FROM_SPANS = f"""
UPDATE feedback_trace t
   SET input_tokens = s.i, output_tokens = s.o, cached_tokens = COALESCE(s.c, t.cached_tokens)
FROM unnest(%s::text[]) AS x(trace_id)
CROSS JOIN LATERAL (
      SELECT sum(input_tokens) i, sum(output_tokens) o, sum({SPAN_CACHED_TOKENS})::bigint c,
             array_agg(DISTINCT model) FILTER (WHERE input_tokens IS NOT NULL OR output_tokens IS NOT NULL) m
      FROM feedback_span
      WHERE trace_id = x.trace_id AND kind = '{SpanKind.LLM}'
      HAVING count(input_tokens) + count(output_tokens) > 0) s
WHERE t.trace_id = x.trace_id AND t.cost_source <> '{COST_FROM_SPANS}'
RETURNING {select_list(PricedTrace, "t")}, s.m
"""


def otlp_ingest(
    *, traces: list[tuple[dict[str, Any], list[MappedSpan]]], now: datetime | None = None
) -> tuple[IngestResult, list[ItemError]]:
    """Store traces mapped from OTLP (``feedback.otlp.otlp_map``: each a dict shaped like a
    ``POST /api/v1/traces`` item but for its spans, and its spans).

    Written first with no savepoint around its copies (two statements each through Django's transaction machinery,
    ~7% of an export's Python time): a span stored already (an exporter retrying an export it timed out on) or a
    trace the traces API wrote meanwhile fails that attempt whole, and the export is done again, its copies then
    undone alone where they fail and merged instead."""
    now = now or utc_now()
    pristine = [dict(trace) for trace, _ in traces]  # the ingestion rewrites the trace dicts (links, marks)
    try:
        return _otlp_ingest(traces, now, savepoints=False)
    except UniqueViolation:
        search_path_reset()  # the attempt's rollback may have taken it
        for (trace, _), before in zip(traces, pristine, strict=True):
            trace.clear()
            trace.update(before)
        return _otlp_ingest(traces, now, savepoints=True)


def _otlp_ingest(
    traces: list[tuple[dict[str, Any], list[MappedSpan]]], now: datetime, *, savepoints: bool
) -> tuple[IngestResult, list[ItemError]]:
    with transaction.atomic():
        cursor = raw_cursor()
        otel_of = [str((t.get("metadata") or {}).get("otel_trace_id", "")) for t, _ in traces]
        # Links only to a trace_id a trace can have: one no trace can (too long, a NUL) is refused with its
        # trace below, by the REST decoding's per-item error, and links nothing.
        explicit = {
            otel: t["trace_id"]
            for otel, (t, _) in zip(otel_of, traces, strict=True)
            if otel and t["trace_id"] != otel and _linkable(t["trace_id"])
        }
        # Traces whose feature is a guess: the feature their stored trace names is read with the links.
        guessing = {
            otel
            for otel, (t, _) in zip(otel_of, traces, strict=True)
            if otel and t.get(FEATURE_GUESSED) and (t["trace_id"] == otel or otel in explicit)
        }
        # Before any trace row: GenAI log messages of these traces join in order. Exports of one trace
        # that link it to no Candor trace_id need not wait for each other (an SDK splits traces
        # across exports, and its concurrent exports would otherwise queue on the shared trace).
        links, waiting, stored_named, asked = otel_lock_links(
            cursor,
            otel_of,
            shared=[otel for otel in otel_of if otel not in explicit],
            link=explicit,
            guessing=guessing,
        )
        for otel, (trace, _) in zip(otel_of, traces, strict=True):
            if trace["trace_id"] == otel and otel in links:
                trace["trace_id"] = links[otel]
        guessed, root_missing = _marks(cursor, [trace for trace, _ in traces], stored_named, asked)
        limit = now + FUTURE_SLACK
        # The common case: every trace's spans written in C as the rows of a binary COPY (a retried attempt merges
        # spans stored already, from rows).
        copies = None if savepoints else _span_copies(traces, limit)
        direct: dict[int, list[SpanRow]] = {}
        batch: list[dict[str, Any]] = []
        if copies is not None:
            batch = [trace for trace, _ in traces]
        else:
            # Spans the REST decoding would take as they are become rows here, without a trip through JSON; a
            # trace with any other span sends its spans through that decoding, for the very same per-item error.
            # Their times are read as that decoding reads them (in C, all of the export's at once).
            times = iter(_read_times([at for _, spans in traces for span in spans for at in (span.start, span.end)]))
            for index, (trace, spans) in enumerate(traces):
                rows = span_rows_of(spans, trace["trace_id"], times, limit, SpanRow)
                if rows is None:
                    batch.append({**trace, "spans": [span_dict(span) for span in spans]})
                else:
                    direct[index] = rows
                    batch.append(trace)
        # The REST path's decoding: the whole batch in one call when every trace is valid, else trace by
        # trace with the same per-item errors (a trace's bytes are the same either way).
        good, errors = decode_body(_json.encode({"batch": batch}), TraceIn, check_trace, now, max_items=len(batch))
        span_rows = [row for index, _ in good for row in direct.get(index, ())]
        # A trace the decoding refused has no spans stored, on either path.
        span_copy = [(item.trace_id, copies[index]) for index, item in good] if copies is not None else []
        shared = SharedCounts()
        book = functools.cache(lambda: price_book_load(cursor))
        result, inserted = traces_store(
            items=good,
            now=now,
            expect_known=True,
            span_rows=span_rows,
            span_copy=span_copy,
            shared=shared,
            usage_from_spans=False,
            feature_guessed=guessed,
            root_missing=root_missing,
            price_book=book,
            savepoints=savepoints,
        )
        adopting = {otel: t for otel, t in links.items() if otel != t}
        if adopting:
            # Only into a stored trace: one this export's item was refused for (a time in the future), or one not
            # stored yet, would have its orphan deleted and the orphan's spans and feedback left under no trace.
            # The orphan waits for a later export, as it waited for this one.
            real = sorted(set(adopting.values()))
            cursor.execute("SELECT trace_id FROM feedback_trace WHERE trace_id = ANY(%s)", [real])
            stored = {trace_id for (trace_id,) in cursor.fetchall()}
            adopting = {otel: t for otel, t in adopting.items() if t in stored}
        # A trace this batch stored new from one mapped export, with no orphan to adopt, already has
        # its tokens and cost from exactly the spans stored with it: nothing below can change it.
        sent = Counter(item.trace_id for _, item in good)
        # Nor one whose LLM calls went to several models: priced span by span below, each at its own model.
        several = {trace["trace_id"] for trace, spans in traces if _several_models(trace, spans)}
        settled = {trace_id for trace_id in inserted if sent[trace_id] == 1} - set(adopting.values()) - several
        # An adopting trace is summed again, whether or not this export's item for it was stored.
        unsettled = sorted((set(sent) | set(adopting.values())) - settled)
        # Adoption and repricing below change stored costs too: the spend counters move by the difference. Traces
        # merged from parameters had what they counted for before their merge subtracted already (pending_after).
        touched = sorted({*unsettled, *adopting})
        pending = shared.pending_after
        measured = [trace_id for trace_id in touched if trace_id not in pending]
        spent_before = spend_of_stored(cursor, measured, lock=True) if measured else {}
        dirty: set[Partition] = set()
        for otel, trace_id in adopting.items():
            cursor.execute(_ADOPT_ORPHAN, {"new": trace_id, "old": otel})
            cursor.execute("UPDATE feedback_feedbackevent SET trace_id = %s WHERE trace_id = %s", [trace_id, otel])
            cursor.execute("UPDATE feedback_outcome SET trace_id = %s WHERE trace_id = %s", [trace_id, otel])
            cursor.execute("DELETE FROM feedback_span WHERE trace_id = %s", [otel])
            cursor.execute(f"DELETE FROM feedback_trace WHERE trace_id = %s RETURNING {select_list(Partition)}", [otel])
            adopted = fetch_as(cursor, Partition)
            if adopted:
                dirty.update(adopted)
                feedback_join(cursor, [trace_id])  # the moved feedback takes its real trace's feature and day
        index_of = {item.trace_id: index for index, item in good}
        result.warnings += [
            {"index": index_of[trace_id], "field": "spans", "message": message}
            for trace_id, message in _recompute_from_spans(cursor, unsettled, dirty, book).items()
            if trace_id in index_of
        ]
        genai_messages_join(cursor, waiting)  # messages logged before their spans arrived
        counted = sorted({*touched, *pending})
        shared.add(spend_difference(spend_of_stored(cursor, counted), spent_before) if counted else {}, dirty)
        shared.write(cursor)  # spend counters and rollup marks: once, last
    return result, errors


def _marks(
    cursor: Any, traces: list[dict[str, Any]], stored_named: dict[str, str], asked: set[str]
) -> tuple[set[str], set[str]]:
    """The trace_ids whose feature these exports only guessed (the service's name), and those whose root span none
    of them held, taking the mapping's marks out of each trace (feedback.otlp.MARKS). A guess gives way to the
    feature a span named, in another trace of this batch or in the stored trace: a child exported after its root
    neither moves the trace nor makes an empty feature of the service.

    ``stored_named``: the features stored traces name, read already for the trace_ids in ``asked`` (otel_lock_links);
    any other guessed trace's is read here."""
    guessing: list[dict[str, Any]] = []
    named: dict[str, str] = {}
    rooted: set[str] = set()
    parts: set[str] = set()
    for trace in traces:
        trace_id = trace["trace_id"]
        if trace.pop(FEATURE_GUESSED, False):
            guessing.append(trace)
        else:
            named[trace_id] = trace["feature"]
        (parts if trace.pop(ROOT_MISSING, False) else rooted).add(trace_id)
    guessed = {trace["trace_id"] for trace in guessing} - set(named)
    named.update((trace_id, stored_named[trace_id]) for trace_id in guessed & asked if trace_id in stored_named)
    unread = sorted(trace_id for trace_id in guessed - asked if _linkable(trace_id))
    if unread:
        cursor.execute(
            "SELECT t.trace_id, f.key FROM feedback_trace t JOIN feedback_feature f ON f.id = t.feature_id "
            "WHERE t.trace_id = ANY(%s) AND NOT t.feature_guessed",
            [unread],
        )
        named.update(cursor.fetchall())
    for trace in guessing:
        trace["feature"] = named.get(trace["trace_id"], trace["feature"])
    return guessed, parts - rooted


_read_times = functools.partial(msgspec.convert, type=list[datetime | None])


def _span_copies(traces: list[tuple[dict[str, Any], list[MappedSpan]]], limit: datetime) -> list[bytes] | None:
    """Each trace's spans as binary COPY rows (feedback.otlp.span_copy_of), or None when one trace needs the rows
    path: all the export's spans go one way, in one COPY ordered as _store_spans orders rows (so that concurrent
    exports lock alike). A trace_id that comes twice (two OTel traces linked to one trace) merges there too."""
    copies: list[bytes] = []
    seen: set[str] = set()
    limit_us = postgres_micros(limit)
    for trace, spans in traces:
        trace_id = trace["trace_id"]
        if not isinstance(trace_id, str) or trace_id in seen:
            return None
        seen.add(trace_id)
        rows = span_copy_of(spans, trace_id, limit_us)
        if rows is None:
            return None
        copies.append(rows)
    return copies


def _several_models(trace: dict[str, Any], spans: list[MappedSpan]) -> bool:
    """Whether the trace's LLM spans with token counts name more than one model (a span naming none, the trace's).
    A loop that stops at the second model: a set over a generator per trace was ~1 us a span of the export."""
    first: str | None = None
    for span in spans:
        if span.kind == _LLM and (span.input_tokens is not None or span.output_tokens is not None):
            model = span.model or trace.get("model") or ""
            if first is None:
                first = model
            elif model != first:
                return True
    return False


_LLM = SpanKind.LLM.value


def _linkable(trace_id: Any) -> bool:
    """A trace_id the traces API takes (schemas.Id), so one a link row may name."""
    return isinstance(trace_id, str) and 0 < len(trace_id) <= MAX_ID and "\x00" not in trace_id


def _recompute_from_spans(
    cursor: Any, trace_ids: list[str], dirty: set[Partition], book: Callable[[], PriceBook]
) -> dict[str, str]:
    """Trace tokens and cost are the sum over all stored LLM spans, whichever export brought them; a trace
    whose usage came from its spans as the traces API sums them (its spans each priced at their own model)
    is summed that way again. Returns why each trace left unpriced is."""
    if not trace_ids:
        return {}
    cursor.execute(_TOKENS_FROM_SPANS, [trace_ids])
    rows = cursor.fetchall()
    traces = [PricedTrace._make(row[:-1]) for row in rows]
    dirty.update(Partition(trace.day, trace.feature_id) for trace in traces)
    # Its LLM calls went to several models: each span is priced at its own (a cost sent for the trace stays).
    several = sorted(
        trace.trace_id
        for trace, row in zip(traces, rows, strict=True)
        # A span naming no model is priced at the trace's, as _several_models counts it.
        if len({model or trace.model for model in row[-1] or ()}) > 1 and trace.cost_source != COST_FROM_CLIENT
    )
    once = [trace for trace in traces if trace.trace_id not in several]
    unpriced = traces_reprice(cursor, book(), once) if once else {}
    rest = sorted(set(trace_ids) - {trace.trace_id for trace in traces})
    # The caller reads the spend counters' move from the stored rows: what these return of it is not needed.
    from_spans, _ = traces_usage_from_spans(cursor, book, rest) if rest else ({}, {})
    by_span, _ = traces_usage_from_spans(cursor, book, several, every=True) if several else ({}, {})
    return unpriced | from_spans | by_span
