"""Feature report benchmark: the report from rollups against the same answer from SQL over the raw
tables, on an organization filled by the demo generator (ingestion's COPY path).

Size: REPORT_BENCH_TRACES (default 1,000,000). Prints p50/p95 of the 30-day feature report for
support-copilot grouped by prompt version, by customer and by a metadata segment (auth), each beside
the raw-rows answer (the same report forced onto raw rows by a window one microsecond off midnight),
and whether every figure of the two answers agrees (sums to 1e-9 relative), then:
RESULT report traces=N p95_ms=... raw_p95_ms=... ratio=...

Beyond REPORT_BENCH_BASE traces (default 1,000,000) the generator alone would take an hour on a
small machine, so the organization is grown in SQL: the generator loads BASE traces through
ingestion, then each copy k = 1..TRACES/BASE - 1 re-inserts every base trace, span, feedback event
and outcome in the same schema (one transaction per copy) with new IDs: trace, outcome and session
IDs get the suffix ``~r<k>`` and feedback events a new event_id (md5 of the old one and the suffix).
Customers and users stay the generator's (~40 customers of Zipf-like sizes, as the generator makes
at any size: 10M traces is 10x the traffic per customer); REPORT_BENCH_NEW_CUSTOMERS=1 suffixes
them too, so each copy is a new population (~400 customers at 10M, slug ...-new-customers): a
customer grouping 10x as wide and 10x the rollup rows. Sessions are always new (a copy's traces
start when the base's do, and one shared session would hand all copies' session outcomes to one
trace). Timestamps, days, versions, variants, metadata, tokens and costs are kept, latency and TTFT
jittered within +-5% (exact copies would fall in the base's sketch buckets, a sketch as small at 10M
as at 1M): every copy lies in the same 30 days and the groups keep the generator's shape. Then
every copied (day, feature) partition is marked dirty the way ingestion marks it
(feedback.services.shared.mark_dirty) and recomputed by feedback.rollups.rollups_refresh, as the
worker would, so rollups and raw tables agree; last, VACUUM ANALYZE (what autovacuum would have
done over a month of ingestion). Spend and usage counters (billing) are not copied: the report
does not read them.

REPORT_BENCH_RAW_RUNS (default 5; 1 from 5M traces on, where one raw answer takes over two minutes
on a 2-core machine) sets how often the raw answer is timed.
REPORT_BENCH_KEEP=1 keeps the loaded organization (slug bench-report-keep-N) and reuses it on the
next run of the same size (an interrupted copy step resumes with the missing copies), so repeated
runs time the report without reloading (the demo's 30 days end at load time: reuse it the same day).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

from config.embedded_db import ensure_database_url

ensure_database_url()  # settings start nothing: the embedded PostgreSQL is the entry point's job

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.db.models import Model  # noqa: E402

from evaluation.reports.selectors import Grouping, Window, feature_get, feature_report, window_from  # noqa: E402
from feedback.demo import demo_load  # noqa: E402
from feedback.models import FeedbackEvent, Outcome, Span, Trace  # noqa: E402
from feedback.rollups import rollups_refresh  # noqa: E402
from feedback.services.shared import mark_dirty  # noqa: E402
from feedback.services.tables import Partition  # noqa: E402
from tenants.models import Organization  # noqa: E402
from tenants.schema import activate_public, activate_tenant  # noqa: E402
from tenants.services import organization_create  # noqa: E402

TRACES = int(os.environ.get("REPORT_BENCH_TRACES", "1000000"))
BASE = min(TRACES, int(os.environ.get("REPORT_BENCH_BASE", "1000000")))
COPIES = max(1, round(TRACES / BASE))  # the generator's BASE traces and COPIES - 1 copies of them
RUNS = int(os.environ.get("REPORT_BENCH_RUNS", "20"))
RAW_RUNS = int(os.environ.get("REPORT_BENCH_RAW_RUNS", "5" if TRACES < 5_000_000 else "1"))
KEEP = os.environ.get("REPORT_BENCH_KEEP", "") == "1"
NEW_CUSTOMERS = os.environ.get("REPORT_BENCH_NEW_CUSTOMERS", "") == "1"
GROUPINGS = ("prompt_version", "customer_id", "model", "metadata.auth")


# --- growing the organization in SQL: copies of the generator's traces with new IDs -----------------


def _suffixed(column: str) -> str:
    return f"CASE WHEN {column} = '' THEN {column} ELSE {column} || %(sfx)s END"


# People: the generator's customers and users (as it would make them at any size), or with
# REPORT_BENCH_NEW_CUSTOMERS=1 new ones per copy. Sessions are always new: a copy's traces start when the
# base's do, and a shared session would hand every copy's session outcomes to one copy's trace.
_PEOPLE = ("customer_id", "user_id") if NEW_CUSTOMERS else ()
# Latencies: each copy's within +-5% of the base's (to 0.1 ms, as the generator rounds), or every copy
# would land in the base's sketch buckets and a day's sketch would hold as few buckets at 10M as at 1M
# (10x independent draws fill more: 1,242 daily rows of support-copilot hold ~91k latency buckets
# with exact copies).
_JITTER = "round(({c} * exp((random() - 0.5) * 0.1))::numeric, 1)::float8"
# Per table: the column naming a row's trace (a base row's has no copy mark) and the columns a copy
# gives new values; every other column is copied as it is.
_COPIED: tuple[tuple[type[Model], str, dict[str, str]], ...] = (
    (Trace, "trace_id", {**{c: _suffixed(c) for c in ("trace_id", "session_id", *_PEOPLE)},
                         "latency_ms": _JITTER.format(c="latency_ms"), "ttft_ms": _JITTER.format(c="ttft_ms")}),
    (Span, "trace_id", {"trace_id": _suffixed("trace_id")}),
    (FeedbackEvent, "trace_id", {"event_id": "md5(event_id::text || %(sfx)s)::uuid",
                                 **{c: _suffixed(c) for c in ("trace_id", "session_id", *_PEOPLE)
                                    if c != "customer_id"}}),
    (Outcome, "outcome_id", {c: _suffixed(c) for c in ("outcome_id", "trace_id", "attributed_trace_id",
                                                       "session_id", *_PEOPLE) if c != "user_id"}),
)  # fmt: skip
COPY_MARK = "~r"


def _base_ids() -> dict[str, int]:
    """Per table, the highest id of the generator's rows (copies are inserted after them)."""
    out = {}
    with connection.cursor() as cursor:
        for model, ident, _ in _COPIED:
            table = model._meta.db_table
            cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table} WHERE strpos({ident}, %s) = 0", [COPY_MARK])
            out[table] = cursor.fetchone()[0]
    return out


def grow(copies: int) -> None:
    """Add copies 1..copies-1 of the generator's rows that are missing (one transaction each, so a
    copy is all there or not at all), mark their partitions dirty as ingestion does, then refresh
    the rollups as the worker does and VACUUM ANALYZE."""
    base = _base_ids()
    last = base["feedback_trace"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT trace_id FROM feedback_trace WHERE id <= %s ORDER BY id LIMIT 1", [last])
        probe = cursor.fetchone()[0]
        cursor.execute("SELECT DISTINCT day, feature_id FROM feedback_trace WHERE id <= %s", [last])
        partitions = [Partition(day, feature) for day, feature in cursor.fetchall()]
    added = False
    for k in range(1, copies):
        sfx = f"{COPY_MARK}{k}"
        if Trace.objects.filter(trace_id=probe + sfx).exists():
            continue
        started = time.perf_counter()
        rows = []
        with transaction.atomic(), connection.cursor() as cursor:
            for model, _, rules in _COPIED:
                table = model._meta.db_table
                columns = [f.column for f in model._meta.concrete_fields if not f.primary_key]
                names = ", ".join(connection.ops.quote_name(c) for c in columns)
                values = ", ".join(rules.get(c, connection.ops.quote_name(c)) for c in columns)
                cursor.execute(
                    f"INSERT INTO {table} ({names}) SELECT {values} FROM {table} WHERE id <= %(base)s",
                    {"sfx": sfx, "base": base[table]},
                )
                rows.append(f"{cursor.rowcount:,} {table.removeprefix('feedback_')}")
            mark_dirty(cursor, partitions)
        added = True
        print(f"  copy {k}/{copies - 1}: {', '.join(rows)} in {time.perf_counter() - started:.0f}s", flush=True)
    started = time.perf_counter()
    done = 0
    while step := rollups_refresh(limit=20):
        done += step
        print(f"  rollups: {done} partitions recomputed ({time.perf_counter() - started:.0f}s)", flush=True)
    if added:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for model, _, _ in _COPIED:
                cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
            cursor.execute(
                "VACUUM ANALYZE feedback_dailyrollup, feedback_versionrollup, feedback_modelrollup, "
                "feedback_segmentrollup"
            )
        print(f"  vacuum analyze: {time.perf_counter() - started:.0f}s", flush=True)


# --- timing ----------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    """Milliseconds per run, and the last run's answer."""
    out, answer = [], None
    for _ in range(runs):
        start = time.perf_counter()
        answer = fn()
        out.append((time.perf_counter() - start) * 1000)
    return out, answer


def disagreement(a: Any, b: Any, where: str = "") -> str:
    """Where two reports' figures differ ('' when every figure agrees; sums to 1e-9 relative: the
    rollups and the raw rows add the same numbers in different orders)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{where}: keys {sorted(a.keys() ^ b.keys())}"
        return next((d for k in a if (d := disagreement(a[k], b[k], f"{where}.{k}"))), "")
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} vs {len(b)} items"
        pairs = enumerate(zip(a, b, strict=True))
        return next((d for i, (x, y) in pairs if (d := disagreement(x, y, f"{where}[{i}]"))), "")
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return "" if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else f"{where}: {a} vs {b}"
    return "" if a == b else f"{where}: {a!r} vs {b!r}"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    kind = f"{TRACES}-new-customers" if NEW_CUSTOMERS and COPIES > 1 else f"{TRACES}"
    slug = f"bench-report-keep-{kind}" if KEEP else f"bench-report-{uuid.uuid4().hex[:8]}"
    kept = Organization.objects.filter(slug=slug).first() if KEEP else None
    try:
        if kept is not None:
            activate_tenant(kept)
            traces = Trace.objects.count()
            print(f"reusing {slug}: {traces:,} traces", flush=True)
        else:
            created = organization_create(slug=slug, name="Bench report", owner_email=f"bench@{slug}.test",
                                          owner_password=uuid.uuid4().hex, allowed_origins=[])  # fmt: skip
            activate_tenant(created.organization)
            print(f"loading {BASE:,} demo traces over 30 days into {slug} (ingestion's COPY path)…", flush=True)
            stats = demo_load(traces=BASE, days=30, log=lambda line: print(line, flush=True))
            traces = Trace.objects.count()  # the demo's traces plus the host page's few, as on reuse
            print(f"loaded {stats['traces']:,.0f} traces, {stats['feedbacks']:,.0f} feedback, "
                  f"{stats['outcomes']:,.0f} outcomes, {stats['partitions']:,.0f} rollup partitions "
                  f"in {stats['seconds']:.0f}s", flush=True)  # fmt: skip
        if COPIES > 1 and traces < TRACES:  # a kept organization grown before is not rescanned
            started = time.perf_counter()
            print(f"growing to {COPIES} x the generator's traces in SQL (new IDs, same days)…", flush=True)
            grow(COPIES)
            traces = Trace.objects.count()
            print(f"grown to {traces:,} traces in {time.perf_counter() - started:.0f}s", flush=True)
        feature = feature_get("support-copilot")
        window = window_from()
        raw_window = Window(window.since + timedelta(microseconds=1), window.until)
        all_fast, all_raw = [], []
        for group_by in GROUPINGS:
            grouping = Grouping.parse(group_by)
            fast, a = timed(partial(feature_report, feature=feature, window=window, grouping=grouping), RUNS)
            raw, b = timed(partial(feature_report, feature=feature, window=raw_window, grouping=grouping), RAW_RUNS)
            assert (a["source"], b["source"]) == ("rollups", "raw")
            differ = disagreement({k: a[k] for k in ("total", "groups")}, {k: b[k] for k in ("total", "groups")})
            print(f"{group_by:>15}: rollups p50={pct(fast, .5):.1f} ms p95={pct(fast, .95):.1f} ms | raw SQL "
                  f"p50={pct(raw, .5):.0f} ms p95={pct(raw, .95):.0f} ms | groups={len(a['groups'])} "
                  f"every figure equal: {differ or 'yes'}", flush=True)  # fmt: skip
            all_fast += fast
            all_raw += raw
        p95, raw_p95 = pct(all_fast, 0.95), pct(all_raw, 0.95)
        print(f"RESULT report traces={traces} p95_ms={p95:.1f} raw_p95_ms={raw_p95:.0f} "
              f"ratio={p95 / raw_p95:.4f} p50_ms={statistics.median(all_fast):.1f}")  # fmt: skip
        return 0
    finally:
        activate_public()
        if not KEEP:
            Organization.objects.get(slug=slug).delete(force_drop=True)


if __name__ == "__main__":
    sys.exit(main())
