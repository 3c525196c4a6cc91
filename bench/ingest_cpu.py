"""CPU an item, REST against OTLP, in one process: the figure bench-otlp's ratio moves with, without its noise.

bench-otlp measures throughput through the web server, and this machine's speed swings by a third from minute to
minute: its ratio moved ±8% between runs of the same code. Here the same work is done in this process, one
request at a time, with no HTTP: bench-ingest's REST batches (POST /api/v1/traces, /feedback, /outcomes,
through the services their views call) and bench-otlp's SDK exports (the mapping and otlp_ingest, as the OTLP view
calls them), one request of each in turn, to two fresh organizations. A request's CPU is its thread's
(``time.thread_time``) and its PostgreSQL backend's (from /proc), so a change of the machine's speed weighs on both
paths alike, request by request. Runs of the same code agreed within ~2% one day, ~7% another.

Each path has a thread and a database connection of its own, as each of bench-otlp's rounds sends to one
organization: on one connection taking both organizations in turn, every request changed the search_path, and
PostgreSQL (16) analyzes and plans a prepared statement again whenever the search_path differs from its last
execution's: ~1 ms more a request, more for the path with more statements (in a web server with many tenants, that
is what a connection's request to another organization than its last costs).

Ends with: RESULT ingest_cpu rest_us=... otlp_us=... ratio=... (per REST event and per OTLP span, web + PostgreSQL;
the ratio is OTLP over REST: below 1, a span costs less than an event). BENCH_OTLP_TRACES and BENCH_EVENTS size it.
What it leaves out is the web server's own part: the HTTP, the threads sharing one interpreter, concurrent requests
waiting on each other's locks (bench-otlp has those).
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
os.environ.setdefault("DJANGO_DEBUG", "0")  # as served: no query log

import django
import msgspec

from config.embedded_db import ensure_database_url

ensure_database_url()  # settings start nothing: the embedded PostgreSQL is the entry point's job
django.setup()

from django.db import connection  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from bench.ingest import build_batches  # noqa: E402
from bench.otlp import build_payloads  # noqa: E402
from feedback import services  # noqa: E402
from feedback.enums import FeedbackSource  # noqa: E402
from feedback.otlp import otlp_map  # noqa: E402
from tenants.models import Organization  # noqa: E402
from tenants.services import organization_create  # noqa: E402

# What each REST batch goes through: the service its view calls.
_REST: dict[str, Callable[[bytes], object]] = {
    "trace": lambda body: services.traces_ingest(body=body),
    "feedback": lambda body: services.feedback_ingest(body=body, source=FeedbackSource.API),
    "outcome": lambda body: services.outcomes_ingest(body=body),
}
# A first request pays for imports, prepared statements and caches once: the first few of each path are not counted.
WARM = 3


def backend_cpu(pid: int) -> float:
    """User + system CPU seconds of the PostgreSQL backend ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    print("building bench-otlp's exports and bench-ingest's batches…", flush=True)
    payloads, spans = build_payloads()
    batches, _ = build_batches()
    sizes = [len(msgspec.json.decode(body)["batch"]) for _, body in batches]
    # As the web server sets its collector (config/wsgi.py).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)
    slugs = {path: f"bench-cpu-{path}-{uuid.uuid4().hex[:6]}" for path in ("rest", "otlp")}
    orgs = {path: organization_create(slug=slug, owner_email=f"bench@{slug}.test") for path, slug in slugs.items()}
    web = {"rest": 0.0, "otlp": 0.0}
    database = {"rest": 0.0, "otlp": 0.0}
    items = {"rest": 0, "otlp": 0}
    kinds: dict[str, list[float]] = {}  # REST CPU seconds and items by kind (trace, feedback, outcome)
    # The two paths take turns request by request, spread evenly over the run (more REST requests than exports).
    steps = max(len(batches), len(payloads))
    turns: list[tuple[str, int]] = []
    sent = {"rest": -1, "otlp": -1}
    for step in range(steps):
        for path in ("rest", "otlp") if step % 2 == 0 else ("otlp", "rest"):
            index = step * len(batches if path == "rest" else payloads) // steps
            if index != sent[path]:
                sent[path] = index
                turns.append((path, index))
    turn = threading.Condition()
    done = [0]  # turns taken
    failed: list[BaseException] = []

    def ready(position: int) -> bool:
        """Whether the turn at ``position`` has come (or the other path failed)."""
        return done[0] == position or bool(failed)

    def run(path: str) -> None:
        """This path's requests, each when its turn comes, on this thread's own connection."""
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                (pid,) = cursor.fetchone()
            with schema_context(orgs[path].organization.schema_name):
                for position, (owner, index) in enumerate(turns):
                    if owner != path:
                        continue
                    with turn:
                        turn.wait_for(functools.partial(ready, position))
                    if failed:
                        return
                    db_before, web_before = backend_cpu(pid), time.thread_time()
                    if path == "rest":
                        kind, body = batches[index]
                        _REST[kind](body)
                        count = sizes[index]
                    else:
                        traces = otlp_map(payloads[index], "application/x-protobuf", max_bytes=1 << 30, refused=[])
                        services.otlp_ingest(traces=traces)
                        count = sum(len(spans_of) for _, spans_of in traces)
                    if index >= WARM:
                        cpu = (time.thread_time() - web_before, backend_cpu(pid) - db_before)
                        web[path] += cpu[0]
                        database[path] += cpu[1]
                        items[path] += count
                        if path == "rest":  # where an event's CPU goes: a trace costs more than feedback
                            kinds.setdefault(kind, [0.0, 0])
                            kinds[kind][0] += sum(cpu)
                            kinds[kind][1] += count
                    with turn:
                        done[0] += 1
                        turn.notify_all()
        except BaseException as error:
            with turn:
                failed.append(error)
                turn.notify_all()
        finally:
            connection.close()

    try:
        print(f"{len(batches)} REST batches and {len(payloads)} OTLP exports, taking turns…", flush=True)
        threads = [threading.Thread(target=run, args=(path,)) for path in ("rest", "otlp")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failed:
            raise failed[0]
        rest = (web["rest"] / items["rest"] * 1e6, database["rest"] / items["rest"] * 1e6)
        otlp = (web["otlp"] / items["otlp"] * 1e6, database["otlp"] / items["otlp"] * 1e6)
        ratio = sum(otlp) / sum(rest)
        print(f"REST: {items['rest']:,} events, {rest[0]:.1f} us of Python + {rest[1]:.1f} us of PostgreSQL an event")
        print("REST by kind: " + ", ".join(f"{kind} {seconds / count * 1e6:.1f} us ({int(count):,})"
                                           for kind, (seconds, count) in sorted(kinds.items())))  # fmt: skip
        print(f"OTLP: {items['otlp']:,} spans ({spans:,} sent), {otlp[0]:.1f} us of Python + {otlp[1]:.1f} us of "
              f"PostgreSQL a span")  # fmt: skip
        parts = f"rest_web_us={rest[0]:.1f} rest_db_us={rest[1]:.1f} otlp_web_us={otlp[0]:.1f} otlp_db_us={otlp[1]:.1f}"
        print(f"RESULT ingest_cpu rest_us={sum(rest):.1f} otlp_us={sum(otlp):.1f} ratio={ratio:.3f} {parts}")
    finally:
        for slug in slugs.values():
            Organization.objects.get(slug=slug).delete(force_drop=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
