import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evaluation.stats import delong_auc, signal_auc


def _signal(n, seed, shift=0.8, ties=False):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.6).astype(int)
    signal = rng.normal(shift * labels, 1.0)
    if ties:
        signal = np.round(signal)  # a coarse signal with many ties
    return labels, signal


def _placements(labels, signal):
    """DeLong et al. (1988) structural components by their definition: psi(x, y) = 1 if x > y,
    1/2 if equal; V10 per positive over negatives, V01 per negative over positives. O(m n)."""
    pos, neg = signal[labels == 1], signal[labels == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return psi.mean(), v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size


@pytest.mark.parametrize("ties", [False, True])
def test_auc_and_delong_variance_match_the_definition_and_sklearn(ties):
    labels, signal = _signal(300, seed=1, ties=ties)
    auc, var = delong_auc(labels, signal)
    ref_auc, ref_var = _placements(labels, signal)
    assert auc == pytest.approx(roc_auc_score(labels, signal), abs=1e-12)
    assert auc == pytest.approx(ref_auc, abs=1e-12)
    assert var == pytest.approx(ref_var, rel=1e-9)


def test_delong_standard_error_agrees_with_the_bootstrap():
    labels, signal = _signal(400, seed=2)
    _, var = delong_auc(labels, signal)
    rng = np.random.default_rng(3)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    boot = []
    for _ in range(1000):
        idx = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        boot.append(roc_auc_score(labels[idx], signal[idx]))
    assert np.sqrt(var) == pytest.approx(np.std(boot), rel=0.1)


def test_signal_auc_interval_covers():
    # Normal signals with unit variance and shift d have AUC = Phi(d / sqrt 2).
    from scipy.stats import norm

    truth = norm.cdf(0.8 / np.sqrt(2))
    hits = [signal_auc(*_signal(150, seed=100 + r)).contains(truth) for r in range(500)]
    assert 0.93 <= np.mean(hits) <= 0.97


def test_uninformative_and_backwards_signals():
    rng = np.random.default_rng(4)
    labels = (rng.random(500) < 0.5).astype(int)
    noise = signal_auc(labels, rng.random(500))
    assert noise.contains(0.5)
    retries = np.where(labels == 1, rng.random(500) < 0.1, rng.random(500) < 0.5).astype(float)
    assert signal_auc(labels, retries).high < 0.5  # retries point to bad outputs


def test_signal_auc_is_undefined_with_one_class():
    got = signal_auc([1, 1, 1], [0.2, 0.5, 0.9])
    assert got.as_dict()["value"] is None and got.note
