"""What every ingest service shares: the batch result, the raw cursor, the staging COPY, and
marking rollup partitions dirty (with the hooks that schedule their recompute)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import psycopg
from django.db import connection, transaction
from psycopg.types.array import ListDumper

from feedback.schemas import ItemError
from feedback.services.columns import IngestTable
from feedback.services.tables import Partition
from tenants.schema import current_schema

logger = logging.getLogger("candor.ingest")


class BatchCompleteness(Enum):
    """How much of a batch was taken: every item, some items, or none."""

    COMPLETE = "complete"  # no item rejected (duplicates are fine: a resend is not an error)
    PARTIAL = "partial"  # some items rejected, the rest stored or already there
    REJECTED = "rejected"  # every item rejected


# How the HTTP API answers each; kept here only while feedback.api reads IngestResult.status_code.
_HTTP_STATUS = {BatchCompleteness.COMPLETE: 200, BatchCompleteness.PARTIAL: 207, BatchCompleteness.REJECTED: 400}


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    errors: list[ItemError] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def completeness(self) -> BatchCompleteness:
        if not self.errors:
            return BatchCompleteness.COMPLETE
        return BatchCompleteness.PARTIAL if self.accepted + self.duplicates else BatchCompleteness.REJECTED

    @property
    def status_code(self) -> int:
        """The HTTP status for ``completeness`` (200 / 207 / 400); the API layer's mapping."""
        return _HTTP_STATUS[self.completeness]

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "errors": [e.as_dict() for e in sorted(self.errors, key=lambda e: e.index)],
        }
        if self.warnings:
            body["warnings"] = self.warnings
        return body


# Ingestion's advisory locks (a lock per OTel trace id, a lock per trace_id written from OTLP) live in PostgreSQL's
# shared lock table, sized by max_locks_per_transaction x max_connections (64 x 100 by default; here 12 transactions
# holding 1,024 advisory locks each succeeded, 16 did not). A lock per id made one export of 20,000 one-span traces
# fail whole ("out of shared memory"), and an export of 512 one-span traces holds 1,024 (two locks a trace). A request
# naming more ids than this takes its organization's ingestion gate exclusively instead of a lock per id (it waits
# for every other lock-taker of the organization, and holds them off: large requests of one organization queue);
# every other takes the gate shared first. At most ~2,000 locks a request then; for more than ~8 concurrent OTLP
# requests the README says to raise max_locks_per_transaction.
LOCKED_IDS_MAX = 1_000


def ingest_gate() -> str:
    """The advisory lock key text (hashed with hashtextextended) of this organization's ingestion gate."""
    return f"{current_schema()}:ingest-gate"


def utc_now() -> datetime:
    return datetime.now(UTC)


def raw_cursor() -> Any:
    """A psycopg cursor with server-side binding on Django's connection, in the tenant's schema.

    Django's own cursor binds client-side: every parameter is quoted into the statement text in
    Python, element by element for the ID lists ingestion passes (~12% of an OTLP export's
    Python time); here they travel as parameters. Django's cursor wrapper is made first: it sets
    the tenant's search_path. psycopg's cursor also does COPY.
    """
    wrapper = connection.cursor()
    cursor = psycopg.Cursor(wrapper.cursor.connection)
    cursor.adapters.register_dumper(list, FlatListDumper)
    return cursor


class FlatListDumper(ListDumper):
    """psycopg's array dumper, with lists of plain str, int, bool, date or Decimal dumped in a few C calls.

    psycopg looks at every element in Python, three times (its type, its dumper, whether it needs
    quotes): ~4% of an OTLP export's Python time for the ID lists ingestion passes, and ~2% for the
    spend counters' days and costs. A flat list of str with no quote, backslash or NUL becomes every
    element double-quoted (inside the quotes commas, braces, spaces and the word NULL are plain
    text); a flat list of int its decimal digits, of bool t and f, of date its ISO days, of finite
    Decimal its digits (1.2E+3 too: PostgreSQL reads exponents).
    Anything else (None elements, nesting, other types, characters to escape, NaN) is psycopg's own work.
    """

    def _find_list_element(self, L: list[Any], format: Any) -> Any:
        kinds = set(map(type, L))
        if kinds == _STR or kinds == _BOOL or kinds == _DATE or kinds == _DECIMAL:
            return L[0]
        if kinds == _INT:
            # psycopg's choice: the element that needs the widest integer type.
            low, high = min(L), max(L)
            return high if low >= 0 else max(high, -low - 1)
        return super()._find_list_element(L, format)

    def dump(self, obj: list[Any]) -> Any:
        kinds = set(map(type, obj))
        if kinds == _STR and self.delimiter == b",":
            every = "".join(obj)
            if '"' not in every and "\\" not in every and "\x00" not in every and every.isascii():
                return b'{"' + '","'.join(obj).encode() + b'"}'
        elif kinds == _INT:
            return b"{" + ",".join(map(str, obj)).encode() + b"}"
        elif kinds == _BOOL:
            return b"{" + b",".join([b"t" if value else b"f" for value in obj]) + b"}"
        elif kinds == _DATE:
            return b"{" + ",".join(map(date.isoformat, obj)).encode() + b"}"
        elif kinds == _DECIMAL and all(map(Decimal.is_finite, obj)):
            return b"{" + ",".join(map(str, obj)).encode() + b"}"
        return super().dump(obj)


_STR = {str}
_INT = {int}
_BOOL = {bool}
_DATE = {date}  # exactly: a datetime is a date too
_DECIMAL = {Decimal}


def stage(cursor: Any, table: IngestTable[Any], rows: Iterable[tuple[Any, ...]]) -> None:
    """COPY rows into the table's per-connection temporary staging table (created on first use)."""
    cursor.execute(table.stage_ddl)
    # Staging tables empty themselves at commit (ON COMMIT DELETE ROWS, cheaper than TRUNCATE);
    # only a caller's enclosing transaction (a test, a management command) can leave rows behind.
    if connection.savepoint_ids:
        cursor.execute(f"DELETE FROM {table.stage}")
    with cursor.copy(f"COPY {table.stage} ({table.column_list}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


# --- Dirty rollup partitions ----------------------------------------------------------------

_rollup_hooks: list[Callable[[str], None]] = []
_last_scheduled: dict[str, float] = {}
SCHEDULE_EVERY_SECONDS = 2.0


def on_rollups_dirty(hook: Callable[[str], None]) -> None:
    """Register what runs (after commit) when a batch dirtied rollups; tasks.py registers the Celery task."""
    _rollup_hooks.append(hook)


def mark_dirty(cursor: Any, partitions: Iterable[Partition]) -> None:
    """Mark (day, feature) partitions for recompute; partitions of unknown traces are skipped."""
    ordered = sorted({p for p in partitions if p.day is not None and p.feature_id is not None})
    if not ordered:
        return
    cursor.execute(
        "INSERT INTO feedback_rollupdirty (day, feature_id, marked_at) "
        "SELECT d, f, now() FROM unnest(%s::date[], %s::bigint[]) AS x(d, f) "
        "ON CONFLICT (day, feature_id) DO UPDATE SET marked_at = EXCLUDED.marked_at",
        [[p.day for p in ordered], [p.feature_id for p in ordered]],
    )
    rollups_nudge(current_schema())


def rollups_nudge(schema: str) -> None:
    """After commit, schedule the recompute of partitions this transaction marked dirty.

    Throttled per process: the beat sweep picks up anything a skipped schedule leaves behind.
    """
    if time.monotonic() - _last_scheduled.get(schema, 0.0) >= SCHEDULE_EVERY_SECONDS:
        transaction.on_commit(lambda: _run_rollup_hooks(schema))


def _run_rollup_hooks(schema: str) -> None:
    # Stamped after commit: a rolled-back batch must not hold back the next one's schedule.
    _last_scheduled[schema] = time.monotonic()
    for hook in _rollup_hooks:
        try:
            hook(schema)
        except Exception:
            # The batch is committed: a broker hiccup (the SQLAlchemy broker racing to create a
            # queue, say) must not turn its answer into a 500 that invites a resend. The beat
            # sweep refreshes what this nudge would have.
            logger.exception("rollup refresh nudge for %s failed; the periodic sweep will catch up", schema)
