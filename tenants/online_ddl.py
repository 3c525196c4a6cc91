"""Index migrations that keep writes going: CREATE / DROP INDEX CONCURRENTLY wherever a migration can.

A plain CREATE INDEX takes a lock that blocks every write to its table until the index is built: on an
organization with millions of traces, an upgrade would stall its ingestion for as long as the build
takes, schema after schema. These operations build and drop CONCURRENTLY when their migration runs
outside a transaction (a migration with ``atomic = False``, as ``make migrate`` runs it), and as
AddIndex / RemoveIndex do inside one: a new organization's schema, migrated inside its creation, or a
test. There the table is new and empty, and the lock costs nothing.

A concurrent build that failed (a deadlock, a duplicate in a unique index, a cancelled migrate) leaves
an INVALID index of that name behind: the next try drops it first instead of failing on "already exists".
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db.migrations.operations import AddIndex, RemoveIndex

_INVALID = """
SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace AND NOT i.indisvalid
"""


def _in_transaction(schema_editor: Any) -> bool:
    return bool(schema_editor.connection.in_atomic_block)


def _drop_if_invalid(schema_editor: Any, name: str) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(_INVALID, [name])
        if cursor.fetchone():
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")


class AddIndexOnline(AddIndexConcurrently):
    """AddIndex, built CONCURRENTLY outside a transaction (its migration needs ``atomic = False``)."""

    def describe(self) -> str:
        return f"Create index {self.index.name} on {self.model_name} (concurrently, outside a transaction)"

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if _in_transaction(schema_editor):
            AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)
            return
        _drop_if_invalid(schema_editor, self.index.name)
        super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if _in_transaction(schema_editor):
            AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)
            return
        super().database_backwards(app_label, schema_editor, from_state, to_state)


class RemoveIndexOnline(RemoveIndexConcurrently):
    """RemoveIndex, dropped CONCURRENTLY outside a transaction (its migration needs ``atomic = False``)."""

    def describe(self) -> str:
        return f"Remove index {self.name} from {self.model_name} (concurrently, outside a transaction)"

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if _in_transaction(schema_editor):
            RemoveIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)
            return
        super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if _in_transaction(schema_editor):
            RemoveIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)
            return
        _drop_if_invalid(schema_editor, self.name)
        super().database_backwards(app_label, schema_editor, from_state, to_state)
