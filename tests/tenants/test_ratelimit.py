"""The per-key rate limit: GCRA maths on the real stores, and one budget across processes."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connection

from tenants.ratelimit import (
    LEASE_MAX,
    Budget,
    PostgresStore,
    RedisStore,
    Store,
    key_rate_reset,
    key_rate_wait,
    lease_size,
)
from tenants.services import api_key_create
from tests.fixtures.organizations import Org
from tests.fixtures.server import ROOT, database_url_for_subprocess

# Two requests a second on average, three at once: slow enough that a loaded machine still
# fires a burst well inside one interval.
BUDGET = Budget.of(rate=2.0, burst=3)


def _redis_url() -> str:
    return settings.RATE_LIMIT_URL or "redis://127.0.0.1:6379/15"


@pytest.fixture(params=["postgres", pytest.param("redis", marks=pytest.mark.services)])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "postgres":
        request.getfixturevalue("db")
        return PostgresStore()
    return RedisStore(_redis_url())


@pytest.fixture
def key_id(store: Store) -> Iterator[int]:
    """A key id no real key has, with a fresh budget."""
    key = random.randrange(10**12, 10**13)
    store.reset(key)
    yield key
    store.reset(key)


def test_burst_then_refill(store: Store, key_id: int) -> None:
    assert [store.take(key_id, BUDGET) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = store.take(key_id, BUDGET)
    assert 0 < wait <= BUDGET.interval
    # A refused request spends nothing: asking again only finds a shorter wait.
    again = store.take(key_id, BUDGET)
    assert 0 < again <= wait
    time.sleep(again + 0.02)
    assert store.take(key_id, BUDGET) == 0.0  # one request's worth came back...
    assert store.take(key_id, BUDGET) > BUDGET.interval / 2  # ...and only one


def test_a_budget_beyond_the_clocks_resolution_allows_everything(store: Store, key_id: int) -> None:
    """Benchmarks and the test settings use rates whose interval is below a microsecond."""
    unlimited = Budget.of(rate=1e9, burst=10**9)
    assert [store.take(key_id, unlimited) for _ in range(3)] == [0.0, 0.0, 0.0]


def test_budgets_are_per_key(store: Store, key_id: int) -> None:
    other = key_id + 1
    store.reset(other)
    one_at_a_time = Budget.of(rate=0.01, burst=1)
    assert store.take(key_id, one_at_a_time) == 0.0
    assert store.take(key_id, one_at_a_time) > 90
    assert store.take(other, one_at_a_time) == 0.0
    store.reset(other)


def test_take_up_to_grants_as_many_as_fit_and_none_past_the_burst(store: Store, key_id: int) -> None:
    assert store.take_up_to(key_id, BUDGET, 2) == (2, 0.0)
    assert store.take_up_to(key_id, BUDGET, 5) == (1, 0.0)  # the burst holds three: one is left
    granted, wait = store.take_up_to(key_id, BUDGET, 5)
    assert granted == 0 and 0 < wait <= BUDGET.interval
    time.sleep(wait + 0.02)
    assert store.take_up_to(key_id, BUDGET, 5)[0] == 1  # one request's worth came back


def test_lease_size_is_a_hundredth_of_a_second_of_the_rate_within_the_burst() -> None:
    assert lease_size(Budget.of(rate=50, burst=200)) == 1  # the default: no lease, the exact budget
    assert lease_size(Budget.of(rate=1000, burst=2000)) == 10
    assert lease_size(Budget.of(rate=1000, burst=4)) == 4
    assert lease_size(Budget.of(rate=1e9, burst=10**9)) == LEASE_MAX


def _stored_budget(key: int) -> tuple[int, float]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT granted, checked_at FROM public.tenants_rate_budget WHERE key_id = %s", [key])
        granted, checked_at = cursor.fetchone()
    return int(granted), float(checked_at)


def test_a_fast_key_spends_its_shared_budget_a_lease_at_a_time(db: None, settings: Any) -> None:
    settings.RATE_LIMIT_URL = ""  # the database store, whose row this test reads
    settings.API_RATE_LIMIT_PER_SECOND = 2000
    settings.API_RATE_LIMIT_BURST = 4000
    key = random.randrange(10**12, 10**13)
    key_rate_reset(key)
    assert key_rate_wait(key) == 0.0
    granted, first_write = _stored_budget(key)
    assert granted == LEASE_MAX  # twenty requests paid for in one write...
    assert [key_rate_wait(key) for _ in range(LEASE_MAX - 1)] == [0.0] * (LEASE_MAX - 1)
    assert _stored_budget(key) == (LEASE_MAX, first_write)  # ...and spent from memory
    assert key_rate_wait(key) == 0.0
    assert _stored_budget(key)[1] > first_write  # the next lease is a new write
    key_rate_reset(key)  # a reset forgets this process's lease too
    assert key_rate_wait(key) == 0.0
    assert _stored_budget(key)[0] == LEASE_MAX
    key_rate_reset(key)


def test_a_fast_key_out_of_budget_is_refused_whatever_it_leased(db: None, settings: Any) -> None:
    settings.RATE_LIMIT_URL = ""
    settings.API_RATE_LIMIT_PER_SECOND = 1000
    settings.API_RATE_LIMIT_BURST = 30  # a lease is 10 requests: three leases and the burst is gone
    key = random.randrange(10**12, 10**13)
    key_rate_reset(key)
    started = time.monotonic()
    waits = [key_rate_wait(key) for _ in range(200)]
    elapsed = time.monotonic() - started
    allowed = sum(1 for wait in waits if wait == 0.0)
    # The burst, plus what refilled at 1,000/s while the loop ran, plus at most the lease in hand.
    assert 30 <= allowed <= 30 + 1000 * elapsed + 10
    assert all(0 < wait <= 0.0011 for wait in waits if wait)
    key_rate_reset(key)


def test_key_rate_wait_follows_the_settings(db: None, settings: Any) -> None:
    settings.API_RATE_LIMIT_PER_SECOND = 0.01
    settings.API_RATE_LIMIT_BURST = 2
    key = random.randrange(10**12, 10**13)
    key_rate_reset(key)
    assert key_rate_wait(key) == 0.0
    assert key_rate_wait(key) == 0.0
    assert key_rate_wait(key) == pytest.approx(100, abs=1)
    key_rate_reset(key)
    assert key_rate_wait(key) == 0.0
    key_rate_reset(key)


# --- One budget across processes -----------------------------------------------------------

BURST = 5
PID = re.compile(r"pid=<(\d+)>")


@pytest.fixture
def fresh_secret_key(django_db_blocker: Any, two_orgs: tuple[Org, Org]) -> Iterator[str]:
    """A committed secret key of its own, so the tiny budget below touches no other test's key."""
    with django_db_blocker.unblock():
        raw, key = api_key_create(organization=two_orgs[0].organization, kind="secret", name="two workers")
        yield raw
        key_rate_reset(key.id)


@pytest.fixture
def two_web_processes(tmp_path: Path, django_db_setup: None) -> Iterator[tuple[str, Path]]:
    """The web server with two processes on the test database, a burst of 5 and near-zero refill."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    access_log = tmp_path / "access.log"
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=database_url_for_subprocess(),
        CANDOR_API_RATE_PER_SECOND="0.001",
        CANDOR_API_RATE_BURST=str(BURST),
        CANDOR_RATE_LIMIT_URL=settings.RATE_LIMIT_URL or "database",
    )
    error_log = open(tmp_path / "error.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "config.serve", "--bind", f"127.0.0.1:{port}", "--processes", "2",
         "--threads", "1", "--access-log", str(access_log)],
        cwd=ROOT, env=env, stdout=error_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(url + "/healthz", timeout=10)
                break
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or a slow first answer
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the web server did not start:\n" + (tmp_path / "error.log").read_text())
                time.sleep(0.2)
        yield url, access_log
    finally:
        server.terminate()
        server.wait(timeout=30)
        error_log.close()


def _served_by(access_log: Path) -> Counter[str]:
    """How many /api/v1/traces requests each worker pid served."""
    lines = [line for line in access_log.read_text().splitlines() if "/api/v1/traces" in line]
    return Counter(match.group(1) for line in lines if (match := PID.search(line)))


def test_two_web_processes_share_one_budget(two_web_processes: tuple[str, Path], fresh_secret_key: str) -> None:
    url, access_log = two_web_processes

    def get(_: int) -> requests.Response:
        # A new connection per request (no session), so either worker may take it.
        return requests.get(url + "/api/v1/traces", headers={"Authorization": f"Bearer {fresh_secret_key}"}, timeout=30)

    answers: list[requests.Response] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Until each worker alone has served more than the burst: with a budget per process,
        # each would then have allowed a whole burst of its own.
        for _ in range(50):
            answers += pool.map(get, range(8))
            served = _served_by(access_log)
            if len(served) == 2 and min(served.values()) > BURST:
                break
    time.sleep(0.2)  # the server writes the access line just after the answer
    served = _served_by(access_log)
    assert len(served) == 2 and min(served.values()) > BURST, f"both workers must serve the key: {served}"
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {200: BURST, 429: len(answers) - BURST}
    assert {answer.json()["error"]["code"] for answer in answers if answer.status_code == 429} == {"rate_limited"}
