"""Migration 0018 (the span key compares byte by byte): the C-collated key index is built first and kept as built
when the columns take the collation (no rebuild while the table is locked), the rows stay, and a rerun changes
nothing. Run on a real tenant schema put back as it was before the migration."""

from __future__ import annotations

import importlib

from django.db import connection

from tests.fixtures.organizations import Org, in_tenant

migration = importlib.import_module("feedback.migrations.0018_span_key_collation_c")

_BEFORE = """
ALTER TABLE feedback_span DROP CONSTRAINT feedback_span_pkey,
    ALTER COLUMN trace_id TYPE varchar(200) COLLATE "default",
    ALTER COLUMN span_id TYPE varchar(100) COLLATE "default";
ALTER TABLE feedback_span ADD CONSTRAINT feedback_span_pkey PRIMARY KEY (trace_id, span_id);
"""
_STATE = """
SELECT (SELECT string_agg(column_name || ':' || COALESCE(collation_name, 'default'), ',' ORDER BY column_name)
          FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'feedback_span'
           AND column_name IN ('trace_id', 'span_id')),
       (SELECT string_agg(c.relname || ':' || i.indisprimary, ',') FROM pg_index i
          JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'feedback_span'::regclass),
       (SELECT count(*) FROM feedback_span)
"""
_FILE_NODE = "SELECT relfilenode FROM pg_class WHERE relname = %s AND relnamespace = current_schema()::regnamespace"


def _migrate() -> None:
    with connection.schema_editor() as editor:
        migration.build_key(None, editor)
        editor.execute(migration.FORWARD)


def test_the_span_key_takes_the_c_collation_without_a_rebuild_and_a_rerun_changes_nothing(db: None, org_a: Org) -> None:
    with in_tenant(org_a), connection.cursor() as cursor:
        cursor.execute(_BEFORE)
        cursor.execute(
            "INSERT INTO feedback_span (trace_id, span_id, parent_span_id, name, kind, model, attributes) "
            "VALUES ('t1', 'b', '', '', 'other', '', '{}'), ('t1', 'a', '', '', 'other', '', '{}')"
        )
        cursor.execute(_STATE)
        assert cursor.fetchone() == ("span_id:default,trace_id:default", "feedback_span_pkey:true", 2)
        with connection.schema_editor() as editor:
            migration.build_key(None, editor)
        cursor.execute(_FILE_NODE, ["feedback_span_key_c"])
        (built,) = cursor.fetchone()
        with connection.schema_editor() as editor:
            editor.execute(migration.FORWARD)
        cursor.execute(_STATE)
        assert cursor.fetchone() == ("span_id:C,trace_id:C", "feedback_span_pkey:true", 2)
        cursor.execute(_FILE_NODE, ["feedback_span_pkey"])
        assert cursor.fetchone() == (built,)  # the index built beforehand, not rebuilt by the ALTER
        _migrate()  # a rerun (a run that stopped before the migration was recorded) builds and alters nothing
        cursor.execute(_STATE)
        assert cursor.fetchone() == ("span_id:C,trace_id:C", "feedback_span_pkey:true", 2)
        cursor.execute(_FILE_NODE, ["feedback_span_pkey"])
        assert cursor.fetchone() == (built,)
        cursor.execute("SELECT span_id FROM feedback_span ORDER BY span_id")
        assert cursor.fetchall() == [("a",), ("b",)]
