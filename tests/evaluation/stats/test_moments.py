"""The moments path of PPI++ (what the database aggregates for a million unlabelled scores) against
the array path and ppi_py, and the moment arithmetic it rests on."""

import warnings

import numpy as np
import pytest

from evaluation.stats import estimate_success, naive_judge_rate, ppi_lambda, ppi_mean
from evaluation.stats.estimators import Moments, NaiveRate

with warnings.catch_warnings():
    # ppi_py silences every warning process-wide on import; keep that inside this block.
    import ppi_py  # test-only oracle


def _audit(n, big_n, seed, p=0.7, noise=0.2, lenient=0.15, spread=0.4):
    rng = np.random.default_rng(seed)
    y = (rng.random(n + big_n) < p).astype(float)
    f = np.clip(0.35 + lenient + spread * y + rng.normal(0, noise, n + big_n), 0, 1)
    return y[:n], f[:n], f[n:]


def _as_the_database_gives_them(f, fu, seed):
    """The service's path: moments of every scored trace, summed in another order (as SQL does),
    minus the labelled traces' own."""
    everything = np.random.default_rng(seed).permutation(np.r_[f, fu])
    return Moments.from_variance(
        everything.size, float(np.sum(everything) / everything.size), float(np.var(everything))
    )


def test_moments_are_numpys():
    x = np.random.default_rng(0).random(1001)
    m = Moments.of(x)
    assert (m.n, m.mean) == (1001, pytest.approx(x.mean(), abs=1e-15))
    assert m.var() == pytest.approx(np.var(x), rel=1e-12)
    assert m.var(ddof=1) == pytest.approx(np.var(x, ddof=1), rel=1e-12)
    assert Moments.of([]) == Moments(0, 0.0, 0.0)


def test_merge_and_minus_are_exact_to_rounding():
    x = np.random.default_rng(1).beta(8, 2, 100_000) + 1e3  # a large mean: sum-of-squares formulas would cancel
    whole, part, rest = Moments.of(x), Moments.of(x[:2000]), Moments.of(x[2000:])
    merged = part.merge(rest)
    assert merged.n == whole.n and merged.mean == pytest.approx(whole.mean, rel=1e-14)
    assert merged.m2 == pytest.approx(whole.m2, rel=1e-9)
    taken = whole.minus(part)
    assert taken.n == rest.n and taken.mean == pytest.approx(rest.mean, rel=1e-14)
    assert taken.m2 == pytest.approx(rest.m2, rel=1e-9)
    assert whole.minus(whole) == Moments(0, 0.0, 0.0)
    assert whole.minus(Moments.of([])) == whole and Moments.of([]).merge(part) == part


def test_bad_moments_are_refused():
    with pytest.raises(ValueError):
        Moments(3, 0.5, -1.0)
    with pytest.raises(ValueError):
        Moments(-1, 0.5, 0.0)
    with pytest.raises(ValueError):
        Moments.of([1.0]).minus(Moments.of([1.0, 2.0]))
    assert Moments.from_variance(0, None, None) == Moments(0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("n", "big_n", "seed", "kwargs"),
    [
        (200, 5000, 0, {}),
        (60, 300, 1, {}),
        (2000, 200_000, 2, {"lenient": 0.3}),  # lambda clipped at 1
        (500, 20_000, 3, {"lenient": -0.1, "spread": 0.5, "noise": 0.3}),  # lambda inside (0, 1)
        (120, 120, 4, {}),
        (300, 2, 5, {}),  # nearly every scored trace labelled: the subtraction leaves a sliver
    ],
)
def test_ppi_from_moments_equals_the_array_path_and_ppi_py(n, big_n, seed, kwargs):
    y, f, fu = _audit(n, big_n, seed, **kwargs)
    unlabeled = _as_the_database_gives_them(f, fu, seed).minus(Moments.of(f))
    assert unlabeled.n == big_n
    arrays, moments = ppi_mean(y, f, fu), ppi_mean(y, f, unlabeled)
    assert ppi_lambda(y, f, unlabeled) == pytest.approx(ppi_lambda(y, f, fu), abs=1e-9)
    for name in ("value", "low", "high"):
        assert getattr(moments.interval, name) == pytest.approx(getattr(arrays.interval, name), abs=1e-9)
    assert moments.lam == pytest.approx(arrays.lam, abs=1e-9)
    assert moments.effective_labels == pytest.approx(arrays.effective_labels, rel=1e-9)
    assert (moments.n_labels, moments.n_scored, moments.rho) == (arrays.n_labels, arrays.n_scored, arrays.rho)
    low, high = ppi_py.ppi_mean_ci(y, f, fu, alpha=0.05, lam=None)
    point = ppi_py.ppi_mean_pointestimate(y, f, fu, lam=None)
    assert moments.interval.value == pytest.approx(float(np.squeeze(point)), abs=1e-9)
    assert (moments.interval.low, moments.interval.high) == pytest.approx(
        (float(np.squeeze(low)), float(np.squeeze(high))), abs=1e-9
    )


def test_ppi_from_moments_with_a_fixed_or_clipped_lambda_matches_ppi_py():
    y, f, fu = _audit(150, 3000, seed=5)
    got = ppi_mean(y, f, Moments.of(fu), lam=1.0)
    low, high = ppi_py.ppi_mean_ci(y, f, fu, alpha=0.05, lam=1.0)
    assert (got.interval.low, got.interval.high) == pytest.approx((float(low[0]), float(high[0])), abs=1e-9)
    rng = np.random.default_rng(4)
    y = (rng.random(100) < 0.5).astype(float)
    anti = 1 - y * 0.8 + rng.normal(0, 0.05, 100)  # a judge that gets it backwards: lambda clipped to 0
    fu = rng.random(1000)
    got = ppi_mean(y, anti, Moments.of(fu))
    low, high = ppi_py.ppi_mean_ci(y, anti, fu, alpha=0.05, lam=None)
    assert got.lam == 0.0
    assert (got.interval.low, got.interval.high) == pytest.approx((float(low[0]), float(high[0])), abs=1e-9)


def test_estimate_success_takes_moments():
    y, f, fu = _audit(300, 10_000, seed=6)
    arrays = estimate_success(design="uniform", labels=y, scores_labeled=f, scores_unlabeled=fu)
    moments = estimate_success(design="uniform", labels=y, scores_labeled=f, scores_unlabeled=Moments.of(fu))
    assert moments.method == "ppi++" and moments.n_scored == arrays.n_scored == 10_300
    assert moments.as_dict() == pytest.approx(arrays.as_dict(), abs=1e-9)
    # Too few labels: classical, counting the unlabelled scores all the same.
    few = estimate_success(design="uniform", labels=y[:10], scores_labeled=f[:10], scores_unlabeled=Moments.of(fu))
    assert few.method == "classical" and few.n_scored == 10_010
    # No unlabelled score: labels alone.
    none = estimate_success(design="uniform", labels=y, scores_labeled=f, scores_unlabeled=Moments.of([]))
    assert none.method == "classical"


def test_naive_rate_from_counts_is_the_same_number():
    passed = np.random.default_rng(7).random(12_345) < 0.83
    assert NaiveRate.of_counts(int(passed.sum()), passed.size) == naive_judge_rate(passed.astype(int))
    assert NaiveRate.of_counts(0, 0) == naive_judge_rate([])
    with pytest.raises(ValueError):
        NaiveRate.of_counts(3, 2)
