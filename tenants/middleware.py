"""Tenant resolution that works on localhost with no DNS: portal by URL, API by key.

Portal pages live under /o/<slug>/; the API resolves the organization from the bearer
key. Either way the connection's schema is set before the view runs, so django-tenants'
routing, cache keys and search_path behave as with its own host-based middleware.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse

from tenants.models import Membership, Organization
from tenants.schema import activate_public, activate_tenant
from tenants.services import api_key_resolve

# Any /o/<segment>/ path: a segment that names no organization is a 404 here, before any view.
PORTAL_PATH = re.compile(r"^/o/(?P<slug>[^/]+)(?:/|$)")
SLUG_SHAPE = re.compile(r"^[a-z0-9-]{1,40}$")
API_PREFIX = "/api/v1/"


def bearer_token(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


class PublicSchemaMiddleware:
    """Every request starts in the public schema, whatever the thread's last request left."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        activate_public()
        request.tenant = None  # type: ignore[attr-defined]
        request.api_key = None  # type: ignore[attr-defined]
        try:
            return self.get_response(request)
        finally:
            activate_public()


class OrganizationMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith(API_PREFIX):
            try:
                self._resolve_api(request)
            except (OperationalError, InterfaceError):
                from tenants.api.errors import database_unavailable  # tenants.api imports this module

                return database_unavailable()
        else:
            match = PORTAL_PATH.match(path)
            if match:
                response = self._resolve_portal(request, match["slug"])
                if response is not None:
                    return response
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func: object, view_args: tuple, view_kwargs: dict) -> None:
        # Portal URLs carry the organization slug; the middleware has already used it.
        view_kwargs.pop("org", None)

    @staticmethod
    def _resolve_api(request: HttpRequest) -> None:
        raw = bearer_token(request)
        if raw is None:
            return
        # Authentication classes turn a missing or wrong key into the API's 401/403, and
        # tenants.api.base.TenantApi alone activates the key's schema (fail closed).
        request.api_key = api_key_resolve(raw)  # type: ignore[attr-defined]

    @staticmethod
    def _resolve_portal(request: HttpRequest, slug: str) -> HttpResponse | None:
        if not SLUG_SHAPE.match(slug):
            raise Http404("No such organization.")
        organization = Organization.objects.filter(slug=slug).first()
        if organization is None:
            raise Http404("No such organization.")
        raw = bearer_token(request)
        if raw is not None:
            resolved = api_key_resolve(raw)
            if resolved is None or resolved.organization_id != organization.id:
                return JsonResponse(
                    {"error": {"code": "not_found", "message": "No such organization for this key.", "details": None}},
                    status=404,
                )
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        membership = (
            Membership.objects.filter(organization=organization, user=request.user).select_related("user").first()
        )
        if membership is None:
            # Not a member: the organization does not exist as far as this user can tell.
            raise Http404("No such organization.")
        activate_tenant(organization)
        request.tenant = organization  # type: ignore[attr-defined]
        request.membership = membership  # type: ignore[attr-defined]
        request.session["last_org"] = organization.slug
        return None
