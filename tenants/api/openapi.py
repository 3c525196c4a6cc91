"""What every endpoint of the OpenAPI schema says, whichever app serves it.

Apps register the schema components their endpoints refer to (the write bodies are derived
from their msgspec types, the one source of what the server accepts); a drf-spectacular
post-processing hook adds those components and documents the error answers every endpoint
can give (401, 403, 404, 413, 429 and 500 in the one error shape), so a generated client
knows them all. Each operation's description is its own view's (AutoSchema below), never the
docstring of a base class that says how Candor's views are built.
"""

from __future__ import annotations

import inspect
from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

_components: dict[str, dict[str, Any]] = {}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "Stable, machine-readable, e.g. `invalid_key`."},
                "message": {"type": "string", "description": "What went wrong and what to do, for people."},
                "details": {"description": "Whatever helps: the field, the retry delay, ... or null."},
            },
        }
    },
}

STANDARD_ERRORS = {
    "400": "The request cannot be read or a parameter is not valid.",
    "401": "No key, or an unknown or revoked key.",
    "403": "The key may not do this (a public key on a secret endpoint, an origin the key does not allow).",
    "404": "No such object, or it belongs to another organization.",
    "413": "The body is larger than 5 MB or the batch holds more than 1,000 items.",
    "429": "Too many requests for this key; `Retry-After` says when to come back.",
    "500": "Our failure; retrying is safe, writes are idempotent.",
}
_BODILESS = {"get", "delete", "head", "options"}


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's, but an operation is described only by its own words: an explicit
    `extend_schema(description=...)`, else the handler's or the view class's own docstring.

    drf-spectacular falls back on base classes' docstrings, which would publish internal notes
    (TenantApi's "Base of every secret-key endpoint...") as the description of every endpoint
    that does not write its own.
    """

    def get_description(self) -> str:  # type: ignore[override]  # as drf-spectacular: DRF's takes (path, method)
        view_class = type(self.view)
        handler = vars(view_class).get(getattr(self.view, "action", None) or self.method.lower())
        if handler is not None:
            # extend_schema_view wraps an inherited handler in the subclass: its docstring is the base's.
            original = inspect.unwrap(handler)
            if original.__qualname__.startswith(f"{view_class.__qualname__}.") and original.__doc__:
                return _clean(original.__doc__)
        own = vars(view_class).get("__doc__")
        return _clean(own) if own else ""


def _clean(doc: str) -> str:
    return "\n".join(line.rstrip() for line in inspect.cleandoc(doc).rstrip().split("\n"))


def openapi_components_register(components: dict[str, dict[str, Any]]) -> None:
    """An app's schema components (e.g. derived from its msgspec types), added to the schema."""
    _components.update(components)


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(_components)
    schemas["Error"] = ERROR_SCHEMA
    error_ref = {"$ref": "#/components/schemas/Error"}
    retry_after = {
        "Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": "Seconds to wait before retrying."}
    }
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                operation["requestBody"]["required"] = True
            responses = operation.setdefault("responses", {})
            for status, description in STANDARD_ERRORS.items():
                if status == "413" and method in _BODILESS:
                    continue
                if status == "404" and "{" not in path:
                    continue
                answer = responses.setdefault(status, {"description": description})
                answer.setdefault("content", {"application/json": {"schema": error_ref}})
                if status == "429":
                    answer.setdefault("headers", retry_after)
    return result
