"""Reads other apps need from tenants, so they never reach into its models."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tenants.models import Organization
from tenants.schema import activate_public, activate_tenant


@dataclass(frozen=True)
class OrganizationRef:
    """What a task or report needs to know of an organization: no model instance leaks out."""

    id: int
    slug: str
    name: str
    schema_name: str


def _ref(organization: Organization) -> OrganizationRef:
    return OrganizationRef(organization.id, organization.slug, organization.name, organization.schema_name)


def organization_find(slug: str) -> Organization | None:
    return Organization.objects.filter(slug=slug).first()


def organizations_each() -> Iterator[OrganizationRef]:
    """Visit every organization inside its own schema (back in public after each, even on error)."""
    for organization in Organization.objects.only("id", "slug", "name", "schema_name").order_by("id"):
        activate_tenant(organization)
        try:
            yield _ref(organization)
        finally:
            activate_public()
