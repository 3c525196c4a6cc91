"""Organizations (tenants), their domains, users, memberships and API keys: all in the public schema."""

from __future__ import annotations

import re

from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django_tenants.models import DomainMixin, TenantMixin

SLUG_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
SLUG_MIN, SLUG_MAX = 3, 40
# Words that would collide with our own URLs, schemas or look official to a user.
RESERVED_SLUGS = frozenset(
    {
        "admin",
        "api",
        "app",
        "auth",
        "billing",
        "candor",
        "demo",
        "docs",
        "help",
        "internal",
        "login",
        "logout",
        "new",
        "org",
        "orgs",
        "postgres",
        "public",
        "root",
        "settings",
        "signup",
        "static",
        "support",
        "system",
        "template",
        "tenant",
        "tenants",
        "test",
        "www",
    }
)


def validate_organization_slug(slug: str) -> None:
    """Our own rule: django-tenants accepts any valid identifier, which is far too loose."""
    if not (SLUG_MIN <= len(slug) <= SLUG_MAX):
        raise ValidationError(f"Use {SLUG_MIN} to {SLUG_MAX} characters.", code="slug_length")
    if not SLUG_RE.match(slug):
        raise ValidationError(
            "Use lowercase letters, digits and single hyphens, starting with a letter.", code="slug_format"
        )
    if slug in RESERVED_SLUGS or slug.startswith("pg-"):
        raise ValidationError(f"'{slug}' is reserved.", code="slug_reserved")


def schema_name_for(slug: str) -> str:
    # A fixed prefix keeps organization schemas apart from public, pg_* and the template.
    return "org_" + slug.replace("-", "_")


class Organization(TenantMixin):
    name = models.CharField(max_length=200)  # type: ignore[var-annotated]
    slug = models.SlugField(max_length=SLUG_MAX, unique=True, validators=[validate_organization_slug])  # type: ignore[var-annotated]
    created_at = models.DateTimeField(default=timezone.now)  # type: ignore[var-annotated]
    # Whether the widget must present a signed per-trace token (see tenants.tokens).
    require_signed_tokens = models.BooleanField(default=False)  # type: ignore[var-annotated]
    widget_signing_secret = models.CharField(max_length=64, blank=True, default="")  # type: ignore[var-annotated]
    # Set by billing when the organization's spend cap is reached: ingestion answers 429
    # quota_exceeded while it is set (tenants never imports billing; it reads this flag).
    quota_exceeded_at = models.DateTimeField(null=True, blank=True)  # type: ignore[var-annotated]

    auto_create_schema = True
    auto_drop_schema = True

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Domain(DomainMixin):
    pass


class User(AbstractUser):
    email = models.EmailField(unique=True)

    def organizations(self) -> models.QuerySet[Organization]:
        return Organization.objects.filter(memberships__user=self)


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    PM = "pm", "Product manager"
    REVIEWER = "reviewer", "Reviewer"
    VIEWER = "viewer", "Viewer"


ROLE_RANK = {Role.VIEWER: 0, Role.REVIEWER: 1, Role.PM: 2, Role.ADMIN: 3, Role.OWNER: 4}


class Membership(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="one_membership_per_user")]

    def at_least(self, role: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(role)]


class Invitation(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)

    @property
    def is_open(self) -> bool:
        return self.accepted_at is None and self.expires_at > timezone.now()


class KeyKind(models.TextChoices):
    SECRET = "secret", "Secret"
    PUBLIC = "public", "Public"


class ApiKey(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    kind = models.CharField(max_length=8, choices=KeyKind.choices)
    name = models.CharField(max_length=100)
    # The first characters, shown in lists so people can tell keys apart.
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    allowed_origins = ArrayField(models.CharField(max_length=255), default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
