"""Feedback event ingestion: stored once per event_id (a resend is a duplicate), with the
report columns of its trace (feature, prompt version, day) copied on when the trace is known."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from django.db import transaction
from psycopg.errors import UniqueViolation

from feedback.edits import edit_measures
from feedback.enums import FeedbackKind, FeedbackSource
from feedback.schemas import FeedbackIn, check_feedback, decode_body, decode_items
from feedback.services.columns import column_list, fetch_as, quoted, select_list
from feedback.services.shared import IngestResult, mark_dirty, raw_cursor, rollups_nudge, stage, utc_now
from feedback.services.spend import usage_count
from feedback.services.tables import (
    FEEDBACK_EVENTS,
    FEEDBACK_TRACE_JOIN,
    NOT_JOINED,
    FeedbackEventRow,
    Partition,
    TraceJoin,
)
from tenants.schema import SCHEMA_TOKEN, current_schema, in_schema, run_prepared

_COPY = f"COPY {FEEDBACK_EVENTS.table} ({FEEDBACK_EVENTS.column_list}, {FEEDBACK_TRACE_JOIN.column_list}) FROM STDIN"
_TRACES_OF = f"SELECT trace_id, {FEEDBACK_TRACE_JOIN.select()} FROM feedback_trace WHERE trace_id = ANY(%s)"
_INSERT_STAGED = f"""
INSERT INTO {FEEDBACK_EVENTS.table} ({FEEDBACK_EVENTS.column_list}, {FEEDBACK_TRACE_JOIN.column_list})
SELECT {FEEDBACK_EVENTS.select_staged("s")}, {column_list((name for name, _ in FEEDBACK_TRACE_JOIN.columns), "t")}
FROM {FEEDBACK_EVENTS.stage} s
-- LIMIT 1 keeps this an index probe per event, whatever the planner thinks of the
-- trace table's size (a hash join would scan every trace for each batch).
LEFT JOIN LATERAL (
    SELECT {FEEDBACK_TRACE_JOIN.select()} FROM feedback_trace WHERE trace_id = s.trace_id LIMIT 1
) t ON true
ON CONFLICT (event_id) DO NOTHING
RETURNING {select_list(Partition, day='"trace_day"', feature_id='"feature_id"')}
"""


# A small batch (the widget's handful of events) is written by one statement: no transaction to
# open, no staging table, no savepoint; in autocommit it is durable when it returns.
# The rows travel as one JSON array (one parameter, encoded by msgspec at C speed) and keep the
# statement's text the same whatever the count, so it is prepared once per connection and schema;
# it names the organization's tables outright (tenants.schema.in_schema), no search_path to set.
# It runs through libpq's own calls (tenants.schema.run_prepared): placeholders $1, $2.
SMALL_BATCH = 20
_encode = msgspec.json.Encoder().encode
_INSERT_SMALL = f"""
WITH v AS (
    SELECT * FROM json_to_recordset($1::json)
    AS v({", ".join(f"{quoted(c.name)} {c.pg_type}" for c in FEEDBACK_EVENTS.columns)})
), stored AS (
    INSERT INTO {SCHEMA_TOKEN}.{FEEDBACK_EVENTS.table}
        ({FEEDBACK_EVENTS.column_list}, {FEEDBACK_TRACE_JOIN.column_list})
    SELECT {FEEDBACK_EVENTS.select_staged("v")}, {column_list((name for name, _ in FEEDBACK_TRACE_JOIN.columns), "t")}
    FROM v LEFT JOIN LATERAL (
        SELECT {FEEDBACK_TRACE_JOIN.select()} FROM {SCHEMA_TOKEN}.feedback_trace WHERE trace_id = v.trace_id LIMIT 1
    ) t ON true
    ORDER BY v.event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING trace_day, feature_id
), usage AS (
    INSERT INTO {SCHEMA_TOKEN}.feedback_usagecounter (day, kind, quantity)
    SELECT $2::date, 'feedback', count(*) FROM stored HAVING count(*) > 0
), dirty AS (
    INSERT INTO {SCHEMA_TOKEN}.feedback_rollupdirty (day, feature_id, marked_at)
    SELECT DISTINCT trace_day, feature_id, now() FROM stored WHERE trace_day IS NOT NULL AND feature_id IS NOT NULL
    ORDER BY 1, 2
    ON CONFLICT (day, feature_id) DO UPDATE SET marked_at = EXCLUDED.marked_at
)
SELECT count(*), count(*) FILTER (WHERE trace_day IS NOT NULL AND feature_id IS NOT NULL) FROM stored
"""


def feedback_ingest(
    *,
    body: bytes | None = None,
    raw_items: list[Any] | None = None,
    source: str = FeedbackSource.API.value,
    extra_check: Callable[[FeedbackIn], None] | None = None,
) -> IngestResult:
    """Store feedback events. ``extra_check`` adds per-item rules (the widget's signed tokens)."""
    now = utc_now()

    def check(item: FeedbackIn, at: datetime) -> None:
        check_feedback(item, at)
        if extra_check is not None:
            extra_check(item)

    if raw_items is not None:
        good, errors = decode_items(raw_items, FeedbackIn, check, now)
    else:
        good, errors = decode_body(body or b"", FeedbackIn, check, now)
    result = IngestResult(errors=errors)
    if not good:
        return result
    rows: dict[str, FeedbackEventRow] = {}
    for _, item in good:
        event_id = str(uuid.UUID(item.event_id))  # canonical: one UUID written two ways is one event
        if event_id in rows:  # sent twice in one batch: the first is kept, as across batches
            continue
        distance = kept = None
        if item.kind == FeedbackKind.EDIT:
            measures = edit_measures(item.original_text or "", item.edited_text or "")
            distance, kept = measures.distance, measures.kept_ratio
        rows[event_id] = FeedbackEventRow(  # type: ignore[misc]  # as_sent() fills the leading fields
            *FEEDBACK_EVENTS.as_sent(item),
            event_id=event_id,
            prompt_version_label=item.prompt_version,
            edit_distance=distance,
            kept_ratio=kept,
            source=source,
            received_at=now,
        )
    if len(rows) <= SMALL_BATCH:
        result.accepted = _insert_small(list(rows.values()), now)
        result.duplicates = len(good) - result.accepted
        return result
    with transaction.atomic():
        cursor = raw_cursor()
        # Sorted by event_id: concurrent batches lock in the same order and cannot deadlock.
        ordered = [rows[key] for key in sorted(rows)]
        inserted = _insert_new(cursor, ordered)
        if inserted is None:
            inserted = _insert_skipping_duplicates(cursor, ordered)
        usage_count(cursor, kind="feedback", quantity=len(inserted), received=now)
        mark_dirty(cursor, inserted)
    result.accepted = len(inserted)
    result.duplicates = len(good) - len(inserted)
    return result


def _insert_small(rows: list[FeedbackEventRow], now: datetime) -> int:
    """One statement: the events with their traces' columns, the usage count and the rollup marks."""
    schema = current_schema()
    payload = _encode([row._asdict() for row in rows])
    [(stored, joined)] = run_prepared(
        in_schema(_INSERT_SMALL, schema), [payload, now.astimezone(UTC).date().isoformat().encode()]
    )
    if joined != b"0":
        rollups_nudge(schema)
    return int(stored or 0)


def _insert_new(cursor: Any, rows: list[FeedbackEventRow]) -> list[Partition] | None:
    """The common case, no event seen before: look the traces up, COPY straight into the table.

    A repeated event_id fails the COPY on the unique constraint; the savepoint undoes it and
    the caller takes the de-duplicating path (returns None then).
    """
    cursor.execute(_TRACES_OF, [list({row.trace_id for row in rows})])
    traces = {trace_id: TraceJoin._make(joined) for trace_id, *joined in cursor.fetchall()}
    joins = [traces.get(row.trace_id, NOT_JOINED) for row in rows]
    try:
        with transaction.atomic():
            with cursor.copy(_COPY) as copy:
                for row, join in zip(rows, joins, strict=True):
                    copy.write_row(FEEDBACK_EVENTS.with_defaults(row) + join)
    except UniqueViolation:
        return None
    return [Partition(join.trace_day, join.feature_id) for join in joins]


def _insert_skipping_duplicates(cursor: Any, rows: list[FeedbackEventRow]) -> list[Partition]:
    stage(cursor, FEEDBACK_EVENTS, rows)
    cursor.execute(_INSERT_STAGED)
    return fetch_as(cursor, Partition)
