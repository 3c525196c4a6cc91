"""The hot paths (tenants.hotpath): served ahead of the middleware stack, named by the URL conf,
and leaving the connection in the public schema whatever organization they served."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client
from django.urls import resolve

from tenants.hotpath import hot_routes
from tenants.schema import current_schema, in_schema


def test_every_hot_path_is_a_documented_url() -> None:
    routes = hot_routes()
    assert {path for _, path in routes} >= {"/api/v1/widget/events", "/api/v1/budgets/check"}
    for method, path in routes:
        match = resolve(path)  # the URL conf names it (reverse() and the OpenAPI schema see it)
        view_class = match.func.view_class  # type: ignore[attr-defined]
        assert method.lower() in view_class.http_method_names
        assert hasattr(view_class, method.lower()), f"{view_class.__name__} documents no {method}"


def test_a_widget_request_skips_the_stack_and_ends_in_public(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from feedback.models import FeedbackEvent
    from tenants.schema import in_tenant
    from tenants.services import api_key_create

    raw_key, _ = api_key_create(
        organization=org_a.organization, kind="public", name="hot-path", allowed_origins=["https://hot.example.com"]
    )

    trace_id = f"t-{uuid.uuid4().hex[:8]}"
    event = {"event_id": str(uuid.uuid4()), "trace_id": trace_id, "kind": "thumb", "value": 1}
    answer = Client().post(
        "/api/v1/widget/events",
        json.dumps({"key": raw_key, "events": [event]}),
        content_type="text/plain",
        HTTP_ORIGIN="https://hot.example.com",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["accepted"] == 1
    # XFrameOptionsMiddleware stamps every response that goes down the stack; the hot path's does not.
    assert "X-Frame-Options" not in answer
    assert current_schema() == "public"
    with in_tenant(org_a.organization):
        assert FeedbackEvent.objects.filter(trace_id=trace_id).count() == 1
    # The ordinary stack still answers every other path.
    assert "X-Frame-Options" in Client().get("/healthz")


@pytest.mark.parametrize("name", ["", "Org", "a;drop", 'x"y', "a" * 64, "1abc"])
def test_schema_names_are_checked_not_trusted(name: str) -> None:
    with pytest.raises(ValueError):
        in_schema("SELECT 1 FROM __SCHEMA__.t", name)


def test_schema_token_is_replaced_quoted() -> None:
    assert in_schema("SELECT 1 FROM __SCHEMA__.t JOIN __SCHEMA__.u", "org_acme") == (
        'SELECT 1 FROM "org_acme".t JOIN "org_acme".u'
    )


def _wsgi_call(environ_extra: dict[str, str], path: str, query: str = "") -> tuple[str, dict[str, str], bytes]:
    """One request through the application the web server serves (config.wsgi), not the test client."""
    import io

    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from config.wsgi import application

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1", "wsgi.input": io.BytesIO(b""),
               "wsgi.url_scheme": "http", **environ_extra}  # fmt: skip
    answer: dict[str, object] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"], answer["headers"] = status, dict(headers)

    # As Django's test client does: the test's transaction must outlive the request's end.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = application(environ, start_response)
        try:
            body = b"".join(response)
        finally:
            response.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return str(answer["status"]), answer["headers"], body  # type: ignore[return-value]


def test_the_served_application_answers_hot_paths_ahead_of_django(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {org_a.secret_key}"}
    status, headers, body = _wsgi_call(auth, "/api/v1/budgets/check", "customer_id=c-hot")
    assert status == "200 OK", body

    assert json.loads(body)["allowed"] is True and json.loads(body)["action"] == "allow"
    assert headers["Content-Length"] == str(len(body))
    assert headers["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware still stamps it
    assert "X-Frame-Options" not in headers  # the rest of the stack was skipped
    assert current_schema() == "public"
    status, headers, body = _wsgi_call({}, "/api/v1/budgets/check", "customer_id=c-hot")
    assert status == "401 Unauthorized" and headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert json.loads(body)["error"]["code"] == "not_authenticated"
    # A parameter the check does not take is refused at this door too, as TenantApi refuses it at DRF's.
    status, _, body = _wsgi_call(auth, "/api/v1/budgets/check", "customer_id=c-hot&customer=c-hot")
    assert status == "400 Bad Request" and json.loads(body)["error"]["details"] == {"field": "customer"}
    status, headers, _ = _wsgi_call(auth, "/api/v1/budgets")  # anything else: Django's own handler
    assert status == "200 OK" and "X-Frame-Options" in headers


class _Undo(Exception):
    pass


def _prepared_names(marker: str) -> set[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE statement LIKE %s", [f"%{marker}%"])
        return {name for (name,) in cursor.fetchall()}


def test_run_prepared_prepares_once_and_again_after_psycopg_drops_every_statement(committed_db: None) -> None:
    # Autocommit (the hot paths): prepared once per connection, run by name. psycopg answers a
    # ROLLBACK (or a DROP) with DEALLOCATE ALL when it holds prepared statements of its own,
    # which drops this one too: it is prepared again under the same name.
    import psycopg
    from django.db import connection, transaction

    from tenants.schema import raw_connection, run_prepared

    sql = "SELECT $1::int + 1, $2::text IS NULL /* run_prepared: again */"
    assert run_prepared(sql, [b"41", None]) == [(b"42", b"t")]
    assert run_prepared(sql, [b"0", None]) == [(b"1", b"t")]
    (name,) = _prepared_names("run_prepared: again")
    with raw_connection() as raw:
        psycopg.Cursor(raw).execute("SELECT 1 /* psycopg's own */", prepare=True)
    with pytest.raises(_Undo), transaction.atomic():
        connection.cursor().execute("SELECT 1")
        raise _Undo
    assert _prepared_names("run_prepared: again") == set()  # psycopg's DEALLOCATE ALL took it
    assert run_prepared(sql, [b"1", b"x"]) == [(b"2", b"f")]
    assert _prepared_names("run_prepared: again") == {name}


def test_run_prepared_keeps_at_most_its_bound_per_connection(committed_db: None, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A statement names its organization's schema: each organization a connection serves adds one.
    from tenants import schema

    monkeypatch.setattr(schema, "PREPARED_MAX", 3)
    for n in range(6):
        assert schema.run_prepared(f"SELECT $1::int + {n} /* run_prepared: bound */", [b"1"]) == [
            (str(1 + n).encode(),)
        ]
    assert len(_prepared_names("run_prepared: bound")) == 3
    assert schema.run_prepared("SELECT $1::int + 0 /* run_prepared: bound */", [b"1"]) == [(b"1",)]  # evicted: again
    assert len(_prepared_names("run_prepared: bound")) == 3


def test_run_prepared_first_in_an_atomic_block_is_part_of_its_transaction(committed_db: None) -> None:
    # psycopg begins a transaction with its first statement; run first, this statement must still
    # be inside it (rolled back with it), not committed on its own.
    from django.db import connection, transaction

    from tenants.schema import run_prepared

    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE run_prepared_rows (v int)")
    try:
        with pytest.raises(_Undo), transaction.atomic():
            run_prepared("INSERT INTO run_prepared_rows VALUES ($1::int)", [b"1"])
            raise _Undo
        run_prepared("INSERT INTO run_prepared_rows VALUES ($1::int)", [b"2"])  # autocommit: kept
        with connection.cursor() as cursor:
            cursor.execute("SELECT array_agg(v) FROM run_prepared_rows")
            assert cursor.fetchone() == ([2],)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE run_prepared_rows")


def test_run_prepared_errors_are_djangos_and_a_transaction_runs_it_unnamed(db: None) -> None:
    from django.db import ProgrammingError, connection

    from tenants.schema import run_prepared

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        (before,) = cursor.fetchone()
    assert run_prepared("SELECT $1::int * 2", [b"21"]) == [(b"42",)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone() == (before,)  # in the test's transaction: nothing prepared
    with pytest.raises(ProgrammingError, match="no_such_table"):
        run_prepared("SELECT * FROM no_such_table WHERE id = $1::int", [b"1"])
