"""Calibration report benchmark: one judge with 2,000 human labels and 1M scored traces, the whole
refresh a label batch triggers (evaluation.services.calibration_refresh.calibration_snapshot_take:
the calibration report, the feature's success estimate and the snapshot row), timed end to end.

1. Creates an organization of its own with one feature, a lenient continuous external judge
   (scores in [0, 1], passes at 0.5) and a binary rubric; loads BENCH_SCORED traces of that feature
   over the last 20 days (as wide as the demo's: input, output, model, tokens, customer, metadata),
   one score per trace, and BENCH_LABELS uniform-audit queue labels on scored traces, all straight
   with COPY (no ingestion path: it is not what is measured).
2. Takes a snapshot BENCH_RUNS times (after one warm-up), and times where each one goes: every
   selector and statistic the report calls, plus the rest (snapshot write, Python glue).
3. Checks the numbers against the previous run of the same size and seed (.var/), to 1e-9, so a
   speed change that moves a number shows.

Ends with: RESULT calibration report_ms=<p50> p95_ms=... labels=... scored=...

BENCH_KEEP=1 keeps the loaded organization (slug bench-calibration-keep-<scored>) and reuses it on
the next run of the same size (the success window is the last 30 days: reuse it within ~10 days).
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

from config.embedded_db import ensure_database_url  # noqa: E402

ensure_database_url()  # settings start nothing: the embedded PostgreSQL is the entry point's job

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.db.models import Model  # noqa: E402

from evaluation.judges.versions import JudgeVersionSpec  # noqa: E402
from evaluation.models import CalibrationTarget, Label, Rubric, Score  # noqa: E402
from evaluation.services import calibration as calibration_service  # noqa: E402
from evaluation.services import calibration_refresh  # noqa: E402
from evaluation.services.judges import judge_create  # noqa: E402
from feedback.demo import HOST_PAGE_TRACES  # noqa: E402
from feedback.models import Feature, Trace  # noqa: E402
from tenants.models import Organization  # noqa: E402
from tenants.schema import activate_public, activate_tenant  # noqa: E402
from tenants.services import organization_create  # noqa: E402

LABELS = int(os.environ.get("BENCH_LABELS", "2000"))
SCORED = int(os.environ.get("BENCH_SCORED", "1000000"))
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
SEED = int(os.environ.get("BENCH_SEED", "10"))
KEEP = os.environ.get("BENCH_KEEP", "") == "1"
GOAL_MS = 2000.0
TRUE_RATE = 0.7  # share of traces a human calls good
CHUNK = 100_000
LAST = ROOT / ".var" / f"bench-calibration-{SCORED}-{LABELS}-{SEED}.json"


# --- Loading -----------------------------------------------------------------------------------


def _copy_text(value: Any) -> str:
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        value = json.dumps(value)
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def copy_rows(model: type[Model], columns: list[str], lines: Iterable[str]) -> None:
    """COPY tab-separated ``lines`` holding ``columns`` into the model's table; every other NOT NULL
    column without a database default gets the model field's default (so the loader survives
    columns added by later migrations)."""
    table = model._meta.db_table
    fields = {f.column: f for f in model._meta.concrete_fields}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s AND is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO'",
            [table],
        )
        required = [name for (name,) in cursor.fetchall() if name not in columns]
        extra = [_copy_text(fields[name].get_default()) for name in required]
        suffix = "".join("\t" + value for value in extra)
        statement = f"COPY {table} ({', '.join(columns + required)}) FROM STDIN"
        with cursor.copy(statement) as copy:
            buffer = io.StringIO()
            for count, line in enumerate(lines, 1):
                buffer.write(line)
                buffer.write(suffix)
                buffer.write("\n")
                if count % CHUNK == 0:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())


def load(now: datetime) -> CalibrationTarget:
    """The feature, judge, rubric, traces, scores and labels; returns the calibration target."""
    rng = np.random.default_rng(SEED)
    feature = Feature.objects.create(key="bench-calibration", name="Bench calibration")
    judge = judge_create(
        name="bench-lenient", spec=JudgeVersionSpec(kind="external", scale="continuous"), feature=feature
    )
    version = judge.current_version
    assert version is not None
    rubric = Rubric.objects.create(name="helpful", version=1, scale="binary")

    # Trace IDs are random (as clients send them), so a trace's row order is not its ID order.
    ids = [f"{a:016x}{b:016x}" for a, b in rng.integers(0, 2**63, size=(SCORED, 2)).tolist()]
    assert len(set(ids)) == SCORED
    started = [now - timedelta(seconds=s) for s in np.sort(rng.uniform(0, 20 * 86400, SCORED))[::-1].tolist()]
    good = rng.random(SCORED) < TRUE_RATE
    # Lenient: a good output scores Beta(8, 2) (passes 98%), a bad one Beta(3, 2) (still passes 69%).
    raw = np.where(good, rng.beta(8, 2, SCORED), rng.beta(3, 2, SCORED)).round(4)

    # Traces as wide as the demo's (input, output, model, tokens, customer, metadata): the scope
    # filter joins them, so their width is part of what a report costs.
    texts = [
        "\t".join(_copy_text(trace[key]) for key in ("input", "output")) + "\tgpt-4o-mini\topenai"
        for trace in HOST_PAGE_TRACES
    ]
    customers = [f"cust-{c:03d}" for c in range(200)]
    t0 = time.perf_counter()
    copy_rows(
        Trace,
        ["trace_id", "feature_id", "started_at", "day", "input", "output", "model", "provider", "input_tokens",
         "output_tokens", "latency_ms", "customer_id", "metadata"],
        (
            f"{ids[i]}\t{feature.id}\t{started[i].isoformat()}\t{started[i].date()}\t{texts[i % 3]}\t{850 + i % 300}\t"
            f"{90 + i % 200}\t{1240.0 + i % 900}\t{customers[i % 200]}\t"
            f'{{"auth": "{"sso" if i % 4 else "password"}", "plan": "{"pro" if i % 3 else "team"}"}}'
            for i in range(SCORED)
        ),
    )  # fmt: skip
    print(f"  {SCORED:,} traces in {time.perf_counter() - t0:.1f}s", flush=True)
    t0 = time.perf_counter()
    stamp = now.isoformat()
    copy_rows(
        Score,
        ["score_id", "trace_id", "judge_id", "judge_version_id", "status", "raw_score", "score", "passed",
         "sampling_design", "feature_id", "trace_day", "created_at", "scored_at"],
        (
            f"{ids[i]}-s\t{ids[i]}\t{judge.id}\t{version.id}\tok\t{r!r}\t{r!r}\t{'t' if r >= 0.5 else 'f'}\t"
            f"external\t{feature.id}\t{started[i].date()}\t{stamp}\t{stamp}"
            for i, r in enumerate(raw.tolist())
        ),
    )  # fmt: skip
    print(f"  {SCORED:,} scores in {time.perf_counter() - t0:.1f}s", flush=True)
    labelled = rng.choice(SCORED, size=LABELS, replace=False)
    p = LABELS / SCORED
    copy_rows(
        Label,
        ["label_id", "trace_id", "rubric_id", "value", "source", "sampling_design", "stratum",
         "inclusion_probability", "reviewer", "occurred_at", "created_at"],
        (
            f"{ids[i]}-l\t{ids[i]}\t{rubric.id}\t{1.0 if good[i] else 0.0}\tqueue\tuniform\t\t{p!r}\t"
            f"reviewer{k % 5}@bench.test\t{stamp}\t{stamp}"
            for k, i in enumerate(labelled.tolist())
        ),
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE feedback_trace; ANALYZE evaluation_score; ANALYZE evaluation_label")
    return CalibrationTarget.objects.create(judge_version=version, rubric=rubric, feature=feature)


# --- Timing ------------------------------------------------------------------------------------


class Steps:
    """Wall time per selector and statistic the report calls (wrapped where the services look them
    up), summed over one snapshot."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = defaultdict(float)
        self.depth = 0

    def wrap(self, module: Any, name: str) -> None:
        fn = getattr(module, name)

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:  # a step inside another step is counted once, by the outer one
                    self.ms[f"{module.__name__.rsplit('.', 1)[-1]}.{name}"] += (time.perf_counter() - start) * 1000

        setattr(module, name, timed)

    def install(self) -> None:
        # Everything the calibration service and the snapshot refresh call from the selectors and
        # evaluation.stats (the refresh reads the feature's score summaries itself, in one pass).
        for module in (calibration_service, calibration_refresh):
            for name, value in list(vars(module).items()):
                home = getattr(value, "__module__", "") or ""
                if (
                    callable(value)
                    and not isinstance(value, type)
                    and home.startswith(("evaluation.selectors", "evaluation.stats"))
                ):
                    self.wrap(module, name)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * (len(ordered) - 1)))]


def numbers(value: Any, path: str = "") -> dict[str, Any]:
    """Every number in a report, by its path (computed_at and the window left out: they move)."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in ("computed_at", "window"):
                out.update(numbers(item, f"{path}.{key}"))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.update(numbers(item, f"{path}[{i}]"))
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        out[path] = value
    elif isinstance(value, int | float):
        out[path] = float(value)
    return out


def compare(now_numbers: dict[str, Any]) -> str:
    if not LAST.exists():
        return "no earlier run to compare with"
    before = json.loads(LAST.read_text())
    if set(before) != set(now_numbers):
        return f"DIFFERENT keys: {sorted(set(before) ^ set(now_numbers))[:5]}"
    moved = []
    for key, old in before.items():
        new = now_numbers[key]
        if isinstance(old, float) and isinstance(new, float):
            if not (old == new or abs(old - new) <= 1e-9 * max(1.0, abs(old))):
                moved.append(f"{key}: {old!r} -> {new!r}")
        elif old != new:
            moved.append(f"{key}: {old!r} -> {new!r}")
    if moved:
        return f"DIFFERENT from the earlier run in {len(moved)} number(s): " + "; ".join(moved[:6])
    return f"same as the earlier run to 1e-9 ({len(before)} values)"


def main() -> int:
    now = datetime.now(UTC)
    slug = f"bench-calibration-keep-{SCORED}" if KEEP else f"bench-calibration-{uuid.uuid4().hex[:8]}"
    kept = Organization.objects.filter(slug=slug).first() if KEEP else None
    try:
        if kept is not None:
            activate_tenant(kept)
            target = CalibrationTarget.objects.select_related("judge_version__judge", "rubric", "feature").get()
            print(f"reusing {slug}", flush=True)
        else:
            created = organization_create(slug=slug, name="Bench calibration", owner_email=f"bench@{slug}.test",
                                          owner_password=uuid.uuid4().hex, allowed_origins=[])  # fmt: skip
            activate_tenant(created.organization)
            print(f"loading {SCORED:,} scored traces and {LABELS:,} uniform-audit labels into {slug} (COPY)…",
                  flush=True)  # fmt: skip
            t0 = time.perf_counter()
            target = load(now)
            print(f"loaded in {time.perf_counter() - t0:.0f}s", flush=True)
            target = CalibrationTarget.objects.select_related("judge_version__judge", "rubric", "feature").get()

        steps = Steps()
        steps.install()
        calibration_refresh.calibration_snapshot_take(target)  # warm-up: caches, imports, plans
        totals: list[float] = []
        per_step: dict[str, list[float]] = defaultdict(list)
        snapshot = None
        for _ in range(RUNS):
            steps.ms.clear()
            start = time.perf_counter()
            snapshot = calibration_refresh.calibration_snapshot_take(target)
            total = (time.perf_counter() - start) * 1000
            totals.append(total)
            for name, ms in steps.ms.items():
                per_step[name].append(ms)
            per_step["(rest: snapshot write, glue)"].append(total - sum(steps.ms.values()))
        assert snapshot is not None
        report, success = snapshot.report, snapshot.success or {}

        print(f"\n{'where the time goes (median of ' + str(RUNS) + ' runs)':>52}   ms    share")
        p50 = statistics.median(totals)
        for name, values in sorted(per_step.items(), key=lambda kv: -statistics.median(kv[1])):
            ms = statistics.median(values)
            if ms >= 0.5:
                print(f"{name:>52} {ms:7.1f} {ms / p50:6.1%}")
        estimate, naive = success.get("estimate", {}), success.get("judge_uncorrected", {})
        print(f"\nreport: n_labels={report['n_labels']} n_scored={report['n_scored']} verdict={report['verdict']} "
              f"kappa={report['agreement'].get('kappa', {}).get('value')}")  # fmt: skip
        print(f"success: judge uncorrected {naive.get('value')} (n={naive.get('n')}), estimate "
              f"{estimate.get('value')} [{estimate.get('low')}, {estimate.get('high')}] by {estimate.get('method')}, "
              f"lambda {estimate.get('lambda')}, effective labels {estimate.get('effective_labels')}")  # fmt: skip
        found = numbers({"report": report, "success": success})
        print(f"numbers: {compare(found)}")
        LAST.parent.mkdir(parents=True, exist_ok=True)
        LAST.write_text(json.dumps(found, sort_keys=True))
        runs = " ".join(f"{t:.0f}" for t in totals)
        p95 = pct(totals, 0.95)
        print(f"\nsnapshot ms per run: {runs}; p50 {p50:.0f} p95 {p95:.0f} min {min(totals):.0f} "
              f"max {max(totals):.0f} (goal < {GOAL_MS:.0f}: {'met' if p95 < GOAL_MS else 'NOT met'}; "
              "a shared machine: expect noise)")  # fmt: skip
        print(f"RESULT calibration report_ms={p50:.0f} p95_ms={p95:.0f} labels={report['n_labels']} "
              f"scored={report['n_scored']} runs={RUNS}")  # fmt: skip
        return 0
    finally:
        activate_public()
        if not KEEP:
            organization = Organization.objects.filter(slug=slug).first()
            if organization is not None:
                organization.delete(force_drop=True)


if __name__ == "__main__":
    sys.exit(main())
