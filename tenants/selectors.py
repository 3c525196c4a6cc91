"""Reads other apps need from tenants, so they never reach into its models.

``Organization`` is importable from here for annotations and foreign keys' instances.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tenants.models import ApiKey, Membership, Organization, Role
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


def organization_get(organization_id: int) -> Organization | None:
    return Organization.objects.filter(id=organization_id).first()


def organization_ids() -> list[int]:
    """Every organization's id (the public schema is no organization)."""
    return list(Organization.objects.exclude(schema_name="public").order_by("id").values_list("id", flat=True))


def organization_admin_emails(organization_id: int) -> list[str]:
    """Who hears about the organization's bill: its owners and admins."""
    return list(
        Membership.objects.filter(organization_id=organization_id, role__in=[Role.OWNER, Role.ADMIN])
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )


def organization_member_emails(organization_id: int, role: str) -> list[str]:
    """The emails of the organization's members with this role (e.g. the PMs a digest goes to)."""
    return list(
        Membership.objects.filter(organization_id=organization_id, role=role)
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )


def organizations_each() -> Iterator[OrganizationRef]:
    """Visit every organization inside its own schema (back in public after each, even on error)."""
    for organization in Organization.objects.only("id", "slug", "name", "schema_name").order_by("id"):
        activate_tenant(organization)
        try:
            yield _ref(organization)
        finally:
            activate_public()


def api_key_label(key_id: int) -> str:
    """How a key signs what it did: its name and number (not its characters: the label travels in webhooks)."""
    name = ApiKey.objects.filter(id=key_id).values_list("name", flat=True).first()
    return f"API key {name} (#{key_id})" if name else f"API key #{key_id}"
