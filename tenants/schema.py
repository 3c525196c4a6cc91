"""Typed access to django-tenants' schema switching on the default connection."""

from __future__ import annotations

import hashlib
import re
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from django.db import connection as _connection
from psycopg import pq
from psycopg.errors import error_from_result

# django-tenants adds these methods to the backend; the stubs only know Django's own wrapper.
_db: Any = _connection


def activate_tenant(tenant: Any) -> None:
    _db.set_tenant(tenant)


def activate_schema(schema_name: str) -> None:
    _db.set_schema(schema_name)


def activate_public() -> None:
    _db.set_schema_to_public()


def current_schema() -> str:
    return str(_db.schema_name)


def search_path_reset() -> None:
    """Set the current schema's search_path again with the connection's next cursor. django-tenants sets it once per
    connection and schema (TENANT_LIMIT_SET_CALLS), and a transaction rolled back whole takes with it a search_path
    set inside it: a caller that goes on after such a rollback calls this first."""
    _db.set_tenant(_db.tenant, _db.include_public_schema)


def send_to_each_organization(task: Any) -> int:
    """Queue the Celery ``task`` once for every organization, to run in its schema (tenant-schemas-celery
    reads the ``_schema_name`` header): how a beat sweep fans out. Returns how many were queued."""
    from tenants.models import Organization

    schemas = list(Organization.objects.order_by("id").values_list("schema_name", flat=True))
    for schema_name in schemas:
        task.apply_async(headers={"_schema_name": schema_name})
    return len(schemas)


@contextmanager
def in_tenant(tenant: Any) -> Iterator[None]:
    """Run a block in a tenant's schema, then return to public."""
    activate_tenant(tenant)
    try:
        yield
    finally:
        activate_public()


# --- Schema-qualified statements on the raw connection (the hot paths) -------------------------

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SCHEMA_TOKEN = "__SCHEMA__"


@lru_cache(maxsize=512)
def in_schema(template: str, schema_name: str) -> str:
    """``template`` with each ``__SCHEMA__`` replaced by the quoted schema name.

    For statements that name their organization's tables outright instead of relying on the
    connection's search_path, so they can run on the raw connection between requests of other
    organizations. The name is checked against what django-tenants creates, never trusted.
    """
    if not _SCHEMA_NAME.match(schema_name):
        raise ValueError(f"not a schema name: {schema_name!r}")
    return template.replace(SCHEMA_TOKEN, f'"{schema_name}"')


@contextmanager
def raw_connection() -> Iterator[psycopg.Connection[Any]]:
    """Django's own psycopg connection, for prepared statements Django's cursors cannot make.

    Database errors pass through Django's wrapper (so a broken connection is closed when the
    request ends, as Django's own queries would have it). Inside a transaction (atomic) the
    statements are part of it; otherwise each commits on its own (autocommit).
    """
    with _connection.wrap_database_errors:
        _connection.ensure_connection()
        raw: psycopg.Connection[Any] = _connection.connection  # type: ignore[assignment]
        if raw.prepare_threshold is None:
            # Django switches psycopg's statement preparation off unless OPTIONS set it (settings set it to 5);
            # prepare=True needs it on. Django's own cursors bind client-side and never prepare.
            raw.prepare_threshold = 2**31 - 1
        yield raw


# Statements prepared through libpq itself, per psycopg connection (a reconnect starts empty), the
# most recently used last. A statement names its organization's schema, so each organization a
# connection serves prepares its own (~170 KB of plan cache in the server for the widget's insert):
# past PREPARED_MAX the least recently used is deallocated, as psycopg bounds its own.
PREPARED_MAX = 32
_prepared: weakref.WeakKeyDictionary[psycopg.Connection[Any], OrderedDict[bytes, None]] = weakref.WeakKeyDictionary()
_DONE = frozenset({pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK})
_NO_SUCH_STATEMENT = b"26000"  # invalid_sql_statement_name


@lru_cache(maxsize=512)
def _statement(sql: str) -> tuple[bytes, bytes]:
    return b"candor_" + hashlib.blake2b(sql.encode(), digest_size=10).hexdigest().encode(), sql.encode()


def run_prepared(sql: str, params: Sequence[bytes | None]) -> list[tuple[bytes | None, ...]]:
    """Run ``sql`` (placeholders $1, $2, ...; parameters and rows as text) on Django's connection,
    prepared once per connection, through libpq's own calls.

    For the statements run once per widget event: psycopg's cursor (query conversion, adapters,
    its generator-driven execution) was ~15% of the request's Python time (py-spy --gil).
    libpq releases the GIL while it waits, as the cursor does. Errors are psycopg's (a lost
    connection an OperationalError) raised through Django's wrapper, as from a cursor.

    In autocommit (the hot paths) the statement is prepared once and run by name; psycopg drops
    every prepared statement of the connection after a ROLLBACK or a DROP (DEALLOCATE ALL), so a
    statement found missing is prepared again and rerun. Inside a transaction (an atomic block)
    it is part of the transaction, begun by psycopg if this is its first statement, and runs
    unnamed: a failed statement there aborts the transaction, so there is no rerunning it.
    """
    name, text = _statement(sql)
    with raw_connection() as raw:
        pgconn: Any = raw.pgconn  # its stubs forbid None (NULL) parameters, which libpq takes
        if not _db.get_autocommit() or pgconn.transaction_status != pq.TransactionStatus.IDLE:
            if pgconn.transaction_status == pq.TransactionStatus.IDLE:
                # psycopg begins a transaction lazily, with its first statement: this is it.
                psycopg.Cursor(raw).execute("SELECT 1")
            result = _check(pgconn, pgconn.exec_params(text, params))
        else:
            names = _prepared.setdefault(raw, OrderedDict())
            if name in names:
                names.move_to_end(name)
            else:
                _prepare(pgconn, names, name, text)
            result = pgconn.exec_prepared(name, params)
            if result.error_field(pq.DiagnosticField.SQLSTATE) == _NO_SUCH_STATEMENT:
                names.pop(name, None)
                _prepare(pgconn, names, name, text)
                result = pgconn.exec_prepared(name, params)
            _check(pgconn, result)
        columns = range(result.nfields)
        return [tuple(result.get_value(row, column) for column in columns) for row in range(result.ntuples)]


def _prepare(pgconn: Any, names: OrderedDict[bytes, None], name: bytes, text: bytes) -> None:
    while len(names) >= PREPARED_MAX:
        oldest, _ = names.popitem(last=False)
        pgconn.exec_(b"DEALLOCATE " + oldest)  # gone already (DEALLOCATE ALL) is as good
    _check(pgconn, pgconn.prepare(name, text))
    names[name] = None


def _check(pgconn: Any, result: Any) -> Any:
    if result.status in _DONE:
        return result
    if pgconn.status == pq.ConnStatus.BAD:
        raise psycopg.OperationalError(pgconn.error_message.decode("utf-8", "replace") or "connection lost")
    raise error_from_result(result)
