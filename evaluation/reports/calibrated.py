"""Calibrated judges as a report sees them: the latest calibration snapshot of each current judge
version on a feature (what the feature page's "true success rate" panel shows)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import numpy as np
from django.db import connection

from evaluation.models import CalibrationSnapshot, CalibrationTarget, Rubric, trace_labels_sql
from evaluation.reports.shift import distribution_shift
from evaluation.stats import (
    calibrator_from_dict,
    cusum,
    disagreement_cusum_reference,
    krippendorff_alpha,
    labels_needed,
    rolling_residual,
)
from feedback.models import Feature


@dataclass(frozen=True)
class FeatureCalibration:
    judge_version_id: int
    rubric_id: int
    rubric_scale: str
    calibrator: dict[str, Any] | None
    judge: str
    judge_version: int
    rubric: str
    rubric_version: int
    target_id: int
    verdict: str
    verdict_reason: str
    n_labels: int
    computed_at: Any
    success: dict[str, Any] | None

    @property
    def gating(self) -> bool:
        return self.verdict == "gating"


def feature_calibrations(feature: Feature) -> list[FeatureCalibration]:
    """The latest snapshot per (current judge version x latest rubric version) on the feature,
    gating judges first, then by labels."""
    targets = CalibrationTarget.objects.filter(feature=feature).select_related("judge_version__judge", "rubric")
    out = []
    for target in targets:
        judge = target.judge_version.judge
        if judge.current_version_id != target.judge_version_id:
            continue
        snapshot = CalibrationSnapshot.objects.filter(target=target).order_by("-computed_at", "-id").first()
        if snapshot is None:
            continue
        out.append(
            FeatureCalibration(
                judge_version_id=target.judge_version_id,
                rubric_id=target.rubric_id,
                rubric_scale=target.rubric.scale,
                calibrator=snapshot.calibrator,
                judge=judge.name,
                judge_version=target.judge_version.number,
                rubric=target.rubric.name,
                rubric_version=target.rubric.version,
                target_id=target.id,
                verdict=snapshot.verdict,
                verdict_reason=str(snapshot.report.get("verdict_reason") or snapshot.report.get("note") or ""),
                n_labels=snapshot.n_labels,
                computed_at=snapshot.computed_at,
                success=snapshot.success,
            )  # fmt: skip
        )
    latest_rubric: dict[str, int] = {}
    for row in out:
        latest_rubric[row.rubric] = max(latest_rubric.get(row.rubric, 0), row.rubric_version)
    out = [row for row in out if row.rubric_version == latest_rubric[row.rubric]]
    return sorted(out, key=lambda row: (not row.gating, -row.n_labels, row.judge))


def gating_calibration(feature: Feature, rows: list[FeatureCalibration] | None = None) -> FeatureCalibration | None:
    """The calibration a report's success may come from: a current judge version whose latest
    snapshot on the feature is gating, with a fitted calibrator (the most labelled one). ``rows``:
    feature_calibrations(feature), if read."""
    rows = feature_calibrations(feature) if rows is None else rows
    return next((row for row in rows if row.gating and row.calibrator), None)


# --- monitoring a calibrated judge (the calibration page) -----------------------------------------

_REVIEWER_LABELS = """
SELECT DISTINCT ON (l.trace_id, l.reviewer) l.trace_id, l.reviewer, l.value FROM evaluation_label l
WHERE l.rubric_id = %(rubric)s AND l.source IN ('api', 'queue') AND l.value IS NOT NULL AND l.reviewer <> ''
    AND (%(feature)s::bigint IS NULL
         OR EXISTS (SELECT 1 FROM feedback_trace t WHERE t.trace_id = l.trace_id AND t.feature_id = %(feature)s))
ORDER BY l.trace_id, l.reviewer, l.occurred_at DESC, l.id DESC
"""
# The uniform audit stream in the order of the traffic it audits (each trace's start; its label's time for a trace not
# stored), each with the judge's verdict on it. In labelling order, a backlog labelled out of order shuffled the
# weeks together, and a change in what the product answered or how the judge read it showed late or not at all.
_AUDIT_STREAM = (
    "SELECT l.value, s.passed, COALESCE(t.started_at, l.occurred_at) AS at, s.raw_score FROM ("
    + trace_labels_sql("l.rubric_id = %(rubric)s AND l.source IN ('api', 'queue') AND l.value IS NOT NULL")
    + """) l
JOIN (
    SELECT DISTINCT ON (trace_id) trace_id, passed, raw_score FROM evaluation_score
    WHERE judge_version_id = %(version)s AND status = 'ok' AND passed IS NOT NULL
    ORDER BY trace_id, run_index, id
) s USING (trace_id)
LEFT JOIN feedback_trace t ON t.trace_id = l.trace_id
WHERE l.sampling_design = 'uniform' AND (%(feature)s::bigint IS NULL OR t.feature_id = %(feature)s)
ORDER BY at, l.trace_id
"""
)
# The judge's score of each trace it scored (labelled or not; the mean of its runs, as the drift page reads it) over a
# window of the traces' days, a sample of at most SCORE_SAMPLE traces (the same traces whenever asked: by md5).
_SCORES_OF_DAYS = """
SELECT avg(score) FROM evaluation_score
WHERE judge_version_id = %(version)s AND status = 'ok' AND score IS NOT NULL
    AND trace_day BETWEEN %(first)s AND %(last)s AND (%(feature)s::bigint IS NULL OR feature_id = %(feature)s)
GROUP BY trace_id ORDER BY md5(trace_id) LIMIT %(sample)s
"""
SCORE_SAMPLE = 20_000  # traces a window, at most (the drift page's sample)
CUSUM_H = 4.0  # decision interval (Montgomery 9.1: h = 4-5 sigma-units; here in disagreement counts)


def human_agreement(*, rubric: Rubric, feature_id: int | None) -> dict[str, Any]:
    """Krippendorff's alpha among reviewers on the traces several of them labelled: the ceiling a
    judge is compared against (CALIBRATION.md). Ordinal rubrics use the ordinal metric."""
    with connection.cursor() as cursor:
        cursor.execute(_REVIEWER_LABELS, {"rubric": rubric.id, "feature": feature_id})
        rows = cursor.fetchall()
    by_trace: dict[str, dict[str, float]] = {}
    for trace_id, reviewer, value in rows:
        by_trace.setdefault(trace_id, {})[reviewer] = float(value)
    shared = {t: v for t, v in by_trace.items() if len(v) >= 2}
    if not shared:
        return {"units": 0, "alpha": None, "note": "no trace has labels from two reviewers yet"}
    reviewers = sorted({r for v in shared.values() for r in v})
    data = np.full((len(reviewers), len(shared)), np.nan)
    for j, values in enumerate(shared.values()):
        for reviewer, value in values.items():
            data[reviewers.index(reviewer), j] = value
    levels: dict[str, Literal["nominal", "ordinal", "interval"]] = {"ordinal": "ordinal", "continuous": "interval"}
    alpha = krippendorff_alpha(data, level=levels.get(rubric.scale, "nominal"))
    return {"units": len(shared), "reviewers": len(reviewers), "alpha": alpha.as_dict(), "note": None}


def audit_drift(*, target: CalibrationTarget) -> dict[str, Any]:
    """CUSUM on judge-human disagreement along the uniform audit stream (Page 1954): the in-control
    rate is the first half's, the out-of-control one twice it; an alarm says re-calibrate."""
    good_at = {"binary": 1.0, "ordinal": 4.0, "continuous": 0.5}.get(target.rubric.scale)
    if good_at is None:
        return {"n": 0, "note": "this rubric has no good / bad"}
    with connection.cursor() as cursor:
        cursor.execute(
            _AUDIT_STREAM,
            {"rubric": target.rubric_id, "version": target.judge_version_id, "feature": target.feature_id},
        )
        rows = cursor.fetchall()
    if len(rows) < 20:
        return {"n": len(rows), "note": f"{len(rows)} audit labels: the monitor starts at 20"}
    x = np.array([float((value >= good_at) != passed) for value, passed, _, _ in rows])
    baseline = float(x[: len(x) // 2].mean())
    k = disagreement_cusum_reference(baseline, min(1.0, max(2 * baseline, baseline + 0.05)))
    result = cusum(x, k=k, h=CUSUM_H)
    alarm_at = rows[result.alarm_index][2] if result.alarm_index is not None else None
    return {
        "n": len(rows), "baseline": baseline, "recent": float(x[-min(50, len(x)):].mean()), "k": k, "h": CUSUM_H,
        "alarm_index": result.alarm_index, "alarm_at": alarm_at, "statistic": float(result.statistic[-1]), "note": None,
        "residual": _recent_residual(target, rows, good_at),
    }  # fmt: skip


RESIDUAL_WINDOW = 50  # audit traces in the calibration residual's window: the latest ones
# A lean of the labels from the calibrated scores worth re-calibrating for (5 points of P(good)): with few errors in
# the window the interval is narrow, and a lean of +0.03 came out "off" on a steady judge.
RESIDUAL_MATERIAL = 0.05


def _recent_residual(target: CalibrationTarget, rows: list[tuple[Any, ...]], good_at: float) -> dict[str, Any] | None:
    """The mean of (label - calibrated P(good)) over the latest RESIDUAL_WINDOW audit traces, with its interval
    (stats.rolling_residual's last window): off when 0 is outside it and the mean is RESIDUAL_MATERIAL or more
    away (the success estimate leans on a stale fit). None without a fitted calibrator or too few raw scores.
    The fit learnt from these labels too: over a window that is a small part of them a move still shows, but with
    few labels the residual leans to 0 (reads calibrated) more readily."""
    snapshot = target.snapshots.filter(calibrator__isnull=False).order_by("-computed_at", "-id").first()
    scored = [(value, raw) for value, _, _, raw in rows if raw is not None]
    if snapshot is None or snapshot.calibrator is None or len(scored) < RESIDUAL_WINDOW:
        return None
    labels = np.array([float(value >= good_at) for value, _ in scored])
    calibrated = calibrator_from_dict(snapshot.calibrator).predict(np.array([float(raw) for _, raw in scored]))
    rolled = rolling_residual(labels, calibrated, window=RESIDUAL_WINDOW)
    low, high = float(rolled.low[-1]), float(rolled.high[-1])
    return {"mean": float(rolled.mean[-1]), "low": low, "high": high, "window": RESIDUAL_WINDOW,
            "off": not low <= 0.0 <= high and abs(float(rolled.mean[-1])) >= RESIDUAL_MATERIAL,
            "fitted_at": snapshot.computed_at}  # fmt: skip


def score_shift(
    *, target: CalibrationTarget, baseline: tuple[date, date], current: tuple[date, date]
) -> dict[str, Any]:
    """How far the judge's scores on all the traces it scored (not only the labelled) moved between two windows of
    trace days: PSI over ten bins of [0, 1] with the bins, and Kolmogorov-Smirnov (CALIBRATION.md: a cue to label
    more; the labels then say whether the judge or the product moved). The drift page's judge score row for this
    judge, but over every trace it scored: a holdback arm's too, which that page leaves out of a feature."""
    samples = []
    with connection.cursor() as cursor:
        for first, last in (baseline, current):
            cursor.execute(
                _SCORES_OF_DAYS,
                {
                    "version": target.judge_version_id,
                    "feature": target.feature_id,
                    "first": first,
                    "last": last,
                    "sample": SCORE_SAMPLE,
                },  # fmt: skip
            )
            samples.append(np.array([float(score) for (score,) in cursor.fetchall()], dtype=float))
    row = distribution_shift("judge_score", samples[0], samples[1])
    return {**row, "baseline_days": baseline, "current_days": current}


def labels_plan(*, success: dict[str, Any] | None, half_width: float = 0.03) -> dict[str, Any] | None:
    """How many uniform-audit labels a +-half_width interval needs, alone and with this judge (PPI's
    gain from the judge-label correlation rho)."""
    if not success:
        return None
    estimate = success.get("estimate") or {}
    rate = estimate.get("value")
    if rate is None:
        rate = (success.get("human") or {}).get("value")
    if rate is None:
        return None
    # Planned at the rate within the current interval that needs the most labels (nearest 50%): the point estimate
    # alone said "enough" beside an interval of 21-100% (1 label passed: p(1 - p) = 0).
    bounds = estimate if estimate.get("value") is not None else (success.get("human") or {})
    low, high = bounds.get("low"), bounds.get("high")
    if low is not None and high is not None:
        rate = min(max(0.5, low), high)
    # The judge's worth as PPI measured it: effective labels = n / (1 - rho^2), so rho^2 = 1 - n / effective.
    n, effective = estimate.get("n_labels") or 0, estimate.get("effective_labels")
    rho = math.sqrt(max(0.0, 1.0 - n / effective)) if n and effective and effective > n else 0.0
    alone = labels_needed(half_width=half_width, rate=rate)
    with_judge = labels_needed(half_width=half_width, rate=rate, rho=min(1.0, rho))
    # What this judge saves here, said beside the literature's typical 1.3x-2x, which it may well not match; only
    # where PPI measured it (another design's estimate uses no judge: "saves 1.0x" would say it was tried).
    savings = round(alone / with_judge, 1) if estimate.get("method") == "ppi++" and with_judge else None
    return {"half_width": half_width, "alone": alone, "with_judge": with_judge, "have": n, "planned_rate": rate,
            "more": max(0, with_judge - n),  # what is still to label for that interval, with this judge
            "savings": savings if savings is not None and savings > 1.0 else None}  # fmt: skip
