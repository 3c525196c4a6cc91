"""Hot paths: the endpoints called once per end-user action or once per LLM call (widget events,
the budget check), served ahead of the rest of the middleware stack and DRF.

A hot path is an ordinary Django view function that takes care of its own admission: it
resolves its key, spends the key's rate and names its organization's schema itself, through
the same services every other endpoint uses. The web server (config/serve.py) serves `hot_wsgi`'s application
(config.wsgi), which answers a hot path's exact method and path ahead of Django's handler,
through SecurityMiddleware alone; where Django's handler runs anyway (the test client, the live
server), `HotPathMiddleware`, right after SecurityMiddleware, calls the same view. Either way
everything a hot path does not need (sessions, CSRF, auth and messages middleware, URL
resolution, DRF's negotiation) is skipped. The URL conf still names the path (with the DRF
view that documents it in the OpenAPI schema and serves it where neither is in place), so
`reverse()` and the schema stay true; a test checks both agree.

A hot path's answers use the API's one error shape and status codes (tenants.api.errors).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware

from tenants.api.errors import DATABASE_UNAVAILABLE, STATUS_OF, ApiError, database_unavailable, error_body
from tenants.errors import Refused
from tenants.middleware import bearer_token
from tenants.schema import activate_public

logger = logging.getLogger("candor.api")

__all__ = ["HotPathMiddleware", "bearer_token", "guarded", "hot_path", "hot_routes", "hot_wsgi", "json_response"]

HotView = Callable[[HttpRequest], HttpResponse]
WSGIApplication = Callable[[dict[str, Any], Callable[..., Any]], Any]
_routes: dict[tuple[str, str], HotView] = {}


def hot_path(method: str, path: str) -> Callable[[HotView], HotView]:
    """Register a view to be served for exactly ``method path`` before the middleware stack."""

    def register(view: HotView) -> HotView:
        if (method, path) in _routes and _routes[(method, path)] is not view:
            raise ValueError(f"{method} {path} already has a hot path")
        _routes[(method, path)] = view
        return view

    return register


def hot_routes() -> dict[tuple[str, str], HotView]:
    return dict(_routes)


class HotPathMiddleware:
    """Serves registered hot paths directly; any other request goes down the stack unchanged.

    The view runs in the public schema and the connection is back in it afterwards, whatever
    the view activated (as PublicSchemaMiddleware guarantees for every other request).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (request.method or "", request.path_info) not in _routes:
            return self.get_response(request)
        return _serve(request)


_encode = msgspec.json.Encoder().encode


def json_response(body: Any, status: int = 200) -> HttpResponse:
    content = _encode(body)
    response = HttpResponse(content, status=status, content_type="application/json")
    # What CommonMiddleware would add: a kept-alive connection then needs no chunked framing.
    response["Content-Length"] = str(len(content))
    return response


def error_response(code: str, message: str, status: int, details: Any = None) -> HttpResponse:
    return json_response(error_body(code, message, details), status)


def refusal_response(exc: Refused) -> HttpResponse:
    """A service's refusal in the API's error shape, with Retry-After when it says when to come back."""
    response = error_response(exc.code, exc.message, STATUS_OF[exc.why], exc.details)
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


def guarded(answer: Callable[[], HttpResponse], where: str) -> HttpResponse:
    """``answer()``, with every failure in the API's error shape (what DRF's exception handler
    does for the other endpoints): refusals and API errors as they say, a database that went away
    as a 503 with Retry-After (retrying is safe), our own bug as a logged 500."""
    try:
        return answer()
    except Refused as exc:
        return refusal_response(exc)
    except ApiError as exc:
        return error_response(exc.error_code, str(exc.detail), exc.status_code, exc.details)
    except DATABASE_UNAVAILABLE as exc:
        logger.warning("database unavailable in %s: %s", where, exc)
        return database_unavailable()
    except Exception:
        logger.exception("unhandled error in %s", where)
        return error_response(
            "internal_error", "Something went wrong on our side; retrying is safe (writes are idempotent).", 500
        )


def hot_wsgi(django_application: WSGIApplication) -> WSGIApplication:
    """The WSGI application servers run (config.wsgi): hot paths served before Django's handler.

    Django's WSGIHandler costs a hot request about 100 us of CPU (the request_started signal,
    the middleware chain's wrappers, URL configuration); here a hot request is built, passed
    through SecurityMiddleware alone (its headers and HTTPS redirect, as for every response) and
    answered. The response is returned as the WSGI iterable: the server's close() sends
    request_finished, which closes a connection that failed or outlived CONN_MAX_AGE, as after
    any other request. Every other request goes to Django unchanged. The test client and the
    live server run Django's handler, where HotPathMiddleware serves the same views.
    """
    serve: Any = convert_exception_to_response(_serve)
    security = convert_exception_to_response(SecurityMiddleware(serve))

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if (environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")) not in _routes:
            return django_application(environ, start_response)
        response: Any = security(WSGIRequest(environ))  # synchronous: the chain has no async part
        headers = [*response.items(), *(("Set-Cookie", c.output(header="")) for c in response.cookies.values())]
        start_response(f"{response.status_code} {response.reason_phrase}", headers)
        return response

    return application


def _serve(request: HttpRequest) -> HttpResponse:
    view = _routes[(request.method or "", request.path_info)]
    activate_public()
    try:
        return view(request)
    finally:
        activate_public()
