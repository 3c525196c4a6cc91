"""feedback.services.shared: the cursor ingestion writes through."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from psycopg.adapt import PyFormat
from psycopg.types.array import ListDumper

from feedback.services.shared import FlatListDumper, raw_cursor

# Lists the fast path takes, and lists it must leave to psycopg (each must arrive unchanged either way).
LISTS: list[tuple[list[Any], str]] = [
    (["t-1", "t-2", "trace_3"], "text[]"),
    (["a,b", "{braces}", "NULL", "null", " spaced ", "", "tab\there", "line\nbreak"], "text[]"),
    (['quote"d', "back\\slash", "plain"], "text[]"),  # characters to escape: psycopg's own path
    (["caf\u00e9", "\u65e5\u672c", "emoji \U0001f600"], "text[]"),  # non-ASCII: psycopg's own path
    (["x", None, "y"], "text[]"),  # None elements: psycopg's own path
    ([["nested", "list"], ["of", "str"]], "text[]"),
    ([1, 2, 3], "bigint[]"),
    ([0, -1, 2**40, -(2**40)], "bigint[]"),
    ([2**31 - 1], "bigint[]"),
    ([2**31], "bigint[]"),
    ([-(2**63)], "bigint[]"),
    ([True, False], "boolean[]"),  # bool is not int
    ([False], "boolean[]"),
    ([True, None], "boolean[]"),
    ([1, None], "bigint[]"),
    ([date(2025, 1, 31), date(1, 1, 1), date(9999, 12, 31)], "date[]"),
    ([date(2025, 1, 31), None], "date[]"),
    ([datetime(2025, 1, 31, 12, tzinfo=UTC)], "timestamptz[]"),  # a datetime is no date here
    ([Decimal("0.00012300"), Decimal("1.2E+3"), Decimal("-0"), Decimal("0E-8"), Decimal("-5.5")], "numeric[]"),
    ([Decimal("12345678901234567890.123456789")], "numeric[]"),
    ([Decimal("1"), Decimal("-Infinity")], "numeric[]"),  # not finite: psycopg's own path
    ([Decimal("1"), None], "numeric[]"),
    ([], "text[]"),
]


@pytest.mark.parametrize(("value", "pg_type"), LISTS, ids=repr)
def test_a_list_arrives_as_sent(db: None, value: list[Any], pg_type: str) -> None:
    cursor = raw_cursor()
    cursor.execute(f"SELECT %s::{pg_type}", [value])
    assert cursor.fetchone()[0] == value


@pytest.mark.parametrize("value", [v for v, _ in LISTS if v], ids=repr)
def test_the_fast_path_types_a_list_as_psycopg_does(db: None, value: list[Any]) -> None:
    """Same array type (oid), element type and delimiter as psycopg's own dumper."""
    cursor = raw_cursor()
    ours = cursor.adapters.get_dumper(list, PyFormat.TEXT)(list, cursor).upgrade(value, PyFormat.TEXT)
    theirs = ListDumper(list, cursor).upgrade(value, PyFormat.TEXT)
    assert isinstance(ours, FlatListDumper) and isinstance(theirs, ListDumper)
    assert ours.oid == theirs.oid
    assert ours.sub_dumper is not None and theirs.sub_dumper is not None
    assert ours.sub_dumper.oid == theirs.sub_dumper.oid
    assert ours.delimiter == theirs.delimiter


def test_plain_lists_take_the_fast_path(db: None) -> None:
    cursor = raw_cursor()
    dumper = cursor.adapters.get_dumper(list, PyFormat.TEXT)(list, cursor)
    texts = ["t-1", "a,b", "NULL", ""]
    assert dumper.upgrade(texts, PyFormat.TEXT).dump(texts) == b'{"t-1","a,b","NULL",""}'
    numbers = [3, -2, 2**40]
    assert dumper.upgrade(numbers, PyFormat.TEXT).dump(numbers) == b"{3,-2,1099511627776}"
    flags = [True, False, True]
    assert dumper.upgrade(flags, PyFormat.TEXT).dump(flags) == b"{t,f,t}"
    days = [date(2025, 1, 31), date(2025, 2, 1)]
    assert dumper.upgrade(days, PyFormat.TEXT).dump(days) == b"{2025-01-31,2025-02-01}"
    costs = [Decimal("0.00012300"), Decimal("1.2E+3")]
    assert dumper.upgrade(costs, PyFormat.TEXT).dump(costs) == b"{0.00012300,1.2E+3}"
    # What it leaves to psycopg, psycopg writes: its own escaping.
    odd = ['quote"d', None]
    theirs = ListDumper(list, cursor).upgrade(odd, PyFormat.TEXT)
    assert dumper.upgrade(odd, PyFormat.TEXT).dump(odd) == theirs.dump(odd)


def test_a_nul_in_a_string_is_refused_as_psycopg_refuses_it(db: None) -> None:
    import psycopg

    cursor = raw_cursor()
    with pytest.raises(psycopg.DataError):
        cursor.execute("SELECT %s::text[]", [["ok", "nul\x00here"]])


def test_arrays_of_ids_filter_as_before(db: None) -> None:
    cursor = raw_cursor()
    cursor.execute("SELECT x FROM unnest(%s::text[]) AS x WHERE x = ANY(%s)", [["a", "b,c", "d"], ["b,c", "zz"]])
    assert cursor.fetchall() == [("b,c",)]
    cursor.execute("SELECT sum(x) FROM unnest(%s::bigint[]) AS x", [[5, 2**40]])
    assert cursor.fetchone()[0] == 5 + 2**40
