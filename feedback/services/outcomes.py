"""Outcome ingestion: business events tied to a trace or a session, stored once per outcome_id."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from feedback.schemas import OutcomeIn, check_outcome, decode_body
from feedback.services.columns import fetch_as, select_list
from feedback.services.shared import IngestResult, mark_dirty, raw_cursor, stage, utc_now
from feedback.services.tables import OUTCOMES, OutcomeRow, Partition

_INSERT_STAGED = f"""
INSERT INTO {OUTCOMES.table} ({OUTCOMES.column_list})
SELECT {OUTCOMES.select_staged()} FROM {OUTCOMES.stage}
ON CONFLICT (outcome_id) DO NOTHING
RETURNING trace_id
"""
_PARTITIONS_OF_TRACES = f"SELECT DISTINCT {select_list(Partition)} FROM feedback_trace WHERE trace_id = ANY(%s)"


def outcomes_ingest(*, body: bytes) -> IngestResult:
    now = utc_now()
    good, errors = decode_body(body, OutcomeIn, check_outcome, now)
    result = IngestResult(errors=errors)
    if not good:
        return result
    rows: dict[str, OutcomeRow] = {}
    for _, item in good:
        if item.outcome_id in rows:  # sent twice in one batch: the first is kept, as across batches
            continue
        rows[item.outcome_id] = OutcomeRow(  # type: ignore[misc]  # as_sent() fills the leading fields
            *OUTCOMES.as_sent(item),
            value_usd=Decimal(repr(item.value_usd)) if item.value_usd is not None else None,
            received_at=now,
        )
    with transaction.atomic():
        cursor = raw_cursor()
        # Sorted by outcome_id: concurrent batches lock in the same order and cannot deadlock.
        stage(cursor, OUTCOMES, [rows[key] for key in sorted(rows)])
        cursor.execute(_INSERT_STAGED)
        inserted = [trace_id for (trace_id,) in cursor.fetchall()]
        cursor.execute(_PARTITIONS_OF_TRACES, [[t for t in inserted if t]])
        mark_dirty(cursor, fetch_as(cursor, Partition))
    result.accepted = len(inserted)
    result.duplicates = len(good) - len(inserted)
    return result
