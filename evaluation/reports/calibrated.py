"""Calibrated judges as a report sees them: the latest calibration snapshot of each current judge
version on a feature (what the feature page's "true success rate" panel shows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evaluation.models import CalibrationSnapshot, CalibrationTarget
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


def gating_calibration(feature: Feature) -> FeatureCalibration | None:
    """The calibration a report's success may come from: a current judge version whose latest
    snapshot on the feature is gating, with a fitted calibrator (the most labelled one)."""
    return next((row for row in feature_calibrations(feature) if row.gating and row.calibrator), None)
