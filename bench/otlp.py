"""OTLP ingestion benchmark: the OpenTelemetry SDK exporter's own payloads against the REST batch path.

1. Builds GenAI traces of 3 spans (an agent step carrying the candor.* attributes, its chat call
   with gen_ai.* model, provider, tokens and messages, and a retrieval) with the official SDK,
   and encodes them exactly as its OTLP/HTTP exporter does (opentelemetry-exporter-otlp-proto-common's
   encoder, protobuf, 512 spans a request as the BatchSpanProcessor sends them, in end order).
2. Starts the web server (config/serve.py), warms its workers up on a third organization, then sends
   the REST benchmark's events (bench/ingest.py) to one fresh organization and the OTLP payloads to
   another, each from 4 concurrent clients, the two taking turns in 3 rounds, the order rotating every round
   (with step 4's path: each goes first, second and third once).
3. Checks every span and trace was stored, and prints spans/s beside the REST path's events/s.
   Also prints the CPU each path cost the web server and PostgreSQL per item (where the gap lies).
4. Also sends the very same spans as REST trace batches (each export mapped to its traces, with
   their spans, as POST /api/v1/traces items) to one more organization in the same rounds, and
   prints those spans/s too: the like-for-like comparison. A REST "event" of step 2 is one row
   without spans; an OTLP span carries attributes and messages to map, and a row of its own.

Ends with: RESULT otlp spans_per_s=... rest_eps=... ratio=... rest_spans_per_s=... like_for_like=... and the CPU
per item (rest_web_us, rest_db_us, otlp_web_us, otlp_db_us).
BENCH_OTLP_TRACES (default 20,000 traces = 60,000 spans), BENCH_EVENTS, BENCH_ROUNDS (default 3) and BENCH_WORKERS
are knobs.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.db import connection
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from bench._server import (
    balanced_connections,
    free_port,
    postgres_cpu_seconds,
    server_cpu_seconds,
    web_server,
    worker_connections,
)
from bench.ingest import CLIENTS, WORKERS, build_batches, post_all, rest_warm_up_requests, warm_up
from feedback.otlp import otlp_parse
from tenants.models import Organization
from tenants.services import organization_create

TRACES = int(os.environ.get("BENCH_OTLP_TRACES", "20000"))
SPANS_PER_TRACE = 3
# The BatchSpanProcessor's default max_export_batch_size: what one exporter request carries.
SPANS_PER_REQUEST = 512
PATH = "/api/v1/otlp/v1/traces"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
T = TypeVar("T")


def build_payloads() -> tuple[list[bytes], int]:
    """TRACES GenAI traces recorded by the SDK, encoded as its exporter encodes them."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "support-app", "deployment.environment": "bench"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench.otlp", "1.0")
    rng = random.Random(7)
    now = time.time_ns()
    day = 86_400 * 10**9
    for i in range(TRACES):
        start = now - rng.randrange(1, 29) * day - rng.randrange(day)
        feature = ("support-copilot", "summarize", "search-answer")[i % 3]
        with tracer.start_as_current_span(
            "answer_question", start_time=start, end_on_exit=False,
            attributes={"candor.feature": feature, "candor.prompt_version": f"{feature}-v{1 + i % 4}",
                        "candor.customer_id": f"cus_{i % 500:04d}", "candor.user_id": f"user_{i % 5000}",
                        "session.id": f"sess_{i // 3}"},
        ) as root:  # fmt: skip
            retrieval = tracer.start_span(
                "retrieve documents", start_time=start + 1_000_000,
                attributes={"db.system": "postgresql", "retrieval.documents": 4, "retrieval.query": f"question {i}"},
            )  # fmt: skip
            retrieval.end(end_time=start + 9_000_000)
            chat = tracer.start_span(
                "chat gpt-4o-mini", kind=SpanKind.CLIENT, start_time=start + 10_000_000,
                attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.response.id": f"chatcmpl-{i}",
                    "gen_ai.usage.input_tokens": 200 + rng.randrange(800),
                    "gen_ai.usage.output_tokens": 50 + rng.randrange(300),
                    "gen_ai.response.finish_reasons": ("stop",), "server.address": "api.openai.com",
                    "gen_ai.input.messages": json.dumps([
                        {"role": "system", "parts": [{"type": "text", "content": "You answer support questions."}]},
                        {"role": "user", "parts": [{"type": "text", "content": f"How do I reset my password? #{i}"}]},
                    ]),
                    "gen_ai.output.messages": json.dumps([
                        {"role": "assistant", "finish_reason": "stop",
                         "parts": [{"type": "text", "content": f"Open Settings, then Security, then Reset. #{i}"}]},
                    ]),
                },
            )  # fmt: skip
            chat.end(end_time=start + 10_000_000 + rng.randrange(200, 3000) * 1_000_000)
            root.end(end_time=start + 3_500_000_000)
    # Children end before their root: the exporter sends spans in the order they ended.
    spans: list[ReadableSpan] = list(exporter.get_finished_spans())
    payloads = [
        encode_spans(spans[i : i + SPANS_PER_REQUEST]).SerializeToString()
        for i in range(0, len(spans), SPANS_PER_REQUEST)
    ]
    return payloads, len(spans)


def otlp_warm_up_requests() -> list[tuple[str, str, bytes]]:
    """The REST warm-up and one small exporter request (a trace of 3 spans with fresh IDs)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "warm-up"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench.otlp.warm-up")
    with tracer.start_as_current_span("answer", attributes={"candor.feature": "warm-up"}):
        with tracer.start_as_current_span("retrieve", attributes={"db.system": "postgresql"}):
            pass
        attributes: dict[str, str | int] = {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
                                            "gen_ai.usage.input_tokens": 3}  # fmt: skip
        with tracer.start_as_current_span("chat", attributes=attributes):
            pass
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    return [*rest_warm_up_requests(), (PATH, "application/x-protobuf", body)]


def post_otlp(
    port: int, key: str, payloads: list[bytes], connections: list[http.client.HTTPConnection] | None = None
) -> tuple[float, list[str]]:
    """Every payload from CLIENTS concurrent exporters, on ``connections`` if given (kept open), else on their own;
    problems are non-200 answers or refused spans."""
    queue = list(payloads)
    lock = threading.Lock()
    problems: list[str] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"}

    def client(given: http.client.HTTPConnection | None) -> None:
        conn = given or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not queue:
                    break
                body = queue.pop(0)
            conn.request("POST", PATH, body, headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                problems.append(f"{response.status} {payload[:300]!r}")
                continue
            answer = ExportTraceServiceResponse.FromString(payload)
            if answer.partial_success.rejected_spans or answer.partial_success.error_message:
                problems.append(f"partial success: {answer.partial_success}")
        if given is None:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(connections[n] if connections else None,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, problems


def share(requests: list[T], turn: int) -> list[T]:
    """The turn-th of ROUNDS consecutive slices, in sending order (an export continues the previous one's traces)."""
    return requests[turn * len(requests) // ROUNDS : (turn + 1) * len(requests) // ROUNDS]


def stored(schema: str) -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT (SELECT count(*) FROM "{schema}".feedback_span), '
                       f'(SELECT count(*) FROM "{schema}".feedback_trace)')  # fmt: skip
        spans, traces = cursor.fetchone()
    return int(spans), int(traces)


def main() -> int:
    print(f"recording {TRACES:,} GenAI traces of {SPANS_PER_TRACE} spans with the OpenTelemetry SDK…", flush=True)
    payloads, spans = build_payloads()
    print(f"{spans:,} spans in {len(payloads)} exporter requests ({sum(map(len, payloads)) / 1e6:.1f} MB protobuf)")
    # The same exports as REST trace batches: what the OTLP endpoint maps each one to, as JSON.
    same = [("trace", json.dumps({"batch": otlp_parse(body, "application/x-protobuf")}).encode()) for body in payloads]
    batches, events = build_batches()
    slugs = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    rest, otlp, warm, alike = (organization_create(slug=slug, owner_email=f"bench@{slug}.test") for slug in slugs)
    try:
        with web_server(free_port(), workers=WORKERS) as base:
            port = int(base.rsplit(":", 1)[1])
            print("warming the workers up (a few small requests to another organization, not timed)…", flush=True)
            warm_up(port, warm.secret_key, otlp_warm_up_requests)
            # The two paths take turns, a share of each at a time: load from elsewhere on the machine
            # drifts over a run, and this way it weighs on both alike.
            print(f"REST: {events:,} events ({len(batches)} requests); OTLP: {spans:,} spans ({len(payloads)} "
                  f"requests); {CLIENTS} clients, in {ROUNDS} alternating rounds…", flush=True)  # fmt: skip
            # Every path on the same kept-alive connections, spread evenly over the workers (see balanced_connections).
            connections = balanced_connections(port, CLIENTS, WORKERS)
            split = " + ".join(map(str, worker_connections(port, connections)))
            print(f"the {CLIENTS} clients' connections per web server process: {split}", flush=True)
            turns: list[tuple[float, str]] = []  # each round's ratio and the path it began with
            # CPU seconds each path cost the web server and PostgreSQL (the two share this machine's cores).
            cpu = {"rest": [0.0, 0.0], "otlp": [0.0, 0.0], "alike": [0.0, 0.0]}

            def timed(path: str, send: Callable[[int, str, list[T], Any], tuple[float, list[str]]], key: str,
                      items: list[T]) -> tuple[float, list[str]]:  # fmt: skip
                web, database = server_cpu_seconds(port), postgres_cpu_seconds()
                answer = send(port, key, items, connections)
                cpu[path][0] += server_cpu_seconds(port) - web
                cpu[path][1] += postgres_cpu_seconds() - database
                return answer

            # Each path goes first, second and third in turn (the order rotates every round): what one path's
            # writes leave behind for PostgreSQL (autovacuum, a checkpoint) lands in the slot after it, and in a
            # fixed order that was always the same path's (REST before OTLP: the third round read lowest in most runs).
            sends: dict[str, tuple[Callable[[int, str, list[Any], Any], tuple[float, list[str]]], str, list[Any]]] = {
                "rest": (post_all, rest.secret_key, batches),
                "otlp": (post_otlp, otlp.secret_key, payloads),
                "alike": (post_all, alike.secret_key, same),
            }
            took = {path: 0.0 for path in sends}
            paths = list(sends)
            for turn in range(ROUNDS):
                order = paths[turn % len(paths) :] + paths[: turn % len(paths)]
                this_round: dict[str, float] = {}
                for path in order:
                    send, key, items = sends[path]
                    seconds, problems = timed(path, send, key, share(items, turn))
                    if problems:
                        print("\n".join(problems[:5]))
                        return 1
                    this_round[path] = seconds
                    took[path] += seconds
                # spans/s over events/s in this round (its share of the items: its share of the requests)
                otlp_rate = len(share(payloads, turn)) / len(payloads) * spans / this_round["otlp"]
                rest_rate = len(share(batches, turn)) / len(batches) * events / this_round["rest"]
                turns.append((otlp_rate / rest_rate, order[0]))
            rest_seconds, otlp_seconds, alike_seconds = took["rest"], took["otlp"], took["alike"]
            # A connection the server closed meanwhile was opened again by http.client, to whichever process took it.
            after = " + ".join(map(str, worker_connections(port, connections)))
            if after != split:
                print(f"the connections' split moved during the rounds: {split} at first, {after} now", flush=True)
                split = f"{split}->{after}"
            rest_eps = events / rest_seconds
            print(f"REST: {events:,} events in {rest_seconds:.2f}s = {rest_eps:,.0f} events/s", flush=True)
            spans_per_s = spans / otlp_seconds
            stored_spans, stored_traces = stored(otlp.organization.schema_name)
            print(f"OTLP: {spans:,} spans in {otlp_seconds:.2f}s = {spans_per_s:,.0f} spans/s "
                  f"({stored_spans:,} spans and {stored_traces:,} traces stored)")  # fmt: skip
            if (stored_spans, stored_traces) != (spans, TRACES):
                print(f"stored {stored_spans:,} spans / {stored_traces:,} traces, sent {spans:,} / {TRACES:,}")
                return 1
            alike_spans, alike_traces = stored(alike.organization.schema_name)
            alike_per_s = spans / alike_seconds
            print(f"REST, the same spans as trace batches: {alike_per_s:,.0f} spans/s "
                  f"({alike_spans:,} spans and {alike_traces:,} traces stored)")  # fmt: skip
            if (alike_spans, alike_traces) != (spans, TRACES):
                print(f"REST stored {alike_spans:,} spans / {alike_traces:,} traces, sent {spans:,} / {TRACES:,}")
                return 1
            # Where the gap lies: CPU per item, each path's own (the web server's Python, PostgreSQL's work).
            (rest_web, rest_db), (otlp_web, otlp_db), (alike_web, alike_db) = cpu["rest"], cpu["otlp"], cpu["alike"]
            print(f"CPU per REST event: web server {rest_web / events * 1e6:.0f} us, PostgreSQL "
                  f"{rest_db / events * 1e6:.0f} us; per OTLP span: web server {otlp_web / spans * 1e6:.0f} us, "
                  f"PostgreSQL {otlp_db / spans * 1e6:.0f} us; per span by REST: web server "
                  f"{alike_web / spans * 1e6:.0f} us, PostgreSQL {alike_db / spans * 1e6:.0f} us")  # fmt: skip
            ratio = spans_per_s / rest_eps
            like = spans_per_s / alike_per_s
            print(f"ratio OTLP spans/s / REST events/s = {ratio:.2f}; like for like (same spans by REST) = {like:.2f}")
            print("round by round (the path it began with): " + ", ".join(f"{r:.2f} ({first})" for r, first in turns))
            per_item = {"rest_web_us": rest_web / events, "rest_db_us": rest_db / events,
                        "otlp_web_us": otlp_web / spans, "otlp_db_us": otlp_db / spans,
                        "rest_span_web_us": alike_web / spans, "rest_span_db_us": alike_db / spans}  # fmt: skip
            print(f"RESULT otlp spans_per_s={spans_per_s:.0f} rest_eps={rest_eps:.0f} ratio={ratio:.2f} "
                  f"rest_spans_per_s={alike_per_s:.0f} like_for_like={like:.2f} spans={spans} events={events} "
                  f"workers={WORKERS} split={split.replace(' ', '')} "
                  + " ".join(f"{k}={v * 1e6:.0f}" for k, v in per_item.items()))  # fmt: skip
    finally:
        for slug in slugs:
            Organization.objects.get(slug=slug).delete(force_drop=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
