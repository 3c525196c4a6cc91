"""Index migrations build and drop CONCURRENTLY when run outside a transaction (writes go on during an
upgrade), plainly inside one (a new organization's schema), and a failed concurrent build's INVALID
leftover is dropped before the next try. Run on a real tenant schema's trace table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, models, transaction
from django.db.migrations.loader import MigrationLoader
from django.test.utils import CaptureQueriesContext

from tenants.online_ddl import AddIndexOnline, RemoveIndexOnline
from tests.fixtures.organizations import Org, in_tenant

NAME = "test_online_ddl_idx"
VALID = """SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace"""


def _states(op: Any) -> tuple[Any, Any]:
    before = MigrationLoader(connection).project_state()
    after = before.clone()
    op.state_forwards("feedback", after)
    return before, after


def _run(op: Any, *, atomic: bool) -> list[str]:
    before, after = _states(op)
    with CaptureQueriesContext(connection) as queries, connection.schema_editor(atomic=atomic) as editor:
        op.database_forwards("feedback", editor, before, after)
    return [q["sql"] for q in queries.captured_queries]


def _valid() -> bool | None:
    with connection.cursor() as cursor:
        cursor.execute(VALID, [NAME])
        row = cursor.fetchone()
    return None if row is None else bool(row[0])


ADD = AddIndexOnline(model_name="trace", index=models.Index(fields=["model"], name=NAME))


@pytest.fixture
def no_leftover(committed_db: None, org_a: Org) -> Iterator[None]:
    yield
    with in_tenant(org_a), connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {NAME}")
        cursor.execute("DROP TABLE IF EXISTS test_online_ddl_dups")


def test_outside_a_transaction_indexes_are_built_and_dropped_concurrently(org_a: Org, no_leftover: None) -> None:
    with in_tenant(org_a):
        built = _run(ADD, atomic=False)
        assert any(sql.startswith("CREATE INDEX CONCURRENTLY") and NAME in sql for sql in built), built
        assert _valid() is True
        _, with_index = _states(ADD)
        remove = RemoveIndexOnline(model_name="trace", name=NAME)
        before, after = with_index, with_index.clone()
        remove.state_forwards("feedback", after)
        with CaptureQueriesContext(connection) as queries, connection.schema_editor(atomic=False) as editor:
            remove.database_forwards("feedback", editor, before, after)
        assert any(q["sql"].startswith("DROP INDEX CONCURRENTLY") for q in queries.captured_queries)
        assert _valid() is None


def test_inside_a_transaction_they_build_as_a_plain_index(org_a: Org, no_leftover: None) -> None:
    with in_tenant(org_a), transaction.atomic():
        built = _run(ADD, atomic=True)
        assert any(sql.startswith("CREATE INDEX") and NAME in sql for sql in built), built
        assert not any("CONCURRENTLY" in sql for sql in built)
        assert _valid() is True
        transaction.set_rollback(True)
    with in_tenant(org_a):
        assert _valid() is None


def test_a_failed_concurrent_builds_invalid_leftover_is_dropped_first(org_a: Org, no_leftover: None) -> None:
    with in_tenant(org_a):
        with connection.cursor() as cursor:
            # A UNIQUE build over duplicates fails, leaving an INVALID index of the name behind.
            cursor.execute("CREATE TABLE test_online_ddl_dups AS SELECT 1 AS v FROM generate_series(1, 2)")
            with pytest.raises(Exception, match="could not create unique index"):
                cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {NAME} ON test_online_ddl_dups (v)")
        assert _valid() is False
        _run(ADD, atomic=False)  # would fail on "already exists" without the drop
        assert _valid() is True
