"""The only two kinds of API view Candor has, each locked so a subclass cannot loosen its scope.

`TenantApi`: a secret key in the Authorization header; the organization's schema is activated
from that key and nowhere else. `PublicKeyApi`: the browser's door, a public key in the body,
its kind, rate and the organization's schema settled here before the subclass sees anything.

A subclass that overrides authentication, permissions, throttling or the tenant activation is
refused when the class is created (the idea of PostHog's `posthog/api/routing.py`): fail closed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.api.errors import ApiError
from tenants.api.throttling import KeyRateThrottle
from tenants.authentication import HasOrganizationKey, SecretKeyAuthentication
from tenants.hotpath import guarded
from tenants.schema import activate_schema
from tenants.services import ResolvedKey, public_key_admit

logger = logging.getLogger("candor.api")

AnyResponse = TypeVar("AnyResponse", bound=HttpResponse)

# What decides who may call a view and in which schema it runs.
LOCKED_ATTRIBUTES = frozenset(
    {
        "authentication_classes",
        "permission_classes",
        "throttle_classes",
        "initial",
        "initialize_request",
        "perform_authentication",
        "check_permissions",
        "check_object_permissions",
        "check_throttles",
        "get_authenticators",
        "get_permissions",
        "get_throttles",
        "dispatch",
        "as_view",
    }
)


class LockedApiError(TypeError):
    pass


def _refuse_overrides(cls: type, base: type, locked: frozenset[str]) -> None:
    """Every class between `cls` and `base` (mixins included, wherever they sit in the MRO) leaves
    the locked attributes alone, and none may redefine `__init_subclass__` to switch this check off."""
    for klass in cls.__mro__:
        if klass in base.__mro__:
            continue
        overridden = {
            name
            for name in (locked | {"__init_subclass__"}) & set(vars(klass))
            # drf-spectacular's extend_schema_view sets a plain forwarding wrapper of the base's own
            # handler (functools.wraps) to hold the schema: that is the base's method, not an override.
            if not _schema_wrapper_of(vars(klass)[name], vars(base).get(name))
        }
        if overridden:
            raise LockedApiError(
                f"{cls.__module__}.{cls.__qualname__} overrides {', '.join(sorted(overridden))} of "
                f"{base.__name__} (through {klass.__qualname__}): the API's authentication and tenant scope "
                "cannot be changed by a subclass."
            )


def _schema_wrapper_of(attribute: Any, original: Any) -> bool:
    code = getattr(attribute, "__code__", None)
    return (
        original is not None
        and getattr(attribute, "__wrapped__", None) is original
        and code is not None
        and code.co_qualname == "isolate_view_method.<locals>.wrapped_method"
        and code.co_filename.endswith("drf_spectacular/drainage.py")
    )


def _as_view(cls: Any, base: type, locked: frozenset[str], **initkwargs: Any) -> Any:
    # Checked again when the URL is wired: catches attributes set on the class after it was created.
    _refuse_overrides(cls, base, locked)
    if set(initkwargs) & locked:
        raise LockedApiError(f"{cls.__qualname__}.as_view() may not set {', '.join(sorted(set(initkwargs) & locked))}")
    return super(base, cls).as_view(**initkwargs)  # type: ignore[arg-type]  # base is a class: mypy reads `type` as an instance


def read_body(request: HttpRequest) -> bytes:
    """The raw body, refused past the API's size limit before it is read into memory where possible."""
    limit = settings.API_MAX_BODY_BYTES
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > limit:
        raise ApiError("too_large", f"The body is {int(length)} bytes; the limit is 5 MB. Send smaller batches.", 413)
    body = request.body
    if len(body) > limit:
        raise ApiError("too_large", "The body is larger than 5 MB. Send smaller batches.", 413)
    return body


class TenantApi(APIView):
    """Base of every secret-key endpoint: the view runs in the key's organization, or not at all.

    ``query_parameters``: the names its GET takes (a name ending in "." takes any name it starts, e.g.
    "metadata."); any other is a 400 naming it, since a misspelt filter would otherwise answer unfiltered
    figures as if they were the filtered ones."""

    authentication_classes: list[Any] = [SecretKeyAuthentication]
    permission_classes: list[Any] = [HasOrganizationKey]
    throttle_classes: list[Any] = [KeyRateThrottle]
    query_parameters: tuple[str, ...] = ()
    # Of those, the ones that may be given several times (an OpenAPI array, exploded: exclude_variant=a&...=b).
    repeatable_parameters: frozenset[str] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _refuse_overrides(cls, TenantApi, LOCKED_ATTRIBUTES)

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return _as_view(cls, TenantApi, LOCKED_ATTRIBUTES, **initkwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authenticate, permit, throttle: 401/403/429 before any work
        resolved: Any = request.auth  # a ResolvedKey: SecretKeyAuthentication returned it
        activate_schema(resolved.schema_name)
        if request.method == "GET":
            refuse_unknown_parameters(request.query_params, self.query_parameters, self.repeatable_parameters)


def parameter_names(parameters: Any) -> tuple[str, ...]:
    """The names of an endpoint's OpenAPI parameters (drf-spectacular's OpenApiParameter), for query_parameters."""
    return tuple(parameter.name for parameter in parameters)


def refuse_unknown_parameters(query: Any, known: tuple[str, ...], repeatable: frozenset[str] = frozenset()) -> None:
    """A 400 naming the first query parameter the endpoint does not take (see TenantApi), or one given twice (the
    last was taken: a budget check for ``customer_id=c1&customer_id=c2`` answered for c2 alone) unless it is
    ``repeatable``."""
    for name in query:
        if name in known or any(k.endswith(".") and name.startswith(k) and len(name) > len(k) for k in known):
            given = len(query.getlist(name))
            if given > 1 and name not in repeatable:
                raise ApiError("invalid_parameter", f"{name[:60]}: given {given} times; send it once", 400,
                               {"field": name[:200]})  # fmt: skip
            continue
        # A prefix ("metadata.") is said as its form ("metadata.<key>"), once.
        said = dict.fromkeys(f"{k}<key>" if k.endswith(".") else k for k in known)
        takes = f"it takes {', '.join(said)}" if known else "it takes none"
        raise ApiError(
            "invalid_parameter", f"{name[:60]}: not a parameter of this endpoint ({takes})", 400, {"field": name[:200]}
        )


class _KeyOnly(msgspec.Struct):
    key: str | None = None


_key_decoder = msgspec.json.Decoder(_KeyOnly)


def public_key_from_body(body: bytes) -> str | None:
    """The `key` of a JSON object body, without building the rest; a body that is no JSON object is a 400.

    A body msgspec refuses (a lone surrogate in some event, say) is read leniently, so that a
    bad event is reported as that event's error, not as a bad body.
    """
    try:
        return _key_decoder.decode(body).key
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        pass
    try:
        document = json.loads(body.decode("utf-8", errors="surrogateescape"))
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("key", ""), str):
        raise ApiError("invalid_body", 'Send {"key": "pk_...", "events": [...]} as JSON.', 400)
    return document.get("key")


def _cors(response: AnyResponse, origin: str | None) -> AnyResponse:
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        # Lets the browser read Retry-After on a 429 from another origin.
        response["Access-Control-Expose-Headers"] = "Retry-After"
        response["Vary"] = "Origin"
    return response


Receive = Callable[[ResolvedKey, str, bytes], HttpResponse]


def public_key_door(request: HttpRequest, receive: Receive) -> HttpResponse:
    """The browser's door, for PublicKeyApi and the widget's hot path alike.

    The key in the body must be known, public and within its rate; `receive(key, origin, body)`
    then runs in its organization's schema. Every answer, errors and our own failures included,
    carries CORS headers so the browser can read the status and decide whether to retry.
    """
    origin = request.META.get("HTTP_ORIGIN")

    def answer() -> HttpResponse:
        body = read_body(request)
        key = public_key_admit(raw_key=public_key_from_body(body))
        activate_schema(key.schema_name)
        return receive(key, origin or "", body)

    # Even our own failure must be readable cross-origin: the widget decides by the status.
    response = guarded(answer, "the public-key door")
    return _cors(response, origin)


# Besides the locked attributes: the handlers and the method list (`receive` is the subclass's part).
PUBLIC_LOCKED = LOCKED_ATTRIBUTES | {
    "post", "options", "get", "put", "patch", "delete", "head", "trace", "http_method_names",
}  # fmt: skip


class PublicKeyApi(APIView):
    """Base of the browser's endpoints: a public key in a text/plain JSON body (no CORS pre-flight).

    The key must be known, public and within its rate; the view then runs in its organization's
    schema. Every answer, errors and our own failures included, carries CORS headers so the
    browser can read the status and decide whether to retry. Subclasses implement `receive`.
    """

    authentication_classes: list[Any] = []
    # The key is in the body, not a header: `post` admits it before `receive` runs.
    permission_classes: list[Any] = [AllowAny]
    throttle_classes: list[Any] = []

    # Only the door itself: a handler for another method would run with no key at all.
    http_method_names = ["post", "options"]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _refuse_overrides(cls, PublicKeyApi, PUBLIC_LOCKED)

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return _as_view(cls, PublicKeyApi, PUBLIC_LOCKED, **initkwargs)

    def receive(self, *, key: ResolvedKey, origin: str, body: bytes) -> HttpResponse:
        raise NotImplementedError

    def post(self, request: Request) -> HttpResponse:
        return public_key_door(request._request, self._receive)

    def _receive(self, key: ResolvedKey, origin: str, body: bytes) -> HttpResponse:
        return self.receive(key=key, origin=origin, body=body)

    def options(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        response = Response(status=204)
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Content-Type"
        response["Access-Control-Max-Age"] = "86400"
        return _cors(response, request.META.get("HTTP_ORIGIN"))
