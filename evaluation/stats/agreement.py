"""Judge-human agreement: confusion, rates, chance-corrected agreement, bias, and the verdict band.

Conventions: "positive" means good (human) / pass (judge). Confusion matrices are
[[tn, fp], [fn, tp]] with the human in rows and the judge in columns (scikit-learn's layout).
Weights are 1 / inclusion probability: with them every rate is a ratio of weighted sums
(Hajek) and its interval is a seeded bootstrap, resampled within strata when given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

from evaluation.stats.intervals import (
    DEFAULT_CONFIDENCE,
    Interval,
    bootstrap_totals,
    normal_interval,
    percentile_interval,
    wilson,
    z_value,
)

Weighting = Literal["none", "linear", "quadratic"]
AlphaLevel = Literal["nominal", "ordinal", "interval"]
VerdictBand = Literal["exploratory", "trends", "gating"]

FloatArray = NDArray[np.float64]


def _binary(x: ArrayLike, name: str) -> NDArray[np.int64]:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return arr.astype(np.int64)


def _weights(weights: ArrayLike | None, n: int) -> FloatArray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,):
        raise ValueError("weights must have one entry per item")
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError("weights must be positive and finite (1 / inclusion probability)")
    return w


def _strata_codes(strata: ArrayLike | None, n: int) -> NDArray[np.int64] | None:
    if strata is None:
        return None
    arr = np.asarray(strata)
    if arr.shape != (n,):
        raise ValueError("strata must have one entry per item")
    _, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int64)


# --- batch kernels: each takes a stack of tables (B, K, K) and returns B values -------------------


def _disagreement_weights(k: int, weighting: Weighting) -> FloatArray:
    """Disagreement weights scaled to [0, 1] (Cohen 1968; Fleiss & Cohen 1973 for quadratic)."""
    i, j = np.indices((k, k))
    if weighting == "none":
        return (i != j).astype(float)
    span = max(k - 1, 1)
    if weighting == "linear":
        return np.abs(i - j) / span
    if weighting == "quadratic":
        return ((i - j) / span) ** 2
    raise ValueError(f"unknown weighting {weighting!r}")


def _kappa_batch(tables: FloatArray, disagreement: FloatArray) -> FloatArray:
    p = tables / tables.sum(axis=(-2, -1), keepdims=True)
    expected = p.sum(axis=-1)[..., :, None] * p.sum(axis=-2)[..., None, :]
    return 1.0 - (disagreement * p).sum(axis=(-2, -1)) / (disagreement * expected).sum(axis=(-2, -1))


def _ac1_batch(tables: FloatArray) -> FloatArray:
    p = tables / tables.sum(axis=(-2, -1), keepdims=True)
    q = p.shape[-1]
    pa = np.trace(p, axis1=-2, axis2=-1)
    pi = (p.sum(axis=-1) + p.sum(axis=-2)) / 2.0
    pe = (pi * (1.0 - pi)).sum(axis=-1) / (q - 1)
    return (pa - pe) / (1.0 - pe)


def _wilson_effective(value: float, replicates: FloatArray, items: int, confidence: float) -> Interval:
    """Wilson interval for a weighted proportion at the effective sample size p(1 - p) / Var,
    Var from the bootstrap replicates (Korn & Graubard 1998 in Wilson form; Franco, Little, Louis &
    Slud 2019). Percentile intervals undercover for rates near 0 or 1 in small samples. At a rate
    of exactly 0 or 1 (no variance to measure) the effective size is the `items` in the denominator."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size < 0.9 * replicates.size or finite.size < 2:
        return Interval.undefined("statistic undefined in too many bootstrap resamples", value=value)
    var = float(finite.var(ddof=1))
    n_eff = value * (1.0 - value) / var if var > 0.0 and 0.0 < value < 1.0 else float(items)
    got = wilson(value * n_eff, n_eff, confidence)
    return Interval(value=value, low=got.low, high=got.high)


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


# --- kappa family --------------------------------------------------------------------------------


def kappa_from_table(
    table: ArrayLike, *, weighting: Weighting = "none", confidence: float = DEFAULT_CONFIDENCE
) -> Interval:
    """Cohen's kappa (1960), or weighted kappa (Cohen 1968), from a square count table.

    The interval is kappa +- z * SE with the large-sample variance of Fleiss, Cohen & Everitt
    (1969, "Large sample standard errors of kappa and weighted kappa"), the same as statsmodels
    `cohens_kappa(table, wt=...)`'s `std_kappa`. Weights use category positions (0..K-1), so
    pass a table covering the whole scale (e.g. all of 1-5) for an ordinal rubric.
    """
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError("table must be square")
    n = t.sum()
    if n == 0:
        return Interval.undefined("no items")
    d = _disagreement_weights(t.shape[0], weighting)
    p = t / n
    row, col = p.sum(axis=1), p.sum(axis=0)
    expected = np.outer(row, col)
    if (d * expected).sum() == 0:
        return Interval.undefined("kappa undefined: both raters used a single category")
    kappa = float(_kappa_batch(t, d))
    # FCE (1969) in agreement weights w = 1 - d.
    w = 1.0 - d
    pe = float((w * expected).sum())
    w_row = w @ col  # weighted mean over the second rater's categories, per row
    w_col = row @ w  # per column
    term = (p * (w - (w_row[:, None] + w_col[None, :]) * (1.0 - kappa)) ** 2).sum()
    var = (term - (kappa - pe * (1.0 - kappa)) ** 2) / ((1.0 - pe) ** 2 * n)
    se = math.sqrt(max(var, 0.0))
    return normal_interval(kappa, se, confidence, clip=(-1.0, 1.0))


def gwet_ac1_from_table(table: ArrayLike, *, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Gwet's AC1 for two raters with its variance (Gwet 2008, "Computing inter-rater reliability
    and its variance in the presence of high agreement", Br J Math Stat Psychol 61:29-48, eq. for
    two raters with the sampling fraction taken as 0). Stable where kappa collapses under skew.
    """
    t = np.asarray(table, dtype=float)
    n = t.sum()
    q = t.shape[0]
    if n == 0:
        return Interval.undefined("no items")
    p = t / n
    pa = float(np.trace(p))
    pi = (p.sum(axis=1) + p.sum(axis=0)) / 2.0
    pe = float((pi * (1.0 - pi)).sum() / (q - 1))
    if pe >= 1.0:
        return Interval.undefined("AC1 undefined")
    ac1 = (pa - pe) / (1.0 - pe)
    term2 = float((np.diag(p) * (1.0 - pi)).sum() / (q - 1) - pa * pe)
    pair = 1.0 - (pi[:, None] + pi[None, :]) / 2.0
    term3 = float((p * pair**2).sum() / (q - 1) ** 2 - pe**2)
    var = (pa * (1.0 - pa) - 4.0 * (1.0 - ac1) * term2 + 4.0 * (1.0 - ac1) ** 2 * term3) / (n * (1.0 - pe) ** 2)
    return normal_interval(ac1, math.sqrt(max(var, 0.0)), confidence, clip=(-1.0, 1.0))


def contingency_table(
    human: ArrayLike, judge: ArrayLike, categories: Sequence[float], weights: ArrayLike | None = None
) -> FloatArray:
    """Counts (or summed weights) of (human, judge) pairs over `categories`, human in rows."""
    h, j = np.asarray(human), np.asarray(judge)
    if h.shape != j.shape or h.ndim != 1:
        raise ValueError("human and judge must be one-dimensional and the same length")
    cats = np.asarray(categories)
    hi, ji = np.searchsorted(cats, h), np.searchsorted(cats, j)
    if h.size and (hi.max() >= cats.size or ji.max() >= cats.size or np.any(cats[hi] != h) or np.any(cats[ji] != j)):
        raise ValueError("a value falls outside the given categories")
    k = cats.size
    w = np.ones(h.size) if weights is None else np.asarray(weights, dtype=float)
    return np.bincount(hi * k + ji, weights=w, minlength=k * k).astype(float).reshape(k, k)


def weighted_kappa(
    human: ArrayLike,
    judge: ArrayLike,
    *,
    categories: Sequence[float] = (1, 2, 3, 4, 5),
    weighting: Weighting = "quadratic",
    confidence: float = DEFAULT_CONFIDENCE,
) -> Interval:
    """Quadratic-weighted kappa for an ordinal scale (Fleiss & Cohen 1973) with the FCE interval.

    Equals scikit-learn `cohen_kappa_score(human, judge, labels=categories, weights="quadratic")`.
    """
    return kappa_from_table(contingency_table(human, judge, categories), weighting=weighting, confidence=confidence)


# --- bias -----------------------------------------------------------------------------------------


def mcnemar_p(fp: float, fn: float, *, exact: bool | None = None) -> float:
    """McNemar (1947) test of judge pass rate == human good rate from the discordant counts.

    Exact binomial test when `exact` (default: when fp + fn < 25), else chi-square with
    continuity correction; matches statsmodels `mcnemar(table, exact=..., correction=True)`.
    """
    b, c = float(fp), float(fn)
    if exact is None:
        exact = b + c < 25
    if b + c == 0:
        return 1.0
    if exact:
        return float(min(1.0, 2.0 * sps.binom.cdf(min(b, c), b + c, 0.5)))
    stat = (abs(b - c) - 1.0) ** 2 / (b + c)
    return float(sps.chi2.sf(stat, 1))


@dataclass(frozen=True)
class Bias:
    """Judge pass rate minus human good rate on the same items, with McNemar's p."""

    interval: Interval
    mcnemar_p: float | None
    note: str | None = None

    def as_dict(self) -> dict[str, float | str | None]:
        out = self.interval.as_dict()
        out["mcnemar_p"] = self.mcnemar_p
        if self.note:
            out["note"] = self.note
        return out


def paired_difference_interval(table: ArrayLike, *, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Interval for judge pass rate - human good rate from a paired 2x2 table [[tn, fp], [fn, tp]].

    Adjusted Wald interval of Agresti & Min (2005, "Simple improved confidence intervals for
    comparing matched proportions"): add 0.5 to every cell, then Wald. The value is unadjusted.
    """
    t = np.asarray(table, dtype=float)
    n = t.sum()
    if n == 0:
        return Interval.undefined("no items")
    diff = (t[0, 1] - t[1, 0]) / n
    b, c, m = t[0, 1] + 0.5, t[1, 0] + 0.5, n + 2.0
    center = (b - c) / m
    var = ((b + c) - (b - c) ** 2 / m) / m**2
    z = z_value(confidence)
    half = z * math.sqrt(max(var, 0.0))
    return Interval(value=diff, low=max(-1.0, center - half), high=min(1.0, center + half))


# --- binary agreement report ----------------------------------------------------------------------


@dataclass(frozen=True)
class BinaryAgreement:
    n: int
    confusion: tuple[tuple[int, int], tuple[int, int]]
    weighted_confusion: tuple[tuple[float, float], tuple[float, float]] | None
    human_good_rate: float
    judge_pass_rate: float
    tpr: Interval
    tnr: Interval
    precision: Interval
    kappa: Interval
    ac1: Interval
    bias: Bias
    alpha: Interval
    spearman: Interval

    def as_dict(self) -> dict[str, Any]:
        """API.md's "agreement" object for a binary rubric (weighted_kappa is ordinal only)."""
        return {
            "confusion": [list(row) for row in self.confusion],
            "tpr": self.tpr.as_dict(),
            "tnr": self.tnr.as_dict(),
            "precision": self.precision.as_dict(),
            "kappa": self.kappa.as_dict(),
            "weighted_kappa": None,
            "alpha": self.alpha.as_dict(),
            "ac1": self.ac1.as_dict(),
            "spearman": self.spearman.as_dict(),
            "bias": self.bias.as_dict(),
        }


def confusion_matrix(human: ArrayLike, judge: ArrayLike, weights: ArrayLike | None = None) -> FloatArray:
    """[[tn, fp], [fn, tp]]; with weights, the weighted (population-scale) counts."""
    return contingency_table(_binary(human, "human"), _binary(judge, "judge"), (0, 1), weights)


def _binary_stats_batch(cells: FloatArray) -> dict[str, FloatArray]:
    """cells: (B, 4) weighted counts in order tn, fp, fn, tp."""
    tn, fp, fn, tp = cells.T
    total = cells.sum(axis=1)
    tables = cells.reshape(-1, 2, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "tpr": _ratio(tp, tp + fn),
            "tnr": _ratio(tn, tn + fp),
            "precision": _ratio(tp, tp + fp),
            "kappa": _kappa_batch(tables, _disagreement_weights(2, "none")),
            "ac1": _ac1_batch(tables),
            "bias": (fp - fn) / total,
        }


def binary_agreement(
    human: ArrayLike,
    judge: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    strata: ArrayLike | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    replicates: int = 1000,
    seed: int = 0,
) -> BinaryAgreement:
    """Agreement of a binary judge verdict with binary human labels (1 = good / pass).

    Unweighted: Wilson intervals for TPR, TNR and precision; FCE interval for kappa (Cohen
    1960); Gwet (2008) interval for AC1; Agresti-Min interval and McNemar p for the bias.
    Weighted (1 / inclusion probability, for enriched designs): every statistic from the
    weighted table, with `replicates` seeded bootstrap resamples: TPR, TNR and precision get a
    Wilson interval at the bootstrap's effective sample size, kappa, AC1 and bias the percentile
    interval (about 94% coverage in this module's simulations at ~170 labels). Pass `strata` only
    when the design fixed each stratum's sample size (stratified sampling): resampling then
    happens within strata. Items selected one by one with probability pi (Bernoulli / Poisson
    selection, random sample sizes) are resampled as a whole, without strata.
    """
    h, j = _binary(human, "human"), _binary(judge, "judge")
    if h.shape != j.shape:
        raise ValueError("human and judge must be the same length")
    n = int(h.size)
    w = _weights(weights, n)
    counts = confusion_matrix(h, j)
    confusion = ((int(counts[0, 0]), int(counts[0, 1])), (int(counts[1, 0]), int(counts[1, 1])))
    if n == 0:
        empty = Interval.undefined("no items")
        return BinaryAgreement(
            n=0,
            confusion=confusion,
            weighted_confusion=None,
            human_good_rate=math.nan,
            judge_pass_rate=math.nan,
            tpr=empty,
            tnr=empty,
            precision=empty,
            kappa=empty,
            ac1=empty,
            bias=Bias(empty, None),
            alpha=empty,
            spearman=empty,
        )
    # Alpha (nominal: judge and human as two coders) and Spearman (the phi coefficient on 0/1)
    # describe the labelled items as they are, so they stay unweighted.
    alpha = krippendorff_alpha(
        np.vstack([h, j]).astype(float), level="nominal", confidence=confidence, replicates=replicates, seed=seed
    )
    rank = spearman(h, j, confidence=confidence)

    if w is None:
        tn, fp, fn, tp = counts.ravel()
        return BinaryAgreement(
            n=n,
            confusion=confusion,
            weighted_confusion=None,
            human_good_rate=float((fn + tp) / n),
            judge_pass_rate=float((fp + tp) / n),
            tpr=wilson(tp, tp + fn, confidence) if tp + fn else Interval.undefined("no good items"),
            tnr=wilson(tn, tn + fp, confidence) if tn + fp else Interval.undefined("no bad items"),
            precision=wilson(tp, tp + fp, confidence) if tp + fp else Interval.undefined("the judge passed nothing"),
            kappa=kappa_from_table(counts, confidence=confidence),
            ac1=gwet_ac1_from_table(counts, confidence=confidence),
            bias=Bias(paired_difference_interval(counts, confidence=confidence), mcnemar_p(fp, fn)),
            alpha=alpha,
            spearman=rank,
        )

    cell = h * 2 + j
    per_item = np.zeros((n, 4))
    per_item[np.arange(n), cell] = w
    point = _binary_stats_batch(per_item.sum(axis=0)[None, :])
    rng = np.random.default_rng(seed)
    reps = _binary_stats_batch(bootstrap_totals(per_item, replicates, rng, _strata_codes(strata, n)))
    wc = per_item.sum(axis=0)
    (tn_n, fp_n), (fn_n, tp_n) = confusion
    denominators = {"tpr": tp_n + fn_n, "tnr": tn_n + fp_n, "precision": tp_n + fp_n}

    def boot(name: str) -> Interval:
        value = float(point[name][0])
        if not math.isfinite(value):
            return Interval.undefined(f"{name} undefined on these items")
        if name in denominators:
            return _wilson_effective(value, reps[name], denominators[name], confidence)
        return percentile_interval(value, reps[name], confidence)

    return BinaryAgreement(
        n=n,
        confusion=confusion,
        weighted_confusion=((float(wc[0]), float(wc[1])), (float(wc[2]), float(wc[3]))),
        human_good_rate=float((wc[2] + wc[3]) / wc.sum()),
        judge_pass_rate=float((wc[1] + wc[3]) / wc.sum()),
        tpr=boot("tpr"),
        tnr=boot("tnr"),
        precision=boot("precision"),
        kappa=boot("kappa"),
        ac1=boot("ac1"),
        bias=Bias(boot("bias"), None, note="weighted sample: McNemar does not apply; see the bootstrap interval"),
        alpha=alpha,
        spearman=rank,
    )


# --- ordinal agreement ----------------------------------------------------------------------------


def spearman(human: ArrayLike, judge: ArrayLike, *, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Spearman's rho (scipy) with a Fisher-z interval, using the variance (1 + rho^2 / 2) / (n - 3)
    of Bonett & Wright (2000, "Sample size requirements for estimating Pearson, Kendall and
    Spearman correlations"), which keeps coverage near nominal for rank correlations."""
    h, j = np.asarray(human, dtype=float), np.asarray(judge, dtype=float)
    n = h.size
    if n < 4:
        return Interval.undefined("fewer than 4 items")
    if np.ptp(h) == 0 or np.ptp(j) == 0:
        return Interval.undefined("a rater gave every item the same value")
    rho = float(sps.spearmanr(h, j).statistic)
    if abs(rho) >= 1.0:
        return Interval(value=rho, low=rho, high=rho, note="perfect rank agreement")
    z = math.atanh(rho)
    half = z_value(confidence) * math.sqrt((1.0 + rho * rho / 2.0) / (n - 3))
    return Interval(value=rho, low=math.tanh(z - half), high=math.tanh(z + half))


def mean_absolute_error(human: ArrayLike, judge: ArrayLike, *, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Mean |judge - human| with a Student-t interval over items."""
    d = np.abs(np.asarray(judge, dtype=float) - np.asarray(human, dtype=float))
    n = d.size
    if n < 2:
        return Interval.undefined("fewer than 2 items", value=float(d.mean()) if n else None)
    mae = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n))
    t = float(sps.t.ppf(1.0 - (1.0 - confidence) / 2.0, n - 1))
    return Interval(value=mae, low=max(0.0, mae - t * se), high=mae + t * se)


# --- Krippendorff's alpha -------------------------------------------------------------------------


def _reliability_counts(data: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(values, U x C count matrix) over pairable units (at least two values)."""
    arr = np.asarray(data, dtype=float)
    if arr.ndim != 2:
        raise ValueError("reliability data must be coders x units")
    values = np.unique(arr[np.isfinite(arr)])
    counts = (
        np.stack([(arr == v).sum(axis=0) for v in values], axis=1).astype(float) if values.size else np.zeros((0, 0))
    )
    if counts.size:
        counts = counts[counts.sum(axis=1) >= 2]
    return values, counts


def coincidence_matrix(data: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Krippendorff's coincidence matrix o_ck from coders x units data (NaN = missing).

    o_ck = sum over units u of n_uc * (n_uk - [c == k]) / (m_u - 1), for units with m_u >= 2
    values (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability", section C).
    Returns (values, matrix).
    """
    values, counts = _reliability_counts(data)
    if counts.size == 0:
        return values, np.zeros((values.size, values.size))
    return values, _unit_coincidences(counts).sum(axis=0)


def _unit_coincidences(counts: FloatArray) -> FloatArray:
    m = counts.sum(axis=1)
    outer = counts[:, :, None] * counts[:, None, :]
    idx = np.arange(counts.shape[1])
    outer[:, idx, idx] -= counts
    return outer / (m - 1.0)[:, None, None]


def _delta_squared(values: FloatArray, marginals: FloatArray, level: AlphaLevel) -> FloatArray:
    """Metric differences delta^2_ck (Krippendorff 2011, section E); marginals may be batched."""
    k = values.size
    if level == "nominal":
        return np.broadcast_to(
            (np.arange(k)[:, None] != np.arange(k)[None, :]).astype(float), (*marginals.shape[:-1], k, k)
        )
    if level == "interval":
        return np.broadcast_to((values[:, None] - values[None, :]) ** 2, (*marginals.shape[:-1], k, k))
    if level == "ordinal":
        cum = np.cumsum(marginals, axis=-1)
        lo = np.minimum.outer(np.arange(k), np.arange(k))
        hi = np.maximum.outer(np.arange(k), np.arange(k))
        # sum_{g = c..k} n_g - (n_c + n_k) / 2
        between = cum[..., hi] - cum[..., lo] + marginals[..., lo]
        return (between - (marginals[..., :, None] + marginals[..., None, :]) / 2.0) ** 2
    raise ValueError(f"unknown level {level!r}")


def _alpha_from_coincidences(values: FloatArray, o: FloatArray, level: AlphaLevel) -> FloatArray:
    marg = o.sum(axis=-1)
    n = marg.sum(axis=-1)
    d2 = _delta_squared(values, marg, level)
    observed = (o * d2).sum(axis=(-2, -1))
    expected = (marg[..., :, None] * marg[..., None, :] * d2).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - (n - 1.0) * observed / expected


def krippendorff_alpha(
    data: ArrayLike,
    *,
    level: AlphaLevel = "nominal",
    confidence: float = DEFAULT_CONFIDENCE,
    replicates: int = 1000,
    seed: int = 0,
) -> Interval:
    """Krippendorff's alpha from the coincidence matrix: 1 - (n - 1) sum o_ck d_ck / sum n_c n_k d_ck
    (Krippendorff 2011). `data` is coders x units with NaN for a missing value; any number of
    coders. `level` picks the metric: nominal, ordinal (rank-based on the marginals) or interval.

    The interval is a seeded percentile bootstrap over units (pairable units only).
    """
    values, counts = _reliability_counts(data)
    if counts.shape[0] == 0:
        return Interval.undefined("no unit has two or more values")
    if values.size > 200 and level != "interval":
        raise ValueError("too many distinct values for a nominal or ordinal metric")
    if values.size == 1:
        return Interval.undefined("every value is the same: alpha is undefined")
    if level == "interval":
        # The interval metric's sums over the coincidence matrix reduce to per-unit moments,
        # which keeps continuous data (many distinct values) cheap: sum_ck o_ck (v_c - v_k)^2 =
        # sum_u [2 m_u S2_u - 2 S1_u^2] / (m_u - 1), and with n_c the pooled pairable values,
        # sum_ck n_c n_k (v_c - v_k)^2 = 2 n S2 - 2 S1^2.
        m = counts.sum(axis=1)
        s1 = counts @ values
        s2 = counts @ (values**2)
        per_unit = np.stack([m, s1, s2, (2.0 * m * s2 - 2.0 * s1**2) / (m - 1.0)], axis=1)

        def alpha_of(sums: FloatArray) -> FloatArray:
            n_, s1_, s2_, obs = sums[..., 0], sums[..., 1], sums[..., 2], sums[..., 3]
            with np.errstate(divide="ignore", invalid="ignore"):
                return 1.0 - (n_ - 1.0) * obs / (2.0 * n_ * s2_ - 2.0 * s1_**2)

        value = float(alpha_of(per_unit.sum(axis=0)))
        rng = np.random.default_rng(seed)
        reps = alpha_of(bootstrap_totals(per_unit, replicates, rng))
        return percentile_interval(value, reps, confidence)

    units = _unit_coincidences(counts)
    k = values.size
    value = float(_alpha_from_coincidences(values, units.sum(axis=0), level))
    rng = np.random.default_rng(seed)
    boot = bootstrap_totals(units.reshape(units.shape[0], k * k), replicates, rng).reshape(-1, k, k)
    return percentile_interval(value, _alpha_from_coincidences(values, boot, level), confidence)


@dataclass(frozen=True)
class OrdinalAgreement:
    n: int
    weighted_kappa: Interval
    alpha: Interval
    spearman: Interval
    mae: Interval
    binary: BinaryAgreement

    def as_dict(self) -> dict[str, Any]:
        """API.md's "agreement" object for an ordinal rubric: confusion, rates, kappa, AC1 and bias
        at the pass threshold; weighted kappa, alpha (ordinal) and Spearman on the whole scale."""
        out = self.binary.as_dict()
        out.update(
            weighted_kappa=self.weighted_kappa.as_dict(),
            alpha=self.alpha.as_dict(),
            spearman=self.spearman.as_dict(),
            mae=self.mae.as_dict(),
        )
        return out


def ordinal_agreement(
    human: ArrayLike,
    judge: ArrayLike,
    *,
    categories: Sequence[float] = (1, 2, 3, 4, 5),
    pass_at: float = 4,
    weights: ArrayLike | None = None,
    strata: ArrayLike | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    replicates: int = 1000,
    seed: int = 0,
) -> OrdinalAgreement:
    """Ordinal (e.g. 1-5) agreement: quadratic-weighted kappa, Krippendorff's ordinal alpha
    (judge and human as two coders), Spearman, MAE, and the binary report at `pass_at`
    (API.md: ordinal counts as pass / good at >= 4).

    With weights, the weighted kappa comes from the weighted table with a bootstrap interval;
    alpha, Spearman and MAE stay unweighted (they describe the labelled items).
    """
    h, j = np.asarray(human, dtype=float), np.asarray(judge, dtype=float)
    w = _weights(weights, h.size)
    binary = binary_agreement(
        (h >= pass_at).astype(int),
        (j >= pass_at).astype(int),
        weights=w,
        strata=strata,
        confidence=confidence,
        replicates=replicates,
        seed=seed,
    )
    if w is None:
        qwk = weighted_kappa(h, j, categories=categories, confidence=confidence)
    else:
        k = len(categories)
        d = _disagreement_weights(k, "quadratic")
        cats = np.asarray(categories, dtype=float)
        cell = np.searchsorted(cats, h) * k + np.searchsorted(cats, j)
        contingency_table(h, j, categories)  # validates the values
        per_item = np.zeros((h.size, k * k))
        per_item[np.arange(h.size), cell] = w
        value = float(_kappa_batch(per_item.sum(axis=0).reshape(k, k), d))
        rng = np.random.default_rng(seed)
        boot = bootstrap_totals(per_item, replicates, rng, _strata_codes(strata, h.size)).reshape(-1, k, k)
        qwk = percentile_interval(value, _kappa_batch(boot, d), confidence)
    return OrdinalAgreement(
        n=int(h.size),
        weighted_kappa=qwk,
        alpha=krippendorff_alpha(
            np.vstack([h, j]), level="ordinal", confidence=confidence, replicates=replicates, seed=seed
        ),
        spearman=spearman(h, j, confidence=confidence),
        mae=mean_absolute_error(h, j, confidence=confidence),
        binary=binary,
    )


# --- verdict --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    band: VerdictBand
    statistic: Literal["kappa", "ac1"]
    lower_bound: float | None
    reason: str


def verdict(
    agreement: BinaryAgreement,
    *,
    tnr_floor: float = 0.5,
    skew_threshold: float = 0.85,
    trends_at: float = 0.4,
    gating_at: float = 0.7,
) -> Verdict:
    """Verdict band from the LOWER bound of the agreement interval, never the point (CALIBRATION.md).

    The statistic is Cohen's kappa, or Gwet's AC1 when more than `skew_threshold` of items are
    good (kappa collapses under skewed prevalence). Below `trends_at` exploratory, below
    `gating_at` trends, else gating; gating is refused (downgraded to trends) when the lower
    bound of the TNR, the judge's power to catch failures, is below `tnr_floor`.
    """
    use_ac1 = math.isfinite(agreement.human_good_rate) and agreement.human_good_rate > skew_threshold
    statistic: Literal["kappa", "ac1"] = "ac1" if use_ac1 else "kappa"
    lower = (agreement.ac1 if use_ac1 else agreement.kappa).low
    if lower is None:
        return Verdict("exploratory", statistic, None, f"{statistic} interval undefined")
    if lower < trends_at:
        return Verdict("exploratory", statistic, lower, f"{statistic} lower bound {lower:.3f} < {trends_at}")
    if lower < gating_at:
        return Verdict("trends", statistic, lower, f"{statistic} lower bound {lower:.3f} < {gating_at}")
    tnr_low = agreement.tnr.low
    if tnr_low is None or tnr_low < tnr_floor:
        shown = "undefined" if tnr_low is None else f"{tnr_low:.3f}"
        return Verdict(
            "trends", statistic, lower, f"TNR lower bound {shown} below the floor {tnr_floor}: gating refused"
        )
    return Verdict("gating", statistic, lower, f"{statistic} lower bound {lower:.3f} >= {gating_at}")
