"""The ingest tables, declared once: each field is a column ingestion writes (in COPY order),
with its PostgreSQL type, its merge rule on resend and its NOT NULL default.

Adding an optional trace column sent by clients: one line in TraceRow's "as sent" block
(plus the model field, its migration and the wire field in feedback.schemas.TraceIn).
Everything else (COPY list, staging DDL, INSERT ... SELECT, merge SET clauses, row
building) follows from these declarations; see feedback.services.columns.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, NamedTuple

from feedback.enums import SpanKind, TraceStatus
from feedback.otlp import SPAN_COPY_COLUMNS
from feedback.prices import COST_FROM_CLIENT
from feedback.services.columns import (
    JSON_MERGED,
    KEPT_FIRST,
    KEY,
    LATER_NON_EMPTY,
    LATER_NON_NULL,
    Col,
    IngestTable,
    Joined,
    JoinedColumns,
    Merge,
    copy_of,
    later_if,
    later_unless,
    utc_day_of,
)

# What an unsent time or day defaults to: when the row was received.
WHEN_RECEIVED = copy_of("received_at")
DAY_RECEIVED = utc_day_of("received_at")
# A client's own cost replaces the stored one; a computed cost is recomputed after the merge.
CLIENT_COST = later_if("cost_source", COST_FROM_CLIENT)
# A feature the OTLP mapping took from the service name (no span of that export named candor.feature: a child
# exported before or after its root) never moves a trace out of the feature a span named; a named one replaces it.
FEATURE = Merge(
    "later wins, unless guessed over named",
    "CASE WHEN {new_row}.feature_guessed AND NOT {old_row}.feature_guessed THEN {old} ELSE {new} END",
    None,
)
# True while every write said so (a feature guessed, a root missing).
EVERY_WRITE = Merge("while every write says so", "{old} AND {new}", lambda old, new: old and new)
# A write from OTLP spans that all have a parent (root_missing: the root span is in another export) never replaces
# what the root told: its start and day are the earliest seen until the root comes, its latency gives way to the
# root's, and an error of any span sticks (the mapping's rule for one export: any span's error is the trace's).
_PART = "{new_row}.root_missing"
_PART_OVER_ROOT = "{new_row}.root_missing AND NOT {old_row}.root_missing"
ROOT_START = Merge(
    "the root's, else the earliest",
    f"CASE WHEN {_PART_OVER_ROOT} THEN {{old}} WHEN {_PART} THEN LEAST({{old}}, {{new}}) "
    "ELSE COALESCE({new}, {old}) END",
    None,
)
ROOT_LATENCY = Merge(
    "the root's, later non-null",
    f"CASE WHEN {_PART_OVER_ROOT} THEN {{old}} ELSE COALESCE({{new}}, {{old}}) END",
    None,
)
# A time to first token is never past the whole call's (as on a first write: traces_store): a resent TTFT longer
# than the latency the merge keeps is not stored, the stored one staying if it fits; a stored TTFT longer than a
# resent, shorter latency goes. (A NULL latency holds any TTFT.)
_LATENCY_KEPT = (
    f'CASE WHEN {_PART_OVER_ROOT} THEN {{old_row}}."latency_ms" '
    'ELSE COALESCE({new_row}."latency_ms", {old_row}."latency_ms") END'
)
TTFT_WITHIN_LATENCY = Merge(
    "later non-null, never past the latency kept",
    f"CASE WHEN {{new}} <= COALESCE({_LATENCY_KEPT}, 'Infinity') THEN {{new}} "
    f"WHEN {{old}} <= COALESCE({_LATENCY_KEPT}, 'Infinity') THEN {{old}} END",
    None,
)
STICKY_ERROR = Merge(
    "later non-null, an error of a part sticks",
    f"CASE WHEN ({_PART} OR {{old_row}}.root_missing) AND '{TraceStatus.ERROR.value}' IN ({{old}}, {{new}}) "
    f"THEN '{TraceStatus.ERROR.value}' ELSE COALESCE({{new}}, {{old}}) END",
    None,
)


class TraceRow(NamedTuple):
    # As sent: TraceIn's field of the same name, unchanged.
    trace_id: Annotated[str, Col("text", KEY, as_sent=True)]
    model: Annotated[str | None, Col("text", LATER_NON_EMPTY, default="", as_sent=True)]
    provider: Annotated[str | None, Col("text", LATER_NON_EMPTY, default="", as_sent=True)]
    input: Annotated[str | None, Col("text", LATER_NON_EMPTY, default="", as_sent=True)]
    output: Annotated[str | None, Col("text", LATER_NON_EMPTY, default="", as_sent=True)]
    input_tokens: Annotated[int | None, Col("bigint", LATER_NON_NULL, as_sent=True)]
    output_tokens: Annotated[int | None, Col("bigint", LATER_NON_NULL, as_sent=True)]
    cached_tokens: Annotated[int | None, Col("bigint", LATER_NON_NULL, as_sent=True)]
    latency_ms: Annotated[float | None, Col("double precision", ROOT_LATENCY, as_sent=True)]
    ttft_ms: Annotated[float | None, Col("double precision", TTFT_WITHIN_LATENCY, as_sent=True)]
    status: Annotated[str | None, Col("text", STICKY_ERROR, default=TraceStatus.OK.value, as_sent=True)]
    fallback: Annotated[bool | None, Col("boolean", LATER_NON_NULL, as_sent=True)]
    guardrail_blocked: Annotated[bool | None, Col("boolean", LATER_NON_NULL, as_sent=True)]
    customer_id: Annotated[str | None, Col("text", LATER_NON_EMPTY, default="", as_sent=True)]
    user_id: Annotated[str | None, Col("text", LATER_NON_EMPTY, default="", as_sent=True)]
    session_id: Annotated[str | None, Col("text", LATER_NON_EMPTY, default="", as_sent=True)]
    experiment: Annotated[str | None, Col("text", LATER_NON_EMPTY, default="", as_sent=True)]
    variant: Annotated[str | None, Col("text", LATER_NON_EMPTY, default="", as_sent=True)]
    started_at: Annotated[datetime | None, Col("timestamptz", ROOT_START, default=WHEN_RECEIVED, as_sent=True)]
    # Computed at ingestion.
    feature_id: Annotated[int, Col("bigint", FEATURE)]
    prompt_version_id: Annotated[int | None, Col("bigint", LATER_NON_NULL)]
    cost_usd: Annotated[Decimal | None, Col("numeric", CLIENT_COST)]
    cost_source: Annotated[str, Col("text", CLIENT_COST, default="")]
    metadata: Annotated[str | None, Col("jsonb", JSON_MERGED, default="{}")]  # JSON text
    day: Annotated[date | None, Col("date", ROOT_START, default=DAY_RECEIVED)]
    received_at: Annotated[datetime, Col("timestamptz", KEPT_FIRST)]
    # Written by pricing span by span alone (services.prices.traces_usage_from_spans), never by a row: kept.
    cost_by_model: Annotated[str | None, Col("jsonb", KEPT_FIRST)] = None
    feature_guessed: Annotated[bool, Col("boolean", EVERY_WRITE)] = False
    root_missing: Annotated[bool, Col("boolean", EVERY_WRITE)] = False


TRACES = IngestTable(table="feedback_trace", row=TraceRow, stage="candor_stage_trace")


class SpanRow(NamedTuple):
    # As sent: SpanIn's field of the same name, unchanged.
    span_id: Annotated[str, Col("text", KEY, as_sent=True)]
    parent_span_id: Annotated[str | None, Col("text", LATER_NON_EMPTY, default="", as_sent=True)]
    name: Annotated[str | None, Col("text", LATER_NON_EMPTY, default="", as_sent=True)]
    kind: Annotated[str, Col("text", later_unless(SpanKind.OTHER.value), as_sent=True)]
    start: Annotated[datetime | None, Col("timestamptz", LATER_NON_NULL, as_sent=True)]
    end: Annotated[datetime | None, Col("timestamptz", LATER_NON_NULL, as_sent=True)]
    model: Annotated[str | None, Col("text", LATER_NON_EMPTY, default="", as_sent=True)]
    input_tokens: Annotated[int | None, Col("bigint", LATER_NON_NULL, as_sent=True)]
    output_tokens: Annotated[int | None, Col("bigint", LATER_NON_NULL, as_sent=True)]
    # Computed at ingestion.
    trace_id: Annotated[str, Col("text", KEY)]
    cost_usd: Annotated[Decimal | None, Col("numeric", LATER_NON_NULL)]
    attributes: Annotated[str, Col("jsonb", JSON_MERGED, default="{}")]  # JSON text


SPANS = IngestTable(table="feedback_span", row=SpanRow, stage="candor_stage_span")
if tuple((column.name, column.pg_type) for column in SPANS.columns) != SPAN_COPY_COLUMNS:  # the OTLP path's C
    raise TypeError("SpanRow's columns are not feedback.otlp.SPAN_COPY_COLUMNS: change both (and span_copy's C)")


class FeedbackEventRow(NamedTuple):
    """Stored once: a resent event_id is a duplicate, never a merge."""

    # As sent: FeedbackIn's field of the same name, unchanged.
    trace_id: Annotated[str, Col("text", as_sent=True)]
    kind: Annotated[str, Col("text", as_sent=True)]
    value: Annotated[float | None, Col("double precision", as_sent=True)]
    comment: Annotated[str | None, Col("text", default="", as_sent=True)]
    original_text: Annotated[str | None, Col("text", default="", as_sent=True)]
    edited_text: Annotated[str | None, Col("text", default="", as_sent=True)]
    name: Annotated[str | None, Col("text", default="", as_sent=True)]
    user_id: Annotated[str | None, Col("text", default="", as_sent=True)]
    session_id: Annotated[str | None, Col("text", default="", as_sent=True)]
    occurred_at: Annotated[datetime | None, Col("timestamptz", default=WHEN_RECEIVED, as_sent=True)]
    # Computed at ingestion.
    event_id: Annotated[str, Col("uuid", KEY)]  # canonical form
    prompt_version_label: Annotated[str | None, Col("text", default="")]
    edit_distance: Annotated[float | None, Col("double precision")]
    kept_ratio: Annotated[float | None, Col("double precision")]
    source: Annotated[str, Col("text")]
    received_at: Annotated[datetime, Col("timestamptz")]


FEEDBACK_EVENTS = IngestTable(table="feedback_feedbackevent", row=FeedbackEventRow, stage="candor_stage_feedback")


class TraceJoin(NamedTuple):
    """What a feedback event copies from its trace once the trace is known (None until then)."""

    feature_id: Annotated[int | None, Joined("bigint", source="feature_id")]
    prompt_version_id: Annotated[int | None, Joined("bigint", source="prompt_version_id")]
    trace_day: Annotated[date | None, Joined("date", source="day")]


FEEDBACK_TRACE_JOIN = JoinedColumns(TraceJoin)
NOT_JOINED = TraceJoin(None, None, None)


class OutcomeRow(NamedTuple):
    """Stored once: a resent outcome_id is a duplicate, never a merge."""

    # As sent: OutcomeIn's field of the same name, unchanged.
    outcome_id: Annotated[str, Col("text", KEY, as_sent=True)]
    name: Annotated[str, Col("text", as_sent=True)]
    trace_id: Annotated[str | None, Col("text", default="", as_sent=True)]
    session_id: Annotated[str | None, Col("text", default="", as_sent=True)]
    customer_id: Annotated[str | None, Col("text", default="", as_sent=True)]
    variant: Annotated[str | None, Col("text", default="", as_sent=True)]
    occurred_at: Annotated[datetime | None, Col("timestamptz", default=WHEN_RECEIVED, as_sent=True)]
    # Computed at ingestion.
    value_usd: Annotated[Decimal | None, Col("numeric")]
    received_at: Annotated[datetime, Col("timestamptz")]


OUTCOMES = IngestTable(table="feedback_outcome", row=OutcomeRow, stage="candor_stage_outcome")


# --- What the writes read back -----------------------------------------------------------------


class Partition(NamedTuple):
    """A (day, feature) rollup partition a write touched."""

    day: date | None
    feature_id: int | None


class StoredTrace(NamedTuple):
    trace_id: str
    day: date
    feature_id: int


class PricedTrace(NamedTuple):
    """A stored trace as repricing needs it, and the partition it lies in."""

    trace_id: str
    id: int
    provider: str
    model: str
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    started_at: datetime
    cost_source: str
    day: date
    feature_id: int
    cost_usd: Decimal | None  # as stored: a repricing that comes to it writes nothing
