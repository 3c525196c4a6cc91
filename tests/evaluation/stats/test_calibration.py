import json

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss

from evaluation.stats import (
    IsotonicCalibrator,
    PlattCalibrator,
    brier_score,
    calibrate,
    calibrator_from_dict,
    expected_calibration_error,
    fit_isotonic,
    fit_platt,
    reliability_bins,
)


def _judged(n, seed, link=lambda s: s):
    """Raw scores uniform on [0, 1]; a human calls an output good with probability link(score)."""
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    return scores, (rng.random(n) < link(scores)).astype(int)


def test_brier_matches_sklearn():
    rng = np.random.default_rng(0)
    p, y = rng.random(200), rng.integers(0, 2, 200)
    assert brier_score(p, y) == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_reliability_and_ece_by_hand():
    p = [0.05, 0.15, 0.12, 0.55, 0.95, 0.91, 1.0]
    y = [0, 1, 0, 1, 1, 1, 0]
    bins = reliability_bins(p, y, bins=10)
    # Bins [0, .1): .05 -> 0;  [.1, .2): .15, .12 -> 1/2;  [.5, .6): .55 -> 1;  [.9, 1]: .95, .91, 1.0 -> 2/3.
    assert [b.as_dict() for b in bins] == [
        {"mean_predicted": pytest.approx(0.05), "observed": 0.0, "n": 1},
        {"mean_predicted": pytest.approx(0.135), "observed": 0.5, "n": 2},
        {"mean_predicted": pytest.approx(0.55), "observed": 1.0, "n": 1},
        {"mean_predicted": pytest.approx(2.86 / 3), "observed": pytest.approx(2 / 3), "n": 3},
    ]
    by_hand = (1 * 0.05 + 2 * abs(0.5 - 0.135) + 1 * 0.45 + 3 * abs(2 / 3 - 2.86 / 3)) / 7
    assert expected_calibration_error(p, y, bins=10) == pytest.approx(by_hand, abs=1e-12)


def test_isotonic_calibrator_predicts_like_sklearn_and_survives_json():
    scores, labels = _judged(500, seed=1, link=lambda s: s**2)
    cal = fit_isotonic(scores, labels)
    ref = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(scores, labels)
    grid = np.linspace(-0.5, 1.5, 301)
    assert np.allclose(cal.predict(grid), ref.predict(grid), atol=1e-12)
    loaded = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
    assert isinstance(loaded, IsotonicCalibrator)
    assert np.array_equal(loaded.predict(grid), cal.predict(grid))


def test_platt_minimizes_platts_smoothed_log_loss():
    rng = np.random.default_rng(2)
    scores = rng.integers(1, 6, 300).astype(float)  # an ordinal 1-5 judge, on its raw scale
    labels = (rng.random(300) < (scores - 1) / 4).astype(int)
    cal = fit_platt(scores, labels)
    n_pos, n_neg = labels.sum(), labels.size - labels.sum()
    t = np.where(labels == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss(ab):
        z = ab[0] * scores + ab[1]
        return np.sum(np.logaddexp(0, z) - t * z)

    best = minimize(loss, x0=[0.0, 0.0], method="BFGS", options={"gtol": 1e-10}).x
    assert (cal.slope, cal.intercept) == pytest.approx(tuple(best), abs=1e-4)
    loaded = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
    assert isinstance(loaded, PlattCalibrator)
    assert np.array_equal(loaded.predict(scores), cal.predict(scores))


def test_platt_stays_finite_on_a_perfect_judge():
    cal = fit_platt([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [0, 0, 0, 1, 1, 1])
    assert np.isfinite(cal.slope) and cal.slope > 0
    assert 0.5 < cal.predict([0.9])[0] < 1.0


def test_unknown_calibrator_dict_is_rejected():
    with pytest.raises(ValueError):
        calibrator_from_dict({"method": "magic"})


def test_cross_validation_picks_isotonic_for_a_step_shaped_judge():
    # P(good) jumps at 0.5: no logistic curve in the raw score fits that, isotonic does.
    scores, labels = _judged(1500, seed=3, link=lambda s: np.where(s > 0.5, 0.95, 0.1))
    report = calibrate(scores, labels)
    assert report.method == "isotonic"
    assert report.cv_brier["isotonic"] < report.cv_brier["platt"]
    assert report.calibrator.predict([0.3])[0] == pytest.approx(0.1, abs=0.05)


def test_cross_validation_mostly_picks_platt_for_a_logistic_judge():
    # When the truth is logistic, Platt should win the cross-validated Brier comparison in most
    # draws (isotonic's extra flexibility only adds variance); a selection bug would not.
    link = lambda s: 1 / (1 + np.exp(-(8 * s - 4)))  # noqa: E731
    picks = [calibrate(*_judged(400, seed=seed, link=link)).method for seed in range(8)]
    assert picks.count("platt") >= 6, picks


def test_few_labels_use_platt_only():
    scores, labels = _judged(80, seed=5)
    report = calibrate(scores, labels)
    assert report.method == "platt" and set(report.cv_brier) == {"platt"}


def test_reported_figures_are_cross_fitted():
    """A score that carries no information must not look better than the base rate. Fitted and
    scored on the same labels, a calibrator fits some of the noise; out of fold it cannot."""
    rng = np.random.default_rng(6)
    scores, labels = rng.random(600), (rng.random(600) < 0.5).astype(int)
    report = calibrate(scores, labels)
    in_sample = brier_score(fit_isotonic(scores, labels).predict(scores), labels)
    # In sample, a calibrator can always do at least as well as the constant base rate (Brier =
    # Var(y)); out of fold, on noise, it does worse. A report computed in sample would not.
    assert in_sample < labels.var() < report.brier
    assert report.cv_brier["isotonic"] > labels.var()
    assert report.brier == pytest.approx(brier_score(report.out_of_fold, labels))
    assert report.ece == pytest.approx(expected_calibration_error(report.out_of_fold, labels))


def test_calibrated_probabilities_match_observed_rates():
    scores, labels = _judged(3000, seed=7, link=lambda s: 0.2 + 0.6 * s)  # a judge that is overconfident
    report = calibrate(scores, labels)
    assert report.ece < 0.04
    mid = [b for b in report.reliability if 0.4 <= b.mean_predicted < 0.6]
    assert mid and all(abs(b.observed - b.mean_predicted) < 0.06 for b in mid)
    assert report.as_dict()["method"] == report.method
    assert sum(b["n"] for b in report.as_dict()["reliability"]) == 3000


def test_one_class_only_gives_a_constant_calibrator_with_a_note():
    report = calibrate([0.1, 0.5, 0.9, 0.7], [1, 1, 1, 1])
    assert report.note and report.calibrator.predict([0.0, 1.0]).tolist() == pytest.approx([0.9, 0.9])
