"""Drift cues for a calibrated judge: CUSUM on judge-human disagreement in the audit stream, the
rolling residual of label minus calibrated score, and the shift of the unlabelled score
distribution (PSI, Kolmogorov-Smirnov)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

from evaluation.stats.intervals import DEFAULT_CONFIDENCE, z_value

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class CusumResult:
    alarm_index: int | None
    statistic: FloatArray

    @property
    def alarmed(self) -> bool:
        return self.alarm_index is not None


def cusum(disagreements: ArrayLike, *, k: float, h: float) -> CusumResult:
    """Upper one-sided CUSUM (Page 1954): S_0 = 0, S_t = max(0, S_{t-1} + x_t - k); alarm at the
    first t (0-based) with S_t > h. x_t is 1 when judge and human disagree on the t-th audit item.
    Choose the reference k between the in-control and the out-of-control disagreement rates
    (e.g. their midpoint) and h for the false-alarm rate wanted."""
    x = np.asarray(disagreements, dtype=float)
    if x.ndim != 1:
        raise ValueError("disagreements must be one-dimensional")
    if h <= 0:
        raise ValueError("h must be positive")
    stat = np.empty(x.size)
    s = 0.0
    alarm: int | None = None
    for t, xt in enumerate(x):
        s = max(0.0, s + xt - k)
        stat[t] = s
        if alarm is None and s > h:
            alarm = t
    return CusumResult(alarm, stat)


@dataclass(frozen=True)
class RollingResidual:
    """Rolling mean of label - calibrated score over windows ending at each index >= window - 1."""

    mean: FloatArray
    low: FloatArray
    high: FloatArray


def rolling_residual(
    labels: ArrayLike, calibrated: ArrayLike, *, window: int, confidence: float = DEFAULT_CONFIDENCE
) -> RollingResidual:
    """Mean of (label - calibrated P(good)) over a sliding window, with a normal interval; a
    well-calibrated judge keeps 0 inside it."""
    r = np.asarray(labels, dtype=float) - np.asarray(calibrated, dtype=float)
    if window < 2 or r.size < window:
        empty = np.empty(0)
        return RollingResidual(empty, empty, empty)
    c1 = np.concatenate([[0.0], np.cumsum(r)])
    c2 = np.concatenate([[0.0], np.cumsum(r * r)])
    s1, s2 = c1[window:] - c1[:-window], c2[window:] - c2[:-window]
    mean = s1 / window
    var = np.maximum(s2 - window * mean**2, 0.0) / (window - 1)
    half = z_value(confidence) * np.sqrt(var / window)
    return RollingResidual(mean, mean - half, mean + half)


def psi(
    expected: ArrayLike,
    actual: ArrayLike,
    *,
    bins: int | Sequence[float] = 10,
    value_range: tuple[float, float] = (0.0, 1.0),
    floor: float = 1e-4,
) -> float:
    """Population stability index: sum (a_i - e_i) * ln(a_i / e_i) over fixed bins, where e_i and
    a_i are the shares of the reference and current samples in bin i (Yurdakul 2018, "Statistical
    properties of population stability index"). `bins` is a count of equal-width bins over
    `value_range` or explicit edges; values outside go to the end bins; empty-bin shares are
    floored at `floor` so the log stays finite. Rule of thumb: < 0.1 stable, > 0.25 shifted."""
    _, pe, pa = bin_shares(expected, actual, bins=bins, value_range=value_range)
    return float(np.sum(psi_terms(pe, pa, floor=floor)))


def bin_shares(
    expected: ArrayLike,
    actual: ArrayLike,
    *,
    bins: int | Sequence[float] = 10,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(edges, expected shares, actual shares) of the bins ``psi`` reads: `bins` equal-width bins over `value_range`
    or explicit edges, each bin [low, high) but the last, values outside in the end bins; shares unfloored."""
    e, a = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    if e.size == 0 or a.size == 0:
        raise ValueError("both samples must be non-empty")
    edges = np.linspace(value_range[0], value_range[1], bins + 1) if isinstance(bins, int) else np.asarray(bins, float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("bin edges must be increasing")
    inner = edges[1:-1]

    def shares(x: FloatArray) -> FloatArray:
        counts = np.bincount(np.searchsorted(inner, x, side="right"), minlength=edges.size - 1)
        return counts / x.size

    return edges, shares(e), shares(a)


def psi_terms(expected_shares: ArrayLike, actual_shares: ArrayLike, *, floor: float = 1e-4) -> FloatArray:
    """Each bin's part of the PSI, (a_i - e_i) * ln(a_i / e_i), empty-bin shares floored at `floor`: never below 0,
    so the bins with the largest terms are where a distribution moved."""
    pe = np.maximum(np.asarray(expected_shares, dtype=float), floor)
    pa = np.maximum(np.asarray(actual_shares, dtype=float), floor)
    return (pa - pe) * np.log(pa / pe)


@dataclass(frozen=True)
class KsResult:
    statistic: float
    p_value: float


def ks_shift(expected: ArrayLike, actual: ArrayLike) -> KsResult:
    """Two-sample Kolmogorov-Smirnov test (scipy.stats.ks_2samp)."""
    res = sps.ks_2samp(np.asarray(expected, dtype=float), np.asarray(actual, dtype=float))
    return KsResult(float(res.statistic), float(res.pvalue))


def disagreement_cusum_reference(in_control: float, out_of_control: float) -> float:
    """A usual reference value k: the midpoint of the two disagreement rates (Montgomery,
    "Introduction to Statistical Quality Control", 9.1)."""
    if not 0.0 <= in_control < out_of_control <= 1.0:
        raise ValueError("need 0 <= in_control < out_of_control <= 1")
    return (in_control + out_of_control) / 2.0
