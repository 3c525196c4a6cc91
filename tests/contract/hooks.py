"""Schemathesis hooks for the rules that OpenAPI cannot state.

Each rule is documented on its endpoint (and the server refuses a request breaking it with a
400 naming the parameter or the field); generated cases that break one are dropped or moved
inside it here rather than counted as "schema-valid request rejected". Nothing else is touched:
the rules that cross parameters (report windows), and the timestamps of write bodies (a day its
month has, from 1970 in UTC, at most a day ahead of the server's clock; the published pattern
allows 1970 to 2099, as a client may send any of those).
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime
from typing import Any

import schemathesis

MAX_WINDOW_DAYS = 400
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
# Generated times past this (the run's start) become it: the server takes up to a day ahead of its clock.
LATEST = datetime.now(UTC).replace(microsecond=0)
_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})([Tt])([0-9:]{8})(\.[0-9]+)?(.*)$")


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


_patterns: dict[int, tuple[re.Pattern[str], ...]] = {}


def _timestamp_patterns(schema: Any) -> tuple[re.Pattern[str], ...]:
    """The patterns of every date-time string in the published schema (the write bodies' timestamps)."""
    if id(schema) in _patterns:
        return _patterns[id(schema)]
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("format") == "date-time" and "pattern" in node:
                found.add(node["pattern"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    _patterns[id(schema)] = tuple(re.compile(pattern) for pattern in sorted(found))
    return _patterns[id(schema)]


def _accepted_time(value: str) -> str:
    """A time the schema allows, moved to the nearest one the server accepts (unchanged if it already does)."""
    match = _DATE.match(value)
    if match is None:
        return value
    year, month, day, t, clock, fraction, zone = match.groups()
    last = calendar.monthrange(int(year), int(month))[1]
    if int(day) > last:  # 2025-02-30: the last moment of the month's last day, in the same zone
        day, clock, fraction = f"{last:02d}", "23:59:59", ""
    when = datetime.fromisoformat(f"{year}-{month}-{day}T{clock}{(fraction or '')[:7]}{zone.upper()}")
    if when < EARLIEST:
        return EARLIEST.isoformat().replace("+00:00", "Z")
    if when > LATEST:
        return LATEST.isoformat().replace("+00:00", "Z")
    return f"{year}-{month}-{day}{t}{clock}{fraction or ''}{zone}"


def _map_times(node: Any, patterns: tuple[re.Pattern[str], ...]) -> Any:
    if isinstance(node, dict):
        return {key: _map_times(value, patterns) for key, value in node.items()}
    if isinstance(node, list):
        return [_map_times(value, patterns) for value in node]
    if isinstance(node, str) and any(pattern.match(node) for pattern in patterns):
        return _accepted_time(node)
    return node


# Writes only: mapping every operation's cases trips Hypothesis's filter_too_much health check on
# the bodiless ones with small parameter spaces (GET /budgets/{budget_id}).
@schemathesis.hook.apply_to(method="POST")  # type: ignore[attr-defined]  # attached at run time
def map_case(ctx: Any, case: Any) -> Any:
    """Write bodies' timestamps inside the server's own rules. Only strings a date-time pattern of the
    schema matches are moved, and to strings it matches, so a negative case stays negative."""
    if isinstance(case.body, dict | list):
        case.body = _map_times(case.body, _timestamp_patterns(case.operation.schema.raw_schema))
    return case
