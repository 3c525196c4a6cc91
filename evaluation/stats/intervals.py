"""Interval objects and the textbook binomial intervals every other stats module builds on.

An `Interval` is what API.md calls an interval object: `{"value", "low", "high"}` at 95%
two-sided unless said otherwise, with null bounds (and a note saying why) where undefined.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

DEFAULT_CONFIDENCE = 0.95


def _finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval; non-finite numbers are stored as None."""

    value: float | None
    low: float | None
    high: float | None
    note: str | None = None

    def __post_init__(self) -> None:
        # Frozen, so normalize through object.__setattr__: numpy scalars become floats and NaN/inf
        # become None (NaN is not valid JSON, and "undefined" must read as null in the API).
        for name in ("value", "low", "high"):
            object.__setattr__(self, name, _finite_or_none(getattr(self, name)))
        if self.note is None and (self.low is None or self.high is None):
            object.__setattr__(self, "note", "interval undefined")

    @classmethod
    def undefined(cls, note: str, value: float | None = None) -> Interval:
        return cls(value=value, low=None, high=None, note=note)

    @property
    def defined(self) -> bool:
        return self.low is not None and self.high is not None

    def contains(self, x: float) -> bool:
        return self.defined and self.low <= x <= self.high  # type: ignore[operator]

    def as_dict(self) -> dict[str, float | str | None]:
        """API.md's interval object; "note" appears only when a bound is null."""
        out: dict[str, float | str | None] = {"value": self.value, "low": self.low, "high": self.high}
        if not self.defined:
            out["note"] = self.note
        return out


@functools.lru_cache(maxsize=256)
def z_value(confidence: float = DEFAULT_CONFIDENCE) -> float:
    """Two-sided standard-normal quantile, 1.959964 for 95%. Remembered: scipy's ppf costs ~100 us a call, and a
    report by customer asked it ~120 times for a handful of confidences."""
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    return float(sps.norm.ppf(1.0 - (1.0 - confidence) / 2.0))


@functools.lru_cache(maxsize=1024)
def t_value(confidence: float, df: float) -> float:
    """Two-sided Student's t quantile with ``df`` degrees of freedom (12.706 for 95% and 1), remembered as
    ``z_value`` is."""
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    return float(sps.t.ppf(1.0 - (1.0 - confidence) / 2.0, df))


def wilson(successes: float, n: float, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Wilson score interval for a binomial proportion (Wilson 1927; Agresti & Coull 1998).

    Equals statsmodels `proportion_confint(successes, n, method="wilson")`.
    """
    if n <= 0:
        return Interval.undefined("no observations")
    z = z_value(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    # The interval holds p; rounding at the edges must not say otherwise (0 of 300 gave a low of 8.7e-19).
    return Interval(value=p, low=min(p, max(0.0, center - half)), high=max(p, min(1.0, center + half)))


def clopper_pearson_lower(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> float:
    """One-sided Clopper-Pearson (1934) lower confidence bound at `confidence`.

    It is the lower end of the two-sided exact interval at level 2 * confidence - 1, i.e.
    statsmodels `proportion_confint(successes, n, alpha=2 * (1 - confidence), method="beta")[0]`.
    """
    if n <= 0:
        return 0.0
    if successes <= 0:
        return 0.0
    return float(sps.beta.ppf(1.0 - confidence, successes, n - successes + 1))


def clopper_pearson(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Two-sided Clopper-Pearson exact interval (statsmodels `method="beta"`)."""
    if n <= 0:
        return Interval.undefined("no observations")
    a = (1.0 - confidence) / 2.0
    low = 0.0 if successes <= 0 else float(sps.beta.ppf(a, successes, n - successes + 1))
    high = 1.0 if successes >= n else float(sps.beta.ppf(1.0 - a, successes + 1, n - successes))
    return Interval(value=successes / n, low=low, high=high)


def normal_interval(
    value: float, se: float, confidence: float = DEFAULT_CONFIDENCE, clip: tuple[float, float] | None = None
) -> Interval:
    """value +- z * se, optionally clipped to the statistic's range."""
    if not (math.isfinite(value) and math.isfinite(se)):
        return Interval.undefined("standard error undefined", value=value)
    z = z_value(confidence)
    low, high = value - z * se, value + z * se
    if clip is not None:
        low, high = max(clip[0], low), min(clip[1], high)
    return Interval(value=value, low=low, high=high)


def mover_difference(a: Interval, b: Interval, *, scale: float = 1.0) -> Interval:
    """a - scale * b, from each estimate's own interval (both at one confidence, estimates independent):
    the MOVER, "method of variance estimates recovery" (Zou & Donner 2008), which keeps each interval's
    asymmetry. From two Wilson intervals it is Newcombe's (1998) hybrid score interval for a difference of
    proportions, statsmodels ``confint_proportions_2indep(method="newcomb")``."""
    if not (a.defined and b.defined and a.value is not None and b.value is not None):
        return Interval.undefined("an interval of the difference needs both intervals")
    assert a.low is not None and a.high is not None and b.low is not None and b.high is not None
    d = a.value - scale * b.value
    low = d - math.hypot(a.value - a.low, scale * (b.high - b.value))
    high = d + math.hypot(a.high - a.value, scale * (b.value - b.low))
    return Interval(value=d, low=low, high=high)


def mover_ratio(a: Interval, b: Interval) -> Interval:
    """a / b for positive estimates, from each one's interval (one confidence, independent estimates): the
    MOVER on the log scale (Zou & Donner 2008, section 3). A missing bound counts as unbounded on its side
    (a lower end of 0 alike), and makes that side of the ratio unbounded: None."""
    if not (a.value and b.value and a.value > 0 and b.value > 0):
        return Interval.undefined("a ratio's interval needs two positive estimates")

    def log(x: float | None, missing: float) -> float:
        return missing if x is None or x <= 0 else math.log(x)

    log_a, log_b = math.log(a.value), math.log(b.value)
    d = log_a - log_b
    low = d - math.hypot(log_a - log(a.low, -math.inf), log(b.high, math.inf) - log_b)
    high = d + math.hypot(log(a.high, math.inf) - log_a, log_b - log(b.low, -math.inf))
    return Interval(value=a.value / b.value, low=math.exp(low), high=math.exp(high) if high < 700 else None)


def bootstrap_totals(
    rows: NDArray[np.float64],
    replicates: int,
    rng: np.random.Generator,
    strata: NDArray[np.int64] | None = None,
) -> NDArray[np.float64]:
    """Column totals of `rows` (items x K) in each of `replicates` nonparametric bootstrap
    resamples of the items (Efron 1979): a (replicates x K) array.

    Identical rows are pooled first: drawing n items with replacement is a multinomial draw over
    the distinct rows with their frequencies, so the cost grows with the number of distinct rows
    (a handful for a confusion matrix), not with n. With `strata` (integer codes), items are
    resampled within their stratum, keeping each stratum's size as a stratified design does.
    """
    n, k = rows.shape
    key = rows if strata is None else np.column_stack([rows, strata.astype(float)])
    distinct, freq = np.unique(key, axis=0, return_counts=True)
    patterns = distinct[:, :k]
    counts: NDArray[np.float64]
    if strata is None:
        counts = rng.multinomial(n, freq / n, size=replicates).astype(float)
    else:
        counts = np.zeros((replicates, distinct.shape[0]))
        pattern_strata = distinct[:, k]
        for code in np.unique(pattern_strata):
            idx = np.flatnonzero(pattern_strata == code)
            m = int(freq[idx].sum())
            counts[:, idx] = rng.multinomial(m, freq[idx] / m, size=replicates)
    return np.asarray(counts @ patterns, dtype=float)


def percentile_interval(
    value: float, replicates: ArrayLike, confidence: float = DEFAULT_CONFIDENCE, min_finite: float = 0.9
) -> Interval:
    """Percentile bootstrap interval around `value`; undefined when too many replicates are undefined."""
    reps = np.asarray(replicates, dtype=float)
    finite = reps[np.isfinite(reps)]
    if reps.size == 0 or finite.size < min_finite * reps.size:
        return Interval.undefined("statistic undefined in too many bootstrap resamples", value=value)
    a = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [a, 1.0 - a])
    return Interval(value=value, low=float(low), high=float(high))
