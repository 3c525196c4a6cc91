"""Organizations: the slug rule, creation (command and sign-up), and the schema each one gets."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection

from tenants.models import ApiKey, Membership, Organization, User, schema_name_for, validate_organization_slug
from tenants.services import organization_create


@pytest.mark.parametrize("slug", ["ab", "-acme", "acme-", "Acme", "ac--me", "ac_me", "1acme", "a" * 41, "admin", "www"])
def test_bad_slugs_are_refused(slug: str) -> None:
    with pytest.raises(ValidationError):
        validate_organization_slug(slug)


@pytest.mark.parametrize("slug", ["acme", "acme-corp", "a1b2", "x" * 40])
def test_good_slugs_pass_and_map_to_a_prefixed_schema(slug: str) -> None:
    validate_organization_slug(slug)
    assert schema_name_for(slug).startswith("org_")
    assert "-" not in schema_name_for(slug)


@pytest.fixture
def scratch_org_cleanup(committed_db: None):  # type: ignore[no-untyped-def]
    """Schema creation commits, so tests that create organizations clean up after themselves."""
    yield
    for org in Organization.objects.filter(slug__startswith="scratch-"):
        org.delete(force_drop=True)
    User.objects.filter(email__endswith="@scratch.test").delete()


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


def test_weak_password_is_refused_before_anything_is_created(db: None) -> None:
    with pytest.raises(ValidationError):
        organization_create(slug="weak-pw", owner_email="weak@pw.test", owner_password="password")
    assert not Organization.objects.filter(slug="weak-pw").exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = 'org_weak_pw'")
        assert cursor.fetchone() is None


def test_malformed_slug_via_command(db: None) -> None:
    with pytest.raises(CommandError, match="lowercase"):
        call_command("create_organization", "Bad_Slug", "--owner", "x@y.test")
