import numpy as np
import pytest
from scipy.stats import ks_2samp

from evaluation.stats import (
    bin_shares,
    cusum,
    disagreement_cusum_reference,
    ks_shift,
    psi,
    psi_terms,
    rolling_residual,
)


def test_cusum_by_hand():
    # k = 0.2, h = 1: S = .8, .6, 1.4 -> alarm at index 2.
    got = cusum([1, 0, 1, 0, 0], k=0.2, h=1.0)
    assert got.statistic.tolist() == pytest.approx([0.8, 0.6, 1.4, 1.2, 1.0])
    assert got.alarm_index == 2


def test_cusum_resets_at_zero_and_stays_quiet_in_control():
    got = cusum([0, 0, 1, 0, 0, 0, 1, 0, 0, 0], k=0.3, h=1.0)
    assert got.statistic.tolist() == pytest.approx([0, 0, 0.7, 0.4, 0.1, 0, 0.7, 0.4, 0.1, 0])
    assert not got.alarmed


def test_cusum_catches_a_judge_that_starts_disagreeing():
    rng = np.random.default_rng(0)
    before = rng.random(300) < 0.1  # 10% disagreement while the judge is fine
    after = rng.random(300) < 0.3  # then 30%
    k = disagreement_cusum_reference(0.1, 0.3)
    got = cusum(np.r_[before, after].astype(float), k=k, h=5.0)
    assert got.alarm_index is not None and 300 <= got.alarm_index < 360
    assert not cusum(before.astype(float), k=k, h=5.0).alarmed


def test_psi_by_hand():
    expected = [0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9, 0.95]  # bins of width .5: 3 low, 5 high
    actual = [0.1, 0.2, 0.6, 0.7]  # 2 low, 2 high
    e, a = np.array([3 / 8, 5 / 8]), np.array([0.5, 0.5])
    assert psi(expected, actual, bins=2) == pytest.approx(np.sum((a - e) * np.log(a / e)), abs=1e-12)
    assert psi(expected, expected, bins=2) == 0.0


def test_psi_floors_empty_bins_and_takes_edges():
    got = psi([0.1, 0.2], [0.8, 0.9], bins=[0.0, 0.5, 1.0], floor=1e-4)
    by_hand = (1e-4 - 1) * np.log(1e-4 / 1) + (1 - 1e-4) * np.log(1 / 1e-4)
    assert got == pytest.approx(by_hand)
    assert psi([0.1, 2.0], [0.1, 5.0], bins=2) == pytest.approx(0.0)  # outside values land in end bins


def test_psi_flags_a_shift_and_not_noise():
    rng = np.random.default_rng(1)
    base = rng.beta(5, 2, 5000)
    assert psi(base, rng.beta(5, 2, 5000)) < 0.02
    assert psi(base, rng.beta(2, 2, 5000)) > 0.25


def test_ks_shift_is_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.random(200), rng.random(300) ** 2
    ref = ks_2samp(a, b)
    got = ks_shift(a, b)
    assert (got.statistic, got.p_value) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    assert got.p_value < 0.01


def test_rolling_residual_by_hand():
    labels = [1, 0, 1, 1]
    calibrated = [0.5, 0.5, 0.5, 0.9]
    got = rolling_residual(labels, calibrated, window=2)
    # residuals .5, -.5, .5, .1
    assert got.mean.tolist() == pytest.approx([0.0, 0.0, 0.3])
    sd = np.std([0.5, 0.1], ddof=1)
    assert got.high[2] == pytest.approx(0.3 + 1.959963984540054 * sd / np.sqrt(2))


def test_bin_shares_are_numpys_histogram_with_outside_values_in_the_end_bins():
    rng = np.random.default_rng(5)
    e, a = rng.beta(2, 5, 400), rng.beta(5, 2, 300)
    edges, pe, pa = bin_shares(e, a, bins=10)
    counts, numpy_edges = np.histogram(a, bins=10, range=(0.0, 1.0))
    assert np.allclose(edges, numpy_edges) and np.allclose(pa, counts / a.size)
    assert pe.sum() == pytest.approx(1.0) and pa.sum() == pytest.approx(1.0)
    # Outside the range: in the end bins, as psi counts them.
    _, _, outside = bin_shares([0.5], [-3.0, 0.5, 7.0], bins=[0.0, 0.25, 0.75, 1.0])
    assert outside.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3])


def test_psi_is_the_sum_of_its_bins_parts_each_never_negative():
    rng = np.random.default_rng(6)
    e, a = rng.beta(2, 2, 1000), rng.beta(2, 4, 1000)
    _, pe, pa = bin_shares(e, a, bins=10)
    terms = psi_terms(pe, pa)
    assert np.all(terms >= 0) and terms.sum() == pytest.approx(psi(e, a, bins=10))
    # A pile-up planted in one bin carries the largest part.
    flat = rng.uniform(0, 1, 2000)
    piled = np.concatenate([rng.uniform(0, 1, 1400), rng.uniform(0.9, 1.0, 600)])
    _, pe, pa = bin_shares(flat, piled, bins=10)
    assert int(np.argmax(psi_terms(pe, pa))) == 9
