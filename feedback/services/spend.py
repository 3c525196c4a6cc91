"""Counters kept in the ingest transaction: LLM spend per customer x day x feature x model (read
by billing's budget check) and items ingested per received day (billing's usage ledger).

Both are written in the same transaction as the rows they count, so a committed trace is
counted exactly once and a rolled-back batch not at all. Spend counters are upserted in key
order (concurrent batches lock the same rows in the same order and cannot deadlock); usage
counters are appended, one row per batch, so batches never wait on each other for them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from feedback.services.tables import TraceRow


class SpendKey(NamedTuple):
    customer_id: str
    day: date
    feature_id: int
    model: str


Spend = dict[SpendKey, tuple[Decimal, int]]  # key -> (cost, traces)

_UPSERT = """
INSERT INTO feedback_spendcounter AS c (customer_id, day, feature_id, model, cost_usd, traces)
SELECT * FROM unnest(%s::text[], %s::date[], %s::bigint[], %s::text[], %s::numeric[], %s::bigint[])
ON CONFLICT (customer_id, day, feature_id, model) DO UPDATE
SET cost_usd = c.cost_usd + EXCLUDED.cost_usd, traces = c.traces + EXCLUDED.traces
"""


# What stored traces (t) count for, per counter key: a trace priced span by span across several models counts
# its cost per model (cost_by_model, its own model among them), and itself once, under its own model.
# Read only while the trace's cost is its spans' (a cost_by_model any other path left behind counts for nothing):
# COUNTED_BY_MODEL, SQL on the trace t, is what a trace's spend is read from, here and where it moves.
COUNTED_BY_MODEL = "CASE WHEN t.cost_source = 'spans' THEN t.cost_by_model END"
_PER_MODEL = f"LEFT JOIN LATERAL jsonb_each_text({COUNTED_BY_MODEL}) b ON true"
_COUNTED = (
    "t.customer_id, t.day, t.feature_id, COALESCE(b.key, t.model), "
    "coalesce(sum(COALESCE(b.value::numeric, t.cost_usd)), 0), count(*) FILTER (WHERE b.key IS NULL OR b.key = t.model)"
)


def spend_of_trace(
    customer_id: str,
    day: date,
    feature_id: int,
    model: str,
    cost: Decimal | None,
    by_model: dict[str, Any] | str | None,
) -> Spend:
    """What one stored trace counts for (as _COUNTED reads it). ``by_model``: its cost_by_model as COUNTED_BY_MODEL
    reads it, a dict or the JSON text a raw cursor reads jsonb as."""
    parts: dict[str, Any] | None = json.loads(by_model) if isinstance(by_model, str) else by_model
    if not parts:
        return {SpendKey(customer_id, day, feature_id, model): (cost or Decimal(0), 1)}
    return {
        SpendKey(customer_id, day, feature_id, name): (Decimal(str(part)), int(name == model))
        for name, part in parts.items()
    }


# feedback_trace.cost_usd keeps 8 decimals, rounding half away from zero (costs are never negative).
STORED_COST = Decimal("0.00000001")


def spend_of_rows(rows: Iterable[TraceRow], received: datetime) -> Spend:
    """What new traces add, from their rows (no query): what spend_of_stored reads once they are stored."""
    spend: dict[SpendKey, list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    received_day = received.astimezone(UTC).date()
    for row in rows:
        key = SpendKey(row.customer_id or "", row.day or received_day, row.feature_id, row.model or "")
        entry = spend[key]
        if row.cost_usd is not None:
            entry[0] += row.cost_usd.quantize(STORED_COST, ROUND_HALF_UP)
        entry[1] += 1
    return {key: (cost, n) for key, (cost, n) in spend.items()}


def spend_sum(*parts: Spend) -> Spend:
    """The parts added up, key by key, in one pass (keys that come to nothing left out)."""
    total: dict[SpendKey, tuple[Decimal, int]] = {}
    for part in parts:
        for key, (cost, n) in part.items():
            before = total.get(key, (Decimal(0), 0))
            total[key] = (before[0] + cost, before[1] + n)
    return {key: change for key, change in total.items() if change != (Decimal(0), 0)}


def spend_of_stored(cursor: Any, trace_ids: list[str], *, lock: bool = False) -> Spend:
    """What stored traces count for now (read before and after a merge: the difference moves).

    ``lock``: the rows are locked in trace_id order (the merge that follows would lock them anyway).
    """
    locking = " ORDER BY trace_id FOR UPDATE" if lock else ""
    cursor.execute(
        f"SELECT {_COUNTED} FROM (SELECT customer_id, day, feature_id, model, cost_usd, cost_source, cost_by_model "
        f"FROM feedback_trace WHERE trace_id = ANY(%s){locking}) t {_PER_MODEL} GROUP BY 1, 2, 3, 4",
        [trace_ids],
    )
    return {SpendKey(c, d, f, m): (cost, n) for c, d, f, m, cost, n in cursor.fetchall()}


def spend_difference(after: Mapping[SpendKey, tuple[Decimal, int]], before: Spend) -> Spend:
    keys = set(after) | set(before)
    zero = (Decimal(0), 0)
    moved = {
        key: (after.get(key, zero)[0] - before.get(key, zero)[0], after.get(key, zero)[1] - before.get(key, zero)[1])
        for key in keys
    }
    return {key: change for key, change in moved.items() if change != zero}


def spend_count(cursor: Any, spend: Spend) -> None:
    if not spend:
        return
    keys = sorted(spend)
    cursor.execute(
        _UPSERT,
        [
            [k.customer_id for k in keys],
            [k.day for k in keys],
            [k.feature_id for k in keys],
            [k.model for k in keys],
            [spend[k][0] for k in keys],
            [spend[k][1] for k in keys],
        ],
    )


def usage_count(cursor: Any, *, kind: str, quantity: int, received: datetime) -> None:
    if quantity > 0:
        cursor.execute(
            "INSERT INTO feedback_usagecounter (day, kind, quantity) VALUES (%s, %s, %s)",
            [received.astimezone(UTC).date(), kind, quantity],
        )


def spend_counters_rebuild(cursor: Any) -> int:
    """Recount the spend counters from the stored traces (an installation that had traces before the
    counters existed); returns the rows written. Locks the counters while it runs."""
    cursor.execute("LOCK TABLE feedback_spendcounter IN EXCLUSIVE MODE")
    cursor.execute("DELETE FROM feedback_spendcounter")
    cursor.execute(
        "INSERT INTO feedback_spendcounter (customer_id, day, feature_id, model, cost_usd, traces) "
        f"SELECT {_COUNTED} FROM feedback_trace t {_PER_MODEL} GROUP BY 1, 2, 3, 4"
    )
    return int(cursor.rowcount)


def usage_counters_fold(cursor: Any, *, before: date) -> None:
    """Fold the per-batch rows of days before ``before`` (finished: ingestion writes only the day it
    receives on) into one row per day and kind, so the table stays as small as the days it covers."""
    cursor.execute(
        "WITH gone AS (DELETE FROM feedback_usagecounter WHERE day < %s RETURNING day, kind, quantity) "
        "INSERT INTO feedback_usagecounter (day, kind, quantity) SELECT day, kind, sum(quantity) FROM gone "
        "GROUP BY day, kind",
        [before],
    )
