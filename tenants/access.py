"""Who may do what in the portal: role decorators and organization URLs other apps build on."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from tenants.models import Role

__all__ = ["Role", "org_url", "portal_url", "role_required"]


def role_required(role: str) -> Callable[..., Any]:
    """The page needs this role or a higher one in the request's organization (403 otherwise)."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            membership = getattr(request, "membership", None)
            if membership is None or not membership.at_least(role):
                raise PermissionDenied(f"This page needs the {role} role or higher.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def org_url(request: HttpRequest, name: str, *args: Any) -> str:
    """A namespaced URL name ('feedback:trace-list') inside the request's organization."""
    return reverse(name, args=(request.tenant.slug, *args))  # type: ignore[attr-defined]


def portal_url(slug: str) -> str:
    """An organization's portal home: tenants owns the /o/<slug>/ convention (see tenants.middleware)."""
    return f"/o/{slug}/"
