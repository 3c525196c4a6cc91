"""The ingest table declarations agree with the models and the wire types, and the SQL and
Python generated from them do what the declarations say."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, NamedTuple

import msgspec
import pytest
from django.db import models

from feedback.models import FeedbackEvent, Outcome, Span, Trace
from feedback.schemas import FeedbackIn, ItemError, OutcomeIn, SpanIn, TraceIn
from feedback.services.columns import KEY, LATER_NON_EMPTY, LATER_NON_NULL, Col, IngestTable, select_list
from feedback.services.shared import BatchCompleteness, IngestResult
from feedback.services.tables import (
    FEEDBACK_EVENTS,
    FEEDBACK_TRACE_JOIN,
    OUTCOMES,
    SPANS,
    TRACES,
    PricedTrace,
    SpanRow,
    TraceRow,
)

# (declaration, model, wire struct, columns the model has that ingestion does not write itself)
TABLES: list[tuple[IngestTable[Any], type[models.Model], type[msgspec.Struct], set[str]]] = [
    (TRACES, Trace, TraceIn, set()),
    (SPANS, Span, SpanIn, set()),
    (FEEDBACK_EVENTS, FeedbackEvent, FeedbackIn, {name for name, _ in FEEDBACK_TRACE_JOIN.columns}),
    # attributed_trace_id: the session rule's pick, written by the rollup refresh (feedback.rollups).
    (OUTCOMES, Outcome, OutcomeIn, {"attributed_trace_id"}),
]
PG_TYPES = {
    "CharField": "text",
    "TextField": "text",
    "BigIntegerField": "bigint",
    "ForeignKey": "bigint",
    "FloatField": "double precision",
    "DecimalField": "numeric",
    "BooleanField": "boolean",
    "DateTimeField": "timestamptz",
    "DateField": "date",
    "JSONField": "jsonb",
    "UUIDField": "uuid",
}


def _model_columns(model: type[models.Model]) -> dict[str, models.Field[Any, Any]]:
    return {f.column: f for f in model._meta.concrete_fields if not f.primary_key}


@pytest.mark.parametrize(("table", "model", "wire", "joined"), TABLES, ids=[t.table for t, *_ in TABLES])
def test_declaration_covers_the_model(table: IngestTable[Any], model: Any, wire: Any, joined: set[str]) -> None:
    declared = {c.name: c for c in table.columns}
    fields = _model_columns(model)
    assert table.table == model._meta.db_table
    # Every column the model has is written by ingestion (or copied from a related row).
    assert set(declared) | joined == set(fields)
    for name, column in declared.items():
        field = fields[name]
        assert column.pg_type == PG_TYPES[field.get_internal_type()], name
        # A NOT NULL column is never left empty: it has a default, or its row type cannot hold None.
        row_type = table.row.__annotations__[name]
        if not field.null:
            assert column.default is not None or "None" not in str(row_type), f"{name}: NOT NULL with no default"


@pytest.mark.parametrize(("table", "model", "wire", "joined"), TABLES, ids=[t.table for t, *_ in TABLES])
def test_as_sent_columns_are_wire_fields(table: IngestTable[Any], model: Any, wire: Any, joined: set[str]) -> None:
    assert set(table.as_sent_names) <= set(wire.__struct_fields__)


def test_trace_merge_rules() -> None:
    clauses = {line.strip().rstrip(",") for line in TRACES.merge_set(old="t", new="s").splitlines()}
    assert '"model" = COALESCE(NULLIF(s."model", \'\'), t."model")' in clauses
    # A write without its trace's root span (another OTLP export has it) never replaces the root's latency.
    part = "s.root_missing AND NOT t.root_missing"
    latency = 'COALESCE(s."latency_ms", t."latency_ms")'
    assert f'"latency_ms" = CASE WHEN {part} THEN t."latency_ms" ELSE {latency} END' in clauses
    assert '"cached_tokens" = COALESCE(s."cached_tokens", t."cached_tokens")' in clauses
    # A feature only guessed from the OTLP service name never replaces a named one.
    guessed = "s.feature_guessed AND NOT t.feature_guessed"
    assert f'"feature_id" = CASE WHEN {guessed} THEN t."feature_id" ELSE s."feature_id" END' in clauses
    assert '"feature_guessed" = t."feature_guessed" AND s."feature_guessed"' in clauses
    assert '"metadata" = t."metadata" || COALESCE(s."metadata", \'{}\'::jsonb)' in clauses
    assert '"cost_usd" = CASE WHEN s."cost_source" = \'client\' THEN s."cost_usd" ELSE t."cost_usd" END' in clauses
    written = {clause.split(" = ", 1)[0].strip('"') for clause in clauses}
    # The key is matched on, received_at is kept from the first write and cost_by_model is pricing's alone: none is
    # updated.
    assert written == {c.name for c in TRACES.columns} - {"trace_id", "received_at", "cost_by_model"}


def test_staging_and_defaults_sql() -> None:
    assert TRACES.stage_ddl.startswith("CREATE TEMP TABLE IF NOT EXISTS candor_stage_trace (")
    assert '"end" timestamptz' in SPANS.stage_ddl  # a keyword, quoted
    selected = TRACES.select_staged()
    assert "COALESCE(\"status\", 'ok'::text)" in selected
    assert 'COALESCE("started_at", "received_at")' in selected
    assert 'COALESCE("day", ("received_at" AT TIME ZONE \'UTC\')::date)' in selected
    assert select_list(PricedTrace, "t").startswith('t."trace_id", t."id", ')


def _trace_row(**values: Any) -> TraceRow:
    base = {name: None for name in TraceRow._fields}
    return TraceRow(**{**base, "trace_id": "t1", "feature_id": 1, "cost_source": "", **values})


def test_direct_copy_defaults_match_the_staged_ones() -> None:
    received = datetime(2025, 3, 1, 23, 30, tzinfo=UTC) + timedelta(hours=0)
    filled = TRACES.with_defaults(_trace_row(received_at=received))
    assert (filled.model, filled.status, filled.metadata, filled.customer_id) == ("", "ok", "{}", "")
    assert (filled.started_at, filled.day) == (received, date(2025, 3, 1))
    assert filled.input_tokens is None and filled.fallback is None  # nullable columns stay empty
    started = datetime(2025, 2, 1, tzinfo=UTC)
    kept = TRACES.with_defaults(_trace_row(received_at=received, started_at=started, day=date(2025, 2, 1)))
    assert (kept.started_at, kept.day) == (started, date(2025, 2, 1))


def test_repeats_within_a_batch_merge_like_a_resend() -> None:
    first = SpanRow(
        span_id="s", parent_span_id="p", name="search", kind="retrieval", start=None, end=None, model=None,
        input_tokens=5, output_tokens=None, trace_id="t", cost_usd=Decimal("0.1"), attributes='{"a":1,"b":1}',
    )  # fmt: skip
    later = first._replace(parent_span_id="", name="search2", kind="other", input_tokens=None, attributes='{"b":2}')
    merged = SPANS.merged(first, later)
    assert merged.parent_span_id == "p"  # an empty string does not wipe a value
    assert merged.name == "search2"  # a later non-empty value wins
    assert merged.kind == "retrieval"  # "other" only means nobody said
    assert merged.input_tokens == 5 and merged.cost_usd == Decimal("0.1")
    assert msgspec.json.decode(merged.attributes) == {"a": 1, "b": 2}


def test_declarations_are_checked_when_made() -> None:
    class Unannotated(NamedTuple):
        trace_id: str

    with pytest.raises(TypeError, match="exactly one Col"):
        IngestTable(table="x", row=Unannotated, stage="s")

    class SentAfterComputed(NamedTuple):
        computed: Annotated[int, Col("bigint", KEY)]
        sent: Annotated[str, Col("text", LATER_NON_EMPTY, as_sent=True)]

    with pytest.raises(TypeError, match="as_sent columns first"):
        IngestTable(table="x", row=SentAfterComputed, stage="s")

    class Fine(NamedTuple):
        sent: Annotated[str, Col("text", KEY, as_sent=True)]
        other: Annotated[int | None, Col("bigint", LATER_NON_NULL, as_sent=True)]

    assert IngestTable(table="x", row=Fine, stage="s").as_sent_names == ("sent", "other")


def test_batch_completeness_is_a_domain_fact_the_api_maps() -> None:
    error = ItemError(0, "kind", "bad")
    assert IngestResult(accepted=2).completeness is BatchCompleteness.COMPLETE
    assert IngestResult(duplicates=2).completeness is BatchCompleteness.COMPLETE
    assert IngestResult(accepted=1, errors=[error]).completeness is BatchCompleteness.PARTIAL
    assert IngestResult(duplicates=1, errors=[error]).completeness is BatchCompleteness.PARTIAL
    assert IngestResult(errors=[error]).completeness is BatchCompleteness.REJECTED
    assert [IngestResult(accepted=1).status_code, IngestResult(accepted=1, errors=[error]).status_code,
            IngestResult(errors=[error]).status_code] == [200, 207, 400]  # fmt: skip


@pytest.mark.parametrize("table", [TRACES, SPANS], ids=["traces", "spans"])
def test_binary_copy_stores_what_a_text_copy_stores(db: None, table: IngestTable[Any]) -> None:
    """columns.copy_rows (binary COPY, jsonb from JSON text) and a plain text COPY of the same rows agree."""
    from django.db import connection

    from feedback.services.columns import copy_rows

    at = datetime(2025, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)
    values = {"text": "é \\ \t\n \"q\" 𝄞", "bigint": 10**12, "double precision": 1.5, "timestamptz": at,
              "boolean": False, "numeric": Decimal("0.12345678"), "date": date(2025, 3, 1),
              "jsonb": msgspec.json.encode({"a": [1, 2.5, None], "é": "\\n", "b": {"c": True}}).decode()}  # fmt: skip
    full = table.row._make(values[c.pg_type] for c in table.columns)  # type: ignore[attr-defined]
    # Every nullable column empty (NOT NULL ones keep their value: the table's defaults fill those before a COPY).
    sparse = table.with_defaults(
        table.row._make(  # type: ignore[attr-defined]
            None if c.default is not None or c.pg_type not in ("text", "timestamptz") else values[c.pg_type]
            for c in table.columns
        )
    )
    ddl = table.stage_ddl.replace(" ON COMMIT DELETE ROWS", "")
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor
        stored = []
        for name, write in (("text", None), ("binary", copy_rows)):
            into = f"copy_test_{name}"
            cursor.execute(ddl.replace(table.stage, into))
            if write is None:
                with cursor.copy(f"COPY {into} ({table.column_list}) FROM STDIN") as copy:
                    for row in (full, sparse):
                        copy.write_row(row)
            else:
                write(cursor, table, [full, sparse], into=into)
            cursor.execute(f"SELECT {table.column_list} FROM {into} ORDER BY 1 NULLS FIRST")
            stored.append(cursor.fetchall())
    assert stored[0] == stored[1]
    assert len(stored[0]) == 2 and stored[0][0] != stored[0][1]
