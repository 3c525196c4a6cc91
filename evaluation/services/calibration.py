"""A judge version's calibration report against one rubric version, and a feature's true success
rate (shared/API.md, shared/CALIBRATION.md): database reads in, evaluation.stats for every number.

Only API and queue labels count (widget feedback is not a sample of traces). Agreement is weighted
by 1 / inclusion probability when any paired label came from an enriched design (stratified or
active); calibration is cross-fitted (evaluation.stats.calibrate); the success estimator is chosen
from the labels' sampling design before any result is seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from evaluation.models import Judge, JudgeVersion, Rubric, RubricScale
from evaluation.reports.selectors import Window
from evaluation.selectors import (
    LabelRow,
    ScoreRow,
    ScoreSummary,
    TraceScope,
    scoped_labels,
    scoped_scores,
    scoped_scores_count,
    scoped_scores_summary,
)
from evaluation.services.labels import ENRICHED_DESIGNS, label_good
from evaluation.services.shared import utc_now
from evaluation.stats import (
    CalibrationReport,
    binary_agreement,
    calibrate,
    classical_mean,
    estimate_success,
    naive_judge_rate,
    ordinal_agreement,
    threshold_guarantee,
    verdict,
)
from evaluation.stats.estimators import Moments, NaiveRate

TARGET_PRECISION = 0.9
ENRICHED_NOTE = (
    "the judge's scores are an enriched sample (unequal inclusion probabilities, e.g. every thumbs-down), "
    "so PPI++ over them would not describe every trace: interval from the uniform labels alone"
)
MIN_PAIRS = 2
ORDINAL_CATEGORIES = (1.0, 2.0, 3.0, 4.0, 5.0)


class CalibrationError(ValueError):
    """A report that cannot be computed for these inputs (the API's 400), with the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Design:
    """The labels an estimate uses and the sampling design they were drawn under."""

    name: str  # uniform | stratified | active | manual
    labels: list[LabelRow]


def _graded(rubric: Rubric) -> None:
    if rubric.scale == RubricScale.CATEGORICAL:
        raise CalibrationError("rubric", f"{rubric.name!r} is categorical: it has no good / bad to agree with")
    if rubric.scale == RubricScale.FREE_TEXT:
        # Its labels are notes: answered as "0 labels" it had an integrator adding labels that could never count.
        raise CalibrationError("rubric", f"{rubric.name!r} is free text: it has no good / bad to agree with")


def design_weights(labels: list[LabelRow]) -> tuple[np.ndarray | None, list[str] | None]:
    """1 / inclusion probability for every label when any came from an enriched design (a label
    without a probability, e.g. manual, counts as certain), else None; strata only when every
    label is stratified (resampling within strata assumes fixed stratum sizes)."""
    if not any(row.design in ENRICHED_DESIGNS for row in labels):
        return None, None
    weights = np.array([1.0 / (row.inclusion_probability or 1.0) for row in labels])
    strata = [row.stratum for row in labels] if all(row.design == "stratified" for row in labels) else None
    return weights, strata


def calibration_report(
    *, judge: Judge, judge_version: JudgeVersion, rubric: Rubric, scope: TraceScope, feature: str | None
) -> dict[str, Any]:
    """API.md's calibration report: agreement, calibration, threshold and verdict of the judge
    version on the traces the rubric version's labels and the judge's scores share."""
    return calibration_parts(judge=judge, judge_version=judge_version, rubric=rubric, scope=scope, feature=feature)[0]


def calibration_parts(
    *,
    judge: Judge,
    judge_version: JudgeVersion,
    rubric: Rubric,
    scope: TraceScope,
    feature: str | None,
    n_scored: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None, float | None]:
    """The calibration report, the fitted calibrator (``to_dict``; None below two pairs) and the
    lower bound of the agreement statistic the verdict read (None when there is no verdict).
    ``n_scored``: the scored traces in scope when the caller already counted them."""
    _graded(rubric)
    labels = scoped_labels(rubric=rubric, scope=scope)
    scores = {
        row.trace_id: row
        for row in scoped_scores(judge_version=judge_version, scope=scope, trace_ids=[r.trace_id for r in labels])
    }
    pairs = [(label, scores[label.trace_id]) for label in labels if label.trace_id in scores]
    out: dict[str, Any] = {
        "judge": judge.name,
        "judge_version": judge_version.number,
        "rubric": rubric.name,
        "rubric_version": rubric.version,
        "rubric_scale": rubric.scale,
        "feature": feature,
        "n_labels": len(pairs),
        "n_labels_unscored": len(labels) - len(pairs),
        "n_scored": n_scored if n_scored is not None else scoped_scores_count(judge_version=judge_version, scope=scope),
        "agreement": None,
        "calibration": None,
        "threshold": None,
        "verdict": None,
        "verdict_reason": None,
        "note": None,
        "computed_at": utc_now().isoformat(),
    }
    if len(pairs) < MIN_PAIRS:
        out["note"] = (
            f"{len(pairs)} labelled trace(s) scored by this judge version: at least {MIN_PAIRS} are needed "
            "for agreement and calibration"
        )
        return out, None, None
    paired_labels = [label for label, _ in pairs]
    human = np.array([label.value for label in paired_labels])
    good = np.array([label_good(v, rubric.scale) for v in human], dtype=int)
    raw = np.array([score.raw_score for _, score in pairs])
    passed = np.array([score.passed for _, score in pairs], dtype=int)
    weights, strata = design_weights(paired_labels)
    judge_scale = judge_version.content.get("scale")
    if rubric.scale == RubricScale.ORDINAL and judge_scale == "ordinal":
        ordinal = ordinal_agreement(human, raw, categories=ORDINAL_CATEGORIES, weights=weights, strata=strata)
        agreement, binary = ordinal.as_dict(), ordinal.binary
    else:
        binary = binary_agreement(good, passed, weights=weights, strata=strata)
        agreement = binary.as_dict()
    if weights is not None:
        agreement["weighted_confusion"] = [list(row) for row in binary.weighted_confusion or ()]
    band = verdict(binary)
    fitted = calibrate(raw, good)
    out.update(
        agreement=agreement,
        calibration=_calibration(fitted),
        threshold=threshold_guarantee(raw, good, target_precision=TARGET_PRECISION).as_dict(),
        verdict=band.band,
        verdict_reason=band.reason,
    )
    return out, fitted.calibrator.to_dict(), band.lower_bound


def _calibration(report: CalibrationReport) -> dict[str, Any]:
    out = report.as_dict()
    out["cv_brier"] = report.cv_brier
    out["note"] = report.note
    return out


def choose_design(labels: list[LabelRow]) -> Design:
    """The estimator's design, from the designs alone (never from results): a uniform audit stream
    when there is one (the only unbiased sample of every trace), else all labels when they are all
    stratified, or all enriched (inverse-probability weighting), else manual (labels alone)."""
    uniform = [row for row in labels if row.design == "uniform"]
    if uniform:
        return Design("uniform", uniform)
    designs = {row.design for row in labels}
    if designs == {"stratified"}:
        return Design("stratified", labels)
    if labels and designs <= set(ENRICHED_DESIGNS):
        return Design("active", labels)
    return Design("manual", labels)


def success_estimate(
    *,
    feature: str,
    rubric: Rubric,
    judge: Judge | None,
    judge_version: JudgeVersion | None,
    scope: TraceScope,
    window: Window,
    summary_of: Callable[[], ScoreSummary] | None = None,
) -> dict[str, Any]:
    """API.md's success report: the human rate from labels alone, the judge's own (uncorrected)
    pass rate, and the best valid estimate for the labels' sampling design. ``summary_of`` reads
    the summary of the judge's scores in scope (default: scoped_scores_summary), called after the
    labelled traces' scores are read."""
    _graded(rubric)
    labels = scoped_labels(rubric=rubric, scope=scope)
    human = classical_mean([label_good(row.value, rubric.scale) for row in labels])
    design = choose_design(labels)
    y = np.array([label_good(row.value, rubric.scale) for row in design.labels], dtype=float)
    uniform = design.name == "uniform" and judge_version is not None
    # The labelled traces' scores are read before the summary of every score: scores only ever
    # arrive, so the summary holds each of them and the rest is exactly the unlabelled set.
    by_trace: dict[str, ScoreRow] = {}
    if uniform and judge_version is not None:
        labelled = [row.trace_id for row in design.labels]
        by_trace = {
            row.trace_id: row for row in scoped_scores(judge_version=judge_version, scope=scope, trace_ids=labelled)
        }
    summary = None
    if judge_version is not None:
        summary = (
            summary_of() if summary_of is not None else scoped_scores_summary(judge_version=judge_version, scope=scope)
        )
    naive = NaiveRate.of_counts(summary.passed, summary.n) if summary is not None else naive_judge_rate([])
    if uniform and summary is not None:
        scored = [row for row in design.labels if row.trace_id in by_trace]
        scores_labeled = [by_trace[row.trace_id].score for row in scored]
        # PPI++ needs of the other scored traces only their count, mean and variance.
        unlabeled = summary.moments.minus(Moments.of(scores_labeled))
        if summary.enriched:
            # PPI++ would describe the judge's sample (enriched, e.g. with every thumbs-down), not
            # every trace: the labels' own estimate is the valid one.
            estimate = estimate_success(design="uniform", labels=y)
            estimate = replace(estimate, note=ENRICHED_NOTE)
        elif len(scored) >= 50 and unlabeled.n:  # PPI++ on the uniform labels whose traces were scored
            estimate = estimate_success(
                design="uniform",
                labels=[label_good(row.value, rubric.scale) for row in scored],
                scores_labeled=scores_labeled,
                scores_unlabeled=unlabeled,
            )
        else:
            estimate = estimate_success(design="uniform", labels=y)
    else:
        estimate = estimate_success(
            design=design.name,
            labels=y,
            strata=[row.stratum for row in design.labels],
            inclusion_probabilities=[row.inclusion_probability or 1.0 for row in design.labels],
        )
    estimate_out = estimate.as_dict()
    estimate_out["design"] = design.name
    # The traces the judge scored in scope, whatever the estimator: the design-based ones count the traces their
    # labels stand for (the sum of 1 / inclusion probability), which read 410 scored traces of 400.
    estimate_out["n_scored"] = summary.n if summary is not None else 0
    judge_out: dict[str, Any] = naive.as_dict()
    judge_out["note"] = naive.note if judge_version is not None else "no judge given"
    if summary is not None and summary.enriched:
        judge_out["note"] += "; over the judge's enriched sample (e.g. every thumbs-down), not every trace"
    return {
        "feature": feature,
        "window": window.as_dict(),
        "rubric": rubric.name,
        "rubric_version": rubric.version,
        "judge": judge.name if judge is not None else None,
        "judge_version": judge_version.number if judge_version is not None else None,
        "human": {**human.interval.as_dict(), "n": human.n_labels},
        "judge_uncorrected": judge_out,
        "estimate": estimate_out,
    }
