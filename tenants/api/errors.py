"""One error shape for the whole API (every app's endpoints): {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from tenants.errors import Refused, Why

logger = logging.getLogger("candor.api")


class ApiError(exceptions.APIException):
    """Raise from services or views to answer with a specific code and status."""

    def __init__(self, code: str, message: str, status_code: int = 400, details: Any = None) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.details = details


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


STATUS_OF = {
    Why.INVALID: 400,
    Why.UNAUTHENTICATED: 401,
    Why.FORBIDDEN: 403,
    Why.NOT_FOUND: 404,
    Why.TOO_LARGE: 413,
    Why.RATE_LIMITED: 429,
}


def refused_response(exc: Refused) -> Response:
    """A service's refusal in the API's error shape, with Retry-After when it says when to come back."""
    response = Response(error_body(exc.code, exc.message, exc.details), status=STATUS_OF[exc.why])
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


# The database went away for a moment (a restart, a failover, a dropped connection): a 503 with
# Retry-After tells clients and OTLP exporters to send again, which is safe (writes are idempotent).
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


_UNAVAILABLE = "The database is unreachable for a moment; retry shortly (writes are idempotent)."


def database_unavailable() -> JsonResponse:
    """The 503 for code outside DRF views (middleware)."""
    response = JsonResponse(error_body("unavailable", _UNAVAILABLE), status=503)
    response["Retry-After"] = "1"
    return response


_DEFAULT_CODES = {
    status.HTTP_400_BAD_REQUEST: "invalid",
    status.HTTP_401_UNAUTHORIZED: "invalid_key",
    status.HTTP_403_FORBIDDEN: "forbidden",
    status.HTTP_404_NOT_FOUND: "not_found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: "too_large",
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
    status.HTTP_429_TOO_MANY_REQUESTS: "rate_limited",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Refused):
        return refused_response(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, DATABASE_UNAVAILABLE):
        logger.warning("database unavailable in %s: %s", context.get("view").__class__.__name__, exc)
        unavailable = Response(error_body("unavailable", _UNAVAILABLE), status=503)
        unavailable["Retry-After"] = "1"
        return unavailable
    response = drf_exception_handler(exc, context)
    if response is None:
        # A bug of ours: log it with its traceback, and still answer in the API's shape.
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        return Response(
            error_body("internal_error", "Something went wrong on our side; retrying is safe (writes are idempotent)."),
            status=500,
        )
    if isinstance(exc, ApiError):
        response.data = error_body(exc.error_code, str(exc.detail), exc.details)
        return response
    detail = response.data
    code = _DEFAULT_CODES.get(response.status_code, "error")
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        if isinstance(codes, str) and codes not in {"error", "invalid", "authentication_failed", "permission_denied"}:
            code = codes
    if isinstance(detail, dict) and set(detail) == {"detail"}:
        message, details = str(detail["detail"]), None
    elif isinstance(detail, list | dict):
        message, details = "The request is not valid.", detail
    else:
        message, details = str(detail), None
    response.data = error_body(code, message, details)
    return response


@csrf_exempt  # a POST to no endpoint is a 404 in the API's shape, not the CSRF check's HTML 403
def api_not_found(request: Any, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any path under /api/v1/ that names no endpoint: the API's error shape, never an HTML page."""
    return JsonResponse(
        error_body("not_found", f"No endpoint at {request.path}. See /api/v1/docs/ for the endpoints."), status=404
    )
