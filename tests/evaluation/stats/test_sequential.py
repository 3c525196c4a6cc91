"""The experiments' statistics: the mSPRT stays valid under daily peeking (seeded A/A simulations),
its power matches the planner (seeded A/B simulations), and the SRM check equals scipy's chi-square."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from evaluation.stats.sequential import (
    MIN_PER_ARM,
    ArmSample,
    cs_half_width,
    msprt,
    msprt_log_lr,
    plan,
    srm_check,
)

ALPHA = 0.05


def _ever_significant(
    p_control: float, p_treatment: float, *, per_day: int, days: int, runs: int, tau: float, seed: int
) -> float:
    """Share of seeded experiments the test ever declares significant when the PM looks every day
    (the same formula as msprt(), vectorised over runs x days)."""
    rng = np.random.default_rng(seed)
    xc = rng.binomial(per_day, p_control, size=(runs, days)).cumsum(axis=1)
    xt = rng.binomial(per_day, p_treatment, size=(runs, days)).cumsum(axis=1)
    n = per_day * np.arange(1, days + 1)
    sc, st = (xc + 1) / (n + 2), (xt + 1) / (n + 2)
    variance = (sc * (1 - sc) + st * (1 - st)) / n
    log_lr = msprt_log_lr(xt / n - xc / n, variance, tau)
    log_lr[:, n < MIN_PER_ARM] = -np.inf
    return float((log_lr >= math.log(1 / ALPHA)).any(axis=1).mean())


@pytest.mark.parametrize(("rate", "per_day", "mde"), [(0.5, 200, 0.05), (0.2, 500, 0.03), (0.05, 1000, 0.01)])
def test_aa_with_daily_peeking_for_60_days_stays_at_or_below_alpha(rate: float, per_day: int, mde: float) -> None:
    measured = _ever_significant(rate, rate, per_day=per_day, days=60, runs=4000, tau=mde, seed=12)
    print(f"A/A rate={rate} per_day={per_day}: ever significant in {measured:.2%} of 4000 (nominal {ALPHA:.0%})")
    # Binomial noise on 4000 runs is ~0.35 points: the measured rate must sit at or below 5%.
    assert measured <= ALPHA
    # A naive fixed-horizon z-test peeked at daily would be far above alpha (the reason for mSPRT).
    rng = np.random.default_rng(12)
    xc = rng.binomial(per_day, rate, size=(4000, 60)).cumsum(axis=1)
    xt = rng.binomial(per_day, rate, size=(4000, 60)).cumsum(axis=1)
    n = per_day * np.arange(1, 61)
    pooled = (xc + xt) / (2 * n)
    z = (xt - xc) / n / np.sqrt(2 * pooled * (1 - pooled) / n)
    assert (np.abs(z) > 1.96).any(axis=1).mean() > 2 * ALPHA


@pytest.mark.parametrize(("baseline", "mde"), [(0.5, 0.05), (0.2, 0.03), (0.05, 0.01)])
def test_ab_power_matches_the_planner_within_10_percent(baseline: float, mde: float) -> None:
    planned = plan(baseline=baseline, mde=mde, alpha=ALPHA, power=0.8)
    days = 30
    per_day = math.ceil(planned.per_arm / days)
    measured = _ever_significant(baseline, baseline + mde, per_day=per_day, days=days, runs=4000, tau=mde, seed=34)
    print(
        f"A/B {baseline}+{mde}: planner {planned.per_arm} per arm; power with daily looks {measured:.3f} (planned 0.80)"
    )
    assert abs(measured - 0.8) / 0.8 <= 0.10


def test_msprt_matches_its_formula_and_takes_the_running_minimum() -> None:
    control, treatment = ArmSample.proportion(400, 1000), ArmSample.proportion(460, 1000)
    tau = 0.05
    result = msprt([(control, treatment)], tau=tau, alpha=ALPHA)
    v = control.variance / 1000 + treatment.variance / 1000
    expected = 0.5 * math.log(v / (v + tau**2)) + 0.06**2 * tau**2 / (2 * v * (v + tau**2))
    assert result.log_lr == pytest.approx(expected)
    assert result.p_value == pytest.approx(min(1.0, math.exp(-expected)))
    half = math.sqrt(v * (v + tau**2) / tau**2 * (2 * math.log(1 / ALPHA) + math.log((v + tau**2) / v)))
    assert result.interval.low == pytest.approx(0.06 - half) and result.interval.high == pytest.approx(0.06 + half)
    assert float(cs_half_width(v, tau, ALPHA)) == pytest.approx(half)
    # Once significant, a later look that regresses keeps the smaller p-value (always-valid p).
    later = msprt([(control, treatment), (ArmSample.proportion(800, 2000), ArmSample.proportion(820, 2000))], tau=tau)
    assert later.p_value == pytest.approx(result.p_value)


def test_too_early_is_no_verdict() -> None:
    result = msprt([(ArmSample.proportion(0, 10), ArmSample.proportion(9, 10))], tau=0.05)
    assert result.difference is None and not result.significant and "too early" in (result.note or "")


@pytest.mark.parametrize(
    ("counts", "allocation"),
    [
        ([5050, 4950], [0.5, 0.5]),
        ([5200, 4800], [0.5, 0.5]),
        ([1000, 4400, 4600], [0.1, 0.45, 0.45]),
        ([10, 90], [0.1, 0.9]),
        ([300, 700], [0.1, 0.9]),
    ],
)
def test_srm_equals_scipy_chisquare(counts: list[int], allocation: list[float]) -> None:
    result = srm_check(counts, allocation)
    expected = np.sum(counts) * np.asarray(allocation)
    reference = sps.chisquare(counts, expected)
    assert result.chi2 == pytest.approx(float(reference.statistic))
    assert result.p_value == pytest.approx(float(reference.pvalue))
    assert result.mismatch == (float(reference.pvalue) < 0.001)


def test_srm_flags_a_broken_split_and_refuses_bad_allocations() -> None:
    assert srm_check([5200, 4800], [0.5, 0.5]).mismatch
    assert not srm_check([5050, 4950], [0.5, 0.5]).mismatch
    with pytest.raises(ValueError):
        srm_check([1, 2], [0.5])
    with pytest.raises(ValueError):
        srm_check([1, 2], [1.0, 0.0])


def test_planner_needs_more_for_smaller_effects_and_refuses_impossible_ones() -> None:
    assert plan(baseline=0.5, mde=0.02).per_arm > plan(baseline=0.5, mde=0.05).per_arm > 0
    with pytest.raises(ValueError):
        plan(baseline=0.98, mde=0.05)
    with pytest.raises(ValueError):
        plan(baseline=0.5, mde=0.0)
