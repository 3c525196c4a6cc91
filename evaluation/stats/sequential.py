"""Experiment statistics: an always-valid sequential test (mSPRT with a normal mixture), its
confidence sequence, the sample-ratio-mismatch check and a planner. Plain numpy / scipy.

The test is the mixture sequential probability ratio test of Johari, Koomen, Pekelis and Walsh,
"Peeking at A/B Tests: Why it matters, and what to do about it" (KDD 2017) and "Always Valid
Inference: Continuous Monitoring of A/B Tests" (Operations Research 70(3), 2022), on the
difference of two arm means with a N(0, tau^2) mixing distribution:

    Lambda_n = sqrt(V / (V + tau^2)) * exp(theta^2 tau^2 / (2 V (V + tau^2)))

where theta is the observed difference (treatment - control) and V its variance. Rejecting H0
(no difference) the first time Lambda_n >= 1 / alpha keeps the chance of ever rejecting a true H0
at or below alpha however often one looks (Ville's inequality); the always-valid p-value is the
running minimum of 1 / Lambda_n, and the matching confidence sequence is
theta +- sqrt(V (V + tau^2) / tau^2 * (2 ln(1/alpha) + ln((V + tau^2) / V))) (intersected over
looks). tau is set from the minimum detectable effect, as Johari et al. suggest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

from evaluation.stats.intervals import Interval

FloatArray = NDArray[np.float64]

# Below this many units per arm the plug-in variance is too rough to test on: keep running.
MIN_PER_ARM = 100
SRM_P_THRESHOLD = 0.001


@dataclass(frozen=True)
class ArmSample:
    """What one arm has seen so far: n units, their mean and variance (per unit)."""

    n: int
    mean: float
    variance: float

    @classmethod
    def proportion(cls, successes: float, n: int) -> ArmSample:
        """A 0/1 metric. The variance uses the Laplace-smoothed share ((x + 1) / (n + 2)), so an arm
        with 0 or n successes early on does not claim a variance of 0."""
        if n <= 0:
            return cls(0, math.nan, math.nan)
        smoothed = (successes + 1.0) / (n + 2.0)
        return cls(n, successes / n, smoothed * (1.0 - smoothed))

    @classmethod
    def bounded_mean(cls, total: float, n: int) -> ArmSample:
        """A metric in [0, 1] whose sum of squares is unknown (rollups keep sums): the variance is
        bounded by mean (1 - mean), the largest a [0, 1] variable with that mean can have."""
        if n <= 0:
            return cls(0, math.nan, math.nan)
        return cls.proportion(total, n)


@dataclass(frozen=True)
class SequentialResult:
    difference: float | None  # treatment - control
    interval: Interval  # always-valid confidence sequence on the difference
    log_lr: float | None  # ln Lambda at this look
    p_value: float | None  # always-valid p-value (min over the looks given)
    significant: bool
    note: str | None = None


def mixture_tau(mde: float) -> float:
    """The mixing standard deviation: the minimum detectable effect (absolute) itself."""
    if not mde > 0:
        raise ValueError("the minimum detectable effect must be positive")
    return float(mde)


def msprt_log_lr(difference: ArrayLike, variance: ArrayLike, tau: float) -> FloatArray:
    """ln Lambda for arrays of observed differences and their variances (vectorised)."""
    d = np.asarray(difference, dtype=float)
    v = np.asarray(variance, dtype=float)
    t2 = tau * tau
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 0.5 * np.log(v / (v + t2)) + d * d * t2 / (2.0 * v * (v + t2))
    return np.asarray(out, dtype=float)


def cs_half_width(variance: ArrayLike, tau: float, alpha: float) -> FloatArray:
    v = np.asarray(variance, dtype=float)
    t2 = tau * tau
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.sqrt(v * (v + t2) / t2 * (2.0 * math.log(1.0 / alpha) + np.log((v + t2) / v))))


def msprt(
    looks: Sequence[tuple[ArmSample, ArmSample]], *, tau: float, alpha: float = 0.05, min_per_arm: int = MIN_PER_ARM
) -> SequentialResult:
    """The test after a series of looks, each (control, treatment) cumulative so far (e.g. one per
    day). Looks with fewer than ``min_per_arm`` units in an arm are skipped. The p-value is the
    minimum over looks; the interval is the running intersection of the confidence sequence."""
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    p_value = 1.0
    low, high = -math.inf, math.inf
    last: tuple[float, float] | None = None
    for control, treatment in looks:
        if min(control.n, treatment.n) < max(min_per_arm, 1):
            continue
        variance = control.variance / control.n + treatment.variance / treatment.n
        if not variance > 0 or not math.isfinite(variance):
            continue
        difference = treatment.mean - control.mean
        log_lr = float(msprt_log_lr(difference, variance, tau))
        half = float(cs_half_width(variance, tau, alpha))
        p_value = min(p_value, math.exp(-log_lr) if log_lr > 0 else 1.0)
        low, high = max(low, difference - half), min(high, difference + half)
        last = (difference, log_lr)
    if last is None:
        note = f"fewer than {min_per_arm} units in an arm: too early to test"
        return SequentialResult(None, Interval.undefined(note), None, None, False, note)
    difference, log_lr = last
    if low > high:  # the running intersection went empty (possible under H1 with rough variances)
        low = high = difference
    return SequentialResult(difference, Interval(difference, low, high), log_lr, p_value, p_value <= alpha)


# --- sample ratio mismatch --------------------------------------------------------------------------


@dataclass(frozen=True)
class SrmResult:
    chi2: float
    p_value: float
    mismatch: bool
    expected: tuple[float, ...]


def srm_check(counts: Sequence[int], allocation: Sequence[float], *, threshold: float = SRM_P_THRESHOLD) -> SrmResult:
    """Pearson's chi-square goodness of fit of the arms' unit counts against the planned allocation
    (Fabijan et al., "Diagnosing Sample Ratio Mismatch in Online Controlled Experiments", KDD 2019);
    a p-value below ``threshold`` (0.001, as they recommend) is a mismatch: assignment or logging is
    broken, and no result of the experiment can be trusted."""
    observed = np.asarray(counts, dtype=float)
    weights = np.asarray(allocation, dtype=float)
    if observed.size != weights.size or observed.size < 2:
        raise ValueError("one allocation per arm, at least two arms")
    if np.any(weights <= 0):
        raise ValueError("allocations must be positive")
    total = observed.sum()
    expected = total * weights / weights.sum()
    if total == 0:
        return SrmResult(0.0, 1.0, False, tuple(float(e) for e in expected))
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    p = float(sps.chi2.sf(chi2, observed.size - 1))
    return SrmResult(chi2, p, p < threshold, tuple(float(e) for e in expected))


# --- planner -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    per_arm: int
    baseline: float
    mde: float
    alpha: float
    power: float
    tau: float


def end_power(n: float, *, baseline: float, mde: float, alpha: float, tau: float) -> float:
    """Probability that the confidence sequence excludes 0 at a look with ``n`` units per arm when
    the true difference is ``mde`` on a 0/1 metric with control rate ``baseline``. A PM who looks
    every day can only reject more often, so this is the planner's (slightly conservative) power."""
    p1 = min(max(baseline, 1e-9), 1 - 1e-9)
    p2 = min(max(baseline + mde, 1e-9), 1 - 1e-9)
    v = (p1 * (1 - p1) + p2 * (1 - p2)) / n
    half = float(cs_half_width(v, tau, alpha))
    sd = math.sqrt(v)
    return float(sps.norm.cdf((abs(mde) - half) / sd) + sps.norm.cdf((-abs(mde) - half) / sd))


def plan(*, baseline: float, mde: float, alpha: float = 0.05, power: float = 0.8, tau: float | None = None) -> Plan:
    """Units per arm for the sequential test to detect an absolute change of ``mde`` on a 0/1
    metric whose control rate is ``baseline``, with probability ``power``."""
    if not 0 < baseline < 1:
        raise ValueError("the baseline rate must be in (0, 1)")
    if not 0 < abs(mde) < 1 or not 0 < baseline + mde < 1:
        raise ValueError("baseline + mde must stay in (0, 1)")
    if not 0 < power < 1 or not 0 < alpha < 1:
        raise ValueError("alpha and power must be in (0, 1)")
    tau = tau or mixture_tau(abs(mde))
    lo, hi = 2, 4
    while end_power(hi, baseline=baseline, mde=mde, alpha=alpha, tau=tau) < power:
        lo, hi = hi, hi * 2
        if hi > 10**10:
            raise ValueError("the effect is too small to detect with any realistic sample")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if end_power(mid, baseline=baseline, mde=mde, alpha=alpha, tau=tau) >= power:
            hi = mid
        else:
            lo = mid
    return Plan(hi, baseline, mde, alpha, power, tau)
