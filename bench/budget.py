"""Budget-check benchmark: GET /api/v1/budgets/check through the real server while traces land.

1. Creates a fresh organization with 500 customers' spend (traces through the ingest service)
   and budgets (a default, 50 per-customer overrides, a per-feature and a per-model budget).
2. Starts Candor's web server (config/serve.py) on a free port against the configured database (embedded by default).
3. Checks alone: CHECKERS client threads, each on its own keep-alive connection.
4. Checks while traces land: the same, with WRITERS threads posting batches of 100 traces
   for the same customers (the counters the checks read are being updated meanwhile): first as
   fast as the server takes them (the worst case, printed), then at BENCH_BUDGET_TRACE_RATE
   traces/s (default 2,000: one trace per checked LLM call at the goal's 2,000 checks/s; 0 keeps
   the flood), the phase the RESULT line reports.
5. Baselines measured in the same run: the check's own SQL on one connection (its floor in the
   database), and GET /healthz through the same server (the floor of any request).

Ends with: RESULT budget checks_per_s=... p50_ms=... p99_ms=... concurrent_traces_per_s=...
(checks_per_s and the latencies are those of step 4; goal: p99 <= 5 ms and >= 2,000 checks/s.)
"""

from __future__ import annotations

import http.client
import os
import random
import signal
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
# The per-key rate limit would refuse a benchmark's pace: it is measured by bench-ratelimit.
os.environ.setdefault("CANDOR_API_RATE_PER_SECOND", "1000000")
os.environ.setdefault("CANDOR_API_RATE_BURST", "1000000")
os.environ.setdefault("CANDOR_BUDGET_CHECK_RATE_PER_SECOND", "1000000")
os.environ.setdefault("CANDOR_BUDGET_CHECK_RATE_BURST", "1000000")

import django  # noqa: E402

from config.embedded_db import ensure_database_url  # noqa: E402

ensure_database_url()
django.setup()

import msgspec  # noqa: E402

from bench._server import KeepAlive, free_port, http_request, web_server  # noqa: E402
from billing.selectors import budget_check  # noqa: E402
from billing.services.budgets import budget_set  # noqa: E402
from feedback import services  # noqa: E402
from tenants.models import Organization  # noqa: E402
from tenants.schema import activate_public, activate_tenant  # noqa: E402
from tenants.services import organization_create  # noqa: E402

CUSTOMERS = 500
SEED_TRACES = int(os.environ.get("BENCH_BUDGET_TRACES", "20000"))
CHECKERS = int(os.environ.get("BENCH_BUDGET_CHECKERS", "4"))
WRITERS = 2
# Traces per second the writers send while checks run: one trace per checked LLM call is the
# shape the check is made for (2,000 checks/s -> 2,000 traces/s); 0 sends as fast as the server takes.
TRACE_RATE = float(os.environ.get("BENCH_BUDGET_TRACE_RATE", "2000"))
SECONDS = float(os.environ.get("BENCH_BUDGET_SECONDS", "10"))
FEATURES = ["support-copilot", "summarize", "search"]
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-haiku"]


def customer(i: int) -> str:
    return f"cus_{i:04d}"


def traces(rng: random.Random, n: int, prefix: str) -> bytes:
    now = datetime.now(UTC).isoformat()
    return msgspec.json.encode({"batch": [
        {"trace_id": f"{prefix}-{i}", "feature": rng.choice(FEATURES), "model": rng.choice(MODELS),
         "customer_id": customer(min(int(rng.paretovariate(1.2)) - 1, CUSTOMERS - 1)),
         "cost_usd": round(rng.uniform(0.0001, 0.05), 6), "started_at": now}
        for i in range(n)
    ]})  # fmt: skip


def seed(organization: Organization) -> None:
    rng = random.Random(7)
    activate_tenant(organization)
    try:
        for start in range(0, SEED_TRACES, 1000):
            services.traces_ingest(body=traces(rng, min(1000, SEED_TRACES - start), f"seed-{start}"))
    finally:
        activate_public()
    budget_set(organization=organization, daily_cap_usd="5", monthly_cap_usd="50")
    for i in range(0, 500, 10):
        budget_set(organization=organization, customer_id=customer(i), monthly_cap_usd=str(1 + i % 7),
                   over_action="fallback", fallback_model="gpt-4o-mini")  # fmt: skip
    budget_set(organization=organization, feature="summarize", monthly_cap_usd="20")
    budget_set(organization=organization, model="gpt-4o", daily_cap_usd="2")


def percentile(samples: list[float], q: float) -> float:
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(len(samples) * q))]


def run(
    port: int, key: str, *, writers: int, path_of: object = None, trace_rate: float = 0.0
) -> tuple[list[float], int, float, list[str]]:
    """CHECKERS threads checking (and `writers` posting traces) for SECONDS; returns latencies (ms),
    traces written, elapsed seconds, problems."""
    latencies: list[list[float]] = [[] for _ in range(CHECKERS)]
    written = [0] * max(writers, 1)
    problems: list[str] = []
    stop = time.monotonic() + SECONDS
    headers = {"Authorization": f"Bearer {key}"}

    def checker(c: int) -> None:
        rng = random.Random(100 + c)
        conn = KeepAlive(port)
        while time.monotonic() < stop:
            path = path_of() if callable(path_of) else (
                f"/api/v1/budgets/check?customer_id={customer(rng.randrange(CUSTOMERS + 50))}"
                f"&feature={rng.choice(FEATURES)}&model={rng.choice(MODELS)}&estimated_cost_usd=0.01"
            )  # fmt: skip
            request = http_request("GET", path, port, headers=headers)
            started = time.perf_counter()
            status, body = conn.send(request)
            latencies[c].append((time.perf_counter() - started) * 1000)
            if status != 200:
                problems.append(f"{status} {body[:200]!r}")
                return
        conn.close()

    def writer(w: int) -> None:
        rng = random.Random(1000 + w)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        n = 0
        every = 100 / (trace_rate / writers) if trace_rate else 0.0  # seconds between this writer's batches
        next_at = time.monotonic() + w * every / writers
        while time.monotonic() < stop:
            if every:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += every
            conn.request("POST", "/api/v1/traces", body=traces(rng, 100, f"load-{w}-{n}-{uuid.uuid4().hex[:6]}"),
                         headers={**headers, "Content-Type": "application/json"})  # fmt: skip
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                problems.append(f"traces: {response.status} {body[:200]!r}")
                return
            written[w] += 100
            n += 1

    threads = [threading.Thread(target=checker, args=(c,)) for c in range(CHECKERS)]
    threads += [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [x for xs in latencies for x in xs], sum(written), time.monotonic() - started, problems


def ready(port: int) -> bool:
    """Wait until the workers have booted (a loaded machine takes a while to import Django four times)."""
    deadline = time.monotonic() + 180
    answered = 0
    while answered < 20 and time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/healthz")
            answered += conn.getresponse().status == 200
            conn.close()
        except OSError:
            time.sleep(0.5)
    return answered >= 20


def sql_floor(organization: Organization) -> float:
    """The check's own queries (budgets, counters) straight on one connection: median ms."""
    rng = random.Random(3)
    activate_tenant(organization)
    try:
        samples = []
        for i in range(2000):
            started = time.perf_counter()
            budget_check(organization_id=organization.id, customer_id=customer(rng.randrange(CUSTOMERS)),
                         feature=rng.choice(FEATURES), model=rng.choice(MODELS))  # fmt: skip
            if i >= 200:
                samples.append((time.perf_counter() - started) * 1000)
    finally:
        activate_public()
    return statistics.median(samples)


def report(name: str, samples: list[float], seconds: float) -> tuple[float, float, float]:
    rate = len(samples) / seconds
    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    print(f"  {name:<44} {rate:8,.0f}/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   ({len(samples):,} requests)",
          flush=True)  # fmt: skip
    return rate, p50, p99


def main() -> int:
    # A benchmark stopped from outside still drops its organization (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    port = free_port()
    created = organization_create(slug=slug, owner_email=f"bench@{slug}.test")
    organization = created.organization
    try:
        print(f"seeding {SEED_TRACES:,} traces for {CUSTOMERS} customers and 54 budgets…", flush=True)
        seed(organization)
        floor_ms = sql_floor(organization)
        print(f"  the check's SQL on one connection (floor)     median {floor_ms:.3f} ms", flush=True)
        workers = os.environ.get("BENCH_WORKERS", "4")
        with web_server(port):
            print(f"web server: {workers} processes; {CHECKERS} checking clients, {SECONDS:.0f} s per phase "
                  f"({os.cpu_count()} CPUs, shared)", flush=True)  # fmt: skip
            if not ready(port):
                print("the web server did not answer /healthz within 3 minutes (see .var/log/bench-web.log)")
                return 1
            run(port, created.secret_key, writers=0)  # warm-up: workers' connections, key cache
            healthz, _, seconds, _ = run(port, created.secret_key, writers=0, path_of=lambda: "/healthz")
            report("GET /healthz (floor of a request)", healthz, seconds)
            alone, _, seconds, problems = run(port, created.secret_key, writers=0)
            report("budget checks alone", alone, seconds)
            if TRACE_RATE:
                # As fast as the server takes them first (the worst case), then the RESULT phase.
                flood, flooded, seconds, more = run(port, created.secret_key, writers=WRITERS)
                report(f"budget checks while {WRITERS} clients flood traces", flood, seconds)
                print(f"  traces landed meanwhile: {flooded:,} = {flooded / seconds:,.0f} traces/s", flush=True)
                problems += more
            loaded, written, seconds, more = run(port, created.secret_key, writers=WRITERS, trace_rate=TRACE_RATE)
            pace = f"{TRACE_RATE:,.0f} traces/s" if TRACE_RATE else "as fast as they land"
            rate, p50, p99 = report(f"budget checks while traces land ({pace})", loaded, seconds)
            traces_per_s = written / seconds
            print(f"  traces landed meanwhile: {written:,} = {traces_per_s:,.0f} traces/s", flush=True)
            problems += more
            if problems:
                print("\n".join(problems[:5]))
                return 1
        print(f"RESULT budget checks_per_s={rate:.0f} p50_ms={p50:.2f} p99_ms={p99:.2f} "
              f"concurrent_traces_per_s={traces_per_s:.0f} sql_floor_ms={floor_ms:.3f}")  # fmt: skip
    finally:
        Organization.objects.get(slug=slug).delete(force_drop=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
