"""Tenant services: an organization is created whole or not at all, and a revoked key stops at once."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client

from tenants.models import Organization
from tenants.services import organization_create


def test_weak_password_is_refused_before_anything_is_created(db: None) -> None:
    with pytest.raises(ValidationError):
        organization_create(slug="weak-pw", owner_email="weak@pw.test", owner_password="password")
    assert not Organization.objects.filter(slug="weak-pw").exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = 'org_weak_pw'")
        assert cursor.fetchone() is None


def test_revoked_key_gets_401_on_the_api(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from tenants.services import api_key_create, api_key_revoke

    raw, key = api_key_create(organization=org_a.organization, kind="secret", name="ci")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/traces").status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None
    api_key_revoke(key=key)
    response = client.get("/api/v1/traces")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_key"
