"""Calibration: map a judge's raw score to P(a human calls it good), and say how well it does.

Platt scaling (logistic on the raw score) and isotonic regression are both cross-fitted; the
one with the lower out-of-fold Brier score wins, and every reported figure (Brier, ECE,
reliability diagram) comes from out-of-fold predictions, never from the labels a calibrator
was fitted on. The fitted calibrator serializes to a plain dict (JSONField-ready).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

FloatArray = NDArray[np.float64]
Method = Literal["platt", "isotonic"]


@dataclass(frozen=True)
class PlattCalibrator:
    """P(good) = 1 / (1 + exp(-(slope * score + intercept))) (Platt 1999)."""

    slope: float
    intercept: float
    method: Method = field(default="platt", init=False)

    def predict(self, scores: ArrayLike) -> FloatArray:
        s = np.asarray(scores, dtype=float)
        return np.asarray(1.0 / (1.0 + np.exp(-(self.slope * s + self.intercept))), dtype=float)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "platt", "slope": self.slope, "intercept": self.intercept}


@dataclass(frozen=True)
class IsotonicCalibrator:
    """Piecewise-linear interpolation through isotonic knots, clipped outside them
    (scikit-learn's IsotonicRegression with out_of_bounds="clip")."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    method: Method = field(default="isotonic", init=False)

    def predict(self, scores: ArrayLike) -> FloatArray:
        s = np.asarray(scores, dtype=float)
        return np.asarray(np.interp(s, np.asarray(self.x), np.asarray(self.y)), dtype=float)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}


Calibrator = PlattCalibrator | IsotonicCalibrator


def calibrator_from_dict(data: dict[str, Any]) -> Calibrator:
    """Inverse of `to_dict`."""
    if data.get("method") == "platt":
        return PlattCalibrator(slope=float(data["slope"]), intercept=float(data["intercept"]))
    if data.get("method") == "isotonic":
        x, y = tuple(float(v) for v in data["x"]), tuple(float(v) for v in data["y"])
        if len(x) != len(y) or not x:
            raise ValueError("isotonic calibrator needs matching, non-empty x and y")
        return IsotonicCalibrator(x=x, y=y)
    raise ValueError(f"unknown calibrator method {data.get('method')!r}")


def _labels(y: ArrayLike) -> NDArray[np.int64]:
    arr = np.asarray(y)
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError("labels must be 0 (bad) or 1 (good)")
    return arr.astype(np.int64)


def fit_platt(scores: ArrayLike, labels: ArrayLike) -> PlattCalibrator:
    """Platt scaling with Platt's (1999) smoothed targets, (N+ + 1) / (N+ + 2) for good and
    1 / (N- + 2) for bad, so a perfectly separating judge still gets a finite slope. Fitted by
    scikit-learn's unpenalized LogisticRegression, each item entered once per class with the
    target as its sample weight; the score is standardized for the solver and mapped back."""
    s, y = np.asarray(scores, dtype=float), _labels(labels)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0 or n_neg == 0:
        p = (n_pos + 0.5) / (y.size + 1.0)
        return PlattCalibrator(slope=0.0, intercept=math.log(p / (1.0 - p)))
    target = np.where(y == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    center, scale = float(s.mean()), float(s.std()) or 1.0
    z = ((s - center) / scale)[:, None]
    model = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000)
    model.fit(
        np.vstack([z, z]),
        np.r_[np.ones(s.size), np.zeros(s.size)],
        sample_weight=np.r_[target, 1.0 - target],
    )
    a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    return PlattCalibrator(slope=a / scale, intercept=b - a * center / scale)


def fit_isotonic(scores: ArrayLike, labels: ArrayLike) -> IsotonicCalibrator:
    """Isotonic regression (scikit-learn; Zadrozny & Elkan 2002), non-decreasing in the score."""
    s, y = np.asarray(scores, dtype=float), _labels(labels)
    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(s, y)
    return IsotonicCalibrator(
        x=tuple(float(v) for v in model.X_thresholds_), y=tuple(float(v) for v in model.y_thresholds_)
    )


def fit_calibrator(scores: ArrayLike, labels: ArrayLike, method: Method) -> Calibrator:
    return fit_platt(scores, labels) if method == "platt" else fit_isotonic(scores, labels)


def brier_score(probabilities: ArrayLike, labels: ArrayLike) -> float:
    """Mean squared error of P(good) against the 0/1 label (Brier 1950)."""
    p, y = np.asarray(probabilities, dtype=float), np.asarray(labels, dtype=float)
    return float(np.mean((p - y) ** 2))


@dataclass(frozen=True)
class ReliabilityBin:
    mean_predicted: float
    observed: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"mean_predicted": self.mean_predicted, "observed": self.observed, "n": self.n}


def reliability_bins(probabilities: ArrayLike, labels: ArrayLike, *, bins: int = 10) -> list[ReliabilityBin]:
    """Reliability diagram data over `bins` equal-width bins on [0, 1] (the last closed),
    empty bins omitted (DeGroot & Fienberg 1983; Niculescu-Mizil & Caruana 2005)."""
    p, y = np.asarray(probabilities, dtype=float), np.asarray(labels, dtype=float)
    idx = np.clip(np.floor(p * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = idx == b
        if mask.any():
            out.append(ReliabilityBin(float(p[mask].mean()), float(y[mask].mean()), int(mask.sum())))
    return out


def expected_calibration_error(probabilities: ArrayLike, labels: ArrayLike, *, bins: int = 10) -> float:
    """ECE = sum over bins of (n_b / n) * |observed_b - mean_predicted_b| (Naeini et al. 2015),
    with the same equal-width bins as `reliability_bins`."""
    rel = reliability_bins(probabilities, labels, bins=bins)
    n = sum(b.n for b in rel)
    return float(sum(b.n / n * abs(b.observed - b.mean_predicted) for b in rel)) if n else math.nan


@dataclass(frozen=True)
class CalibrationReport:
    method: Method
    calibrator: Calibrator
    brier: float
    ece: float
    reliability: list[ReliabilityBin]
    cv_brier: dict[str, float]
    out_of_fold: FloatArray = field(repr=False)
    n: int = 0
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """API.md's "calibration" object."""
        return {
            "method": self.method,
            "brier": self.brier,
            "ece": self.ece,
            "reliability": [b.as_dict() for b in self.reliability],
        }


def calibrate(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    folds: int = 5,
    seed: int = 0,
    min_isotonic_labels: int = 200,
    bins: int = 10,
) -> CalibrationReport:
    """Choose Platt or isotonic by cross-validated Brier score, fit it on all labels, and report
    Brier, ECE and the reliability diagram from out-of-fold (cross-fitted) predictions.

    Isotonic regression overfits small samples, so it is a candidate only from
    `min_isotonic_labels` labels on (CALIBRATION.md: logistic with few labels, isotonic above a
    few hundred). The folds are stratified by label and seeded.
    """
    s, y = np.asarray(scores, dtype=float), _labels(labels)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError("scores and labels must be one-dimensional and the same length")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    minority = int(min(y.sum(), y.size - y.sum()))
    k = min(folds, minority)
    if k < 2:
        # Too few of one class to cross-fit: a constant calibrator, honest about it.
        cal = fit_platt(s, y)
        oof = np.full(s.size, float(y.mean()) if y.size else math.nan)
        return CalibrationReport(
            method="platt",
            calibrator=cal,
            brier=brier_score(oof, y) if y.size else math.nan,
            ece=expected_calibration_error(oof, y, bins=bins) if y.size else math.nan,
            reliability=reliability_bins(oof, y, bins=bins) if y.size else [],
            cv_brier={},
            out_of_fold=oof,
            n=int(y.size),
            note="fewer than 2 labels of one class: no cross-fitting possible",
        )
    methods: list[Method] = ["platt", "isotonic"] if y.size >= min_isotonic_labels else ["platt"]
    oof_by: dict[str, FloatArray] = {m: np.empty(s.size) for m in methods}
    for train, test in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(s[:, None], y):
        for m in methods:
            oof_by[m][test] = fit_calibrator(s[train], y[train], m).predict(s[test])
    cv_brier: dict[str, float] = {m: brier_score(oof_by[m], y) for m in methods}
    best: Method = min(methods, key=lambda m: cv_brier[m])
    oof = oof_by[best]
    return CalibrationReport(
        method=best,
        calibrator=fit_calibrator(s, y, best),
        brier=cv_brier[best],
        ece=expected_calibration_error(oof, y, bins=bins),
        reliability=reliability_bins(oof, y, bins=bins),
        cv_brier=cv_brier,
        out_of_fold=oof,
        n=int(y.size),
    )
