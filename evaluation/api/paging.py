"""Cursor pagination of the lists ordered by a unique name (features by key, judges by name), as API.md
says every list is paginated. The cursor is the page's last name, its UTF-8 bytes in hex: a page stays
where it was while rows are added before it, and the query is a keyset (``name > after``), fast on any
page. Any string of the cursor's pattern is a place in the list (the schema cannot tell more apart)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers

from tenants.api.errors import ApiError

PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
CURSOR_PATTERN = r"^(([0-9a-f]{2}){1,400})?$"
_LIMIT = re.compile(r"^[0-9]{1,4}$")
T = TypeVar("T")

PARAMETERS: list[OpenApiParameter] = [
    OpenApiParameter(
        "cursor",
        {"type": "string", "pattern": CURSOR_PATTERN},
        required=False,
        description="`next_cursor` of the previous page.",
    ),
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
        required=False,
        description=f"Items per page (default {PAGE_SIZE}).",
    ),
]


def paged_list(name: str, item: serializers.Serializer) -> serializers.Serializer:
    """The schema of a page of a list: ``results`` (of ``item``) and ``next_cursor`` (null on the last page)."""
    return inline_serializer(
        name, {"results": serializers.ListField(child=item), "next_cursor": serializers.CharField(allow_null=True)}
    )


def page_query(params: Mapping[str, str]) -> tuple[str, int]:
    """(the name to start after, the page size) from ``?cursor=&limit=``; a 400 naming the field otherwise."""
    cursor = params.get("cursor", "")
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise ApiError("invalid_filter", "cursor: not a cursor this API gave out", 400, {"field": "cursor"})
    # Bytes no name holds still mark a place: invalid UTF-8 reads as U+FFFD, NUL (which no text holds) as nothing.
    after = bytes.fromhex(cursor).decode(errors="replace").replace("\x00", "")
    return after, page_size(params.get("limit", ""))


def page_size(limit: str, *, default: int = PAGE_SIZE, most: int = MAX_PAGE_SIZE) -> int:
    """``?limit=`` as a page size (``default`` when absent); a 400 naming the field otherwise."""
    if not limit:
        return default
    if not _LIMIT.fullmatch(limit) or not 1 <= int(limit) <= most:
        raise ApiError("invalid_filter", f"limit: a whole number from 1 to {most}", 400, {"field": "limit"})
    return int(limit)


def page_of(rows: list[T], names: list[str], limit: int) -> tuple[list[T], str | None]:
    """The first ``limit`` of ``rows`` (fetched as limit + 1, in name order) and the next page's cursor."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], names[limit - 1].encode().hex()
