"""How much an implicit signal (retry, copy, dwell, ...) says about explicit human labels: AUC."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from evaluation.stats.intervals import DEFAULT_CONFIDENCE, Interval, normal_interval


def delong_auc(labels: ArrayLike, signal: ArrayLike) -> tuple[float, float]:
    """AUC of `signal` for separating good (1) from bad (0) labels, and DeLong's variance
    (DeLong, DeLong & Clarke-Pearson 1988), computed from midranks in O(n log n)
    (Sun & Xu 2014, "Fast implementation of DeLong's algorithm"). Ties count one half."""
    y = np.asarray(labels)
    x = np.asarray(signal, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("labels and signal must be one-dimensional and the same length")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (bad) or 1 (good)")
    pos, neg = x[y == 1], x[y == 0]
    m, n = pos.size, neg.size
    if m == 0 or n == 0:
        raise ValueError("AUC needs both good and bad labels")
    rank_all = sps.rankdata(np.concatenate([pos, neg]))
    rank_pos, rank_neg = sps.rankdata(pos), sps.rankdata(neg)
    auc = float((rank_all[:m].sum() - m * (m + 1) / 2.0) / (m * n))
    v10 = (rank_all[:m] - rank_pos) / n  # per positive: share of negatives below it
    v01 = 1.0 - (rank_all[m:] - rank_neg) / m  # per negative: share of positives above it
    s10 = float(v10.var(ddof=1)) if m > 1 else math.nan
    s01 = float(v01.var(ddof=1)) if n > 1 else math.nan
    return auc, s10 / m + s01 / n


def signal_auc(labels: ArrayLike, signal: ArrayLike, *, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """AUC with a DeLong interval (clipped to [0, 1]); 0.5 means the signal carries no information,
    below 0.5 that it points to bad outputs (e.g. retries). Equals scikit-learn roc_auc_score."""
    y = np.asarray(labels)
    if y.size == 0 or np.unique(y).size < 2:
        return Interval.undefined("needs both good and bad labels")
    auc, var = delong_auc(y, signal)
    if not math.isfinite(var):
        return Interval.undefined("needs at least two good and two bad labels", value=auc)
    return normal_interval(auc, math.sqrt(var), confidence, clip=(0.0, 1.0))
