"""Refusals a service raises when a whole request cannot be served; each API maps them to its status."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Why(StrEnum):
    """Why a request is refused, in the domain's words (tenants.api.errors maps each to HTTP)."""

    INVALID = "invalid"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"


class Refused(Exception):
    """The request as a whole is refused: a stable machine `code`, a message for people, and why."""

    def __init__(
        self, code: str, message: str, *, why: Why, details: Any = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.why = why
        self.details = details
        self.retry_after = retry_after
