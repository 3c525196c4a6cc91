"""Ingestion benchmark: the real HTTP API against PostgreSQL's own COPY of the same rows.

1. Starts Candor's web server (config/serve.py) on a free port against the configured database (embedded by default).
2. Creates a fresh organization, sends ~100k mixed events (traces with spans, feedback,
   outcomes from the demo generator) in batches of 500 from 4 concurrent clients.
3. Exports the stored rows and loads them with server-side COPY into empty copies of the
   same tables: the ceiling for getting those rows into PostgreSQL at all.
4. Measures single-event widget requests per second (the browser's shape) and their p50/p95/p99.

Ends with: RESULT ingest api_eps=... copy_eps=... ratio=... widget_rps=... widget_p95_ms=...
BENCH_WORKERS (default 2, the issue's setting), BENCH_THREADS, BENCH_EVENTS, BENCH_WIDGET_REQUESTS (0: the
batch figures alone) are knobs.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
os.environ.setdefault("CANDOR_API_RATE_PER_SECOND", "1000000")
os.environ.setdefault("CANDOR_API_RATE_BURST", "1000000")

import django  # noqa: E402

from config.embedded_db import ensure_database_url  # noqa: E402

ensure_database_url()  # settings start nothing: the embedded PostgreSQL is the entry point's job
django.setup()

import msgspec  # noqa: E402
from django.db import connection  # noqa: E402

from bench._server import KeepAlive, free_port, http_request, server_cpu_seconds, web_server  # noqa: E402
from feedback.demo_data import DemoConfig, demo_stream  # noqa: E402
from tenants.models import Organization  # noqa: E402
from tenants.services import organization_create  # noqa: E402

EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
BATCH = 500
CLIENTS = 4
WIDGET_REQUESTS = int(os.environ.get("BENCH_WIDGET_REQUESTS", "6000"))
# The issue measures with 2 web workers (this machine has 2 cores).
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
TABLES = {"trace": "feedback_trace", "span": "feedback_span", "feedback": "feedback_feedbackevent",
          "outcome": "feedback_outcome"}  # fmt: skip


def build_batches() -> tuple[list[tuple[str, bytes]], int]:
    """EVENTS items (traces, feedback, outcomes in the generator's order), pre-encoded in batches of 500."""
    buffers: dict[str, list[dict]] = {"trace": [], "feedback": [], "outcome": []}
    batches: list[tuple[str, bytes]] = []
    events = 0
    # One event, one row: spans off, so both sides count the same thing.
    config = DemoConfig(traces=EVENTS, days=30, seed=11, spans=False)
    for kind, item in demo_stream(config):
        buffers[kind].append(item)
        events += 1
        if len(buffers[kind]) == BATCH:
            batches.append((kind, msgspec.json.encode({"batch": buffers[kind]})))
            buffers[kind] = []
        if events >= EVENTS:
            break
    batches += [(k, msgspec.json.encode({"batch": v})) for k, v in buffers.items() if v]
    # Traces first within each window, as an application would send them; feedback may still precede.
    return batches, events


def post_all(
    port: int, key: str, batches: list[tuple[str, bytes]], connections: list[http.client.HTTPConnection] | None = None
) -> tuple[float, list[str]]:
    """Every batch from CLIENTS concurrent clients, on ``connections`` if given (kept open), else on their own."""
    paths = {"trace": "/api/v1/traces", "feedback": "/api/v1/feedback", "outcome": "/api/v1/outcomes"}
    queue = list(enumerate(batches))
    lock = threading.Lock()
    problems: list[str] = []

    def client(given: http.client.HTTPConnection | None) -> None:
        conn = given or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not queue:
                    break
                _, (kind, body) = queue.pop(0)
            conn.request("POST", paths[kind], body, {"Authorization": f"Bearer {key}",
                                                     "Content-Type": "application/json"})  # fmt: skip
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                problems.append(f"{kind}: {response.status} {payload[:200]!r}")
        if given is None:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(connections[n] if connections else None,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, problems


def warm_up(port: int, key: str, requests: Callable[[], list[tuple[str, str, bytes]]], rounds: int = 6) -> None:
    """Each worker's first requests import modules and open connections that later ones reuse
    (seconds on this machine): send each (path, content type, body) ``requests()`` gives a few
    times, from CLIENTS clients at once so both workers get some, to an organization not measured."""
    failed: list[str] = []

    def client() -> None:
        for _ in range(rounds):
            for path, content_type, body in requests():
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                conn.request("POST", path, body, {"Authorization": f"Bearer {key}", "Content-Type": content_type})
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status != 200:
                    failed.append(f"{path}: {response.status}")

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise RuntimeError(f"warm-up failed: {failed[:3]}")


def rest_warm_up_requests() -> list[tuple[str, str, bytes]]:
    """One small batch of each kind the benchmark sends, with fresh IDs."""
    trace_id = f"warm-{uuid.uuid4().hex}"
    return [
        ("/api/v1/traces", "application/json", json.dumps({"batch": [
            {"trace_id": trace_id, "feature": "warm-up", "prompt_version": "v1", "model": "gpt-4o-mini",
             "input_tokens": 10, "output_tokens": 5, "customer_id": "cus_warm"}]}).encode()),
        ("/api/v1/feedback", "application/json", json.dumps({"batch": [
            {"event_id": str(uuid.uuid4()), "trace_id": trace_id, "kind": "thumb", "value": 1}]}).encode()),
        ("/api/v1/outcomes", "application/json", json.dumps({"batch": [
            {"outcome_id": uuid.uuid4().hex, "name": "purchase", "trace_id": trace_id, "value_usd": 1.0}]}).encode()),
    ]  # fmt: skip


def widget_single_events(port: int, public_key: str, trace_ids: list[str]) -> tuple[float, list[float], float]:
    """Requests/s of single-event widget requests from CLIENTS keep-alive clients, each one's latency,
    and the web server's CPU seconds per request (its processes' own, whatever else the machine runs).

    Every request (a new event each) is built before the clock starts and sent on a lean kept-alive
    connection (bench._server.KeepAlive): the browser's side of a request is not on the server's
    machine, so the client here spends as little of the two CPUs as it can.
    """
    origin = f"http://127.0.0.1:{port}"
    per_client = WIDGET_REQUESTS // CLIENTS
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    headers = {"Origin": origin, "Content-Type": "text/plain"}
    requests: list[list[bytes]] = []
    for n in range(CLIENTS):
        own = []
        for i in range(per_client):
            event = {"event_id": str(uuid.uuid4()), "trace_id": trace_ids[(n * per_client + i) % len(trace_ids)],
                     "kind": "thumb", "value": 1}  # fmt: skip
            body = json.dumps({"key": public_key, "events": [event]}).encode()
            own.append(http_request("POST", "/api/v1/widget/events", port, headers=headers, body=body))
        requests.append(own)

    def client(n: int) -> None:
        conn = KeepAlive(port)
        own = latencies[n]
        for request in requests[n]:
            started = time.perf_counter()
            status, _ = conn.send(request)
            own.append(time.perf_counter() - started)
            assert status == 200, status
        conn.close()

    cpu_before = server_cpu_seconds(port)
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    sent = per_client * CLIENTS
    server_cpu = (server_cpu_seconds(port) - cpu_before) / sent
    return sent / elapsed, sorted(x for own in latencies for x in own), server_cpu


def percentile_ms(ordered: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of sorted seconds, in milliseconds."""
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000


def copy_baseline(schema: str) -> tuple[float, int]:
    """Export what the API stored, then time server-side COPY of it into empty twins."""
    export_dir = Path("/tmp") / f"candor-bench-{uuid.uuid4().hex[:8]}"
    export_dir.mkdir(mode=0o777)
    os.chmod(export_dir, 0o777)  # the database server (another OS user) writes and reads here
    rows = 0
    elapsed = 0.0
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS bench_copy CASCADE; CREATE SCHEMA bench_copy")
        for table in TABLES.values():
            cursor.execute(f'CREATE TABLE bench_copy.{table} (LIKE "{schema}".{table} INCLUDING ALL)')
            cursor.execute(f"COPY \"{schema}\".{table} TO '{export_dir}/{table}.copy'")
        for table in TABLES.values():
            started = time.perf_counter()
            cursor.execute(f"COPY bench_copy.{table} FROM '{export_dir}/{table}.copy'")
            elapsed += time.perf_counter() - started
            rows += cursor.rowcount
        cursor.execute("DROP SCHEMA bench_copy CASCADE")
    for f in export_dir.iterdir():
        f.unlink()
    export_dir.rmdir()
    return elapsed, rows


def main() -> int:
    print(f"building ~{EVENTS:,} events in batches of {BATCH}…", flush=True)
    batches, events = build_batches()
    slug, warm_slug = (f"bench-{uuid.uuid4().hex[:8]}" for _ in range(2))
    port = free_port()
    created = organization_create(slug=slug, owner_email=f"bench@{slug}.test",
                                  allowed_origins=[f"http://127.0.0.1:{port}"])  # fmt: skip
    warm = organization_create(slug=warm_slug, owner_email=f"bench@{warm_slug}.test")
    schema = created.organization.schema_name
    try:
        with web_server(port, workers=WORKERS):
            print("warming the workers up (a few small batches to another organization, not timed)…", flush=True)
            warm_up(port, warm.secret_key, rest_warm_up_requests)
            print(
                f"sending {events:,} events ({len(batches)} requests, {CLIENTS} clients) to the web server…", flush=True
            )
            api_seconds, problems = post_all(port, created.secret_key, batches)
            if problems:
                print("\n".join(problems[:5]))
                return 1
            api_eps = events / api_seconds
            print(f"API:  {events:,} events in {api_seconds:.2f}s = {api_eps:,.0f} events/s", flush=True)
            with connection.cursor() as cursor:
                cursor.execute(f'SELECT trace_id FROM "{schema}".feedback_trace LIMIT 1000')
                trace_ids = [r[0] for r in cursor.fetchall()]
            copy_seconds, copy_rows = copy_baseline(schema)
            copy_eps = copy_rows / copy_seconds
            print(
                f"COPY: {copy_rows:,} rows in {copy_seconds:.2f}s = {copy_eps:,.0f} rows/s (server-side, same tables)"
            )
            if copy_rows != events:
                print(f"note: stored rows {copy_rows:,} vs events sent {events:,} (demo duplicates are merged)")
            ratio = api_eps / copy_eps
            print(f"ratio API / COPY = {ratio:.2f}")
            if WIDGET_REQUESTS < CLIENTS:  # BENCH_WIDGET_REQUESTS=0: the batch figures alone
                print(f"RESULT ingest api_eps={api_eps:.0f} copy_eps={copy_eps:.0f} ratio={ratio:.2f} "
                      f"events={events} workers={WORKERS}")  # fmt: skip
                return 0
            print(f"widget: {WIDGET_REQUESTS:,} single-event requests from {CLIENTS} clients…", flush=True)
            widget_rps, latencies, server_cpu = widget_single_events(port, created.public_key, trace_ids)
            p50, p95, p99 = (percentile_ms(latencies, q) for q in (0.50, 0.95, 0.99))
            print(f"widget single-event requests: {widget_rps:,.0f} requests/s, "
                  f"p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms; "
                  f"web server CPU {server_cpu * 1e6:,.0f} us a request")  # fmt: skip
            print(f"RESULT ingest api_eps={api_eps:.0f} copy_eps={copy_eps:.0f} ratio={ratio:.2f} "
                  f"widget_rps={widget_rps:.0f} widget_p95_ms={p95:.2f} events={events} workers={WORKERS}")  # fmt: skip
    finally:
        Organization.objects.get(slug=slug).delete(force_drop=True)
        Organization.objects.get(slug=warm_slug).delete(force_drop=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
