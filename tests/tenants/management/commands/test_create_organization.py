"""manage.py create_organization: prints working keys as JSON, and refuses a taken or malformed slug."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from tenants.models import ApiKey, Membership, Organization, User


def test_create_organization_command_prints_json_with_working_keys(
    scratch_org_cleanup: None, capsys: pytest.CaptureFixture
) -> None:
    call_command("create_organization", "scratch-cmd", "--owner", "ops@scratch.test")
    out = json.loads(capsys.readouterr().out)
    assert out["organization"] == "scratch-cmd"
    assert out["owner_email"] == "ops@scratch.test"
    assert out["secret_key"].startswith("sk_") and out["public_key"].startswith("pk_")
    assert len(out["owner_password"]) >= 12
    org = Organization.objects.get(slug="scratch-cmd")
    user = User.objects.get(email="ops@scratch.test")
    assert user.check_password(out["owner_password"])
    assert Membership.objects.get(organization=org, user=user).role == "owner"
    # Keys are stored hashed: the raw key appears nowhere in the table.
    assert not ApiKey.objects.filter(key_hash=out["secret_key"]).exists()
    assert ApiKey.objects.filter(organization=org).count() == 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", [org.schema_name])
        assert cursor.fetchone()[0] >= 5  # the tenant tables were cloned from the template


def test_duplicate_slug_is_a_clear_error_and_changes_nothing(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    before = Organization.objects.count()
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_organization", org_a.slug, "--owner", "someone@else.test")
    assert Organization.objects.count() == before
    assert not User.objects.filter(email="someone@else.test").exists()


def test_malformed_slug_via_command(db: None) -> None:
    with pytest.raises(CommandError, match="lowercase"):
        call_command("create_organization", "Bad_Slug", "--owner", "x@y.test")
