"""Backfill: run a judge version over a historical window of traces, every trace in scope
(inclusion probability 1, design ``backfill``), with a cost estimate before it starts, progress
while it runs, and cancel (its queued scores are dropped; finished ones stay)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from evaluation.models import BackfillRun, BackfillStatus, Judge, JudgeKind
from evaluation.services.sampling import QueuedScore, needs_output, rule_spec, scores_queue
from evaluation.services.shared import JudgeServiceError, utc_now
from feedback.services.prices import price_book_load

MAX_TRACES = 200_000
_WINDOW = """
SELECT t.id, t.trace_id, t.feature_id, f.key, pv.label, t.customer_id, t.metadata, t.guardrail_blocked, t.day,
       false, false, length(t.input) + length(t.output)
FROM feedback_trace t JOIN feedback_feature f ON f.id = t.feature_id
LEFT JOIN feedback_promptversion pv ON pv.id = t.prompt_version_id
WHERE t.started_at >= %s AND t.started_at < %s {scope} AND (%s OR t.output ~ '[^[:space:]]')
ORDER BY t.started_at
LIMIT %s
"""


def _window(judge: Judge, since: datetime, until: datetime) -> list:  # type: ignore[type-arg]
    scope = "AND t.feature_id = %s" if judge.feature_id is not None else ""
    # A judge of the output has nothing to judge in a trace without one (sampling.needs_output).
    params: list[Any] = [since, until, *([judge.feature_id] if judge.feature_id is not None else []),
                         not needs_output(judge), MAX_TRACES]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_WINDOW.format(scope=scope), params)
        return cursor.fetchall()


def backfill_estimate(*, judge: Judge, since: datetime, until: datetime, created_by: str = "") -> BackfillRun:
    """Count the traces in the window and price the calls (prompt tokens from the text at ~4
    characters a token, plus the rendered rubric; a short verdict back)."""
    if judge.kind == JudgeKind.EXTERNAL or judge.current_version is None:
        raise JudgeServiceError("only Candor's own judges (LLM or code) can be backfilled")
    if until <= since:
        raise JudgeServiceError("the window ends before it starts", field="until")
    version = judge.current_version
    spec = version.spec
    rows = _window(judge, since, until)
    cost: Decimal | None = Decimal(0)
    if spec.kind == "llm" and spec.provider != "offline":
        with connection.cursor() as cursor:
            price = price_book_load(cursor.cursor).find(spec.provider, spec.model, utc_now())
        if price is None:
            cost = None
        else:
            rubric_chars = len(spec.prompt_template) + 600
            input_tokens = sum((row[11] or 0) + rubric_chars for row in rows) // 4
            max_out = int(dict(spec.parameters).get("max_tokens", 150))
            cost = price.cost(input_tokens, min(max_out, 150) * len(rows), 0)
    return BackfillRun.objects.create(
        judge_version=version, since=since, until=until, traces=len(rows), estimated_cost_usd=cost,
        created_by=created_by,
    )  # fmt: skip


def backfill_start(*, run: BackfillRun) -> int:
    """Queue every trace of the window for the run's judge version; returns how many were queued."""
    if run.status != BackfillStatus.ESTIMATED:
        raise JudgeServiceError(f"this backfill is {run.status}")
    version = run.judge_version
    judge = version.judge
    rows = _window(judge, run.since, run.until)
    spec = rule_spec_for_backfill(judge)
    from evaluation.judges.sampling import in_scope
    from evaluation.services.sampling import facts_of

    queued = [
        QueuedScore(row[1], judge.id, version.id, "backfill", "backfill", 1.0, row[2], row[8], run.id, 0)
        for row in rows
        if spec is None or in_scope(spec, facts_of(row))
    ]
    with transaction.atomic():
        with connection.cursor() as cursor:
            added = scores_queue(cursor, queued, now=utc_now())
        run.status = BackfillStatus.RUNNING
        run.queued = added
        run.started_at = utc_now()
        run.save(update_fields=["status", "queued", "started_at"])
    return added


def rule_spec_for_backfill(judge: Judge):  # type: ignore[no-untyped-def]
    from evaluation.models import SamplingRule

    rule = SamplingRule.objects.filter(judge_version_id=judge.current_version_id).first()
    return rule_spec(rule, judge) if rule is not None else None


def backfill_cancel(*, run: BackfillRun) -> int:
    """Stop a backfill: its scores not yet run are removed; returns how many."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM evaluation_score WHERE backfill_id = %s AND status = 'pending'", [run.id])
            dropped = int(cursor.rowcount)
        run.status = BackfillStatus.CANCELLED
        run.finished_at = utc_now()
        run.save(update_fields=["status", "finished_at"])
    return dropped


def backfills_settle() -> int:
    """Mark running backfills with nothing left queued as done."""
    settled = 0
    for run in BackfillRun.objects.filter(status=BackfillStatus.RUNNING):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM evaluation_score WHERE backfill_id = %s "
                "AND status IN ('pending', 'running'))",
                [run.id],
            )
            if not cursor.fetchone()[0]:
                run.status = BackfillStatus.DONE
                run.finished_at = utc_now()
                run.save(update_fields=["status", "finished_at"])
                settled += 1
    return settled
