"""Per-key token bucket. In-process: each web process enforces the budget on its own share."""

from __future__ import annotations

import time
from threading import Lock

from django.conf import settings


class TokenBuckets:
    def __init__(self) -> None:
        self._state: dict[object, tuple[float, float]] = {}
        self._lock = Lock()

    def take(self, key: object, rate: float, burst: int) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is free."""
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._state.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - stamp) * rate)
            if tokens >= 1.0:
                self._state[key] = (tokens - 1.0, now)
                return 0.0
            self._state[key] = (tokens, now)
            return (1.0 - tokens) / rate


buckets = TokenBuckets()


def key_rate_wait(key_id: int) -> float:
    return buckets.take(key_id, settings.API_RATE_LIMIT_PER_SECOND, settings.API_RATE_LIMIT_BURST)
