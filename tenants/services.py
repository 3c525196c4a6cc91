"""Every write on organizations, members and API keys."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from threading import Lock
from urllib.parse import urlsplit

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from tenants.errors import Refused, Why
from tenants.models import (
    ApiKey,
    Domain,
    Invitation,
    KeyKind,
    Membership,
    Organization,
    Role,
    User,
    schema_name_for,
    validate_organization_slug,
)
from tenants.ratelimit import key_check_rate_wait, key_rate_wait, retry_after_seconds

KEY_PREFIX = {KeyKind.SECRET: "sk_", KeyKind.PUBLIC: "pk_"}
INVITATION_TTL = timedelta(days=7)


def hash_secret(raw: str) -> str:
    # Keys and invitation tokens carry 256 bits of entropy: a fast hash is enough (as GitHub does).
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class NewOrganization:
    organization: Organization
    owner: User
    owner_password: str | None
    secret_key: str
    public_key: str


def organization_create(
    *,
    slug: str,
    name: str = "",
    owner_email: str,
    owner_password: str | None = None,
    allowed_origins: list[str] | None = None,
) -> NewOrganization:
    """Create an organization with its schema, an owner and a first secret/public key pair."""
    slug = slug.strip()
    validate_organization_slug(slug)
    if Organization.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"An organization '{slug}' already exists."}, code="slug_taken")
    owner_email = owner_email.strip().lower()
    validate_email(owner_email)
    owner = User.objects.filter(email=owner_email).first()
    generated = None
    if owner is None:
        if owner_password is None:
            generated = owner_password = secrets.token_urlsafe(12)
        validate_password(owner_password, User(username=owner_email, email=owner_email))

    # Schema creation (the tenant migrations, about 0.2 s) commits on its own by design of
    # django-tenants; if anything after it fails, the organization and schema are dropped again.
    organization = Organization(schema_name=schema_name_for(slug), slug=slug, name=name or slug)
    organization.save(verbosity=0)
    try:
        with transaction.atomic():
            Domain.objects.create(domain=f"{slug}.localhost", tenant=organization, is_primary=True)
            if owner is None:
                owner = User.objects.create_user(username=owner_email, email=owner_email, password=owner_password)
            Membership.objects.create(organization=organization, user=owner, role=Role.OWNER)
            secret_key, _ = api_key_create(organization=organization, kind=KeyKind.SECRET, name="Default secret key")
            public_key, _ = api_key_create(
                organization=organization,
                kind=KeyKind.PUBLIC,
                name="Default widget key",
                allowed_origins=allowed_origins or [],
            )
    except Exception:
        organization.delete(force_drop=True)
        raise
    return NewOrganization(organization, owner, generated, secret_key, public_key)


# --- API keys ---------------------------------------------------------------------------


def normalize_origin(origin: str) -> str:
    """'https://App.example.com/' -> 'https://app.example.com'; raises ValidationError."""
    origin = origin.strip().rstrip("/")
    if origin == "*":
        return origin
    parts = urlsplit(origin)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path or parts.query:
        raise ValidationError(f"'{origin}' is not an origin like https://app.example.com", code="bad_origin")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


def api_key_create(
    *,
    organization: Organization,
    kind: str,
    name: str,
    allowed_origins: list[str] | None = None,
    created_by: User | None = None,
) -> tuple[str, ApiKey]:
    """Returns the raw key (shown once, never stored) and its row."""
    kind = KeyKind(kind)
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the key a name."})
    origins = sorted({normalize_origin(o) for o in (allowed_origins or []) if o.strip()})
    raw = KEY_PREFIX[kind] + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        organization=organization,
        kind=kind,
        name=name[:100],
        prefix=raw[:10],
        key_hash=hash_secret(raw),
        allowed_origins=origins if kind == KeyKind.PUBLIC else [],
        created_by=created_by,
    )
    return raw, key


def api_key_revoke(*, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    _key_cache_forget(key.key_hash)


def api_keys_add_origins(*, organization: Organization, allowed_origins: list[str]) -> None:
    """Allow more origins on every active public key of an organization (the demo's own host page)."""
    for key in organization.api_keys.filter(kind=KeyKind.PUBLIC, revoked_at__isnull=True):
        api_key_set_origins(key=key, allowed_origins=[*key.allowed_origins, *allowed_origins])


def api_key_set_origins(*, key: ApiKey, allowed_origins: list[str]) -> None:
    key.allowed_origins = sorted({normalize_origin(o) for o in allowed_origins if o.strip()})
    key.save(update_fields=["allowed_origins"])
    _key_cache_forget(key.key_hash)


@dataclass(frozen=True)
class ResolvedKey:
    """A key's whole policy, resolved once and cached: who it is and what it may do."""

    key_id: int
    kind: str
    organization_id: int
    schema_name: str
    allowed_origins: tuple[str, ...]
    # The organization's widget token policy (public keys only need it).
    require_signed_tokens: bool = False
    signing_secret: str = field(default="", repr=False)
    # The organization's spend cap is reached (billing sets it): ingestion is refused.
    quota_exceeded: bool = False

    def origin_allowed(self, origin: str | None) -> bool:
        if "*" in self.allowed_origins:
            return True
        if not origin:
            return False
        try:
            return normalize_origin(origin) in self.allowed_origins
        except ValidationError:
            return False


# A short in-process cache keeps key lookups off the ingestion hot path. Revocation in this
# process is immediate; other processes see it within KEY_CACHE_SECONDS.
KEY_CACHE_SECONDS = 5.0
LAST_USED_EVERY = timedelta(seconds=60)
_key_cache: dict[str, tuple[float, ResolvedKey | None]] = {}
_key_cache_lock = Lock()


def _key_cache_forget(key_hash: str) -> None:
    with _key_cache_lock:
        _key_cache.pop(key_hash, None)


def _key_cache_forget_organization(organization_id: int) -> None:
    with _key_cache_lock:
        for key_hash, (_, resolved) in list(_key_cache.items()):
            if resolved is not None and resolved.organization_id == organization_id:
                del _key_cache[key_hash]


def api_key_resolve(raw: str) -> ResolvedKey | None:
    """The active key for a raw key string, or None. Records last-used at most once a minute."""
    if not raw or len(raw) > 100 or not raw.isascii() or not raw.startswith(("sk_", "pk_")):
        return None
    key_hash = hash_secret(raw)
    now = time.monotonic()
    with _key_cache_lock:
        hit = _key_cache.get(key_hash)
    if hit is not None and now - hit[0] < KEY_CACHE_SECONDS:
        return hit[1]
    row = (
        ApiKey.objects.select_related("organization")
        .filter(key_hash=key_hash, revoked_at__isnull=True)
        .only(
            "id",
            "kind",
            "allowed_origins",
            "last_used_at",
            "organization__id",
            "organization__schema_name",
            "organization__require_signed_tokens",
            "organization__widget_signing_secret",
            "organization__quota_exceeded_at",
        )
        .first()
    )
    resolved = None
    if row is not None:
        resolved = ResolvedKey(
            key_id=row.id,
            kind=row.kind,
            organization_id=row.organization.id,
            schema_name=row.organization.schema_name,
            allowed_origins=tuple(row.allowed_origins),
            require_signed_tokens=row.organization.require_signed_tokens,
            signing_secret=row.organization.widget_signing_secret,
            quota_exceeded=row.organization.quota_exceeded_at is not None,
        )
        stamp = timezone.now()
        if row.last_used_at is None or stamp - row.last_used_at > LAST_USED_EVERY:
            ApiKey.objects.filter(id=row.id).update(last_used_at=stamp)
    with _key_cache_lock:
        if len(_key_cache) > 10_000:
            _key_cache.clear()
        _key_cache[key_hash] = (now, resolved)
    return resolved


def public_key_admit(*, raw_key: str | None) -> ResolvedKey:
    """The public key a browser presented, if it may send at all: known, public, within its rate.

    The origin is the caller's to check (`origin_allowed`), because it counts refusals its own way.
    """
    if not raw_key:
        raise Refused(
            "not_authenticated", "No public key: send the widget's key (pk_...) as `key`.", why=Why.UNAUTHENTICATED
        )
    resolved = api_key_resolve(raw_key)
    if resolved is None:
        raise Refused("invalid_key", "Unknown or revoked public key.", why=Why.UNAUTHENTICATED)
    if resolved.kind != KeyKind.PUBLIC:
        raise Refused(
            "secret_key_in_browser", "Never put a secret key in a page: use a public key (pk_).", why=Why.FORBIDDEN
        )
    api_key_spend(key_id=resolved.key_id)
    ingestion_admit(key=resolved)
    return resolved


def secret_key_admit(*, raw_key: str | None, budget_check: bool = False) -> ResolvedKey:
    """The secret key of an `Authorization: Bearer` header, if it may call: known, secret, within
    its rate (the hot paths' form of SecretKeyAuthentication, HasOrganizationKey and KeyRateThrottle,
    with the same codes). ``budget_check``: the rate is the check's own per-process budget, so
    checking before every LLM call never eats the budget the key's traces are sent with."""
    if raw_key is None:
        raise Refused(
            "not_authenticated", "Send your secret key as 'Authorization: Bearer sk_...'.", why=Why.UNAUTHENTICATED
        )
    resolved = api_key_resolve(raw_key)
    if resolved is None:
        raise Refused("invalid_key", "Unknown or revoked API key.", why=Why.UNAUTHENTICATED)
    if resolved.kind != KeyKind.SECRET:
        raise Refused(
            "public_key_not_allowed",
            "A public key (pk_) may only send widget events; use a secret key (sk_) here.",
            why=Why.FORBIDDEN,
        )
    _refuse_past(key_check_rate_wait(resolved.key_id) if budget_check else key_rate_wait(resolved.key_id))
    return resolved


# Past the spend cap a client should not retry soon: the cap lasts until it is raised or the month ends.
QUOTA_RETRY_AFTER_SECONDS = 3600


def ingestion_admit(*, key: ResolvedKey) -> None:
    """Refuse a write of data while the organization's spend cap is reached (429 quota_exceeded).

    Read from the key's cached policy: a change reaches this process at once (quota_set forgets
    the cache) and other processes within KEY_CACHE_SECONDS.
    """
    if key.quota_exceeded:
        raise Refused(
            "quota_exceeded",
            "This organization has reached its monthly spend cap; ingestion is paused until an owner raises "
            "the cap or the month ends. Do not retry.",
            why=Why.RATE_LIMITED,
            details={"retry": False},
            retry_after=QUOTA_RETRY_AFTER_SECONDS,
        )


def organization_quota_set(*, organization_id: int, exceeded: bool) -> bool:
    """Billing's switch for ingestion (the flag tenants reads); returns whether it changed."""
    queryset = Organization.objects.filter(id=organization_id, quota_exceeded_at__isnull=exceeded)
    changed = queryset.update(quota_exceeded_at=timezone.now() if exceeded else None) > 0
    _key_cache_forget_organization(organization_id)
    return changed


def api_key_spend(*, key_id: int) -> None:
    """Spend one request of the key's shared budget, or refuse with when to come back (every endpoint)."""
    _refuse_past(key_rate_wait(key_id))


def _refuse_past(wait: float) -> None:
    if wait:
        retry_after = retry_after_seconds(wait)
        raise Refused(
            "rate_limited",
            "Too many requests for this key.",
            why=Why.RATE_LIMITED,
            details={"retry_after": retry_after},
            retry_after=retry_after,
        )


# --- Members -----------------------------------------------------------------------------


def invitation_create(*, organization: Organization, email: str, role: str, invited_by: User) -> str:
    """Returns the raw invitation token for the email link."""
    email = email.strip().lower()
    validate_email(email)
    role = Role(role)
    if role == Role.OWNER and not _is_owner(organization, invited_by):
        raise ValidationError({"role": "Only an owner can invite another owner."})
    if Membership.objects.filter(organization=organization, user__email=email).exists():
        raise ValidationError({"email": f"{email} is already a member."}, code="already_member")
    token = secrets.token_urlsafe(32)
    Invitation.objects.filter(organization=organization, email=email, accepted_at__isnull=True).delete()
    Invitation.objects.create(
        organization=organization,
        email=email,
        role=role,
        token_hash=hash_secret(token),
        invited_by=invited_by,
        expires_at=timezone.now() + INVITATION_TTL,
    )
    return token


def invitation_find(token: str) -> Invitation | None:
    invitation = Invitation.objects.select_related("organization").filter(token_hash=hash_secret(token)).first()
    return invitation if invitation is not None and invitation.is_open else None


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    if not invitation.is_open:
        raise ValidationError("This invitation has expired or was already used.")
    if user.email.lower() != invitation.email:
        raise ValidationError(f"This invitation is for {invitation.email}.")
    membership, _ = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    return membership


def _is_owner(organization: Organization, user: User) -> bool:
    return Membership.objects.filter(organization=organization, user=user, role=Role.OWNER).exists()


def _guard_last_owner(membership: Membership) -> None:
    if membership.role == Role.OWNER:
        owners = Membership.objects.filter(organization=membership.organization, role=Role.OWNER).count()
        if owners <= 1:
            raise ValidationError("An organization needs at least one owner.", code="last_owner")


def member_ensure(*, organization: Organization, email: str, password: str, role: str) -> Membership:
    """A user with this email is a member (created with the password if new); an existing membership is kept."""
    email = email.strip().lower()
    user = User.objects.filter(email=email).first()
    if user is None:
        validate_password(password, User(username=email, email=email))
        user = User.objects.create_user(username=email, email=email, password=password)
    membership, _ = Membership.objects.get_or_create(
        organization=organization, user=user, defaults={"role": Role(role)}
    )
    return membership


def membership_change_role(*, membership: Membership, role: str, acting: Membership) -> None:
    role = Role(role)
    if Role.OWNER in (role, membership.role) and acting.role != Role.OWNER:
        raise ValidationError("Only an owner can grant or take away the owner role.")
    if role != Role.OWNER:
        _guard_last_owner(membership)
    membership.role = role
    membership.save(update_fields=["role"])


def membership_remove(*, membership: Membership, acting: Membership) -> None:
    if membership.role == Role.OWNER and acting.role != Role.OWNER:
        raise ValidationError("Only an owner can remove an owner.")
    _guard_last_owner(membership)
    membership.delete()


def user_signup(*, email: str, password: str, organization_slug: str, organization_name: str) -> NewOrganization:
    email = email.strip().lower()
    validate_email(email)
    if User.objects.filter(email=email).exists():
        raise ValidationError({"email": "An account with this email exists: log in instead."})
    validate_password(password, User(username=email, email=email))
    return organization_create(
        slug=organization_slug, name=organization_name, owner_email=email, owner_password=password
    )


def widget_security_set(*, organization: Organization, require_signed_tokens: bool, rotate_secret: bool) -> None:
    """Turn signed per-trace tokens on or off; a secret is created the first time (or on rotation)."""
    if rotate_secret or (require_signed_tokens and not organization.widget_signing_secret):
        organization.widget_signing_secret = "whsec_" + secrets.token_urlsafe(32)
    organization.require_signed_tokens = require_signed_tokens
    organization.save(update_fields=["require_signed_tokens", "widget_signing_secret"])
    _key_cache_forget_organization(organization.id)
