"""Per-key API request budgets, shared by every web process and machine (GCRA).

The generic cell rate algorithm keeps one number per key, its theoretical arrival time
(TAT): each allowed request pushes it one emission interval (1 / rate) further; a request
is refused while that would put the TAT more than `burst` intervals ahead of the clock.
The TAT lives in PostgreSQL (default) or Redis (settings.RATE_LIMIT_URL), is read and
written in one atomic statement or script, and is measured against the store's own clock,
so every process sees one budget however many there are and however their clocks drift.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import psycopg
from django.conf import settings
from django.db import connection

from tenants.schema import raw_connection


@dataclass(frozen=True)
class Budget:
    """A key's allowance: `rate` requests per second on average, up to `burst` at once."""

    interval: float  # seconds one request costs at the sustained rate
    tolerance: float  # how far ahead of the clock the TAT may run: burst x interval

    @classmethod
    def of(cls, *, rate: float, burst: int) -> Budget:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1 (got rate={rate}, burst={burst})")
        return cls(interval=1.0 / rate, tolerance=burst / rate)

    def wait(self, *, allowed: bool, tat: float, now: float) -> float:
        """0 for an allowed request; for a refused one, the seconds until the next one fits."""
        if allowed:
            return 0.0
        # The next request fits once max(tat, now) + interval - now <= tolerance.
        return max(tat + self.interval - self.tolerance - now, 1e-6)


def retry_after_seconds(wait: float) -> int:
    """The Retry-After header for a wait: whole seconds, rounded up so a client that obeys it gets in."""
    return max(1, math.ceil(wait))


class Store(Protocol):
    def take(self, key_id: int, budget: Budget) -> float: ...

    def take_up_to(self, key_id: int, budget: Budget, count: int) -> tuple[int, float]: ...

    def reset(self, key_id: int) -> None: ...


# One statement, one round trip: insert the key's first requests or move its TAT, decided on
# the row the statement has locked. Up to %(count)s requests are granted at once (a lease,
# key_rate_wait): as many as fit under the tolerance, none when not even one does.
# EXCLUDED.checked_at is the database clock of this request. Schema-qualified: the
# connection's search_path may be an organization's schema.
_FIT = """LEAST(%(count)s::int, GREATEST(0, floor(
    (%(tolerance)s::float8 - (GREATEST(b.tat, EXCLUDED.checked_at) - EXCLUDED.checked_at)) / %(interval)s::float8
    + 1e-9)))::int"""
_TAKE_SQL = f"""
INSERT INTO public.tenants_rate_budget AS b (key_id, tat, checked_at, granted)
SELECT %(key_id)s::bigint, c.now + %(count)s::int * %(interval)s::float8, c.now, %(count)s::int
FROM (SELECT extract(epoch FROM clock_timestamp())::float8 AS now) AS c
ON CONFLICT (key_id) DO UPDATE SET
    granted = {_FIT},
    tat = CASE WHEN {_FIT} > 0 THEN GREATEST(b.tat, EXCLUDED.checked_at) + {_FIT} * %(interval)s::float8
               ELSE b.tat END,
    checked_at = EXCLUDED.checked_at
RETURNING granted, tat, checked_at
"""


class PostgresStore:
    """Budgets in public.tenants_rate_budget (an UNLOGGED table), on Django's own connection.

    A prepared statement on the raw psycopg connection: 0.07 ms instead of 0.12 ms unprepared
    (bench/ratelimit.py). In autocommit the row lock lasts one statement; inside a caller's
    transaction it lasts until that commits, so check before opening one.
    """

    def take(self, key_id: int, budget: Budget) -> float:
        return self.take_up_to(key_id, budget, 1)[1]

    def take_up_to(self, key_id: int, budget: Budget, count: int) -> tuple[int, float]:
        """(requests granted, 0 <= granted <= count; the wait when none was)."""
        params = {"key_id": key_id, "interval": budget.interval, "tolerance": budget.tolerance, "count": count}
        with raw_connection() as raw:
            with psycopg.Cursor(raw) as cursor:
                cursor.execute(_TAKE_SQL, params, prepare=True)
                row = cursor.fetchone()
        assert row is not None
        granted, tat, now = row
        return granted, budget.wait(allowed=granted > 0, tat=tat, now=now)

    def reset(self, key_id: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM public.tenants_rate_budget WHERE key_id = %s", [key_id])


# The same GCRA in Redis, in microseconds on the Redis server's clock (TIME), up to ARGV[3]
# requests granted at once as in _TAKE_SQL. The key expires
# when its TAT passes: an idle key holds no memory. Numbers go out through string.format,
# since Lua would print a 16-digit number in exponent form and lose its last digits.
_TAKE_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local base = math.max(tat, now)
local granted = math.min(count, math.max(0, math.floor((tolerance - (base - now)) / interval + 1e-9)))
if granted == 0 then
    return {0, string.format('%.0f', tat), string.format('%.0f', now)}
end
local next_tat = base + granted * interval
local ttl_ms = math.max(1, math.ceil((next_tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', string.format('%.0f', ttl_ms))
return {granted, string.format('%.0f', next_tat), string.format('%.0f', now)}
"""


class RedisStore:
    """Budgets in Redis, one key each, moved by one Lua script (EVALSHA: one round trip)."""

    def __init__(self, url: str) -> None:
        import redis  # only where Redis is configured

        self.client = redis.Redis.from_url(url)
        self.script = self.client.register_script(_TAKE_LUA)

    @staticmethod
    def _name(key_id: int) -> str:
        # Key ids count from 1 in every database: the database name keeps installations that
        # share one Redis (or two test runs) apart.
        return f"candor:ratelimit:{connection.settings_dict['NAME']}:{key_id}"

    def take(self, key_id: int, budget: Budget) -> float:
        return self.take_up_to(key_id, budget, 1)[1]

    def take_up_to(self, key_id: int, budget: Budget, count: int) -> tuple[int, float]:
        interval_us, tolerance_us = budget.interval * 1e6, budget.tolerance * 1e6
        granted, tat, now = self.script(
            keys=[self._name(key_id)], args=[repr(interval_us), repr(tolerance_us), str(count)]
        )
        return int(granted), budget.wait(allowed=bool(granted), tat=int(tat) / 1e6, now=int(now) / 1e6)

    def reset(self, key_id: int) -> None:
        self.client.delete(self._name(key_id))


class LocalStore:
    """The same GCRA in this process's memory: no I/O, a budget per process, not shared.

    For the budget check alone (key_check_rate_wait): a read called before every LLM request,
    cheaper than the shared store's write would be. Its budget bounds a key to `rate` checks
    per second per web process; it never spends the key's shared API budget.
    """

    def __init__(self) -> None:
        self._tats: dict[int, float] = {}
        self._lock = threading.Lock()

    def take(self, key_id: int, budget: Budget) -> float:
        with self._lock:
            now = time.monotonic()
            tat = max(self._tats.get(key_id, now), now)
            allowed = tat + budget.interval - now <= budget.tolerance
            if allowed:
                if key_id not in self._tats and len(self._tats) >= 100_000:
                    # Keys gone idle hold nothing a new request needs: their TAT has passed.
                    self._tats = {k: t for k, t in self._tats.items() if t > now}
                self._tats[key_id] = tat + budget.interval
        return budget.wait(allowed=allowed, tat=tat, now=now)

    def reset(self, key_id: int) -> None:
        with self._lock:
            self._tats.pop(key_id, None)


_checks_store = LocalStore()


def key_check_rate_wait(key_id: int) -> float:
    """Spend one budget check of the key's per-process check budget: 0 when allowed, else the wait."""
    budget = Budget.of(rate=settings.BUDGET_CHECK_RATE_PER_SECOND, burst=settings.BUDGET_CHECK_RATE_BURST)
    return _checks_store.take(key_id, budget)


def key_check_rate_reset(key_id: int) -> None:
    _checks_store.reset(key_id)


@cache
def store_for(url: str) -> Store:
    """The store a RATE_LIMIT_URL names: "" for the database, redis:// or rediss:// for Redis."""
    if not url:
        return PostgresStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url)
    raise ValueError(f"unsupported rate limit store: {url!r}")


def _budget() -> Budget:
    return Budget.of(rate=settings.API_RATE_LIMIT_PER_SECOND, burst=settings.API_RATE_LIMIT_BURST)


# A key whose rate is high spends its shared budget a lease at a time: up to LEASE_SECONDS of
# its rate (at most LEASE_MAX requests) taken from the store in one round trip, then spent from
# this process's memory. A widget key at 2,000 requests/s pays one store write per 20 requests
# instead of one each; a key at the default 50/s leases nothing (a lease of one is the exact
# budget). What leasing costs: a process may hold up to a lease of requests the key already paid
# for, so under a flood the key is refused up to processes x lease requests early, and a lease
# is spent at most LEASE_TTL seconds after it was taken.
LEASE_SECONDS = 0.01
LEASE_MAX = 20
LEASE_TTL = 1.0


def lease_size(budget: Budget) -> int:
    """Requests taken from the shared store at once for a key on this budget (1: no lease)."""
    burst = int(budget.tolerance / budget.interval + 1e-9)
    return max(1, min(LEASE_MAX, burst, int(LEASE_SECONDS / budget.interval)))


class Leases:
    """This process's leases: requests of each key's shared budget, paid for and not yet spent."""

    def __init__(self) -> None:
        self._held: dict[int, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def spend(self, key_id: int) -> bool:
        """Spend one leased request of the key, if this process holds a live one."""
        with self._lock:
            held = self._held.get(key_id)
            if held is None or held[0] <= 0 or held[1] <= time.monotonic():
                return False
            self._held[key_id] = (held[0] - 1, held[1])
            return True

    def keep(self, key_id: int, count: int) -> None:
        with self._lock:
            now = time.monotonic()
            if key_id not in self._held and len(self._held) >= 100_000:
                self._held = {k: held for k, held in self._held.items() if held[1] > now}
            self._held[key_id] = (count, now + LEASE_TTL)

    def drop(self, key_id: int) -> None:
        with self._lock:
            self._held.pop(key_id, None)


_leases = Leases()


def key_rate_wait(key_id: int) -> float:
    """Spend one request of the key's budget: 0 when allowed, else the seconds to wait."""
    budget = _budget()
    size = lease_size(budget)
    store = store_for(settings.RATE_LIMIT_URL)
    if size == 1:
        return store.take(key_id, budget)
    if _leases.spend(key_id):
        return 0.0
    granted, wait = store.take_up_to(key_id, budget, size)
    if granted > 1:
        _leases.keep(key_id, granted - 1)
    return wait


def key_rate_reset(key_id: int) -> None:
    """Give the key its whole budget back (tests; an operator forgiving a burst)."""
    _leases.drop(key_id)
    store_for(settings.RATE_LIMIT_URL).reset(key_id)
