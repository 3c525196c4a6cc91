"""Typed access to django-tenants' schema switching on the default connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
