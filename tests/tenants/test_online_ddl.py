"""Index migrations build and drop CONCURRENTLY on a large table outside a transaction (writes go on during an
upgrade), plainly on a small one or inside a transaction (a new organization's schema: no wait on other
sessions' snapshots), rerun cleanly after a stop between operations, drop a failed concurrent build's
INVALID leftover but not an index another session is building; and `migrate_locked` holds its lock for
every schema. Run on a real tenant schema's trace table."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection, models, transaction
from django.db.migrations.loader import MigrationLoader
from django.test.utils import CaptureQueriesContext
from django_tenants.signals import schema_pre_migration

from tenants.management.commands.migrate_locked import MIGRATE_LOCK
from tenants.online_ddl import AddIndexOnline, RemoveIndexOnline
from tenants.services import organization_create
from tests.fixtures.organizations import Org, in_tenant

NAME = "test_online_ddl_idx"
VALID = """SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace"""
ADD = AddIndexOnline(model_name="trace", index=models.Index(fields=["model"], name=NAME))
REMOVE = RemoveIndexOnline(model_name="trace", name=NAME)


def _run(op: Any, *, atomic: bool = False, with_index: bool = False) -> list[str]:
    """The operation forwards (from a state with the test index when ``with_index``); the SQL it ran."""
    before = MigrationLoader(connection).project_state()
    if with_index:
        ADD.state_forwards("feedback", before)
    after = before.clone()
    op.state_forwards("feedback", after)
    with CaptureQueriesContext(connection) as queries, connection.schema_editor(atomic=atomic) as editor:
        op.database_forwards("feedback", editor, before, after)
    return [q["sql"] for q in queries.captured_queries]


def _index_ddl(sql: list[str]) -> list[str]:
    return [s for s in sql if s.startswith(("CREATE INDEX", "DROP INDEX"))]


def _valid() -> bool | None:
    with connection.cursor() as cursor:
        cursor.execute(VALID, [NAME])
        row = cursor.fetchone()
    return None if row is None else bool(row[0])


@pytest.fixture
def no_leftover(committed_db: None, org_a: Org) -> Iterator[None]:
    yield
    with in_tenant(org_a), connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {NAME}")
        cursor.execute("DROP TABLE IF EXISTS test_online_ddl_dups")


def test_a_large_table_outside_a_transaction_is_indexed_concurrently(
    org_a: Org, no_leftover: None, settings: Any
) -> None:
    settings.INDEX_CONCURRENTLY_FROM_BYTES = 0  # the trace table counts as large
    with in_tenant(org_a):
        built = _index_ddl(_run(ADD))
        assert len(built) == 1 and built[0].startswith("CREATE INDEX CONCURRENTLY") and NAME in built[0], built
        assert _valid() is True
        dropped = _index_ddl(_run(REMOVE, with_index=True))
        assert len(dropped) == 1 and dropped[0].startswith("DROP INDEX CONCURRENTLY"), dropped
        assert _valid() is None


def test_a_small_table_or_a_transaction_gets_a_plain_build(org_a: Org, no_leftover: None, settings: Any) -> None:
    with in_tenant(org_a):
        settings.INDEX_CONCURRENTLY_FROM_BYTES = 1 << 40  # the trace table is small
        built = _index_ddl(_run(ADD))
        assert len(built) == 1 and built[0].startswith("CREATE INDEX") and "CONCURRENTLY" not in built[0], built
        assert _valid() is True
        assert not any("CONCURRENTLY" in s for s in _run(REMOVE, with_index=True))
        assert _valid() is None
        settings.INDEX_CONCURRENTLY_FROM_BYTES = 0
        with transaction.atomic():
            built = _index_ddl(_run(ADD, atomic=True))
            assert len(built) == 1 and "CONCURRENTLY" not in built[0], built
            assert _valid() is True
            transaction.set_rollback(True)
        assert _valid() is None


def test_a_new_organizations_schema_builds_no_index_concurrently(committed_db: None) -> None:
    """Concurrent builds wait for every older transaction in the database: sign-up must not."""
    slug = f"ddl-{uuid.uuid4().hex[:8]}"
    with CaptureQueriesContext(connection) as queries:
        created = organization_create(slug=slug, owner_email=f"owner@{slug}.test")
    sql = [q["sql"] for q in queries.captured_queries]
    assert any(s.startswith("CREATE INDEX") and "trace_session_recent" in s for s in sql)  # it did build them
    assert not [s for s in sql if "CONCURRENTLY" in s]
    created.organization.delete(force_drop=True)


def test_unapplying_drops_what_applying_built(org_a: Org, no_leftover: None, settings: Any) -> None:
    for size in (0, 1 << 40):  # concurrently, then plainly
        settings.INDEX_CONCURRENTLY_FROM_BYTES = size
        with in_tenant(org_a):
            _run(ADD)
            before = MigrationLoader(connection).project_state()
            after = before.clone()
            ADD.state_forwards("feedback", after)
            with connection.schema_editor(atomic=False) as editor:
                ADD.database_backwards("feedback", editor, after, before)
            assert _valid() is None
            _run(ADD)
            with_index, without = after, after.clone()
            REMOVE.state_forwards("feedback", without)
            with connection.schema_editor(atomic=False) as editor:
                REMOVE.database_forwards("feedback", editor, with_index, without)
                assert _valid() is None
                REMOVE.database_backwards("feedback", editor, without, with_index)
            assert _valid() is True
            with connection.cursor() as cursor:
                cursor.execute(f"DROP INDEX {NAME}")


def test_a_rerun_keeps_a_valid_index_and_skips_one_already_dropped(org_a: Org, no_leftover: None) -> None:
    with in_tenant(org_a):
        _run(ADD)
        assert _index_ddl(_run(ADD)) == []  # a run that stopped after building it: kept
        assert _valid() is True
        _run(REMOVE, with_index=True)
        assert _index_ddl(_run(REMOVE, with_index=True)) == []  # stopped after dropping it: nothing to do


def test_an_invalid_leftover_is_dropped_unless_another_session_is_building_it(
    org_a: Org, no_leftover: None, settings: Any
) -> None:
    settings.INDEX_CONCURRENTLY_FROM_BYTES = 0
    with in_tenant(org_a):
        with connection.cursor() as cursor:
            # A UNIQUE build over duplicates fails, leaving an INVALID index of the name behind.
            cursor.execute("CREATE TABLE test_online_ddl_dups AS SELECT 1 AS v FROM generate_series(1, 2)")
            with pytest.raises(Exception, match="could not create unique index"):
                cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {NAME} ON test_online_ddl_dups (v)")
            cursor.execute("SELECT current_schema()")
            (schema,) = cursor.fetchone()
        assert _valid() is False
        # Another session holding the table as a concurrent build does: its index is not ours to drop.
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
            other.execute("BEGIN")
            other.execute(f'LOCK TABLE "{schema}".test_online_ddl_dups IN SHARE UPDATE EXCLUSIVE MODE')
            with pytest.raises(RuntimeError, match="being built by another session"):
                _run(ADD)
            other.execute("ROLLBACK")
        assert _valid() is False
        _run(ADD)  # would fail on "already exists" without the drop
        assert _valid() is True


class _Seen(Exception):
    pass


def test_migrate_locked_holds_its_lock_while_every_schema_migrates(committed_db: None) -> None:
    held: list[bool] = []

    def check(**kwargs: Any) -> None:
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
            row = other.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND ((classid::bigint << 32) | objid::bigint) = %s",
                [MIGRATE_LOCK],
            ).fetchone()
        held.append(bool(row and row[0]))
        if len(held) == 3:  # public and two organizations' schemas are enough
            raise _Seen

    schema_pre_migration.connect(check)
    try:
        with pytest.raises(_Seen):
            call_command("migrate_locked", verbosity=0)
    finally:
        schema_pre_migration.disconnect(check)
        connection.close()  # the migrations' connection is left on some schema
    assert held == [True, True, True]


def test_a_unique_index_for_a_primary_key_builds_online_reruns_and_replaces_an_invalid_leftover(
    org_a: Org, no_leftover: None, settings: Any
) -> None:
    """unique_index_online (the span key's migration): CONCURRENTLY on a large table outside a transaction, plainly
    inside one; a valid index of the name is kept on a rerun, an INVALID leftover built again."""
    from tenants.online_ddl import unique_index_online

    def build(atomic: bool) -> list[str]:
        with CaptureQueriesContext(connection) as queries, connection.schema_editor(atomic=atomic) as editor:
            unique_index_online(editor, table="feedback_trace", name=NAME, columns="trace_id")
        return [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("CREATE UNIQUE", "DROP INDEX"))]

    settings.INDEX_CONCURRENTLY_FROM_BYTES = 0  # the trace table counts as large
    with in_tenant(org_a):
        (built,) = build(atomic=False)
        assert built.startswith("CREATE UNIQUE INDEX CONCURRENTLY") and _valid() is True
        assert build(atomic=False) == []  # a rerun keeps it
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass('{NAME}')")
        assert _valid() is False
        dropped, rebuilt = build(atomic=True)  # inside a transaction: dropped and built plainly
        assert dropped.startswith("DROP INDEX IF EXISTS") and rebuilt.startswith(f'CREATE UNIQUE INDEX "{NAME}"')
        assert _valid() is True
