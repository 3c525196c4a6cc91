"""The locked API bases: no subclass loosens authentication or tenant scope, and every API view uses one."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.permissions import AllowAny

from tenants.api.base import LockedApiError, PublicKeyApi, TenantApi

# Views under /api/v1/ that serve no organization's data, by name.
UNSCOPED_API_VIEWS = {"api-schema", "api-docs", "api-redoc", "api-not-found"}


def _walk(resolvers: list[Any], prefix: str = "") -> list[tuple[str, URLPattern]]:
    found = []
    for entry in resolvers:
        if isinstance(entry, URLResolver):
            found += _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            found.append((prefix + str(entry.pattern), entry))
    return found


def test_every_api_view_is_a_tenant_or_public_key_api() -> None:
    api_views = [(route, p) for route, p in _walk(get_resolver().url_patterns) if route.startswith("api/v1/")]
    assert len(api_views) >= 7, api_views
    strays = []
    for route, pattern in api_views:
        view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
        if pattern.name in UNSCOPED_API_VIEWS:
            continue
        if view_class is None or not issubclass(view_class, TenantApi | PublicKeyApi):
            strays.append(f"{route} ({pattern.name}): {view_class or pattern.callback}")
    assert not strays, "API views outside the locked bases:\n" + "\n".join(strays)


@pytest.mark.parametrize("base", [TenantApi, PublicKeyApi])
@pytest.mark.parametrize(
    "attribute, value",
    [
        ("authentication_classes", []),
        ("permission_classes", [AllowAny]),
        ("throttle_classes", []),
        ("initial", lambda self, request, *a, **k: None),
        ("get_permissions", lambda self: []),
        ("dispatch", lambda self, request, *a, **k: None),
    ],
)
def test_a_subclass_that_loosens_the_scope_is_refused_at_class_creation(base: type, attribute: str, value: Any) -> None:
    with pytest.raises(LockedApiError, match=attribute):
        type("Loose", (base,), {attribute: value})


def test_the_lock_holds_through_an_intermediate_class() -> None:
    with pytest.raises(LockedApiError, match="permission_classes"):
        type("Loose", (TenantApi,), {"permission_classes": [AllowAny]})
    middle = type("Middle", (TenantApi,), {"get": lambda self, request: None})
    with pytest.raises(LockedApiError, match="authentication_classes"):
        type("Leaf", (middle,), {"authentication_classes": []})


def test_public_key_api_keeps_its_door_shut() -> None:
    with pytest.raises(LockedApiError, match="post"):
        type("Loose", (PublicKeyApi,), {"post": lambda self, request: None})


def test_handlers_may_be_added_freely() -> None:
    type("Fine", (TenantApi,), {"get": lambda self, request: None, "post": lambda self, request: None})
    type("FineToo", (PublicKeyApi,), {"receive": lambda self, *, key, origin, body: None})


def test_a_mixin_after_the_base_cannot_loosen_it() -> None:
    """A mixin later in the MRO than the base (class C(TenantApi, Loose)) is checked too."""
    from rest_framework.views import APIView

    loose = type("Loose", (APIView,), {"get_permissions": lambda self: []})
    with pytest.raises(LockedApiError, match="get_permissions"):
        type("Sneaky", (TenantApi, loose), {})


def test_init_subclass_cannot_switch_the_check_off() -> None:
    with pytest.raises(LockedApiError, match="__init_subclass__"):
        type("Quiet", (TenantApi,), {"__init_subclass__": classmethod(lambda cls, **kw: None)})


@pytest.mark.parametrize("base", [TenantApi, PublicKeyApi])
def test_attributes_set_after_creation_are_refused_when_wired(base: type) -> None:
    late = type("Late", (base,), {})
    late.permission_classes = [AllowAny]  # type: ignore[attr-defined]
    with pytest.raises(LockedApiError, match="permission_classes"):
        late.as_view()  # type: ignore[attr-defined]
    with pytest.raises(LockedApiError, match="authentication_classes"):
        type("Kw", (base,), {}).as_view(authentication_classes=[])  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", ["get", "put", "delete", "http_method_names"])
def test_the_public_door_takes_no_other_method(method: str) -> None:
    with pytest.raises(LockedApiError, match=method):
        type("Wider", (PublicKeyApi,), {method: lambda self, request: None})


def test_a_handler_dressed_as_the_schema_wrapper_is_still_refused() -> None:
    import functools

    @functools.wraps(PublicKeyApi.post)
    def post(self, request):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(LockedApiError, match="post"):
        type("Dressed", (PublicKeyApi,), {"post": post})
