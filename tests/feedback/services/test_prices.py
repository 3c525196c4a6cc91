"""Repricing stored traces writes a cost only where it moves."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from feedback import services
from feedback.models import Trace
from feedback.services.columns import fetch_as, select_list
from feedback.services.prices import price_book_load, traces_reprice
from feedback.services.shared import raw_cursor
from feedback.services.tables import PricedTrace
from tests.fixtures.organizations import in_tenant


def _priced(cursor: Any, trace_id: str) -> PricedTrace:
    cursor.execute(f"SELECT {select_list(PricedTrace)} FROM feedback_trace WHERE trace_id = %s", [trace_id])
    (trace,) = fetch_as(cursor, PricedTrace)
    return trace


def _updates(cursor: Any) -> int:
    """Rows of this schema's trace table updated in this transaction so far."""
    cursor.execute(
        "SELECT n_tup_upd FROM pg_stat_xact_user_tables "
        "WHERE relname = 'feedback_trace' AND schemaname = current_schema()"
    )
    return int(cursor.fetchone()[0])


def test_a_repricing_that_comes_to_the_stored_cost_writes_nothing(db, org_a) -> None:  # type: ignore[no-untyped-def]
    # As a merge that brings no tokens reprices (the root of a trace an SDK split across exports): the same cost.
    item = {"trace_id": "reprice-1", "feature": "reprice", "model": "gpt-4o-mini", "input_tokens": 1234,
            "output_tokens": 56}  # fmt: skip
    with in_tenant(org_a):
        services.traces_ingest(body=json.dumps({"batch": [item]}).encode())
        cursor = raw_cursor()
        book = price_book_load(cursor)
        stored = _priced(cursor, "reprice-1")
        assert stored.cost_usd is not None and stored.cost_usd > 0
        before = _updates(cursor)
        assert traces_reprice(cursor, book, [stored]) == {}
        assert _updates(cursor) == before
        # Tokens that moved move the cost: written, to the column's 8 decimals.
        cursor.execute("UPDATE feedback_trace SET input_tokens = 98765 WHERE trace_id = 'reprice-1'")
        moved = _priced(cursor, "reprice-1")
        assert traces_reprice(cursor, book, [moved]) == {}
        assert _updates(cursor) == before + 2
        price = book.find("", "gpt-4o-mini", moved.started_at)
        assert price is not None
        expected = price.cost(98765, 56, 0).quantize(Decimal("1e-8"), ROUND_HALF_UP)
        assert Trace.objects.get(trace_id="reprice-1").cost_usd == expected != stored.cost_usd
