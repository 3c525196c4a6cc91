"""The organization slug rule and the schema name each slug maps to."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from tenants.models import schema_name_for, validate_organization_slug


@pytest.mark.parametrize("slug", ["ab", "-acme", "acme-", "Acme", "ac--me", "ac_me", "1acme", "a" * 41, "admin", "www"])
def test_bad_slugs_are_refused(slug: str) -> None:
    with pytest.raises(ValidationError):
        validate_organization_slug(slug)


@pytest.mark.parametrize("slug", ["acme", "acme-corp", "a1b2", "x" * 40])
def test_good_slugs_pass_and_map_to_a_prefixed_schema(slug: str) -> None:
    validate_organization_slug(slug)
    assert schema_name_for(slug).startswith("org_")
    assert "-" not in schema_name_for(slug)
