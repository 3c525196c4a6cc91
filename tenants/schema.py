"""Typed access to django-tenants' schema switching on the default connection."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from django.db import connection as _connection

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
            # Django switches psycopg's statement preparation off (for transaction-mode poolers,
            # which Candor does not support); prepare=True needs it on. Django's own cursors bind
            # client-side and never prepare, so nothing else changes.
            raw.prepare_threshold = 2**31 - 1
        yield raw
