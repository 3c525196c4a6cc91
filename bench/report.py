"""Feature report benchmark: the report from rollups against the same answer from SQL over the raw
tables, on an organization filled by the demo generator (ingestion's COPY path).

Size: REPORT_BENCH_TRACES (default 1,000,000; the issue's 10M takes long on a small machine, so it
is a knob). Prints p50/p95 of the 30-day feature report for support-copilot grouped by prompt
version, by customer and by a metadata segment (auth), each beside the raw-rows answer (the same
report forced onto raw rows by a window one microsecond off midnight), then:
RESULT report traces=N p95_ms=... raw_p95_ms=... ratio=...

REPORT_BENCH_KEEP=1 keeps the loaded organization (slug bench-report-keep-N) and reuses it on the
next run of the same size, so repeated runs time the report without reloading (the demo's
30 days end at load time: reuse it the same day).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

from config.embedded_db import ensure_database_url

ensure_database_url()  # settings start nothing: the embedded PostgreSQL is the entry point's job

import django  # noqa: E402

django.setup()

from evaluation.reports.selectors import Grouping, Window, feature_get, feature_report, window_from  # noqa: E402
from feedback.demo import demo_load  # noqa: E402
from feedback.models import Trace  # noqa: E402
from tenants.models import Organization  # noqa: E402
from tenants.schema import activate_public, activate_tenant  # noqa: E402
from tenants.services import organization_create  # noqa: E402

TRACES = int(os.environ.get("REPORT_BENCH_TRACES", "1000000"))
RUNS = int(os.environ.get("REPORT_BENCH_RUNS", "20"))
RAW_RUNS = int(os.environ.get("REPORT_BENCH_RAW_RUNS", "5"))
KEEP = os.environ.get("REPORT_BENCH_KEEP", "") == "1"
GROUPINGS = ("prompt_version", "customer_id", "metadata.auth")


def timed(fn: object, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - start) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    slug = f"bench-report-keep-{TRACES}" if KEEP else f"bench-report-{uuid.uuid4().hex[:8]}"
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
            print(f"loading {TRACES:,} demo traces over 30 days into {slug} (ingestion's COPY path)…", flush=True)
            stats = demo_load(traces=TRACES, days=30, log=lambda line: print(line, flush=True))
            traces = Trace.objects.count()  # the demo's traces plus the host page's few, as on reuse
            print(f"loaded {stats['traces']:,.0f} traces, {stats['feedbacks']:,.0f} feedback, "
                  f"{stats['outcomes']:,.0f} outcomes, {stats['partitions']:,.0f} rollup partitions "
                  f"in {stats['seconds']:.0f}s", flush=True)  # fmt: skip
        feature = feature_get("support-copilot")
        window = window_from()
        raw_window = Window(window.since + timedelta(microseconds=1), window.until)
        all_fast, all_raw = [], []
        for group_by in GROUPINGS:
            grouping = Grouping.parse(group_by)
            fast = timed(lambda g=grouping: feature_report(feature=feature, window=window, grouping=g), RUNS)
            raw = timed(lambda g=grouping: feature_report(feature=feature, window=raw_window, grouping=g), RAW_RUNS)
            a = feature_report(feature=feature, window=window, grouping=grouping)
            b = feature_report(feature=feature, window=raw_window, grouping=grouping)
            assert (a["source"], b["source"]) == ("rollups", "raw")
            same = [g["traces"] for g in a["groups"]] == [g["traces"] for g in b["groups"]]
            print(f"{group_by:>15}: rollups p50={pct(fast, .5):.1f} ms p95={pct(fast, .95):.1f} ms | raw SQL "
                  f"p50={pct(raw, .5):.0f} ms p95={pct(raw, .95):.0f} ms | groups={len(a['groups'])} "
                  f"same traces per group: {same}", flush=True)  # fmt: skip
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
