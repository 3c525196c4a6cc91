"""Reads the judges' API, portal, runs and reports share: what a judge sees of a trace, judges
with their last-24h numbers, a trace's scores, a judge's run history and backfill progress."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum

from evaluation.judges.rendering import JudgeInput
from evaluation.models import (
    BackfillRun,
    Judge,
    JudgeVersion,
    Label,
    LabelSource,
    OutputWait,
    Rubric,
    Score,
    ScoreStatus,
    trace_labels_sql,
)
from evaluation.services.shared import utc_now
from evaluation.stats.estimators import Moments
from feedback.models import FeedbackEvent, Span, Trace

# Metadata keys a trace may carry for the judge's {{ context }} and {{ reference }}.
CONTEXT_KEYS = ("context", "retrieved_context", "documents")
REFERENCE_KEYS = ("reference", "expected_output", "ground_truth")
_FEEDBACK_FIELDS = ("kind", "value", "comment", "edited_text", "name")


def _text(value: Any) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


def judge_inputs(trace_ids: list[str]) -> dict[str, JudgeInput]:
    """What a judge sees of each trace that exists: input, output, context (metadata or retrieval
    spans), reference (metadata), metadata and the user's feedback. Three queries for any number."""
    traces = Trace.objects.filter(trace_id__in=trace_ids).values_list("trace_id", "input", "output", "metadata")
    feedback: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in (
        FeedbackEvent.objects.filter(trace_id__in=trace_ids)
        .order_by("occurred_at", "id")
        .values("trace_id", *_FEEDBACK_FIELDS)
    ):
        feedback[row.pop("trace_id")].append({k: v for k, v in row.items() if v not in (None, "")})
    retrieved: dict[str, list[str]] = defaultdict(list)
    for trace_id, attributes in Span.objects.filter(trace_id__in=trace_ids, kind="retrieval").values_list(
        "trace_id", "attributes"
    ):
        for key in ("output", "documents", "content"):
            value = (attributes or {}).get(key)
            if isinstance(value, list):
                retrieved[trace_id] += [str(v) for v in value]
            elif value:
                retrieved[trace_id].append(str(value))
    out: dict[str, JudgeInput] = {}
    for trace_id, input_text, output_text, metadata in traces:
        metadata = metadata or {}
        context = next((_text(metadata[k]) for k in CONTEXT_KEYS if metadata.get(k)), None) or retrieved.get(trace_id)
        reference = next((str(metadata[k]) for k in REFERENCE_KEYS if metadata.get(k)), None)
        plain = {k: v for k, v in metadata.items() if k not in CONTEXT_KEYS + REFERENCE_KEYS}
        out[trace_id] = JudgeInput(
            input=input_text or None, output=output_text or None, context=context, reference=reference,
            metadata=plain, feedback=tuple(feedback.get(trace_id, ())),
        )  # fmt: skip
    return out


# --- Judges list ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeStats:
    scored: int
    passed: int
    failures: int
    pending: int
    cost_usd: Decimal

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.scored if self.scored else None


def judge_stats(*, since: datetime, judge_ids: list[int] | None = None) -> dict[int, JudgeStats]:
    """Per judge, the runs that finished since ``since``: scored (ok), passed, failures (error) and their cost;
    and queued: every run waiting now, drawn however long ago.

    Finished means by ``scored_at``, when the verdict was reached (an external score: the time its evaluator
    sent, else its arrival), as billing counts judge runs; not by the trace's time, and not by ``created_at``
    (when a run was drawn: a backfill queued yesterday and scored today, a run deferred by an open circuit).
    """
    finished = Q(status__in=[ScoreStatus.OK, ScoreStatus.ERROR], scored_at__gte=since)
    waiting = Q(status__in=[ScoreStatus.PENDING, ScoreStatus.RUNNING])
    rows = Score.objects.filter(finished | waiting)
    if judge_ids is not None:
        rows = rows.filter(judge_id__in=judge_ids)
    totals = rows.values("judge_id").annotate(
        scored=Count("id", filter=Q(status=ScoreStatus.OK)),
        passed=Count("id", filter=Q(status=ScoreStatus.OK, passed=True)),
        failures=Count("id", filter=Q(status=ScoreStatus.ERROR)),
        pending=Count("id", filter=waiting),
        cost=Sum("cost_usd", filter=finished),
    )
    return {
        r["judge_id"]: JudgeStats(r["scored"], r["passed"], r["failures"], r["pending"], r["cost"] or Decimal(0))
        for r in totals
    }


def judges_with_versions() -> QuerySet[Judge]:
    return Judge.objects.select_related("feature", "current_version", "current_version__sampling").prefetch_related(
        "versions"
    )


def judge_find(name: str) -> Judge | None:
    # A name PostgreSQL text cannot even hold (NUL) names no judge: None (404), not a database error.
    return judges_with_versions().filter(name=name).first() if "\x00" not in name else None


def judges_last_day() -> list[tuple[Judge, JudgeStats | None]]:
    stats = judge_stats(since=utc_now() - timedelta(hours=24))
    return [(judge, stats.get(judge.id)) for judge in judges_with_versions()]


# --- Scores ----------------------------------------------------------------------------------


def trace_scores(trace_id: str) -> list[Score]:
    return list(
        Score.objects.filter(trace_id=trace_id)
        .select_related("judge", "judge_version")
        .order_by("judge__name", "judge_version__number", "run_index")
    )


def sampling_public(row: Score | Label) -> dict[str, Any]:
    """How a score or label was selected (design, stratum, inclusion probability at selection time)."""
    if isinstance(row, Label) and row.source == LabelSource.WIDGET:
        # An end user's own thumb or rating, selected by nobody: 'manual' (the row keeps the door it came by,
        # widget or api, which API.md's designs do not name; the feedback events say it).
        return {"design": "manual", "stratum": "", "inclusion_probability": None}
    return {"design": row.sampling_design, "stratum": row.stratum, "inclusion_probability": row.inclusion_probability}


def score_public(score: Score) -> dict[str, Any]:
    """A score as GET /api/v1/traces/{trace_id} shows it."""
    return {
        "score_id": score.score_id,
        "judge": score.judge.name,
        "judge_kind": score.judge.kind,
        "judge_version": score.judge_version.number,
        "judge_version_label": score.judge_version.label or None,
        "scale": score.judge_version.content.get("scale"),
        "run_index": score.run_index,
        "status": score.status,
        "raw_score": score.raw_score,
        "score": score.score,
        "passed": score.passed,
        "rationale": score.rationale,
        "verdict_probability": score.verdict_probability,
        "error": {"code": score.error_code, "message": score.error_message} if score.status == "error" else None,
        "sampling": sampling_public(score),
        "cost_usd": float(score.cost_usd) if score.cost_usd is not None else None,
        "latency_ms": score.latency_ms,
        "created_at": score.created_at,
        "scored_at": score.scored_at,
    }


def trace_scores_section(trace_id: str) -> list[dict[str, Any]]:
    """The scores section evaluation adds to a trace read (registered with feedback at start-up)."""
    return [score_public(score) for score in trace_scores(trace_id)]


def label_public(label: Label) -> dict[str, Any]:
    """A human label as GET /api/v1/traces/{trace_id} shows it."""
    return {
        "label_id": label.label_id,
        "rubric": label.rubric.name,
        "rubric_version": label.rubric.version,
        "scale": label.rubric.scale,
        "value": label.value,
        "category": label.category or None,
        "text": label.text or None,
        "reviewer": label.reviewer,
        "source": label.source,
        "sampling": sampling_public(label),
        "comment": label.comment,
        "occurred_at": label.occurred_at,
        "created_at": label.created_at,
    }


def trace_labels_section(trace_id: str) -> list[dict[str, Any]]:
    """The labels section evaluation adds to a trace read (registered with feedback at start-up)."""
    labels = (
        Label.objects.filter(trace_id=trace_id)
        .select_related("rubric")
        .order_by("rubric__name", "rubric__version", "occurred_at", "id")
    )
    return [label_public(label) for label in labels]


def judge_runs(*, judge: Judge, status: str = "", limit: int = 50) -> list[Score]:
    """A judge's most recent scores (its run history), newest first, optionally one status."""
    rows = Score.objects.filter(judge_id=judge.id).select_related("judge_version")
    if status:
        if status not in ScoreStatus.values:
            return []
        rows = rows.filter(status=status)
    return list(rows.order_by("-created_at", "-id")[:limit])  # the index's order (score_judge_recent_id)


def judge_failure_reasons(*, judge: Judge, since: datetime) -> list[dict[str, Any]]:
    return list(
        Score.objects.filter(judge_id=judge.id, status=ScoreStatus.ERROR, created_at__gte=since)
        .values("error_code")
        .annotate(n=Count("id"))
        .order_by("-n")
    )


def judge_awaiting_output(*, judge: Judge) -> int:
    """Traces the judge drew before they had an output, waiting for it (evaluation.services.sampling)."""
    return OutputWait.objects.filter(judge_id=judge.id).count()


def version_scores_count(version: JudgeVersion) -> int:
    return Score.objects.filter(judge_version_id=version.id).count()


@dataclass(frozen=True)
class BackfillProgress:
    run: BackfillRun
    done: int
    failed: int
    pending: int
    cost_usd: Decimal

    @property
    def percent(self) -> float:
        total = self.run.queued or self.run.traces
        return 100.0 * (self.done + self.failed) / total if total else 100.0


def backfill_progress(run: BackfillRun) -> BackfillProgress:
    totals = Score.objects.filter(backfill_id=run.id).aggregate(
        done=Count("id", filter=Q(status=ScoreStatus.OK)),
        failed=Count("id", filter=Q(status=ScoreStatus.ERROR)),
        pending=Count("id", filter=Q(status__in=[ScoreStatus.PENDING, ScoreStatus.RUNNING])),
        cost=Sum("cost_usd"),
    )
    return BackfillProgress(run, totals["done"], totals["failed"], totals["pending"], totals["cost"] or Decimal(0))


def pending_scores_exist() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM evaluation_score WHERE status IN ('pending', 'running'))")
        return bool(cursor.fetchone()[0])


# --- Labels against scores (calibration report, success estimate) ---------------------------------


@dataclass(frozen=True)
class TraceScope:
    """Which traces a calibration or success read covers: a feature, a window on the trace's start
    (since inclusive, until exclusive), a prompt version label, a customer. None: no filter. Any
    filter needs the trace itself, so a label or score whose trace has not landed counts only in
    an unfiltered read."""

    feature_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    prompt_version: str | None = None
    customer_id: str | None = None

    def sql(self, alias: str) -> tuple[str, list[Any]]:
        """An ``AND EXISTS (...)`` on feedback_trace for rows of ``alias`` (which has trace_id)."""
        conditions: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("t.feature_id = %s", self.feature_id),
            ("t.started_at >= %s", self.since),
            ("t.started_at < %s", self.until),
            ("t.customer_id = %s", self.customer_id),
            (
                "t.prompt_version_id IN (SELECT id FROM feedback_promptversion WHERE label = %s)",
                self.prompt_version,
            ),
        ):
            if value is not None:
                conditions.append(clause)
                params.append(value)
        if not conditions:
            return "", []
        where = " AND ".join(conditions)
        return f"AND EXISTS (SELECT 1 FROM feedback_trace t WHERE t.trace_id = {alias}.trace_id AND {where})", params


# One label per trace (models.trace_labels_sql: each reviewer's latest, then the majority) from the sources that
# are samples of traces: the API and Candor's queues, never widget feedback (unhappy users answer more).
_LABELS = (
    "SELECT l.trace_id, l.value, l.sampling_design, l.stratum, l.inclusion_probability FROM ("
    + trace_labels_sql("l.rubric_id = %s AND l.source IN ('api', 'queue') AND l.value IS NOT NULL {scope}")
    + ") l"
)
# One score per trace for the judge version: its first successful run.
_SCORES = """
SELECT DISTINCT ON (s.trace_id) s.trace_id, s.raw_score, s.score, s.passed
FROM evaluation_score s
WHERE s.judge_version_id = %s AND s.status = 'ok' AND s.raw_score IS NOT NULL AND s.score IS NOT NULL
    AND s.passed IS NOT NULL {scope}
ORDER BY s.trace_id, s.run_index, s.id
"""
# The same one score per trace, aggregated (count, passed, moments of the [0, 1] score) without
# sorting a million trace IDs: run 0 where it succeeded (a unique constraint makes it one row per
# trace; nearly every score), plus the earliest successful rerun of traces whose run 0 did not
# succeed. One statement, so both parts read one snapshot.
_OK = "{a}.status = 'ok' AND {a}.raw_score IS NOT NULL AND {a}.score IS NOT NULL AND {a}.passed IS NOT NULL"
_AGGREGATES = (
    "count(*), count(*) FILTER (WHERE s.passed), avg(s.score), var_pop(s.score), "
    "min(coalesce(s.inclusion_probability, 1.0)), max(coalesce(s.inclusion_probability, 1.0))"
)
_SUMMARY = f"""
SELECT * FROM (
    SELECT {_AGGREGATES} FROM evaluation_score s
    WHERE s.judge_version_id = %s AND s.run_index = 0 AND {_OK.format(a="s")} {{scope}}
) first_runs, (
    SELECT {_AGGREGATES} FROM (
        SELECT DISTINCT ON (s.trace_id) s.score, s.passed, s.inclusion_probability FROM evaluation_score s
        WHERE s.judge_version_id = %s AND s.run_index > 0 AND {_OK.format(a="s")} {{scope}}
            AND NOT EXISTS (
                SELECT 1 FROM evaluation_score z WHERE z.trace_id = s.trace_id
                    AND z.judge_version_id = s.judge_version_id AND z.run_index = 0 AND {_OK.format(a="z")}
            )
        ORDER BY s.trace_id, s.run_index, s.id
    ) s
) reruns
"""


@dataclass(frozen=True)
class LabelRow:
    trace_id: str
    value: float
    design: str
    stratum: str
    inclusion_probability: float | None


@dataclass(frozen=True)
class ScoreRow:
    trace_id: str
    raw_score: float
    score: float
    passed: bool


def rubric_get(name: str, version: int | None = None) -> Rubric | None:
    """A rubric version by number, else the latest."""
    rows = Rubric.objects.filter(name=name)
    return (rows.filter(version=version) if version is not None else rows.order_by("-version")).first()


def scoped_labels(*, rubric: Rubric, scope: TraceScope) -> list[LabelRow]:
    """The rubric version's API and queue labels in scope, one per trace (models.trace_labels_sql)."""
    where, params = scope.sql("l")
    with connection.cursor() as cursor:
        cursor.execute(_LABELS.format(scope=where), [rubric.id, *params])
        return [LabelRow(*row) for row in cursor.fetchall()]


def scoped_scores(
    *, judge_version: JudgeVersion, scope: TraceScope, trace_ids: list[str] | None = None
) -> list[ScoreRow]:
    """The judge version's successful scores in scope, one per trace (only ``trace_ids`` if given)."""
    where, params = scope.sql("s")
    if trace_ids is not None:
        where += " AND s.trace_id = ANY(%s)"
        params.append(trace_ids)
    with connection.cursor() as cursor:
        cursor.execute(_SCORES.format(scope=where), [judge_version.id, *params])
        return [ScoreRow(*row) for row in cursor.fetchall()]


@dataclass(frozen=True)
class ScoreSummary:
    """The judge version's scores in scope, one per trace, as the success estimate needs them:
    how many, how many passed, and the moments of their [0, 1] scores."""

    n: int
    passed: int
    moments: Moments
    # The judge's sample gave traces different inclusion probabilities (e.g. 10% plus every
    # thumbs-down): its scored traces are then not a uniform sample of every trace.
    enriched: bool = False


def scoped_scores_summary(*, judge_version: JudgeVersion, scope: TraceScope) -> ScoreSummary:
    """``scoped_scores`` aggregated by the database (a million scores need not travel)."""
    where, params = scope.sql("s")
    with connection.cursor() as cursor:
        cursor.execute(_SUMMARY.format(scope=where), [judge_version.id, *params, judge_version.id, *params])
        n0, passed0, mean0, var0, low0, high0, n1, passed1, mean1, var1, low1, high1 = cursor.fetchone()
    moments = Moments.from_variance(n0, mean0, var0).merge(Moments.from_variance(n1, mean1, var1))
    lows, highs = [p for p in (low0, low1) if p is not None], [p for p in (high0, high1) if p is not None]
    enriched = bool(lows) and min(lows) < max(highs)
    return ScoreSummary(n=n0 + n1, passed=passed0 + passed1, moments=moments, enriched=enriched)


# Both summaries a calibration snapshot needs, the feature's whole history and its recent window,
# in one pass over the judge's scores joined to their traces (each row read once, not twice).
_IN_WINDOW = "t.started_at >= %(since)s AND t.started_at < %(until)s"
_PAIR_AGGREGATES = f"""
    count(*), count(*) FILTER (WHERE s.passed), avg(s.score), var_pop(s.score),
    min(coalesce(s.inclusion_probability, 1.0)), max(coalesce(s.inclusion_probability, 1.0)),
    count(*) FILTER (WHERE {_IN_WINDOW}), count(*) FILTER (WHERE s.passed AND {_IN_WINDOW}),
    avg(s.score) FILTER (WHERE {_IN_WINDOW}), var_pop(s.score) FILTER (WHERE {_IN_WINDOW}),
    min(coalesce(s.inclusion_probability, 1.0)) FILTER (WHERE {_IN_WINDOW}),
    max(coalesce(s.inclusion_probability, 1.0)) FILTER (WHERE {_IN_WINDOW})
"""
_PAIR = f"""
SELECT * FROM (
    SELECT {_PAIR_AGGREGATES} FROM evaluation_score s JOIN feedback_trace t ON t.trace_id = s.trace_id
    WHERE s.judge_version_id = %(version)s AND s.run_index = 0 AND {_OK.format(a="s")} AND t.feature_id = %(feature)s
) first_runs, (
    SELECT {_PAIR_AGGREGATES} FROM (
        SELECT DISTINCT ON (s.trace_id) s.trace_id, s.score, s.passed, s.inclusion_probability
        FROM evaluation_score s
        WHERE s.judge_version_id = %(version)s AND s.run_index > 0 AND {_OK.format(a="s")}
            AND NOT EXISTS (
                SELECT 1 FROM evaluation_score z WHERE z.trace_id = s.trace_id
                    AND z.judge_version_id = s.judge_version_id AND z.run_index = 0 AND {_OK.format(a="z")}
            )
        ORDER BY s.trace_id, s.run_index, s.id
    ) s JOIN feedback_trace t ON t.trace_id = s.trace_id
    WHERE t.feature_id = %(feature)s
) reruns
"""


def _summary_of(first: tuple[Any, ...], rerun: tuple[Any, ...]) -> ScoreSummary:
    n0, passed0, mean0, var0, low0, high0 = first
    n1, passed1, mean1, var1, low1, high1 = rerun
    moments = Moments.from_variance(n0, mean0, var0).merge(Moments.from_variance(n1, mean1, var1))
    lows, highs = [p for p in (low0, low1) if p is not None], [p for p in (high0, high1) if p is not None]
    return ScoreSummary(
        n=n0 + n1, passed=passed0 + passed1, moments=moments, enriched=bool(lows) and min(lows) < max(highs)
    )


def feature_scores_summaries(
    *, judge_version: JudgeVersion, feature_id: int, since: datetime, until: datetime
) -> tuple[ScoreSummary, ScoreSummary]:
    """``scoped_scores_summary`` for TraceScope(feature_id) and for the same scope within
    [since, until), from one pass: (whole history, window)."""
    with connection.cursor() as cursor:
        cursor.execute(_PAIR, {"version": judge_version.id, "feature": feature_id, "since": since, "until": until})
        row = cursor.fetchone()
    first, rerun = row[:12], row[12:]
    return _summary_of(first[:6], rerun[:6]), _summary_of(first[6:], rerun[6:])


def scoped_scores_count(*, judge_version: JudgeVersion, scope: TraceScope) -> int:
    """How many traces in scope the judge version scored successfully."""
    return scoped_scores_summary(judge_version=judge_version, scope=scope).n
