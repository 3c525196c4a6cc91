from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from tenants.ratelimit import key_rate_wait


class KeyRateThrottle(BaseThrottle):
    """429 with Retry-After once a key spends its per-second budget."""

    def allow_request(self, request: Request, view: Any) -> bool:
        key: Any = request.auth
        if key is None:
            return True
        self._wait = key_rate_wait(key.key_id)
        return self._wait == 0.0

    def wait(self) -> float | None:
        return max(self._wait, 1.0)
