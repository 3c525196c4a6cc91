"""The feature report's query, validated as its OpenAPI schema states it: what the schema allows
the server accepts, anything it forbids is a 400 naming the parameter."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import OpenApiParameter

from evaluation.reports.selectors import GROUP_BY_PATTERN, MAX_WINDOW_DAYS
from feedback.api.openapi import WHEN_PATTERN
from tenants.api.errors import ApiError

_SCHEMAS: dict[str, dict[str, Any]] = {
    "since": {"type": "string", "pattern": WHEN_PATTERN},
    "until": {"type": "string", "pattern": WHEN_PATTERN},
    "group_by": {"type": "string", "pattern": GROUP_BY_PATTERN, "default": "prompt_version"},
}
_HELP = {
    "since": "a day (2025-01-31) or an ISO 8601 time (2025-01-31T12:00:00Z)",
    "until": "a day (2025-01-31) or an ISO 8601 time (2025-01-31T12:00:00Z)",
    "group_by": "prompt_version, variant, customer_id, model, day or metadata.<key> (letters, digits, _.:-)",
}

REPORT_PARAMETERS: list[OpenApiParameter] = [
    OpenApiParameter(
        "since",
        _SCHEMAS["since"],
        required=False,
        description="Window start, inclusive (a day or ISO 8601; UTC when no zone). Default: 30 days before `until`. "
        "Must be before `until`; a window is at most " + str(MAX_WINDOW_DAYS) + " days.",
    ),
    OpenApiParameter(
        "until",
        _SCHEMAS["until"],
        required=False,
        description="Window end, exclusive (a day means its midnight UTC). Default: the end of today (UTC).",
    ),
    OpenApiParameter(
        "group_by",
        _SCHEMAS["group_by"],
        required=False,
        description="`prompt_version` (default), `variant`, `customer_id`, `day` (UTC) or `metadata.<key>` "
        "(e.g. `metadata.auth`; a key no trace has gives no groups).",
    ),
]


def report_query(query: Any) -> dict[str, str]:
    clean: dict[str, str] = {}
    for name, schema in _SCHEMAS.items():
        if name not in query:
            continue
        value = query.get(name)
        if "\x00" in value or re.fullmatch(schema["pattern"], value) is None:
            raise ApiError("invalid_parameter", f"{name}: {_HELP[name]}", 400, {"field": name})
        clean[name] = value
    return clean
