import math
import warnings

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from evaluation.stats import (
    classical_mean,
    estimate_success,
    ipw_mean,
    labels_needed,
    naive_judge_rate,
    ppi_lambda,
    ppi_mean,
    stratified_mean,
)

with warnings.catch_warnings():
    # ppi_py silences every warning process-wide on import; keep that inside this block.
    import ppi_py  # test-only oracle (numba-heavy), never imported by evaluation/stats

Z = 1.959963984540054


def _audit(n, big_n, seed, p=0.7, noise=0.2, lenient=0.15, spread=0.4):
    """A lenient judge: raw score in [0, 1] that rises with the true label, plus noise."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n + big_n) < p).astype(float)
    f = np.clip(0.35 + lenient + spread * y + rng.normal(0, noise, n + big_n), 0, 1)
    return y[:n], f[:n], f[n:], y


# --- PPI++ against ppi_py -------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "big_n", "seed"), [(200, 5000, 0), (60, 300, 1), (500, 20_000, 2), (120, 120, 3)])
def test_ppi_equals_ppi_py(n, big_n, seed):
    y, f, fu, _ = _audit(n, big_n, seed)
    got = ppi_mean(y, f, fu)
    low, high = ppi_py.ppi_mean_ci(y, f, fu, alpha=0.05, lam=None)
    point = ppi_py.ppi_mean_pointestimate(y, f, fu, lam=None)
    assert got.interval.value == pytest.approx(float(np.squeeze(point)), abs=1e-9)
    assert got.interval.low == pytest.approx(float(np.squeeze(low)), abs=1e-9)
    assert got.interval.high == pytest.approx(float(np.squeeze(high)), abs=1e-9)


def test_ppi_lambda_is_clipped_like_ppi_py():
    rng = np.random.default_rng(4)
    y = (rng.random(100) < 0.5).astype(float)
    anti = 1 - y * 0.8 + rng.normal(0, 0.05, 100)  # a judge that gets it backwards
    fu = rng.random(1000)
    assert ppi_lambda(y, anti, fu) == 0.0
    got = ppi_mean(y, anti, fu)
    low, high = ppi_py.ppi_mean_ci(y, anti, fu, alpha=0.05, lam=None)
    assert (got.interval.low, got.interval.high) == pytest.approx((float(low[0]), float(high[0])), abs=1e-9)
    # lambda = 0 is the classical mean with a normal interval.
    assert got.interval.value == pytest.approx(y.mean())


def test_ppi_with_a_fixed_lambda_matches_ppi_py():
    y, f, fu, _ = _audit(150, 3000, seed=5)
    got = ppi_mean(y, f, fu, lam=1.0)
    low, high = ppi_py.ppi_mean_ci(y, f, fu, alpha=0.05, lam=1.0)
    assert (got.interval.low, got.interval.high) == pytest.approx((float(low[0]), float(high[0])), abs=1e-9)
    assert got.lam == 1.0


def test_ppi_corrects_a_lenient_judge():
    y, f, fu, y_all = _audit(300, 30_000, seed=6, lenient=0.3)
    naive = naive_judge_rate(np.r_[f, fu] >= 0.5)
    got = ppi_mean(y, f, fu)
    assert naive.value - y_all.mean() > 0.2  # the judge passes far too much
    assert got.interval.contains(y_all.mean())
    assert naive.as_dict() == {"value": naive.value, "n": 30_300}
    assert "uncorrected" in naive.note


def test_effective_labels_is_n_over_one_minus_rho_squared_when_n_is_small_next_to_big_n():
    # A judge whose optimal lambda is below 1 (no clipping), many more scored traces than labels.
    y, f, fu, _ = _audit(3000, 1_000_000, seed=7, lenient=-0.1, spread=0.5, noise=0.3)
    got = ppi_mean(y, f, fu)
    assert 0 < got.lam < 1
    assert got.rho is not None and 0.5 < got.rho < 1
    assert got.effective_labels == pytest.approx(3000 / (1 - got.rho**2), rel=0.005)
    assert got.label_multiplier == pytest.approx(got.effective_labels / 3000)
    # When lambda is clipped at 1, n / (1 - rho^2) overstates the gain; the variance ratio reported does not.
    y, f, fu, _ = _audit(3000, 1_000_000, seed=7)
    clipped = ppi_mean(y, f, fu)
    assert clipped.lam == 1.0
    assert clipped.effective_labels < 0.95 * 3000 / (1 - clipped.rho**2)


def test_ppi_as_dict_is_the_api_estimate():
    y, f, fu, _ = _audit(100, 1000, seed=8)
    got = ppi_mean(y, f, fu).as_dict()
    assert set(got) == {"value", "low", "high", "method", "lambda", "n_labels", "n_scored", "effective_labels"}
    assert got["method"] == "ppi++" and got["n_labels"] == 100 and got["n_scored"] == 1100


# --- design-based estimators by hand --------------------------------------------------------------


def test_stratified_mean_by_hand():
    labels = [1, 1, 0, 1, 0, 0, 1, 0]
    strata = ["hi", "hi", "hi", "hi", "lo", "lo", "lo", "lo"]
    sizes = {"hi": 600, "lo": 400}
    got = stratified_mean(labels, strata, sizes)
    assert got.interval.value == pytest.approx(0.6 * 0.75 + 0.4 * 0.25)
    # Variance from (x + 1) / (n + 2): hi 4/6, lo 2/6, each s^2 = p(1 - p) * 4 / 3.
    s2 = (4 / 6) * (2 / 6) * 4 / 3
    se = math.sqrt(0.6**2 * s2 / 4 + 0.4**2 * s2 / 4)
    assert got.interval.low == pytest.approx(0.55 - Z * se)
    with_fpc = stratified_mean(labels, strata, {"hi": 8, "lo": 8}, fpc=True)
    se_fpc = math.sqrt(0.5**2 * s2 / 4 * 0.5 + 0.5**2 * s2 / 4 * 0.5)
    assert with_fpc.interval.high == pytest.approx(0.5 + Z * se_fpc)
    # Non-binary labels use the plain s_h^2.
    graded = stratified_mean([0.2, 0.4, 0.9, 0.7], ["a", "a", "b", "b"], {"a": 1, "b": 3})
    se_graded = math.sqrt(0.25**2 * 0.02 / 2 + 0.75**2 * 0.02 / 2)
    assert graded.interval.value == pytest.approx(0.25 * 0.3 + 0.75 * 0.8)
    assert graded.interval.high == pytest.approx(0.675 + Z * se_graded)


def test_stratified_mean_needs_labels_in_every_stratum():
    got = stratified_mean([1, 0], ["a", "a"], {"a": 10, "b": 10})
    assert got.interval.low is None and "no labels" in got.interval.note
    with pytest.raises(ValueError):
        stratified_mean([1, 0], ["a", "c"], {"a": 10})


def test_ipw_by_hand_and_equal_probabilities_give_the_plain_mean():
    labels = np.array([1, 0, 1, 1])
    pi = np.array([0.5, 0.25, 0.1, 1.0])
    got = ipw_mean(labels, pi)
    w = 1 / pi
    mean = (w * labels).sum() / w.sum()
    var = 4 / 3 * np.sum((w * (labels - mean)) ** 2) / w.sum() ** 2
    assert got.interval.value == pytest.approx(mean)
    assert got.interval.low == pytest.approx(max(0, mean - Z * math.sqrt(var)))
    same = ipw_mean(labels, np.full(4, 0.3))
    assert same.interval.value == pytest.approx(0.75)
    with pytest.raises(ValueError):
        ipw_mean(labels, [0.5, 0.0, 0.1, 1.0])


def test_ipw_with_every_label_good_is_not_certain():
    got = ipw_mean(np.ones(60), np.linspace(0.05, 0.5, 60))
    assert got.interval.value == 1.0
    assert got.interval.low == pytest.approx(proportion_confint(60, 60, method="wilson")[0])


def test_classical_is_wilson():
    got = classical_mean([1] * 30 + [0] * 12)
    assert (got.interval.low, got.interval.high) == pytest.approx(proportion_confint(30, 42, method="wilson"))


# --- the chooser ----------------------------------------------------------------------------------


def test_chooser_follows_the_design():
    y, f, fu, _ = _audit(200, 2000, seed=9)
    assert estimate_success(design="uniform", labels=y, scores_labeled=f, scores_unlabeled=fu).method == "ppi++"
    assert estimate_success(design="uniform", labels=y).method == "classical"
    # Every scored trace labelled: nothing for PPI to add, and said so (it read "no judge scores" beside n scored).
    alone = estimate_success(design="uniform", labels=y, scores_labeled=f, scores_unlabeled=fu[:0])
    assert alone.method == "classical" and alone.n_scored == 200
    assert alone.note == "every trace the judge scored is labelled: interval from labels alone"
    strata = np.where(f > 0.6, "high", "low")
    pi = np.where(strata == "high", 0.05, 0.2)
    got = estimate_success(design="stratified", labels=y, strata=strata, inclusion_probabilities=pi)
    assert got.method == "stratified"
    # N_h is recovered from the inclusion probabilities: n_h / pi_h.
    n_high = int((strata == "high").sum())
    assert got.n_scored == round(n_high / 0.05 + (200 - n_high) / 0.2)
    assert estimate_success(design="active", labels=y, inclusion_probabilities=pi).method == "ipw"
    manual = estimate_success(design="manual", labels=y)
    assert manual.method == "classical" and "not a probability sample" in manual.note


def test_chooser_falls_back_to_labels_alone_below_fifty():
    y, f, fu, _ = _audit(49, 2000, seed=10)
    got = estimate_success(design="uniform", labels=y, scores_labeled=f, scores_unlabeled=fu)
    assert got.method == "classical" and "fewer than 50" in got.note
    y, f, fu, _ = _audit(50, 2000, seed=10)
    assert estimate_success(design="uniform", labels=y, scores_labeled=f, scores_unlabeled=fu).method == "ppi++"


# --- coverage by seeded simulation ----------------------------------------------------------------

REPS = 2000


def _coverage(intervals, truth):
    return float(np.mean([i.contains(truth) for i in intervals]))


def test_ppi_covers_and_its_label_multiplier_matches_the_simulated_variance_ratio():
    p = 0.7
    ppi, classical, multipliers = [], [], []
    for r in range(REPS):
        y, f, fu, _ = _audit(150, 3000, seed=1000 + r, p=p)
        got = ppi_mean(y, f, fu)
        ppi.append(got.interval)
        multipliers.append(got.label_multiplier)
        classical.append(y.mean())
    coverage = _coverage(ppi, p)
    assert 0.93 <= coverage <= 0.97, coverage
    simulated = np.var(classical) / np.var([i.value for i in ppi])
    assert simulated > 1.3  # the judge is informative: labels are worth more with it
    assert np.mean(multipliers) == pytest.approx(simulated, rel=0.10)


def test_classical_covers_below_fifty_labels():
    # Wilson's coverage oscillates with p at a fixed n (e.g. 92.8% at n = 40, p = 0.8, exactly), so
    # the claim tested is coverage over a spread of true rates, each replicate drawing its own.
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(REPS):
        p = rng.uniform(0.5, 0.95)
        hits += classical_mean((rng.random(40) < p).astype(float)).interval.contains(p)
    assert 0.93 <= hits / REPS <= 0.97


def test_stratified_covers_on_an_enriched_design():
    """Three judge-score strata sampled 60 each, far from proportional (low scores 10x over-sampled)."""
    rng = np.random.default_rng(12)
    sizes = {"low": 2000, "mid": 3000, "high": 15_000}
    rates = {"low": 0.25, "mid": 0.6, "high": 0.93}
    truth = sum(sizes[h] * rates[h] for h in sizes) / sum(sizes.values())
    strata = np.repeat(list(sizes), 60)
    pi = np.array([60 / sizes[h] for h in strata])
    p_label = np.array([rates[h] for h in strata])
    got, naive = [], []
    for _ in range(REPS):
        y = (rng.random(strata.size) < p_label).astype(float)
        got.append(estimate_success(design="stratified", labels=y, strata=strata, inclusion_probabilities=pi))
        naive.append(y.mean())
    assert all(g.method == "stratified" for g in got)
    assert 0.93 <= _coverage([g.interval for g in got], truth) <= 0.97
    assert truth - np.mean(naive) > 0.15  # ignoring the design would be badly biased


def test_ipw_covers_on_an_active_design():
    """Uncertainty sampling: traces whose calibrated score is near 0.5 are labelled far more often."""
    rng = np.random.default_rng(13)
    big_n = 6000
    truth = 0.1 + 0.85 * 0.5  # E[P(good)] with P(good) = 0.1 + 0.85 * score, score ~ U(0, 1)
    got = []
    for _ in range(REPS):
        score = rng.random(big_n)
        p_good = 0.1 + 0.85 * score
        y = (rng.random(big_n) < p_good).astype(float)
        pi = np.clip(0.01 + 0.25 * p_good * (1 - p_good), 0, 1)
        take = rng.random(big_n) < pi
        got.append(estimate_success(design="active", labels=y[take], inclusion_probabilities=pi[take]))
    assert all(g.method == "ipw" for g in got)
    assert 0.93 <= _coverage([g.interval for g in got], truth) <= 0.97


# --- planner --------------------------------------------------------------------------------------


def test_labels_needed_by_hand_and_by_simulation():
    # z^2 * .25 / .05^2 = 384.1 -> 385 labels for +-5 points at 50%.
    assert labels_needed(half_width=0.05) == 385
    # A judge correlated 0.6 with the labels cuts that by 1 - 0.36.
    assert labels_needed(half_width=0.05, rho=0.6) == math.ceil(Z**2 * 0.25 * 0.64 / 0.0025)
    n = labels_needed(half_width=0.04, rate=0.8)
    rng = np.random.default_rng(14)
    widths = [(i.high - i.low) / 2 for i in (classical_mean(rng.random(n) < 0.8).interval for _ in range(300))]
    assert np.mean(widths) == pytest.approx(0.04, rel=0.03)


def test_between_groups_variance_is_statsmodels_dersimonian_laird() -> None:
    from statsmodels.stats.meta_analysis import combine_effects

    from evaluation.stats.estimators import between_groups_variance

    rng = np.random.default_rng(17)
    for k in (2, 3, 6, 40):
        means, variances = rng.normal(0.1, 0.08, k), rng.uniform(0.001, 0.02, k)
        found = between_groups_variance(means, variances)
        assert found.groups == k
        # statsmodels leaves a negative moment estimate as it is; a variance is truncated at zero.
        expected = max(0.0, combine_effects(means, variances, method_re="dl").tau2)
        assert found.tau2 == pytest.approx(expected, abs=1e-12)
    # Means closer than their noise: no spread at all (the estimate is truncated at zero).
    assert between_groups_variance([0.1, 0.1001, 0.0999], [0.01, 0.01, 0.01]).tau2 == 0.0
    for bad in (([0.1], [0.01]), ([0.1, 0.2], [0.01, 0.0]), ([0.1, 0.2], [0.01])):
        with pytest.raises(ValueError, match="at least 2 groups"):
            between_groups_variance(*bad)
