"""Bulk-write SQL generated from one declaration per table.

A table's ingest row is a NamedTuple: its fields are the columns ingestion writes, in COPY
order, each annotated with a ``Col``: PostgreSQL type, merge rule on resend, NOT NULL default,
and whether the value is the wire item's field of the same name, copied as sent::

    class TraceRow(NamedTuple):
        model: Annotated[str | None, Col("text", LATER_NON_EMPTY, default="", as_sent=True)]

From it ``IngestTable`` builds, once at import: the COPY column list, the staging table's
DDL, the INSERT ... SELECT that fills defaults, the merge SET clauses, and the same defaults
and merges in Python for the direct COPY path and for repeats within one batch. Rows are
built by field name and read by field name; no code counts columns. Plain Python, no Django.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC
from operator import attrgetter
from typing import Any, Generic, TypeVar, get_type_hints

import msgspec
from psycopg.types.json import JsonbBinaryDumper

Row = TypeVar("Row", bound=tuple[Any, ...])


def quoted(name: str) -> str:
    """A column name as a SQL identifier ("end" is a keyword; quoting every name is always safe)."""
    return '"' + name.replace('"', '""') + '"'


def column_ref(alias: str, name: str) -> str:
    return f"{alias}.{quoted(name)}" if alias else quoted(name)


# --- Merge rules -------------------------------------------------------------------------------


def _later_non_null(old: Any, new: Any) -> Any:
    return old if new is None else new


def _later_non_empty(old: Any, new: Any) -> Any:
    return old if new is None or new == "" else new


def _json_merged(old: str | None, new: str | None) -> str | None:
    # Rows hold jsonb as JSON text (what COPY sends); later keys win, as with jsonb ||.
    if old is None or new is None:
        return old if new is None else new
    return msgspec.json.encode({**msgspec.json.decode(old), **msgspec.json.decode(new)}).decode()


@dataclass(frozen=True)
class Merge:
    """What a resent row does to a stored column.

    ``sql`` is a template over ``{old}`` / ``{new}`` (the stored and the resent column) and
    ``{old_row}`` / ``{new_row}`` (their rows, for rules that read another column); None:
    the column is never updated. ``python`` is the same rule for repeats within one batch.
    """

    name: str
    sql: str | None
    python: Callable[[Any, Any], Any] | None

    def set_clause(self, column: str, *, old: str, new: str) -> str | None:
        if self.sql is None:
            return None
        expression = self.sql.format(old=column_ref(old, column), new=column_ref(new, column), old_row=old, new_row=new)
        return f"{quoted(column)} = {expression}"


# Identity: what a resend is matched on; never updated.
KEY = Merge("key", None, lambda old, new: old)
# The first write stands (received_at; every column of an event that is stored once).
KEPT_FIRST = Merge("kept first", None, lambda old, new: old)
LATER = Merge("later wins", "{new}", lambda old, new: new)
LATER_NON_NULL = Merge("later non-null wins", "COALESCE({new}, {old})", _later_non_null)
LATER_NON_EMPTY = Merge("later non-empty string wins", "COALESCE(NULLIF({new}, ''), {old})", _later_non_empty)
# JSON objects merge key by key, later keys winning.
JSON_MERGED = Merge("jsonb merge", "{old} || COALESCE({new}, '{{}}'::jsonb)", _json_merged)


def later_unless(fallback: str) -> Merge:
    """Later non-empty wins, except the value that only means "nobody said" (a span kind of "other")."""
    if "'" in fallback:
        raise ValueError("later_unless takes a plain word")

    def python(old: Any, new: Any) -> Any:
        return old if new is None or new == "" or new == fallback else new

    sql = f"CASE WHEN {{new}} = '{fallback}' THEN {{old}} ELSE {{new}} END"
    return Merge(f"later wins unless {fallback!r}", sql, python)


def later_if(column: str, value: str) -> Merge:
    """The resent value wins only when the resent row's ``column`` is ``value`` (a client's own cost)."""
    if "'" in value:
        raise ValueError("later_if takes a plain word")
    return Merge(
        f"later wins when {column} = {value!r}",
        f"CASE WHEN {{new_row}}.{quoted(column)} = '{value}' THEN {{new}} ELSE {{old}} END",
        None,
    )


# --- NOT NULL defaults -------------------------------------------------------------------------


@dataclass(frozen=True)
class Default:
    """A NOT NULL column's value when the row leaves it empty (None).

    ``sql`` is a template over ``{row}`` (the staged row's alias, with a trailing dot, or
    nothing); ``python`` computes the same value from the row, for the direct COPY path.
    """

    sql: str
    python: Callable[[Any], Any]
    # Set for a constant default: its value (the same for every row).
    constant: bool = False
    value: Any = None

    @classmethod
    def of_constant(cls, value: str, pg_type: str) -> Default:
        if "'" in value:
            raise ValueError("constant defaults are plain words or '{}'")
        literal = f"'{value}'::{pg_type}".replace("{", "{{").replace("}", "}}")  # a template: braces doubled
        return cls(literal, lambda row: value, constant=True, value=value)


def copy_of(column: str) -> Default:
    """Default to another column of the same row (a trace's start time: when it was received)."""
    return Default("{row}" + quoted(column), attrgetter(column))


def utc_day_of(column: str) -> Default:
    """Default to the UTC date of another timestamptz column of the row."""
    get = attrgetter(column)
    sql = "({row}" + quoted(column) + " AT TIME ZONE 'UTC')::date"
    return Default(sql, lambda row: get(row).astimezone(UTC).date())


# --- Columns -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    """One column's declaration; used as ``Annotated[<python type>, Col(...)]`` on a row field."""

    pg_type: str
    merge: Merge = KEPT_FIRST
    # NOT NULL default: a constant (str) or a Default computed from the row.
    default: str | Default | None = None
    # The value is the wire item's attribute of the same name, unchanged.
    as_sent: bool = False


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    merge: Merge
    default: Default | None
    as_sent: bool

    def selected(self, alias: str = "") -> str:
        """The staged value, with the NOT NULL default filled in."""
        ref = column_ref(alias, self.name)
        if self.default is None:
            return ref
        return f"COALESCE({ref}, {self.default.sql.format(row=f'{alias}.' if alias else '')})"


def columns_of(row: type[tuple[Any, ...]]) -> tuple[Column, ...]:
    hints = get_type_hints(row, include_extras=True)
    columns = []
    for name in row._fields:  # type: ignore[attr-defined]
        declared = [m for m in getattr(hints[name], "__metadata__", ()) if isinstance(m, Col)]
        if len(declared) != 1:
            raise TypeError(f"{row.__name__}.{name}: annotate the field with exactly one Col(...)")
        col = declared[0]
        default = Default.of_constant(col.default, col.pg_type) if isinstance(col.default, str) else col.default
        columns.append(Column(name, col.pg_type, col.merge, default, col.as_sent))
    return tuple(columns)


def column_list(names: Iterable[str], alias: str = "") -> str:
    return ", ".join(column_ref(alias, name) for name in names)


def select_list(result: type[tuple[Any, ...]], alias: str = "", **sources: str) -> str:
    """A SELECT / RETURNING list whose columns come back in ``result``'s field order.

    ``sources`` maps a field to the SQL it reads when the column name differs
    (``day="trace_day"``); read the rows with ``fetch_as(cursor, result)``.
    """
    items = []
    for name in result._fields:  # type: ignore[attr-defined]
        if name in sources:
            items.append(f"{sources[name]} AS {quoted(name)}")
        else:
            items.append(column_ref(alias, name))
    return ", ".join(items)


def fetch_as(cursor: Any, result: type[Row]) -> list[Row]:
    """The cursor's rows as ``result`` tuples (their SELECT list came from ``select_list``)."""
    make = result._make  # type: ignore[attr-defined]
    return [make(row) for row in cursor.fetchall()]


class IngestTable(Generic[Row]):
    """A table as ingestion writes it, and the SQL that follows from its declaration."""

    def __init__(self, *, table: str, row: type[Row], stage: str) -> None:
        self.table = table
        self.stage = stage
        self.row = row
        self.columns = columns_of(row)
        names = [column.name for column in self.columns]
        self.column_list = column_list(names)
        self.stage_ddl = (
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} ("
            + ", ".join(f"{quoted(c.name)} {c.pg_type}" for c in self.columns)
            + ") ON COMMIT DELETE ROWS"
        )
        # Columns copied from the wire item lead the declaration, so a row is built as
        # Row(*table.as_sent(item), computed=...) at C speed; checked here, once.
        sent = [column.as_sent for column in self.columns]
        if sent != sorted(sent, reverse=True):
            raise TypeError(f"{row.__name__}: declare the as_sent columns first")
        self.as_sent_names = tuple(column.name for column in self.columns if column.as_sent)
        if len(self.as_sent_names) > 1:
            self.as_sent: Callable[[Any], tuple[Any, ...]] = attrgetter(*self.as_sent_names)
        elif self.as_sent_names:
            one = attrgetter(self.as_sent_names[0])
            self.as_sent = lambda item: (one(item),)
        else:
            self.as_sent = lambda item: ()
        # Positions come from the declaration, never from a reader's count.
        self._constant_defaults = [
            (i, c.default.value) for i, c in enumerate(self.columns) if c.default and c.default.constant
        ]
        self._computed_defaults = [
            (i, c.default) for i, c in enumerate(self.columns) if c.default and not c.default.constant
        ]
        self._merges = [c.merge.python for c in self.columns]
        # What a binary COPY dumps each value as: the column's own type (jsonb from JSON text).
        self.copy_types = [c.pg_type for c in self.columns]
        # given_json's keys: each column's name, and whether it holds JSON text.
        self._given = [(c.name, c.pg_type == "jsonb") for c in self.columns]

    def select_staged(self, alias: str = "") -> str:
        """The staged rows' columns with NOT NULL defaults filled in, for INSERT ... SELECT."""
        return ", ".join(column.selected(alias) for column in self.columns)

    def merge_set(self, *, old: str, new: str) -> str:
        """SET clauses that merge a resent row ``new`` into the stored row ``old`` column by column."""
        clauses = [c.merge.set_clause(c.name, old=old, new=new) for c in self.columns]
        return ",\n    ".join(clause for clause in clauses if clause)

    def given_source(self, alias: str) -> str:
        """Rows of the table from one JSON parameter (``given_json``), typed as declared: a FROM item to merge a
        few rows from without staging them."""
        columns = ", ".join(f"{quoted(c.name)} {c.pg_type}" for c in self.columns)
        return f"jsonb_to_recordset(%s::jsonb) AS {alias}({columns})"

    def given_json(self, rows: Iterable[Row]) -> str:
        """``rows`` as ``given_source`` reads them: objects keyed by column, the JSON text of jsonb columns as JSON."""
        given = self._given
        return _given_encode(
            [
                {
                    name: msgspec.Raw(v) if raw and v is not None else v
                    for (name, raw), v in zip(given, row, strict=True)
                }
                for row in rows
            ]
        ).decode()

    def with_defaults(self, row: Row) -> Row:
        """The row with NOT NULL defaults filled in, ready for a direct COPY into the table."""
        values = list(row)
        # Per row on the hot path: constants without a call, computed defaults after them.
        for i, constant in self._constant_defaults:
            if values[i] is None:
                values[i] = constant
        for i, default in self._computed_defaults:
            if values[i] is None:
                values[i] = default.python(row)
        return self.row._make(values)  # type: ignore[attr-defined,no-any-return]

    def merged(self, earlier: Row, later: Row) -> Row:
        """Two rows with the same key in one batch, merged as the database would merge a resend."""
        merged = []
        for merge, old, new in zip(self._merges, earlier, later, strict=True):
            if merge is None:
                raise TypeError(f"{self.row.__name__}: a merge rule has no Python form")
            merged.append(merge(old, new))
        return self.row._make(merged)  # type: ignore[attr-defined,no-any-return]


_given_encode = msgspec.json.Encoder().encode


class _JsonTextBinaryDumper(JsonbBinaryDumper):
    """jsonb in COPY's binary format from the JSON text a row holds (psycopg's own dumper would encode
    the text again, as a JSON string)."""

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + obj.encode()  # jsonb's binary format: version 1, then the text


def copy_rows(cursor: Any, table: IngestTable[Any], rows: Iterable[tuple[Any, ...]], *, into: str = "") -> None:
    """COPY rows into ``table`` (or ``into``, e.g. its staging table) in PostgreSQL's binary format.

    Each value is dumped by its declared column type in C, with no text escaping: about half the
    client CPU of a text COPY per row, and less for the server to parse. A row's values must be of
    their column's Python type (a float for double precision, an int for bigint, JSON text for jsonb).
    """
    cursor.adapters.register_dumper(None, _JsonTextBinaryDumper)  # by type name only: this cursor's COPY
    with cursor.copy(f"COPY {into or table.table} ({table.column_list}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(table.copy_types)
        for row in rows:
            copy.write_row(row)


_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # no flags, no header extension
_BINARY_TRAILER = b"\xff\xff"


def copy_encoded(cursor: Any, table: IngestTable[Any], chunks: Iterable[bytes], *, into: str = "") -> None:
    """COPY rows already in PostgreSQL's binary format, each row's fields in ``table``'s declared order (the OTLP
    path's spans, written in C: feedback.otlp.span_copy_of), into ``table`` or ``into``."""
    with cursor.copy(f"COPY {into or table.table} ({table.column_list}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(b"".join((_BINARY_SIGNATURE, *chunks, _BINARY_TRAILER)))


@dataclass(frozen=True)
class Joined:
    """A column copied from a related row, e.g. a feedback event's feature from its trace.

    Used as ``Annotated[<python type>, Joined("bigint", source="feature_id")]``.
    """

    pg_type: str
    source: str


def joined_of(row: type[tuple[Any, ...]]) -> tuple[tuple[str, Joined], ...]:
    hints = get_type_hints(row, include_extras=True)
    found = []
    for name in row._fields:  # type: ignore[attr-defined]
        declared = [m for m in getattr(hints[name], "__metadata__", ()) if isinstance(m, Joined)]
        if len(declared) != 1:
            raise TypeError(f"{row.__name__}.{name}: annotate the field with exactly one Joined(...)")
        found.append((name, declared[0]))
    return tuple(found)


class JoinedColumns:
    """Columns a table copies from a related table, and the SQL that reads and mends them."""

    def __init__(self, row: type[tuple[Any, ...]]) -> None:
        self.row = row
        self.columns = joined_of(row)
        self.column_list = column_list(name for name, _ in self.columns)

    def select(self, alias: str = "") -> str:
        """The source columns, named as the target's (for SELECT ... and RETURNING)."""
        return ", ".join(f"{column_ref(alias, j.source)} AS {quoted(name)}" for name, j in self.columns)

    def set_from(self, alias: str) -> str:
        """SET clauses copying the source row ``alias`` into the target's columns."""
        return ", ".join(f"{quoted(name)} = {column_ref(alias, j.source)}" for name, j in self.columns)

    def differs(self, *, target: str, source: str) -> str:
        """True when any copied column no longer matches its source."""
        return " OR ".join(
            f"{column_ref(target, name)} IS DISTINCT FROM {column_ref(source, j.source)}" for name, j in self.columns
        )
