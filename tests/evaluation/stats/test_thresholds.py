import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from evaluation.stats import npv_threshold, precision_threshold, threshold_guarantee
from evaluation.stats.thresholds import min_selected_for


def _cp_low(k, n):
    """One-sided 95% Clopper-Pearson lower bound: statsmodels' two-sided 90% "beta" interval."""
    return proportion_confint(k, n, alpha=0.10, method="beta")[0]


def test_min_selected_is_where_a_record_with_that_many_misses_first_clears_the_target():
    n = min_selected_for(0.9, failures=0)
    assert _cp_low(n, n) >= 0.9 > _cp_low(n - 1, n - 1)
    n = min_selected_for(0.9)  # default: one miss allowed
    assert _cp_low(n - 1, n) >= 0.9 > _cp_low(n - 2, n - 1)
    assert min_selected_for(0.5, failures=0) == 5


def test_scan_stops_at_the_first_failure_even_if_a_looser_threshold_would_pass():
    # Scores 30 (best) down to 1. The 12 best are good, the next 8 bad, the last 10 good again.
    scores = np.arange(30, 0, -1).astype(float)
    labels = np.array([1] * 12 + [0] * 8 + [1] * 10)
    got = precision_threshold(scores, labels, target=0.5, min_selected=5)
    cumulative = np.cumsum(labels)
    lows = {k: _cp_low(cumulative[k - 1], k) for k in range(5, 31)}
    first_fail = min(k for k, lo in lows.items() if lo < 0.5)
    assert 12 < first_fail < 20
    assert got.threshold == scores[first_fail - 2]  # the last threshold before the failure
    assert got.n_selected == first_fail - 1
    assert got.guaranteed_low == pytest.approx(lows[first_fail - 1], abs=1e-9)
    # The loosest threshold's own bound clears the target, but testing it is not allowed any more.
    assert lows[30] >= 0.5
    # Steps run from the strictest tested threshold to the first failure, inclusive.
    assert [s.lower_bound for s in got.steps] == pytest.approx([lows[k] for k in range(5, first_fail + 1)], abs=1e-9)


def test_ties_share_one_threshold():
    scores = [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.5, 0.5]
    labels = [1, 1, 1, 1, 1, 1, 0, 0]
    got = precision_threshold(scores, labels, target=0.6, min_selected=5)
    assert [s.threshold for s in got.steps] == [0.9, 0.5]
    assert got.threshold == 0.9 and got.n_selected == 6


def test_no_threshold_when_the_strictest_fails():
    got = precision_threshold([0.9] * 10 + [0.1] * 10, [0] * 10 + [1] * 10, target=0.8)
    assert got.threshold is None and got.guaranteed_low is None and got.note


def test_too_few_items_is_said_plainly():
    got = precision_threshold([0.9, 0.8], [1, 1], target=0.95)
    assert got.threshold is None and "fewer than" in got.note


def test_npv_threshold_mirrors_precision():
    rng = np.random.default_rng(0)
    scores = rng.random(1000)
    labels = (rng.random(1000) < scores).astype(int)
    fail = npv_threshold(scores, labels, target=0.8)
    mirrored = precision_threshold(-scores, 1 - labels, target=0.8)
    assert fail.threshold is not None
    assert fail.threshold == -mirrored.threshold
    assert fail.guaranteed_low == mirrored.guaranteed_low
    fails = scores <= fail.threshold
    assert (1 - labels[fails]).mean() >= 0.8  # observed NPV at the chosen threshold
    assert _cp_low(int((1 - labels[fails]).sum()), int(fails.sum())) == pytest.approx(fail.guaranteed_low)


def test_guarantee_holds_in_simulation():
    """Y ~ Bernoulli(score): precision at threshold t is (1 + t) / 2, so a pass threshold below 0.7
    breaks a 0.85 precision target. With 95% confidence that should happen in at most ~5% of
    samples, and with 2,000 labels the search should nearly always find a threshold."""
    rng = np.random.default_rng(1)
    broken = found = 0
    reps = 300
    for _ in range(reps):
        scores = rng.random(2000)
        labels = (rng.random(2000) < scores).astype(int)
        got = precision_threshold(scores, labels, target=0.85)
        if got.threshold is not None:
            found += 1
            broken += (1 + got.threshold) / 2 < 0.85
    assert broken / reps <= 0.06
    assert found / reps >= 0.9


def test_threshold_guarantee_gives_the_human_band():
    rng = np.random.default_rng(2)
    scores = rng.random(2000)
    labels = (rng.random(2000) < scores).astype(int)
    got = threshold_guarantee(scores, labels, target_precision=0.9, target_npv=0.9)
    fail_at, pass_at = got.human_band
    # Precision at t is (1 + t) / 2 >= 0.9 needs t >= 0.8; NPV at t is 1 - t / 2 >= 0.9 needs t <= 0.2.
    # The guarantee is conservative, so the thresholds sit at or beyond those points, not past them.
    assert 0.8 <= pass_at < 0.99 and 0.01 < fail_at <= 0.2
    assert got.as_dict() == {
        "target_precision": 0.9,
        "pass_at": pass_at,
        "guaranteed_precision_low": got.passing.guaranteed_low,
        "target_npv": 0.9,
        "fail_at": fail_at,
        "guaranteed_npv_low": got.failing.guaranteed_low,
    }
    assert got.passing.guaranteed_low >= 0.9


def test_pass_and_fail_thresholds_never_overlap():
    """A binary judge (scores 0 and 1) on mostly good answers: alone, each side certifies 0 (everything
    passes at precision >= 70%; a fail at 0 is bad >= 70% of the time), so a 0 would be both passed and
    failed. The pass side takes its stricter certified threshold (1) instead, with that threshold's own
    statsmodels Clopper-Pearson bound; nothing is left between them."""
    rng = np.random.default_rng(4)
    scores = (rng.random(400) < 0.8).astype(float)
    labels = np.where(scores == 1, rng.random(400) < 0.95, rng.random(400) < 0.1).astype(int)
    alone = precision_threshold(scores, labels, target=0.7)
    assert alone.threshold == 0.0 and npv_threshold(scores, labels, target=0.7).threshold == 0.0
    got = threshold_guarantee(scores, labels, target_precision=0.7)
    fail_at, pass_at = got.human_band
    assert (fail_at, pass_at) == (0.0, 1.0)
    ones = scores == 1
    assert got.passing.guaranteed_low == pytest.approx(_cp_low(labels[ones].sum(), ones.sum()), abs=1e-9)
    assert got.passing.n_selected == ones.sum()
    # Over many draws of random scores: whenever both sides stand, every score is passed, failed or
    # sent to a person, never two of them.
    for seed in range(30):
        rng = np.random.default_rng(seed)
        scores = rng.integers(0, 5, 300).astype(float)
        labels = (rng.random(300) < (scores + 1) / 6).astype(int)
        for target in (0.6, 0.7, 0.8):
            fail_at, pass_at = threshold_guarantee(scores, labels, target_precision=target).human_band
            assert fail_at is None or pass_at is None or fail_at < pass_at


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        precision_threshold([0.1, 0.2], [1, 2], target=0.9)
    with pytest.raises(ValueError):
        precision_threshold([0.1, 0.2], [1, 0], target=1.0)
