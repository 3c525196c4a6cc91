"""The true success rate of a feature, from human labels and (where valid) judge scores.

Each estimator matches a sampling design, and `estimate_success` picks it from the design the
labels were drawn under (fixed before results are seen; choosing the narrowest interval after
the fact breaks coverage). The judge's own pass rate is reported apart, labelled uncorrected.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from evaluation.stats.intervals import DEFAULT_CONFIDENCE, Interval, wilson, z_value

FloatArray = NDArray[np.float64]
EstimatorMethod = Literal["ppi++", "stratified", "ipw", "classical"]

MIN_LABELS = 50


@dataclass(frozen=True)
class NaiveRate:
    """The judge's own pass rate: shown for contrast, never as the estimate."""

    value: float | None
    n: int
    note: str = "uncorrected: the judge's own pass rate, not an estimate of the success rate"

    def as_dict(self) -> dict[str, float | int | None]:
        return {"value": self.value, "n": self.n}

    @classmethod
    def of_counts(cls, passed: int, n: int) -> NaiveRate:
        """From counts (what a database returns): equal to `naive_judge_rate` of the 0/1 verdicts."""
        if not 0 <= passed <= n:
            raise ValueError("passed must lie between 0 and n")
        return cls(value=passed / n if n else None, n=n)


def naive_judge_rate(judge_pass: ArrayLike) -> NaiveRate:
    """Share of scored traces the judge passed (0/1 verdicts)."""
    x = np.asarray(judge_pass, dtype=float)
    return NaiveRate(value=float(x.mean()) if x.size else None, n=int(x.size))


@dataclass(frozen=True)
class SuccessEstimate:
    method: EstimatorMethod
    interval: Interval
    n_labels: int
    n_scored: int
    lam: float | None = None
    effective_labels: float | None = None
    rho: float | None = None
    note: str | None = None

    @property
    def label_multiplier(self) -> float | None:
        """Effective labels per real label ("N labels are worth M")."""
        if self.effective_labels is None or self.n_labels == 0:
            return None
        return self.effective_labels / self.n_labels

    def as_dict(self) -> dict[str, Any]:
        """API.md's "estimate": an interval object plus method, lambda and the label counts."""
        out: dict[str, Any] = dict(self.interval.as_dict())
        out.update(
            method=self.method,
            **{"lambda": self.lam},
            n_labels=self.n_labels,
            n_scored=self.n_scored,
            effective_labels=self.effective_labels,
        )
        if self.note and "note" not in out:
            out["note"] = self.note
        return out


def _labels(labels: ArrayLike) -> FloatArray:
    y = np.asarray(labels, dtype=float)
    if y.ndim != 1:
        raise ValueError("labels must be one-dimensional")
    if y.size and (not np.all(np.isfinite(y)) or y.min() < 0.0 or y.max() > 1.0):
        raise ValueError("labels must lie in [0, 1]")
    return y


def _is_binary(y: FloatArray) -> bool:
    return bool(np.isin(y, (0.0, 1.0)).all())


def _clip01(value: float, low: float, high: float) -> Interval:
    return Interval(value=value, low=max(0.0, low), high=min(1.0, high))


def classical_mean(
    labels: ArrayLike, *, confidence: float = DEFAULT_CONFIDENCE, n_scored: int = 0, note: str | None = None
) -> SuccessEstimate:
    """The success rate from labels alone: Wilson interval for 0/1 labels, else a normal interval."""
    y = _labels(labels)
    n = int(y.size)
    if n == 0:
        interval = Interval.undefined("no labels")
    elif np.isin(y, (0.0, 1.0)).all():
        interval = wilson(float(y.sum()), n, confidence)
    elif n < 2:
        interval = Interval.undefined("one label", value=float(y[0]))
    else:
        se = float(y.std(ddof=1) / math.sqrt(n))
        mean = float(y.mean())
        z = z_value(confidence)
        interval = _clip01(mean, mean - z * se, mean + z * se)
    return SuccessEstimate("classical", interval, n, n_scored, effective_labels=float(n), note=note)


@dataclass(frozen=True)
class Moments:
    """A sample's count, mean and sum of squared deviations from its mean (M2): all PPI++ needs of
    the unlabelled scores, so the database can aggregate a million of them (count, avg, var_pop)
    instead of sending them. Parts are combined and taken apart with the pairwise update of Chan,
    Golub & LeVeque (1983, "Algorithms for computing the sample variance: analysis and
    recommendations"), which does not cancel the way sum-of-squares formulas do."""

    n: int
    mean: float
    m2: float

    def __post_init__(self) -> None:
        if self.n < 0 or not math.isfinite(self.mean) or not math.isfinite(self.m2) or self.m2 < 0:
            raise ValueError("moments need n >= 0, a finite mean and a finite M2 >= 0")

    @classmethod
    def of(cls, values: ArrayLike) -> Moments:
        x = np.asarray(values, dtype=float).ravel()
        if x.size == 0:
            return cls(0, 0.0, 0.0)
        mean = float(x.mean())
        return cls(int(x.size), mean, float(np.sum((x - mean) ** 2)))

    @classmethod
    def from_variance(cls, n: int, mean: float | None, var_pop: float | None) -> Moments:
        """From a count, mean and population variance (SQL's count, avg, var_pop; None when n = 0)."""
        if n == 0:
            return cls(0, 0.0, 0.0)
        return cls(int(n), float(mean or 0.0), max(0.0, float(var_pop or 0.0)) * n)

    def var(self, ddof: int = 0) -> float:
        return self.m2 / (self.n - ddof)

    def merge(self, other: Moments) -> Moments:
        """The moments of both samples together."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return Moments(n, self.mean + delta * other.n / n, self.m2 + other.m2 + delta * delta * self.n * other.n / n)

    def minus(self, part: Moments) -> Moments:
        """The moments of the rest of this sample once ``part`` (a subsample of it) is taken out."""
        rest = self.n - part.n
        if rest < 0:
            raise ValueError("a part cannot be larger than the whole")
        if rest == 0:
            return Moments(0, 0.0, 0.0)
        if part.n == 0:
            return self
        mean = self.mean + (self.mean - part.mean) * part.n / rest
        delta = part.mean - mean
        return Moments(rest, mean, max(0.0, self.m2 - part.m2 - delta * delta * rest * part.n / self.n))


def _unlabeled(scores_labeled: FloatArray, scores_unlabeled: ArrayLike | Moments) -> tuple[Moments, float]:
    """The unlabelled scores' moments, and Var(f) over labelled and unlabelled scores together
    (1/(n + N - 1)). From an array exactly as numpy computes them; from moments by merging."""
    if isinstance(scores_unlabeled, Moments):
        everything = Moments.of(scores_labeled).merge(scores_unlabeled)
        return scores_unlabeled, everything.var(ddof=1) if everything.n > 1 else 0.0
    fu = np.asarray(scores_unlabeled, dtype=float)
    together = np.concatenate([scores_labeled, fu])
    var_f = float(np.var(together, ddof=1)) if together.size > 1 else 0.0
    return Moments.of(fu), var_f


def _lambda(y: FloatArray, f: FloatArray, unlabeled: Moments, var_f: float) -> float:
    cov = float(np.mean((y - y.mean()) * (f - f.mean())))
    if var_f == 0.0:
        return 0.0
    return float(np.clip(cov / ((1.0 + y.size / unlabeled.n) * var_f), 0.0, 1.0))


def ppi_lambda(labels: ArrayLike, scores_labeled: ArrayLike, scores_unlabeled: ArrayLike | Moments) -> float:
    """PPI++'s power-tuning parameter for a mean (Angelopoulos, Duchi & Zrnic 2023, "PPI++:
    Efficient Prediction-Powered Inference", eq. for the mean): Cov(Y, f) / ((1 + n/N) Var(f)),
    clipped to [0, 1]. As in `ppi_py`, the covariance is over the labelled set (1/n) and Var(f)
    over labelled and unlabelled scores together (1/(n + N - 1)). The unlabelled scores may be
    given as their `Moments`."""
    y, f = _labels(labels), np.asarray(scores_labeled, dtype=float)
    unlabeled, var_f = _unlabeled(f, scores_unlabeled)
    return _lambda(y, f, unlabeled, var_f)


def ppi_mean(
    labels: ArrayLike,
    scores_labeled: ArrayLike,
    scores_unlabeled: ArrayLike | Moments,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    lam: float | None = None,
) -> SuccessEstimate:
    """PPI++ mean (Angelopoulos, Duchi & Zrnic 2023): estimate = lambda * mean f over the N
    unlabelled traces + mean(Y - lambda * f) over the n labelled ones, i.e. the judge's mean plus
    lambda times the labelled correction, with the interval from the two variances
    Var(lambda f)/N + Var(Y - lambda f)/n.

    `labels` are the uniform-audit labels (0/1), `scores_labeled` the judge's raw scores scaled to
    [0, 1] on those traces, `scores_unlabeled` the scores of every other scored trace in scope, or
    their `Moments` (what a database aggregates; the same result to rounding). Equals
    `ppi_py.ppi_mean_ci(Y, Yhat, Yhat_unlabeled, alpha=1 - confidence, lam=None)` (the interval is
    clipped to [0, 1], which changes nothing when it lies inside).

    The effective number of labels is n * Var(Y) / (n * SE^2): how many labels alone would give
    the same variance. With N >> n and lambda unclipped it is n / (1 - rho^2).
    """
    y = _labels(labels)
    f = np.asarray(scores_labeled, dtype=float)
    if f.shape != y.shape:
        raise ValueError("labels and scores_labeled must be the same length")
    unlabeled, var_f = _unlabeled(f, scores_unlabeled)
    n, big_n = int(y.size), unlabeled.n
    if n < 2 or big_n < 1:
        raise ValueError("PPI++ needs at least 2 labels and 1 unlabelled score")
    lam_used = _lambda(y, f, unlabeled, var_f) if lam is None else float(lam)
    estimate = float(lam_used * unlabeled.mean + np.mean(y - lam_used * f))
    var = float(lam_used * lam_used * unlabeled.var() / big_n + np.var(y - lam_used * f) / n)
    se = math.sqrt(var)
    z = z_value(confidence)
    interval = _clip01(estimate, estimate - z * se, estimate + z * se)
    var_y = float(np.var(y))
    sd_y, sd_f = math.sqrt(var_y), float(np.std(f))
    rho = float(np.mean((y - y.mean()) * (f - f.mean())) / (sd_y * sd_f)) if sd_y > 0 and sd_f > 0 else None
    effective = var_y / var if var > 0 and var_y > 0 else None
    return SuccessEstimate(
        "ppi++",
        interval,
        n,
        n + big_n,
        lam=lam_used,
        effective_labels=effective,
        rho=rho,
    )


def stratified_mean(
    labels: ArrayLike,
    strata: ArrayLike,
    stratum_sizes: Mapping[Hashable, float],
    *,
    fpc: bool = False,
    confidence: float = DEFAULT_CONFIDENCE,
) -> SuccessEstimate:
    """Stratified mean (Cochran 1977, "Sampling Techniques", ch. 5): sum W_h ybar_h with
    W_h = N_h / N, variance sum W_h^2 s_h^2 / n_h, times (1 - n_h / N_h) with the finite
    population correction. `stratum_sizes` maps every stratum of the population to N_h.

    For 0/1 labels, s_h^2 is computed from (x_h + 1) / (n_h + 2) instead of x_h / n_h, one
    pseudo-success and one pseudo-failure per stratum in the variance only (the Agresti & Caffo
    2000 adjustment): a judge-score stratum that is nearly all good otherwise shows a variance
    near 0 exactly when its estimate is too high, and the Wald interval undercovers (about 92%
    instead of 95% in this module's simulations). The point estimate is unadjusted."""
    y = _labels(labels)
    s = np.asarray(strata, dtype=object)
    if s.shape != y.shape:
        raise ValueError("labels and strata must be the same length")
    sizes = {k: float(v) for k, v in stratum_sizes.items()}
    if any(v <= 0 for v in sizes.values()):
        raise ValueError("stratum sizes must be positive")
    unknown = set(s.tolist()) - set(sizes)
    if unknown:
        raise ValueError(f"labels in strata with no size: {sorted(map(str, unknown))}")
    total = sum(sizes.values())
    binary = _is_binary(y)
    estimate, var = 0.0, 0.0
    notes = []
    for stratum, size in sizes.items():
        yh = y[s == stratum]
        weight = size / total
        if yh.size == 0:
            return SuccessEstimate(
                "stratified",
                Interval.undefined(f"stratum {stratum!r} has no labels"),
                int(y.size),
                int(total),
                note="every stratum needs labels",
            )
        estimate += weight * float(yh.mean())
        if yh.size < 2:
            notes.append(f"stratum {stratum!r} has one label")
            continue
        if binary:
            p_adj = (float(yh.sum()) + 1.0) / (yh.size + 2.0)
            s2 = p_adj * (1.0 - p_adj) * yh.size / (yh.size - 1.0)
        else:
            s2 = float(yh.var(ddof=1))
        correction = max(0.0, 1.0 - yh.size / size) if fpc else 1.0
        var += weight**2 * s2 / yh.size * correction
    if notes:
        return SuccessEstimate(
            "stratified",
            Interval.undefined("; ".join(notes) + ": variance undefined", value=estimate),
            int(y.size),
            int(total),
        )
    var_y = float(np.var(y, ddof=1)) if y.size > 1 else 0.0
    z = z_value(confidence)
    se = math.sqrt(var)
    return SuccessEstimate(
        "stratified",
        _clip01(estimate, estimate - z * se, estimate + z * se),
        int(y.size),
        int(round(total)),
        effective_labels=var_y / var if var > 0 else None,
    )


def ipw_mean(
    labels: ArrayLike, inclusion_probabilities: ArrayLike, *, confidence: float = DEFAULT_CONFIDENCE
) -> SuccessEstimate:
    """Hajek (ratio) inverse-probability-weighted mean (Hajek 1971; Horvitz & Thompson 1952 weights
    w_i = 1 / pi_i): sum w y / sum w, with the linearization (sandwich) variance
    n / (n - 1) * sum w_i^2 (y_i - mean)^2 / (sum w)^2 (Sarndal, Swensson & Wretman 1992, 5.7)."""
    y = _labels(labels)
    pi = np.asarray(inclusion_probabilities, dtype=float)
    if pi.shape != y.shape:
        raise ValueError("labels and inclusion probabilities must be the same length")
    if pi.size and (not np.all(np.isfinite(pi)) or pi.min() <= 0.0 or pi.max() > 1.0):
        raise ValueError("inclusion probabilities must lie in (0, 1]")
    n = int(y.size)
    if n < 2:
        return SuccessEstimate("ipw", Interval.undefined("fewer than 2 labels"), n, 0)
    w = 1.0 / pi
    total = float(w.sum())
    mean = float((w * y).sum() / total)
    var = float(n / (n - 1.0) * np.sum((w * (y - mean)) ** 2) / total**2)
    z = z_value(confidence)
    se = math.sqrt(var)
    var_y = float(np.var(y, ddof=1))
    if var == 0.0 and _is_binary(y):
        # Every label the same: the sandwich variance is 0, but n labels cannot prove a rate of 0
        # or 1; fall back to Wilson on the label count.
        by_count = wilson(mean * n, n, confidence)
        interval = Interval(value=mean, low=by_count.low, high=by_count.high)
    else:
        interval = _clip01(mean, mean - z * se, mean + z * se)
    return SuccessEstimate(
        "ipw",
        interval,
        n,
        int(round(total)),
        effective_labels=var_y / var if var > 0 else None,
    )


def estimate_success(
    *,
    design: str,
    labels: ArrayLike,
    scores_labeled: ArrayLike | None = None,
    scores_unlabeled: ArrayLike | Moments | None = None,
    strata: ArrayLike | None = None,
    inclusion_probabilities: ArrayLike | None = None,
    min_labels: int = MIN_LABELS,
    confidence: float = DEFAULT_CONFIDENCE,
) -> SuccessEstimate:
    """The estimator the sampling design calls for (CALIBRATION.md), decided before any result:

    fewer than `min_labels` labels -> classical (labels alone); uniform -> PPI++ (needs the judge's
    scores on the labelled and unlabelled traces, else classical); stratified -> stratified mean
    with N_h = sum of 1 / pi over the stratum's labels; active -> Hajek IPW; anything else
    (manual) -> classical, with a note that the labels are not a probability sample.
    """
    y = _labels(labels)
    n = int(y.size)
    if scores_unlabeled is None:
        n_unlabeled = 0
    elif isinstance(scores_unlabeled, Moments):
        n_unlabeled = scores_unlabeled.n
    else:
        n_unlabeled = int(np.asarray(scores_unlabeled).size)
    enriched = design in ("stratified", "active")
    if n < min_labels:
        note = f"fewer than {min_labels} labels: interval from labels alone"
        if enriched:
            note += "; the sample was enriched, so it may not represent all traces"
        return classical_mean(y, confidence=confidence, n_scored=n + n_unlabeled, note=note)
    if design == "uniform":
        if scores_labeled is None or scores_unlabeled is None:
            return classical_mean(y, confidence=confidence, note="no judge scores: interval from labels alone")
        if n_unlabeled == 0:
            # PPI adds what the judge says of traces no one labelled: here there are none.
            note = "every trace the judge scored is labelled: interval from labels alone"
            return classical_mean(y, confidence=confidence, n_scored=n, note=note)
        return ppi_mean(y, scores_labeled, scores_unlabeled, confidence=confidence)
    if design == "stratified":
        if strata is None or inclusion_probabilities is None:
            raise ValueError("a stratified design needs strata and inclusion probabilities")
        st = np.asarray(strata, dtype=object)
        pi = np.asarray(inclusion_probabilities, dtype=float)
        if pi.shape != y.shape or st.shape != y.shape:
            raise ValueError("strata and inclusion probabilities need one entry per label")
        if pi.size and (pi.min() <= 0.0 or pi.max() > 1.0):
            raise ValueError("inclusion probabilities must lie in (0, 1]")
        sizes: dict[Hashable, float] = {}
        for stratum, p in zip(st.tolist(), pi.tolist(), strict=True):
            sizes[stratum] = sizes.get(stratum, 0.0) + 1.0 / p
        return stratified_mean(y, st, sizes, confidence=confidence)
    if design == "active":
        if inclusion_probabilities is None:
            raise ValueError("an active design needs inclusion probabilities")
        return ipw_mean(y, inclusion_probabilities, confidence=confidence)
    return classical_mean(
        y, confidence=confidence, note=f"{design} labels are not a probability sample: interval from labels alone"
    )


def labels_needed(
    *, half_width: float, rate: float = 0.5, rho: float = 0.0, confidence: float = DEFAULT_CONFIDENCE
) -> int:
    """Labels for a 95% interval of +- `half_width` around a success rate near `rate`:
    z^2 p (1 - p) (1 - rho^2) / half_width^2, where rho is the judge-label correlation PPI++ can
    exploit (0 for labels alone). Assumes many more scored traces than labels (N >> n)."""
    if not 0.0 < half_width < 1.0:
        raise ValueError("half_width must be in (0, 1)")
    if not 0.0 <= rate <= 1.0 or not -1.0 <= rho <= 1.0:
        raise ValueError("rate must be in [0, 1] and rho in [-1, 1]")
    z = z_value(confidence)
    return max(1, math.ceil(z * z * rate * (1.0 - rate) * (1.0 - rho * rho) / half_width**2 - 1e-9))


@dataclass(frozen=True)
class Heterogeneity:
    """How much a per-group mean varies between groups beyond sampling noise: tau^2, from ``groups``."""

    tau2: float
    groups: int


def between_groups_variance(means: ArrayLike, variances: ArrayLike) -> Heterogeneity:
    """DerSimonian & Laird's (1986) moment estimate of tau^2, the variance of the true group means,
    from each group's observed mean and its sampling variance: with w = 1 / variance and Q the weighted
    sum of squared deviations from the weighted mean, tau^2 = max(0, (Q - (k - 1)) / (sum w - sum w^2 /
    sum w)). Equals statsmodels' ``combine_effects(..., method_re="dl").tau2``. Needs k >= 2 groups
    with positive variances."""
    m, v = np.asarray(means, dtype=float), np.asarray(variances, dtype=float)
    if m.shape != v.shape or m.size < 2 or not np.all(v > 0):
        raise ValueError("between_groups_variance needs at least 2 groups, each with a positive variance")
    w = 1.0 / v
    centre = float(np.sum(w * m) / np.sum(w))
    q = float(np.sum(w * (m - centre) ** 2))
    c = float(np.sum(w) - np.sum(w * w) / np.sum(w))
    return Heterogeneity(max(0.0, (q - (m.size - 1)) / c), int(m.size))
