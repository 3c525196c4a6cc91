"""Schemathesis hooks for the rules that cross parameters, which OpenAPI cannot state.

Each rule is documented on its endpoint (and the server refuses a request breaking it with a
400 naming the parameter); generated cases that break one are dropped here rather than counted
as "schema-valid request rejected". Nothing else is filtered.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import schemathesis

MAX_WINDOW_DAYS = 400


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@schemathesis.hook
def filter_query(ctx: Any, query: dict[str, Any] | None) -> bool:
    """Report windows: since before until, at most 400 days (missing ends default to now / 30 days back)."""
    if not query:
        return True
    since, until = _when(query.get("since")), _when(query.get("until"))
    # A day its month does not have (2025-02-30) matches the pattern and is refused with 400 by the parser.
    if (query.get("since") and since is None) or (query.get("until") and until is None):
        return False
    now = datetime.now(UTC)
    start, end = since or now, until or now
    if since and until and since > until:
        return False
    if since and not until and (now - since).days > MAX_WINDOW_DAYS:
        return False
    if until and not since and (until - now).days > MAX_WINDOW_DAYS:
        return False
    return not (since and until and (end - start).days > MAX_WINDOW_DAYS)
