"""Ingestion: validate fast (msgspec), write in bulk (COPY into a staging table, then upsert).

Every write is idempotent: feedback and outcomes by their client IDs (ON CONFLICT DO
NOTHING), traces by trace_id (a resent trace is merged: later non-empty fields win).
Rollups are not touched here: the (day, feature) partitions a batch changed are marked
dirty and a Celery task recomputes them (see feedback.rollups).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import msgspec
from django.db import connection, transaction
from psycopg.errors import UniqueViolation
from rapidfuzz.distance import LCSseq, Levenshtein

from feedback.prices import Price, PriceBook
from feedback.schemas import (
    FeedbackIn,
    ItemError,
    OutcomeIn,
    SpanIn,
    TraceIn,
    check_time,
    decode_body,
    decode_items,
)
from tenants.schema import current_schema

_json = msgspec.json.Encoder()


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    errors: list[ItemError] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status_code(self) -> int:
        if not self.errors:
            return 200
        return 207 if self.accepted + self.duplicates else 400

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "errors": [e.as_dict() for e in sorted(self.errors, key=lambda e: e.index)],
        }
        if self.warnings:
            body["warnings"] = self.warnings
        return body


def _now() -> datetime:
    return datetime.now(UTC)


def _stage(cursor: Any, ddl: str, table: str, columns: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """COPY rows into a per-connection temporary staging table (created on first use)."""
    cursor.execute(ddl)
    # Staging tables empty themselves at commit (ON COMMIT DELETE ROWS, cheaper than TRUNCATE);
    # only a caller's enclosing transaction (a test, a management command) can leave rows behind.
    if connection.savepoint_ids:
        cursor.execute(f"DELETE FROM {table}")
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _raw_cursor() -> Any:
    # Django's cursor wrapper sets the tenant search_path; psycopg's own cursor does COPY.
    return connection.cursor().cursor


# --- Features and prompt versions -------------------------------------------------------


def _feature_ids(cursor: Any, keys: Iterable[str]) -> dict[str, int]:
    keys = sorted(set(keys))
    if not keys:
        return {}
    cursor.execute(
        "INSERT INTO feedback_feature (key, name, owner_email, created_at) "
        "SELECT k, k, '', now() FROM unnest(%s::text[]) AS k ON CONFLICT (key) DO NOTHING",
        [keys],
    )
    cursor.execute("SELECT key, id FROM feedback_feature WHERE key = ANY(%s)", [keys])
    return dict(cursor.fetchall())


@dataclass
class _PromptSeen:
    feature_id: int
    prompt: str | None
    model: str | None
    params: dict[str, Any] | None
    first: datetime
    last: datetime


def prompt_hash_of(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()[:16]


def _prompt_version_ids(cursor: Any, seen: dict[tuple[str, str], _PromptSeen]) -> dict[tuple[str, str], int]:
    if not seen:
        return {}
    keys = sorted(seen)
    rows = [
        (
            label,
            content_hash,
            seen[(label, content_hash)].feature_id,
            seen[(label, content_hash)].prompt or "",
            seen[(label, content_hash)].model or "",
            _json.encode(seen[(label, content_hash)].params or {}).decode(),
            seen[(label, content_hash)].first,
            seen[(label, content_hash)].last,
        )
        for label, content_hash in keys
    ]
    cursor.executemany(
        """
        INSERT INTO feedback_promptversion
            (label, content_hash, feature_id, prompt_text, model, params, first_seen, last_seen)
        VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s)
        ON CONFLICT (label, content_hash) DO UPDATE SET
            first_seen = LEAST(feedback_promptversion.first_seen, EXCLUDED.first_seen),
            last_seen = GREATEST(feedback_promptversion.last_seen, EXCLUDED.last_seen),
            prompt_text = CASE WHEN feedback_promptversion.prompt_text = ''
                               THEN EXCLUDED.prompt_text ELSE feedback_promptversion.prompt_text END,
            model = CASE WHEN feedback_promptversion.model = ''
                         THEN EXCLUDED.model ELSE feedback_promptversion.model END
        """,
        rows,
    )
    cursor.execute(
        "SELECT label, content_hash, id FROM feedback_promptversion "
        "WHERE (label, content_hash) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        [[k[0] for k in keys], [k[1] for k in keys]],
    )
    return {(label, content_hash): pk for label, content_hash, pk in cursor.fetchall()}


def _price_book(cursor: Any) -> PriceBook:
    cursor.execute(
        "SELECT id, provider, model, input_per_mtok, output_per_mtok, cached_per_mtok, effective_from, effective_to "
        "FROM feedback_modelprice"
    )
    overrides = [
        Price(provider.lower(), model.lower(), inp, out, cached, start, end, f"org:{pk}")
        for pk, provider, model, inp, out, cached, start, end in cursor.fetchall()
    ]
    return PriceBook(overrides)


# --- Dirty rollup partitions ----------------------------------------------------------------

_rollup_hooks: list[Callable[[str], None]] = []
_last_scheduled: dict[str, float] = {}
SCHEDULE_EVERY_SECONDS = 2.0


def on_rollups_dirty(hook: Callable[[str], None]) -> None:
    """Register what runs (after commit) when a batch dirtied rollups; tasks.py registers the Celery task."""
    _rollup_hooks.append(hook)


def _mark_dirty(cursor: Any, partitions: set[tuple[date, int]]) -> None:
    partitions = {(d, f) for d, f in partitions if d is not None and f is not None}
    if not partitions:
        return
    ordered = sorted(partitions)
    cursor.execute(
        "INSERT INTO feedback_rollupdirty (day, feature_id, marked_at) "
        "SELECT d, f, now() FROM unnest(%s::date[], %s::bigint[]) AS x(d, f) "
        "ON CONFLICT (day, feature_id) DO UPDATE SET marked_at = EXCLUDED.marked_at",
        [[d for d, _ in ordered], [f for _, f in ordered]],
    )
    schema = current_schema()
    # Throttled per process: the beat sweep picks up anything a skipped schedule leaves behind.
    if time.monotonic() - _last_scheduled.get(schema, 0.0) >= SCHEDULE_EVERY_SECONDS:
        transaction.on_commit(lambda: _run_rollup_hooks(schema))


def _run_rollup_hooks(schema: str) -> None:
    # Stamped after commit: a rolled-back batch must not hold back the next one's schedule.
    _last_scheduled[schema] = time.monotonic()
    for hook in _rollup_hooks:
        hook(schema)


# --- Traces --------------------------------------------------------------------------------

_TRACE_COLUMNS = (
    "trace_id, feature_id, prompt_version_id, model, provider, input, output, input_tokens, output_tokens, "
    "cached_tokens, cost_usd, cost_source, latency_ms, ttft_ms, status, fallback, guardrail_blocked, "
    "customer_id, user_id, session_id, experiment, variant, metadata, started_at, day, received_at"
)
_STAGE_TRACE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS candor_stage_trace (
    trace_id text, feature_id bigint, prompt_version_id bigint, model text, provider text, input text,
    output text, input_tokens bigint, output_tokens bigint, cached_tokens bigint, cost_usd numeric,
    cost_source text, latency_ms double precision, ttft_ms double precision, status text, fallback boolean,
    guardrail_blocked boolean, customer_id text, user_id text, session_id text, experiment text, variant text,
    metadata jsonb, started_at timestamptz, day date, received_at timestamptz
) ON COMMIT DELETE ROWS"""
_STAGE_SPAN_DDL = """
CREATE TEMP TABLE IF NOT EXISTS candor_stage_span (
    trace_id text, span_id text, parent_span_id text, name text, kind text, start timestamptz, "end" timestamptz,
    model text, input_tokens bigint, output_tokens bigint, cost_usd numeric, attributes jsonb
) ON COMMIT DELETE ROWS"""
# Strings: a later non-empty value wins; numbers and flags: a later non-null value wins.
_MERGE_TRACE = """
UPDATE feedback_trace t SET
    feature_id = s.feature_id,
    prompt_version_id = COALESCE(s.prompt_version_id, t.prompt_version_id),
    model = COALESCE(NULLIF(s.model, ''), t.model),
    provider = COALESCE(NULLIF(s.provider, ''), t.provider),
    input = COALESCE(NULLIF(s.input, ''), t.input),
    output = COALESCE(NULLIF(s.output, ''), t.output),
    input_tokens = COALESCE(s.input_tokens, t.input_tokens),
    output_tokens = COALESCE(s.output_tokens, t.output_tokens),
    cached_tokens = COALESCE(s.cached_tokens, t.cached_tokens),
    cost_usd = CASE WHEN s.cost_source = 'client' THEN s.cost_usd ELSE t.cost_usd END,
    cost_source = CASE WHEN s.cost_source = 'client' THEN 'client' ELSE t.cost_source END,
    latency_ms = COALESCE(s.latency_ms, t.latency_ms),
    ttft_ms = COALESCE(s.ttft_ms, t.ttft_ms),
    status = COALESCE(s.status, t.status),
    fallback = COALESCE(s.fallback, t.fallback),
    guardrail_blocked = COALESCE(s.guardrail_blocked, t.guardrail_blocked),
    customer_id = COALESCE(NULLIF(s.customer_id, ''), t.customer_id),
    user_id = COALESCE(NULLIF(s.user_id, ''), t.user_id),
    session_id = COALESCE(NULLIF(s.session_id, ''), t.session_id),
    experiment = COALESCE(NULLIF(s.experiment, ''), t.experiment),
    variant = COALESCE(NULLIF(s.variant, ''), t.variant),
    metadata = t.metadata || COALESCE(s.metadata, '{}'::jsonb),
    started_at = COALESCE(s.started_at, t.started_at),
    day = COALESCE(s.day, t.day)
FROM candor_stage_trace s
WHERE t.trace_id = s.trace_id AND NOT (s.trace_id = ANY(%s))
RETURNING t.trace_id, t.day, t.feature_id, t.id, t.provider, t.model, t.input_tokens, t.output_tokens,
          t.cached_tokens, t.started_at, t.cost_source
"""


def check_trace(item: TraceIn, now: datetime) -> None:
    check_time(item.started_at, "started_at", now)
    if item.metadata is not None and len(_json.encode(item.metadata)) > 16_384:
        raise ValueError("metadata: larger than 16 KB once encoded")
    for i, span in enumerate(item.spans or ()):
        check_time(span.start, f"spans.{i}.start", now)
        check_time(span.end, f"spans.{i}.end", now)
        if span.start and span.end and span.end < span.start:
            raise ValueError(f"spans.{i}.end: ends before it starts")


def _merge_traces(items: Sequence[tuple[int, TraceIn]]) -> list[tuple[int, TraceIn]]:
    """Collapse repeats of one trace_id inside a batch: later non-null fields win."""
    merged: dict[str, tuple[int, TraceIn]] = {}
    for index, item in items:
        if item.trace_id not in merged:
            merged[item.trace_id] = (index, item)
            continue
        _, earlier = merged[item.trace_id]
        changes = {f: getattr(item, f) for f in item.__struct_fields__ if getattr(item, f) is not None}
        if earlier.metadata and item.metadata:
            changes["metadata"] = {**earlier.metadata, **item.metadata}
        if earlier.spans and item.spans:
            changes["spans"] = [*earlier.spans, *item.spans]
        merged[item.trace_id] = (index, msgspec.structs.replace(earlier, **changes))
    return list(merged.values())


def traces_ingest(*, body: bytes) -> IngestResult:
    now = _now()
    good, errors = decode_body(body, TraceIn, check_trace, now)
    result = traces_ingest_items(items=good, now=now)
    result.errors.extend(errors)
    return result


def traces_ingest_items(*, items: Sequence[tuple[int, TraceIn]], now: datetime | None = None) -> IngestResult:
    """Store already-validated traces (index, item); the OTLP endpoint calls this too."""
    now = now or _now()
    result = IngestResult()
    if not items:
        return result
    # Sorted by trace_id: concurrent batches lock rows in the same order and cannot deadlock.
    merged = sorted(_merge_traces(items), key=lambda pair: pair[1].trace_id)
    with transaction.atomic():
        cursor = _raw_cursor()
        features = _feature_ids(cursor, (item.feature for _, item in merged))
        seen: dict[tuple[str, str], _PromptSeen] = {}
        version_key: dict[str, tuple[str, str]] = {}
        for _, item in merged:
            label = item.prompt_version or (item.prompt_hash[:12] if item.prompt_hash else None)
            if not label:
                continue
            content_hash = item.prompt_hash or (prompt_hash_of(item.prompt) if item.prompt else "")
            key = (label, content_hash)
            version_key[item.trace_id] = key
            at = item.started_at or now
            if key in seen:
                entry = seen[key]
                entry.first, entry.last = min(entry.first, at), max(entry.last, at)
                entry.prompt = entry.prompt or item.prompt
            else:
                seen[key] = _PromptSeen(features[item.feature], item.prompt, item.model, item.params, at, at)
        versions = _prompt_version_ids(cursor, seen)
        book: PriceBook | None = None

        rows = []
        span_rows = []
        for index, item in merged:
            started = item.started_at or now
            cost: Decimal | None = None
            cost_source = ""
            if item.cost_usd is not None:
                cost, cost_source = Decimal(repr(item.cost_usd)), "client"
            elif item.model and (item.input_tokens is not None or item.output_tokens is not None):
                book = book or _price_book(cursor)
                price = book.find(item.provider, item.model, started)
                if price is None:
                    result.warnings.append(
                        {
                            "index": index,
                            "field": "model",
                            "message": f"No price known for model '{item.model}'"
                            f"{' of ' + item.provider if item.provider else ''}: cost left empty. "
                            "Send cost_usd or add the model's price in Settings.",
                        }
                    )
                else:
                    cost = price.cost(item.input_tokens or 0, item.output_tokens or 0, item.cached_tokens or 0)
                    cost_source = price.source
            version = versions.get(version_key[item.trace_id]) if item.trace_id in version_key else None
            rows.append(
                (
                    item.trace_id, features[item.feature], version, item.model, item.provider, item.input,
                    item.output, item.input_tokens, item.output_tokens, item.cached_tokens, cost, cost_source,
                    item.latency_ms, item.ttft_ms, item.status, item.fallback, item.guardrail_blocked,
                    item.customer_id, item.user_id, item.session_id, item.experiment, item.variant,
                    _json.encode(item.metadata).decode() if item.metadata is not None else None,
                    item.started_at, started.astimezone(UTC).date() if item.started_at else None, now,
                )
            )  # fmt: skip
            for span in item.spans or ():
                span_rows.append(_span_row(item.trace_id, span))

        inserted_ids, dirty = _insert_new_traces(cursor, rows, now)
        if inserted_ids is None:
            inserted_ids, dirty, unpriced = _upsert_traces(cursor, rows, lambda: book or _price_book(cursor))
            index_of = {item.trace_id: index for index, item in merged}
            result.warnings += [
                {"index": index_of[trace_id], "field": "model", "message": "No price known for the merged trace's "
                 "model: cost left empty. Send cost_usd or add the model's price in Settings."}
                for trace_id in unpriced
            ]  # fmt: skip
        if span_rows:
            _store_spans(cursor, span_rows)
        _join_feedback(cursor, [row[0] for row in rows])
        _mark_dirty(cursor, dirty)
    result.accepted = len(inserted_ids)
    result.duplicates = len(items) - len(inserted_ids)
    return result


def _join_feedback(cursor: Any, trace_ids: list[str]) -> None:
    """Feedback that arrived before its trace gets the trace's feature, version and day.

    A feedback batch racing this one (it looked the trace up before this commit) can still
    miss; feedback.rollups.feedback_rejoin mends those before every rollup refresh.
    """
    cursor.execute(
        """
        UPDATE feedback_feedbackevent f
           SET feature_id = t.feature_id, prompt_version_id = t.prompt_version_id, trace_day = t.day
          FROM feedback_trace t
         WHERE t.trace_id = ANY(%s) AND f.trace_id = t.trace_id
           AND (f.feature_id IS DISTINCT FROM t.feature_id OR f.trace_day IS DISTINCT FROM t.day
                OR f.prompt_version_id IS DISTINCT FROM t.prompt_version_id)
        """,
        [trace_ids],
    )


# Columns of _TRACE_COLUMNS that are NOT NULL in the table, with their defaults.
_TRACE_DEFAULTS = {3: "", 4: "", 5: "", 6: "", 11: "", 14: "ok", 17: "", 18: "", 19: "", 20: "", 21: "", 22: "{}"}


def _insert_new_traces(cursor: Any, rows: list[tuple[Any, ...]], now: datetime) -> tuple[list[str] | None, set[Any]]:
    """The common case, every trace new: COPY straight into the table (no staging, no upsert).

    A trace that already exists makes the COPY fail on the unique constraint; the savepoint
    rolls it back and the caller takes the merging path. Returns (None, ...) in that case.
    """
    final = []
    for row in rows:
        values = list(row)
        for index, default in _TRACE_DEFAULTS.items():
            if values[index] is None:
                values[index] = default
        if values[23] is None:
            values[23], values[24] = now, now.date()
        final.append(values)
    try:
        with transaction.atomic():
            with cursor.copy(f"COPY feedback_trace ({_TRACE_COLUMNS}) FROM STDIN") as copy:
                for values in final:
                    copy.write_row(values)
    except UniqueViolation:
        return None, set()
    return [values[0] for values in final], {(values[24], values[1]) for values in final}


def _upsert_traces(
    cursor: Any, rows: list[tuple[Any, ...]], price_book: Callable[[], PriceBook]
) -> tuple[list[str], set[Any], list[str]]:
    """Some traces were seen before: stage them, insert the new ones, merge the rest."""
    _stage(cursor, _STAGE_TRACE_DDL, "candor_stage_trace", _TRACE_COLUMNS, rows)
    cursor.execute(
        f"""
        INSERT INTO feedback_trace ({_TRACE_COLUMNS})
        SELECT trace_id, feature_id, prompt_version_id, COALESCE(model, ''), COALESCE(provider, ''),
               COALESCE(input, ''), COALESCE(output, ''), input_tokens, output_tokens, cached_tokens,
               cost_usd, COALESCE(cost_source, ''), latency_ms, ttft_ms, COALESCE(status, 'ok'), fallback,
               guardrail_blocked, COALESCE(customer_id, ''), COALESCE(user_id, ''), COALESCE(session_id, ''),
               COALESCE(experiment, ''), COALESCE(variant, ''), COALESCE(metadata, '{{}}'::jsonb),
               COALESCE(started_at, received_at), COALESCE(day, (received_at AT TIME ZONE 'UTC')::date),
               received_at
        FROM candor_stage_trace
        ON CONFLICT (trace_id) DO NOTHING
        RETURNING trace_id, day, feature_id
        """
    )
    inserted = cursor.fetchall()
    inserted_ids = [trace_id for trace_id, _, _ in inserted]
    dirty: set[tuple[date, int]] = {(d, f) for _, d, f in inserted}
    unpriced: list[str] = []
    if len(inserted) < len(rows):
        # Resent traces: the partitions a merge moves them out of must be recomputed too.
        cursor.execute(
            "SELECT t.day, t.feature_id FROM feedback_trace t JOIN candor_stage_trace s USING (trace_id) "
            "WHERE NOT (t.trace_id = ANY(%s))",
            [inserted_ids],
        )
        dirty.update(cursor.fetchall())
        cursor.execute(_MERGE_TRACE, [inserted_ids])
        merged = cursor.fetchall()
        dirty.update((row[1], row[2]) for row in merged)
        unpriced = _reprice(cursor, price_book(), [(row[0], *row[3:]) for row in merged])
    return inserted_ids, dirty, unpriced


def _reprice(cursor: Any, book: PriceBook, rows: list[tuple[Any, ...]]) -> list[str]:
    """Recompute cost from a trace's current tokens: rows are (trace_id, pk, provider, model,
    input, output, cached, started_at, cost_source). A cost the client sent is never replaced;
    with no price known the cost is cleared, never left stale. Returns the unpriced trace IDs."""
    updates: list[tuple[Decimal | None, str, int]] = []
    unpriced = []
    for trace_id, pk, provider, model, inp, out, cached, started, source in rows:
        if source == "client" or (inp is None and out is None):
            continue
        price = book.find(provider, model, started)
        if price is None:
            updates.append((None, "", pk))
            unpriced.append(trace_id)
        else:
            updates.append((price.cost(inp or 0, out or 0, cached or 0), price.source, pk))
    if updates:
        cursor.executemany("UPDATE feedback_trace SET cost_usd = %s, cost_source = %s WHERE id = %s", updates)
    return unpriced


def _merge_span_rows(earlier: tuple[Any, ...], later: tuple[Any, ...]) -> tuple[Any, ...]:
    values = [new if new not in (None, "") and not (i == 4 and new == "other") else old
              for i, (old, new) in enumerate(zip(earlier, later, strict=True))]  # fmt: skip
    values[11] = _json.encode({**msgspec.json.decode(earlier[11]), **msgspec.json.decode(later[11])}).decode()
    return tuple(values)


def _span_row(trace_id: str, span: SpanIn) -> tuple[Any, ...]:
    return (
        trace_id, span.span_id, span.parent_span_id or "", span.name or "", span.kind, span.start, span.end,
        span.model or "", span.input_tokens, span.output_tokens,
        Decimal(repr(span.cost_usd)) if span.cost_usd is not None else None,
        _json.encode(span.attributes or {}).decode(),
    )  # fmt: skip


def _store_spans(cursor: Any, span_rows: list[tuple[Any, ...]]) -> None:
    columns = (
        'trace_id, span_id, parent_span_id, name, kind, start, "end", model, input_tokens, output_tokens, '
        "cost_usd, attributes"
    )
    # Repeats of a span within the batch merge as they would across batches (later non-empty
    # wins, attributes merge); sorted so concurrent batches lock in the same order.
    merged: dict[tuple[str, str], tuple[Any, ...]] = {}
    for row in span_rows:
        key = (row[0], row[1])
        merged[key] = _merge_span_rows(merged[key], row) if key in merged else row
    unique_rows = sorted(merged.values(), key=lambda r: (r[0], r[1]))
    _stage(cursor, _STAGE_SPAN_DDL, "candor_stage_span", columns, unique_rows)
    cursor.execute(
        f"""
        INSERT INTO feedback_span ({columns}) SELECT {columns} FROM candor_stage_span
        ON CONFLICT (trace_id, span_id) DO UPDATE SET
            parent_span_id = COALESCE(NULLIF(EXCLUDED.parent_span_id, ''), feedback_span.parent_span_id),
            name = COALESCE(NULLIF(EXCLUDED.name, ''), feedback_span.name),
            kind = CASE WHEN EXCLUDED.kind = 'other' THEN feedback_span.kind ELSE EXCLUDED.kind END,
            start = COALESCE(EXCLUDED.start, feedback_span.start),
            "end" = COALESCE(EXCLUDED."end", feedback_span."end"),
            model = COALESCE(NULLIF(EXCLUDED.model, ''), feedback_span.model),
            input_tokens = COALESCE(EXCLUDED.input_tokens, feedback_span.input_tokens),
            output_tokens = COALESCE(EXCLUDED.output_tokens, feedback_span.output_tokens),
            cost_usd = COALESCE(EXCLUDED.cost_usd, feedback_span.cost_usd),
            attributes = feedback_span.attributes || EXCLUDED.attributes
        """
    )


# --- Feedback ------------------------------------------------------------------------------

_FEEDBACK_COLUMNS = (
    "event_id, trace_id, kind, value, comment, original_text, edited_text, edit_distance, kept_ratio, name, "
    "user_id, session_id, prompt_version_label, source, occurred_at, received_at"
)
_STAGE_FEEDBACK_DDL = """
CREATE TEMP TABLE IF NOT EXISTS candor_stage_feedback (
    event_id uuid, trace_id text, kind text, value double precision, comment text, original_text text,
    edited_text text, edit_distance double precision, kept_ratio double precision, name text, user_id text,
    session_id text, prompt_version_label text, source text, occurred_at timestamptz, received_at timestamptz
) ON COMMIT DELETE ROWS"""


def _check_feedback(item: FeedbackIn, now: datetime) -> None:
    try:
        uuid.UUID(item.event_id)
    except ValueError:
        raise ValueError("event_id: must be a UUID, e.g. 0b5c6c4e-2f1d-4d7a-9a51-3f0f8f1f7a10") from None
    check_time(item.occurred_at, "occurred_at", now)
    kind, value = item.kind, item.value
    if kind == "thumb" and value not in (1, -1):
        raise ValueError("value: a thumb is 1 (up) or -1 (down)")
    if kind == "rating" and (value is None or not 1 <= value <= 5):
        raise ValueError("value: a rating is a number from 1 to 5")
    if kind == "dwell" and (value is None or value < 0):
        raise ValueError("value: dwell is the time visible in milliseconds (>= 0)")
    if kind == "edit" and (item.original_text is None or item.edited_text is None):
        raise ValueError("edited_text: an edit needs original_text and edited_text" if item.original_text is not None
                         else "original_text: an edit needs original_text and edited_text")  # fmt: skip
    if kind == "comment" and not (item.comment or "").strip():
        raise ValueError("comment: a comment event needs the comment text")
    if kind == "custom" and not item.name:
        raise ValueError("name: a custom event needs a name")


def edit_measures(original: str, edited: str) -> tuple[float, float]:
    """Normalized Levenshtein distance (0 same, 1 nothing in common) and the share of the original kept."""
    distance = Levenshtein.normalized_distance(original, edited)
    # Longest common subsequence over the original's length: which characters survived the edit.
    kept_ratio = LCSseq.similarity(original, edited) / len(original) if original else (1.0 if not edited else 0.0)
    return float(distance), float(min(max(kept_ratio, 0.0), 1.0))


def feedback_ingest(
    *,
    body: bytes | None = None,
    raw_items: list[Any] | None = None,
    source: str = "api",
    extra_check: Callable[[FeedbackIn], None] | None = None,
) -> IngestResult:
    """Store feedback events. ``extra_check`` adds per-item rules (the widget's signed tokens)."""
    now = _now()

    def check(item: FeedbackIn, at: datetime) -> None:
        _check_feedback(item, at)
        if extra_check is not None:
            extra_check(item)

    if raw_items is not None:
        good, errors = decode_items(raw_items, FeedbackIn, check, now)
    else:
        good, errors = decode_body(body or b"", FeedbackIn, check, now)
    result = IngestResult(errors=errors)
    if not good:
        return result
    rows = {}
    for _, item in good:
        distance = kept = None
        if item.kind == "edit":
            distance, kept = edit_measures(item.original_text or "", item.edited_text or "")
        event_id = str(uuid.UUID(item.event_id))  # canonical: one UUID written two ways is one event
        rows[event_id] = (
            event_id, item.trace_id, item.kind, item.value, item.comment or "", item.original_text or "",
            item.edited_text or "", distance, kept, item.name or "", item.user_id or "", item.session_id or "",
            item.prompt_version or "", source, item.occurred_at or now, now,
        )  # fmt: skip
    with transaction.atomic():
        cursor = _raw_cursor()
        # Sorted by event_id: concurrent batches lock in the same order and cannot deadlock.
        ordered = [rows[key] for key in sorted(rows)]
        inserted = _insert_new_feedback(cursor, ordered)
        if inserted is None:
            inserted = _insert_feedback_skipping_duplicates(cursor, ordered)
        _mark_dirty(cursor, set(inserted))
    result.accepted = len(inserted)
    result.duplicates = len(good) - len(inserted)
    return result


def _insert_new_feedback(cursor: Any, rows: list[tuple[Any, ...]]) -> list[tuple[Any, Any]] | None:
    """The common case, no event seen before: look the traces up, COPY straight into the table.

    A repeated event_id fails the COPY on the unique constraint; the savepoint undoes it and
    the caller takes the de-duplicating path (returns None then).
    """
    cursor.execute(
        "SELECT trace_id, feature_id, prompt_version_id, day FROM feedback_trace WHERE trace_id = ANY(%s)",
        [list({row[1] for row in rows})],
    )
    traces = {trace_id: (feature, version, day) for trace_id, feature, version, day in cursor.fetchall()}
    unknown = (None, None, None)
    try:
        with transaction.atomic():
            columns = f"{_FEEDBACK_COLUMNS}, feature_id, prompt_version_id, trace_day"
            with cursor.copy(f"COPY feedback_feedbackevent ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((*row, *traces.get(row[1], unknown)))
    except UniqueViolation:
        return None
    return [(traces.get(row[1], unknown)[2], traces.get(row[1], unknown)[0]) for row in rows]


def _insert_feedback_skipping_duplicates(cursor: Any, rows: list[tuple[Any, ...]]) -> list[tuple[Any, Any]]:
    _stage(cursor, _STAGE_FEEDBACK_DDL, "candor_stage_feedback", _FEEDBACK_COLUMNS, rows)
    cursor.execute(
        f"""
        INSERT INTO feedback_feedbackevent ({_FEEDBACK_COLUMNS}, feature_id, prompt_version_id, trace_day)
        SELECT s.event_id, s.trace_id, s.kind, s.value, s.comment, s.original_text, s.edited_text,
               s.edit_distance, s.kept_ratio, s.name, s.user_id, s.session_id, s.prompt_version_label,
               s.source, s.occurred_at, s.received_at, t.feature_id, t.prompt_version_id, t.day
        FROM candor_stage_feedback s
        -- LIMIT 1 keeps this an index probe per event, whatever the planner thinks of the
        -- trace table's size (a hash join would scan every trace for each batch).
        LEFT JOIN LATERAL (
            SELECT feature_id, prompt_version_id, day FROM feedback_trace WHERE trace_id = s.trace_id LIMIT 1
        ) t ON true
        ON CONFLICT (event_id) DO NOTHING
        RETURNING trace_day, feature_id
        """
    )
    return list(cursor.fetchall())


# --- Outcomes ------------------------------------------------------------------------------

_STAGE_OUTCOME_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS candor_stage_outcome (outcome_id text, name text, trace_id text, "
    "session_id text, customer_id text, variant text, value_usd numeric, occurred_at timestamptz, "
    "received_at timestamptz) ON COMMIT DELETE ROWS"
)


def _check_outcome(item: OutcomeIn, now: datetime) -> None:
    check_time(item.occurred_at, "occurred_at", now)
    if not item.trace_id and not item.session_id:
        raise ValueError("trace_id: an outcome needs a trace_id or a session_id")


def outcomes_ingest(*, body: bytes) -> IngestResult:
    now = _now()
    good, errors = decode_body(body, OutcomeIn, _check_outcome, now)
    result = IngestResult(errors=errors)
    if not good:
        return result
    rows = {
        item.outcome_id: (
            item.outcome_id, item.name, item.trace_id or "", item.session_id or "", item.customer_id or "",
            item.variant or "", Decimal(repr(item.value_usd)) if item.value_usd is not None else None,
            item.occurred_at or now, now,
        )
        for _, item in good
    }  # fmt: skip
    columns = "outcome_id, name, trace_id, session_id, customer_id, variant, value_usd, occurred_at, received_at"
    with transaction.atomic():
        cursor = _raw_cursor()
        _stage(cursor, _STAGE_OUTCOME_DDL, "candor_stage_outcome", columns, [row for _, row in sorted(rows.items())])
        cursor.execute(
            f"INSERT INTO feedback_outcome ({columns}) SELECT {columns} FROM candor_stage_outcome "
            "ON CONFLICT (outcome_id) DO NOTHING RETURNING trace_id"
        )
        inserted = [trace_id for (trace_id,) in cursor.fetchall()]
        cursor.execute(
            "SELECT DISTINCT day, feature_id FROM feedback_trace WHERE trace_id = ANY(%s)",
            [[t for t in inserted if t]],
        )
        _mark_dirty(cursor, set(cursor.fetchall()))
    result.accepted = len(inserted)
    result.duplicates = len(good) - len(inserted)
    return result


# --- OpenTelemetry -------------------------------------------------------------------------

_ADOPT_ORPHAN = """
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
    status = CASE WHEN o.status = 'error' THEN 'error' ELSE t.status END,
    started_at = LEAST(t.started_at, o.started_at),
    metadata = o.metadata || t.metadata
FROM feedback_trace o
WHERE t.trace_id = %(new)s AND o.trace_id = %(old)s
"""


def otlp_ingest(*, traces: list[dict[str, Any]], now: datetime | None = None) -> tuple[IngestResult, list[ItemError]]:
    """Store traces mapped from OTLP. SDKs export the spans of one trace in several requests
    (children usually before their root), so OTel trace IDs are linked to Candor trace IDs
    and spans stored under a bare OTel ID before the link existed are moved to their trace."""
    now = now or _now()
    with transaction.atomic():
        cursor = _raw_cursor()
        otel_of = [str((t.get("metadata") or {}).get("otel_trace_id", "")) for t in traces]
        explicit = {
            otel: t["trace_id"] for otel, t in zip(otel_of, traces, strict=True) if otel and t["trace_id"] != otel
        }
        if explicit:
            cursor.execute(
                "INSERT INTO feedback_oteltracelink (otel_trace_id, trace_id) "
                "SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT (otel_trace_id) DO NOTHING",
                [list(explicit), list(explicit.values())],
            )
        cursor.execute(
            "SELECT otel_trace_id, trace_id FROM feedback_oteltracelink WHERE otel_trace_id = ANY(%s)",
            [[o for o in otel_of if o]],
        )
        links = dict(cursor.fetchall())
        for otel, trace in zip(otel_of, traces, strict=True):
            if trace["trace_id"] == otel and otel in links:
                trace["trace_id"] = links[otel]
        raw_items: list[bytes | ItemError] = [_json.encode(t) for t in traces]
        good, errors = decode_items(raw_items, TraceIn, check_trace, now)
        result = traces_ingest_items(items=good, now=now)
        dirty: set[tuple[date, int]] = set()
        for otel, trace_id in links.items():
            if otel == trace_id:
                continue
            cursor.execute(_ADOPT_ORPHAN, {"new": trace_id, "old": otel})
            cursor.execute("UPDATE feedback_feedbackevent SET trace_id = %s WHERE trace_id = %s", [trace_id, otel])
            cursor.execute("UPDATE feedback_outcome SET trace_id = %s WHERE trace_id = %s", [trace_id, otel])
            cursor.execute("DELETE FROM feedback_span WHERE trace_id = %s", [otel])
            cursor.execute("DELETE FROM feedback_trace WHERE trace_id = %s RETURNING day, feature_id", [otel])
            adopted = cursor.fetchall()
            if adopted:
                dirty.update(adopted)
                _join_feedback(cursor, [trace_id])  # the moved feedback takes its real trace's feature and day
        _recompute_from_spans(cursor, sorted({item.trace_id for _, item in good}), dirty)
        _mark_dirty(cursor, dirty)
    return result, errors


def _recompute_from_spans(cursor: Any, trace_ids: list[str], dirty: set[tuple[date, int]]) -> None:
    """Trace tokens and cost are the sum over all stored LLM spans, whichever export brought them."""
    if not trace_ids:
        return
    cursor.execute(
        """
        UPDATE feedback_trace t
           SET input_tokens = s.i, output_tokens = s.o, cached_tokens = COALESCE(s.c, t.cached_tokens)
        FROM (SELECT trace_id, sum(input_tokens) i, sum(output_tokens) o,
                     sum((attributes->>'gen_ai.usage.cached_tokens')::bigint) c
              FROM feedback_span WHERE kind = 'llm' AND trace_id = ANY(%s)
              GROUP BY trace_id HAVING count(input_tokens) + count(output_tokens) > 0) s
        WHERE t.trace_id = s.trace_id
        RETURNING t.trace_id, t.id, t.provider, t.model, t.input_tokens, t.output_tokens, t.cached_tokens,
                  t.started_at, t.cost_source, t.day, t.feature_id
        """,
        [trace_ids],
    )
    rows = cursor.fetchall()
    dirty.update((row[9], row[10]) for row in rows)
    if rows:
        _reprice(cursor, _price_book(cursor), [row[:9] for row in rows])


# --- Model prices ----------------------------------------------------------------------------


def model_price_create(
    *,
    provider: str,
    model: str,
    input_per_mtok: Decimal,
    output_per_mtok: Decimal,
    cached_per_mtok: Decimal | None,
    effective_from: datetime,
) -> Any:
    """An organization's own price for a model (wins over the built-in table from effective_from on).

    The organization's previous open-ended price for the same model ends where this one starts.
    """
    from django.core.exceptions import ValidationError

    from feedback.models import ModelPrice

    provider, model = provider.strip().lower(), model.strip().lower()
    if not model:
        raise ValidationError({"model": "Name the model, e.g. gpt-4o-mini."})
    for name, value in (("input_per_mtok", input_per_mtok), ("output_per_mtok", output_per_mtok),
                        ("cached_per_mtok", cached_per_mtok)):  # fmt: skip
        if value is not None and value < 0:
            raise ValidationError({name: "A price cannot be negative."})
    with transaction.atomic():
        ModelPrice.objects.filter(
            provider=provider, model=model, effective_to__isnull=True, effective_from__lt=effective_from
        ).update(effective_to=effective_from)
        return ModelPrice.objects.create(
            provider=provider, model=model, input_per_mtok=input_per_mtok, output_per_mtok=output_per_mtok,
            cached_per_mtok=cached_per_mtok, effective_from=effective_from,
        )  # fmt: skip
