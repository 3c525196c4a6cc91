"""DRF authentication for Candor's two kinds of key (resolved by OrganizationMiddleware)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from tenants.middleware import bearer_token


class PublicKeyNotAllowed(exceptions.PermissionDenied):
    default_code = "public_key_not_allowed"
    default_detail = "A public key (pk_) may only send widget events; use a secret key (sk_) here."


class SecretKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        raw = bearer_token(request._request)
        if raw is None:
            return None
        resolved = getattr(request._request, "api_key", None)
        if resolved is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.", code="invalid_key")
        if resolved.kind != "secret":
            raise PublicKeyNotAllowed()
        return (None, resolved)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class HasOrganizationKey(BasePermission):
    """Fail closed: every API view needs a resolved secret key unless it opts out explicitly."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.auth is None:
            raise exceptions.NotAuthenticated("Send your secret key as 'Authorization: Bearer sk_...'.")
        return True


class SecretKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Tells the OpenAPI schema (and the docs page's Authorize button) about the bearer key."""

    target_class = "tenants.authentication.SecretKeyAuthentication"
    name = "secretKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "sk_...", "description": "Your secret API key."}
