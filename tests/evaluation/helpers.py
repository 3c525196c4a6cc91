"""Shared set-up for the judges' tests: traces through the real ingest service, judges through the services."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from evaluation.judges.scales import ScaleKind
from evaluation.judges.templates import builtin_template
from evaluation.judges.versions import JudgeVersionSpec
from evaluation.models import CalibrationSnapshot, Judge
from evaluation.services.calibration_refresh import calibration_sweep
from evaluation.services.judges import judge_create
from evaluation.services.provider_keys import provider_key_create
from feedback import services
from tests.fixtures.organizations import in_tenant, unique


def traces_post(traces: list[dict[str, Any]]) -> services.IngestResult:
    return services.traces_ingest(body=msgspec.json.encode({"batch": traces}))


def feedback_post(events: list[dict[str, Any]]) -> services.IngestResult:
    return services.feedback_ingest(body=msgspec.json.encode({"batch": events}))


def make_traces(n: int, *, feature: str | None = None, prefix: str | None = None, **extra: Any) -> list[str]:
    """n traces of one new feature, each with an input and an output; returns their IDs."""
    feature = feature or unique("feat")
    prefix = prefix or unique("tr")
    rows = [
        {
            "trace_id": f"{prefix}-{i}", "feature": feature, "prompt_version": "v1",
            "input": f"How do I reset my password for account {i}?",
            "output": f"Open Settings, choose Security, then Reset password; a link goes to your email ({i}).",
            "started_at": "2025-04-01T12:00:00Z", **extra,
        }
        for i in range(n)
    ]  # fmt: skip
    for start in range(0, n, 1000):
        result = traces_post(rows[start : start + 1000])
        assert not result.errors, result.errors
    return [row["trace_id"] for row in rows]


def thumbs_down(trace_ids: list[str]) -> None:
    feedback_post([{"event_id": str(uuid.uuid4()), "trace_id": t, "kind": "thumb", "value": -1} for t in trace_ids])


def offline_judge(name: str | None = None, template: str = "helpfulness", **kwargs: Any) -> Judge:
    return judge_create(name=name or unique("judge"), spec=builtin_template(template).spec(), **kwargs)


def llm_judge(provider: str, base_url: str, *, scale: ScaleKind = "binary", name: str | None = None) -> Judge:
    provider_key_create(provider=provider, name=unique("key"), secret="sk-test-0123456789abcdef", base_url=base_url)
    spec = JudgeVersionSpec(
        kind="llm",
        scale=scale,
        provider=provider,
        model="gpt-4o-mini" if provider == "openai" else "claude-3-5-haiku",
        prompt_template="Question: {{ input }}\nAnswer: {{ output }}\nIs the answer helpful?",
        parameters={"temperature": 0},
    )  # type: ignore[arg-type]
    return judge_create(name=name or unique("judge"), spec=spec)


def code_judge(name: str | None = None, **parameters: Any) -> Judge:
    spec = JudgeVersionSpec(kind="code", scale="binary", parameters=parameters or {"check": "length", "max_chars": 200})
    return judge_create(name=name or unique("judge"), spec=spec)


def sweep_until(predicate: Callable[[], bool], *, now: datetime | None = None) -> None:
    """Sweep until ``predicate`` holds: the session's Celery worker also sweeps (labels posted to
    the API nudge it), and a target one sweep holds is skipped by the other (SKIP LOCKED), so the
    snapshot may come from either."""
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, "no sweep refreshed it within 30 s"
        calibration_sweep(now=now)
        if not predicate():
            time.sleep(0.2)


def finished_scores_analyzed(n: int = 5000, days: int = 60) -> None:
    """``n`` scores of the current schema, finished over the last ``days`` days (ok, a few errors and
    pending), then ANALYZE: a table the planner knows to be big, for tests of which index a query takes
    (on the test database's handful of rows every plan costs alike, and the pick is chance). Call it
    inside a transaction that is rolled back."""
    from datetime import UTC, timedelta

    from django.db import connection

    from evaluation.models import Score

    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]
    Score.objects.bulk_create(
        Score(score_id=f"{run}-{i}", trace_id=f"{run}-t{i}", judge_id=0, judge_version_id=0,
              status=("error", "pending", "ok", "ok", "ok")[i % 5],
              scored_at=None if i % 5 == 1 else now - timedelta(days=days) + timedelta(days=days) * i / n)
        for i in range(n)
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE evaluation_score")


def gating_judge_on(
    api: Any, org: Any, traces: list[str], *, judge: str, rubric: str, passed: Any, good: Any, audited: Any
) -> CalibrationSnapshot:
    """The judge's binary verdicts on ``traces`` (``passed``) and humans' labels (``good``) on the ``audited``
    ones as a uniform audit, through the API; returns the calibration snapshot once the sweep made it gating."""
    scores = [{"score_id": unique("sc"), "trace_id": t, "name": judge, "value": int(passed[i]), "scale": "binary"}
              for i, t in enumerate(traces)]  # fmt: skip
    labels = [{"label_id": unique("lb"), "trace_id": traces[i], "rubric": rubric, "value": int(good[i]),
               "sampling": {"design": "uniform", "inclusion_probability": len(audited) / len(traces)}}
              for i in audited]  # fmt: skip
    for path, items in (("/api/v1/scores", scores), ("/api/v1/labels", labels)):
        for start in range(0, len(items), 1000):
            answer = api.post(path, {"batch": items[start : start + 1000]})
            assert answer.status_code == 200, answer.text
    with in_tenant(org):
        sweep_until(lambda: CalibrationSnapshot.objects.filter(target__rubric__name=rubric).exists())
        snapshot = CalibrationSnapshot.objects.get(target__rubric__name=rubric)
    assert snapshot.verdict == "gating", snapshot.report["verdict_reason"]
    assert snapshot.calibrator is not None
    return snapshot
