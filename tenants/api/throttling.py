"""The API's per-key rate limit: 429 with Retry-After once a key has spent its shared budget."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from tenants.services import api_key_spend


class KeyRateThrottle(BaseThrottle):
    """Refuses with the same body as the widget endpoint (code `rate_limited`, details.retry_after).

    It raises rather than answering False, because DRF's own refusal is `Throttled` with the
    code `throttled`: one condition, one code, on every endpoint.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        key: Any = request.auth
        if key is None:
            return True
        api_key_spend(key_id=key.key_id)
        return True
