"""The span key's columns compare byte by byte (COLLATE "C"), with no rebuild of the key under lock.

Changing a column's collation rebuilds every index on it while the table is locked for writes. The key's index is
built first with the new collation (concurrently on a large table: tenants/online_ddl.py); the columns then take
the collation in one brief ALTER, in which PostgreSQL keeps that index as it is (its collation already matches),
and it becomes the primary key in place of the old one."""

from typing import Any

from django.db import migrations, models

from tenants.online_ddl import unique_index_online

# Rerunnable: a schema whose columns are C already (a run that stopped before the migration was recorded) is left.
FORWARD = """
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'feedback_span' AND column_name = 'span_id'
                 AND collation_name IS DISTINCT FROM 'C') THEN
        ALTER TABLE feedback_span
            DROP CONSTRAINT feedback_span_pkey,
            ALTER COLUMN trace_id TYPE varchar(200) COLLATE "C",
            ALTER COLUMN span_id TYPE varchar(100) COLLATE "C";
        ALTER TABLE feedback_span ADD CONSTRAINT feedback_span_pkey PRIMARY KEY USING INDEX feedback_span_key_c;
    END IF;
END $$;
"""

BACKWARD = """
ALTER TABLE feedback_span
    ALTER COLUMN trace_id TYPE varchar(200) COLLATE "default",
    ALTER COLUMN span_id TYPE varchar(100) COLLATE "default";
"""


_COLLATED = """
SELECT collation_name = 'C' FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = 'feedback_span' AND column_name = 'span_id'
"""


def build_key(apps: Any, schema_editor: Any) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(_COLLATED)
        (collated,) = cursor.fetchone()
    if collated:  # done by a run that stopped before the migration was recorded
        return
    unique_index_online(
        schema_editor,
        table="feedback_span",
        name="feedback_span_key_c",
        columns='trace_id COLLATE "C", span_id COLLATE "C"',
    )


class Migration(migrations.Migration):
    # The key's index is built without blocking writes (tenants/online_ddl.py): not in a transaction.
    atomic = False

    dependencies = [
        ("feedback", "0017_span_keyed_by_trace_and_span_id"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunPython(build_key, migrations.RunPython.noop),
                migrations.RunSQL(FORWARD, BACKWARD),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="span", name="trace_id", field=models.CharField(db_collation="C", max_length=200)
                ),
                migrations.AlterField(
                    model_name="span", name="span_id", field=models.CharField(db_collation="C", max_length=100)
                ),
            ],
        ),
    ]
