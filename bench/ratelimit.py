"""Rate-limit benchmark: what one `key_rate_wait` costs per request, per store.

1. PostgreSQL (the default store): key_rate_wait on Django's own connection, as a request makes it.
2. Redis, when one answers (CANDOR_RATE_LIMIT_URL, a Redis broker, else redis://127.0.0.1:6379/15).
3. Baselines measured in the same run: the old per-process token bucket (no I/O: what sharing the
   budget adds), `SELECT 1` on the same connection (the floor of any database round trip), and
   the store's statement sent unprepared through Django's cursor (what preparing it saves).
4. Four threads spending one key's budget at once (each its own connection): the row lock's cost.

Ends with: RESULT ratelimit pg_median_ms=... redis_median_ms=... (target: under 0.5 ms median)
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
# Every call allowed: the path nearly every real request takes.
os.environ["CANDOR_API_RATE_PER_SECOND"] = "1000000000"
os.environ["CANDOR_API_RATE_BURST"] = "1000000000"

from config.embedded_db import ensure_database_url  # noqa: E402

ensure_database_url()

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, connections  # noqa: E402

from tenants.ratelimit import _TAKE_SQL, key_rate_reset, key_rate_wait  # noqa: E402

CALLS = int(os.environ.get("BENCH_RATELIMIT_CALLS", "5000"))
THREADS = 4
KEY = 9_000_000_001  # no real key has an id this high


class TokenBuckets:
    """The per-process bucket Candor used before (tenants/ratelimit.py until issue 7): the baseline."""

    def __init__(self) -> None:
        self._state: dict[object, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: object, rate: float, burst: int) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._state.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - stamp) * rate)
            if tokens >= 1.0:
                self._state[key] = (tokens - 1.0, now)
                return 0.0
            self._state[key] = (tokens, now)
            return (1.0 - tokens) / rate


def timed(call: Callable[[], object], calls: int) -> list[float]:
    """Milliseconds per call, after a warm-up (connection open, statement prepared)."""
    for _ in range(min(200, calls)):
        call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return samples


def summary(name: str, samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    median, p95 = statistics.median(samples), samples[int(len(samples) * 0.95)]
    print(f"  {name:<34} median {median:.4f} ms   p95 {p95:.4f} ms   ({len(samples)} calls)", flush=True)
    return median, p95


def contended(store_url: str) -> list[float]:
    """THREADS threads spending one key at once, each on its own connection."""
    results: list[list[float]] = []

    def worker() -> None:
        settings.RATE_LIMIT_URL = store_url
        try:
            results.append(timed(lambda: key_rate_wait(KEY), CALLS // THREADS))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [sample for samples in results for sample in samples]


def redis_url() -> str | None:
    import redis

    url = settings.RATE_LIMIT_URL or "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        print(f"  Redis at {url.split('@')[-1]} does not answer ({exc}): its figures are skipped")
        return None
    return url


def main() -> None:
    print(f"key_rate_wait, {CALLS} calls each, one key, every call allowed")
    results: dict[str, float] = {"pg_median_ms": float("nan"), "redis_median_ms": float("nan")}

    buckets = TokenBuckets()
    results["memory_median_ms"], _ = summary(
        "old in-process bucket (baseline)", timed(lambda: buckets.take(KEY, 1e9, 10**9), CALLS)
    )

    def select_1() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    results["select1_median_ms"], _ = summary("PostgreSQL SELECT 1 (round trip)", timed(select_1, CALLS))

    settings.RATE_LIMIT_URL = ""
    key_rate_reset(KEY)
    results["pg_median_ms"], results["pg_p95_ms"] = summary(
        "PostgreSQL store", timed(lambda: key_rate_wait(KEY), CALLS)
    )

    def through_django_cursor() -> None:
        with connection.cursor() as cursor:
            cursor.execute(_TAKE_SQL, {"key_id": KEY, "interval": 1e-9, "tolerance": 1.0})
            cursor.fetchone()

    results["pg_unprepared_median_ms"], _ = summary("same SQL via Django's cursor", timed(through_django_cursor, CALLS))
    results["pg_4threads_median_ms"], _ = summary(f"PostgreSQL store, {THREADS} threads", contended(""))
    key_rate_reset(KEY)

    url = redis_url()
    if url:
        settings.RATE_LIMIT_URL = url
        key_rate_reset(KEY)
        results["redis_median_ms"], results["redis_p95_ms"] = summary(
            "Redis store", timed(lambda: key_rate_wait(KEY), CALLS)
        )
        results["redis_4threads_median_ms"], _ = summary(f"Redis store, {THREADS} threads", contended(url))
        key_rate_reset(KEY)

    # The two headline figures first; the rest for comparison.
    print("RESULT ratelimit " + " ".join(f"{name}={value:.4f}" for name, value in results.items()))


if __name__ == "__main__":
    main()
