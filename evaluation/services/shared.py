"""What the judge services share: the keyring, the error a form or an API shows, the clock."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings

from evaluation.judges.secrets import KeyRing, KeyRingError


class JudgeServiceError(ValueError):
    """A request the judges cannot honour, with the form field it concerns ("" for the whole form)."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def keyring() -> KeyRing:
    """The provider-key keyring from settings.JUDGE_KEYRING (KeyRingError when it is not set)."""
    try:
        return KeyRing.from_env(settings.JUDGE_KEYRING)
    except KeyRingError as exc:
        raise KeyRingError(f"JUDGE_KEYRING: {exc}") from None


def utc_now() -> datetime:
    return datetime.now(UTC)
