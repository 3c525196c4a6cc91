"""Index migrations that keep writes going: CREATE / DROP INDEX CONCURRENTLY where it matters.

A plain CREATE INDEX takes a lock that blocks every write to its table until the index is built: on an
organization with millions of traces, an upgrade would stall its ingestion for as long as the build
takes, schema after schema. These operations build and drop CONCURRENTLY when their table is large
(``settings.INDEX_CONCURRENTLY_FROM_BYTES``, 8 MB by default) and their migration runs outside a
transaction (``atomic = False``, as ``make migrate`` runs it). A small or new table (a new organization's
schema) gets a plain build: it takes milliseconds, where a concurrent one would first wait for every
older transaction in the database to end (a long report or a ``pg_dump`` would stall sign-up).

Rerunnable: a valid index of the name, left by a run that stopped between its operations, is kept; an
INVALID one (a concurrent build that failed) is dropped and built again, unless another session is
building it this moment, which is an error that says so.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db.migrations.operations import AddIndex, RemoveIndex

# The index of that name in the current schema: (valid, another session holds a lock on its table).
_EXISTING = """
SELECT i.indisvalid,
       EXISTS (SELECT 1 FROM pg_locks l WHERE l.relation = i.indrelid AND l.pid <> pg_backend_pid() AND l.granted
               AND l.mode = 'ShareUpdateExclusiveLock')
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace
"""
_TABLE_BYTES = "SELECT COALESCE(pg_total_relation_size(to_regclass(%s)), 0)"


def _concurrently(schema_editor: Any, table: str) -> bool:
    """Build without blocking writes: outside a transaction, and worth it (the table is large)."""
    if schema_editor.connection.in_atomic_block:
        return False
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(_TABLE_BYTES, [table])
        (size,) = cursor.fetchone()
    return bool(size >= settings.INDEX_CONCURRENTLY_FROM_BYTES)


def _existing(schema_editor: Any, name: str) -> tuple[bool, bool] | None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(_EXISTING, [name])
        row = cursor.fetchone()
    return None if row is None else (bool(row[0]), bool(row[1]))


def _table(op: Any, app_label: str, state: Any) -> str:
    return str(state.apps.get_model(app_label, op.model_name)._meta.db_table)


def _apply(op: Any, plain: type, concurrent: type, direction: str, args: tuple[Any, ...], table: str) -> None:
    """Run ``direction`` (database_forwards / _backwards) of the concurrent or the plain operation."""
    schema_editor = args[1]
    chosen = concurrent if _concurrently(schema_editor, table) else plain
    getattr(chosen, direction)(op, *args)


class AddIndexOnline(AddIndexConcurrently):
    """AddIndex, built CONCURRENTLY on a large table outside a transaction (its migration: ``atomic = False``)."""

    def describe(self) -> str:
        return f"Create index {self.index.name} on {self.model_name} (concurrently when its table is large)"

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        existing = _existing(schema_editor, self.index.name)
        if existing is not None:
            valid, building = existing
            if valid:
                return  # built by a run that stopped before its next operation
            if building:
                raise RuntimeError(f"index {self.index.name} is being built by another session: wait for it")
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(self.index.name)}")
        args = (app_label, schema_editor, from_state, to_state)
        _apply(self, AddIndex, AddIndexConcurrently, "database_forwards", args, _table(self, app_label, to_state))

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        args = (app_label, schema_editor, from_state, to_state)
        _apply(self, AddIndex, AddIndexConcurrently, "database_backwards", args, _table(self, app_label, from_state))


class RemoveIndexOnline(RemoveIndexConcurrently):
    """RemoveIndex, dropped CONCURRENTLY on a large table outside a transaction (``atomic = False``)."""

    def describe(self) -> str:
        return f"Remove index {self.name} from {self.model_name} (concurrently when its table is large)"

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if _existing(schema_editor, self.name) is None:
            return  # dropped by a run that stopped before the migration was recorded
        args = (app_label, schema_editor, from_state, to_state)
        _apply(self, RemoveIndex, RemoveIndexConcurrently, "database_forwards", args, model._meta.db_table)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        args = (app_label, schema_editor, from_state, to_state)
        table = _table(self, app_label, to_state)
        _apply(self, RemoveIndex, RemoveIndexConcurrently, "database_backwards", args, table)


def unique_index_online(schema_editor: Any, *, table: str, name: str, columns: str) -> None:
    """CREATE UNIQUE INDEX ``name`` ON ``table`` (``columns``), CONCURRENTLY when the table is large, as
    AddIndexOnline builds (for a primary key then taken over USING INDEX: Django's own operations build no unique
    index alone). Rerunnable: a valid index of the name is kept, an invalid one built again."""
    quoted = schema_editor.quote_name(name)
    existing = _existing(schema_editor, name)
    if existing is not None:
        valid, building = existing
        if valid:
            return
        if building:
            raise RuntimeError(f"index {name} is being built by another session: wait for it")
        concurrently = "" if schema_editor.connection.in_atomic_block else "CONCURRENTLY "
        schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {quoted}")
    how = "CONCURRENTLY " if _concurrently(schema_editor, table) else ""
    schema_editor.execute(f"CREATE UNIQUE INDEX {how}{quoted} ON {schema_editor.quote_name(table)} ({columns})")
