"""A distribution's move between two windows (PSI, Kolmogorov-Smirnov and the PSI's bins): a row of the drift page
(evaluation.services.drift) and of a calibrated judge's monitor (evaluation.reports.calibrated)."""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluation.stats.drift import bin_shares, ks_shift, psi_terms

MIN_SAMPLE = 30  # values in each window, at least, for a PSI (and for a drift segment's own rate: services.drift)

DISTRIBUTIONS = {
    "judge_score": "Judge score (0-1)",
    "response_length": "Response length (characters)",
    "latency_ms": "Latency (ms)",
    "feedback_rate": "Explicit feedback (share of traces)",
}


def distribution_shift(name: str, base: np.ndarray, cur: np.ndarray) -> dict[str, Any]:
    """How a distribution moved between two samples: both means, PSI and Kolmogorov-Smirnov with a status, and the
    PSI's bins (the drift page and the calibration page draw them)."""
    row: dict[str, Any] = {
        "metric": name,
        "label": DISTRIBUTIONS[name],
        "baseline_n": int(base.size),
        "current_n": int(cur.size),
        "psi": None,
        "ks": None,
        "ks_p_value": None,
        "baseline_mean": float(base.mean()) if base.size else None,
        "current_mean": float(cur.mean()) if cur.size else None,
    }
    if min(base.size, cur.size) < MIN_SAMPLE:
        row.update(status="too_little_data", note=f"fewer than {MIN_SAMPLE} values in a window")
        return row
    if name == "judge_score":
        edges: Any = 10
        value_range = (0.0, 1.0)
    elif name == "feedback_rate":
        edges, value_range = [0.0, 0.5, 1.0], (0.0, 1.0)
    else:  # baseline deciles: bins each holding a tenth of the baseline
        inner = np.unique(np.quantile(base, np.linspace(0.1, 0.9, 9)))
        low, high = min(base.min(), cur.min()) - 1.0, max(base.max(), cur.max()) + 1.0
        edges, value_range = [low, *inner.tolist(), high], (low, high)
    # The PSI's bins, each with both windows' shares and its part of the PSI (stats.psi is their sum): where the
    # distribution moved (the drift page draws them).
    bounds, before, after = bin_shares(base, cur, bins=edges, value_range=value_range)
    terms = psi_terms(before, after)
    value = float(terms.sum())
    ks = ks_shift(base, cur)
    status = "shifted" if value > 0.25 else "moderate" if value > 0.1 else "stable"
    if name not in ("judge_score", "feedback_rate"):  # the decile bins' ends: the samples' extremes, not the margin
        bounds[0], bounds[-1] = min(base.min(), cur.min()), max(base.max(), cur.max())
    row["bins"] = [
        {"low": float(low), "high": float(high), "baseline": float(b), "current": float(c), "psi": float(term)}
        for low, high, b, c, term in zip(bounds[:-1], bounds[1:], before, after, terms, strict=True)
        if low < high or b or c  # below a first decile that is the minimum itself: empty, of no width, not drawn
    ]
    row.update(psi=value, ks=ks.statistic, ks_p_value=ks.p_value, status=status)
    return row
