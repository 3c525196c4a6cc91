import math

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from evaluation.stats.intervals import Interval, bootstrap_totals, clopper_pearson, clopper_pearson_lower, wilson

CASES = [(0, 10), (1, 10), (7, 10), (10, 10), (3, 57), (180, 200), (499, 1000)]


@pytest.mark.parametrize(("k", "n"), CASES)
def test_wilson_matches_statsmodels(k, n):
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    got = wilson(k, n)
    assert got.value == pytest.approx(k / n, abs=1e-12)
    assert got.low == pytest.approx(low, abs=1e-9)
    assert got.high == pytest.approx(high, abs=1e-9)


@pytest.mark.parametrize(("k", "n"), CASES)
def test_clopper_pearson_matches_statsmodels_beta(k, n):
    low, high = proportion_confint(k, n, alpha=0.05, method="beta")
    got = clopper_pearson(k, n)
    assert got.low == pytest.approx(low, abs=1e-9)
    assert got.high == pytest.approx(high, abs=1e-9)
    # The one-sided 95% lower bound is the two-sided 90% interval's lower end.
    one_sided, _ = proportion_confint(k, n, alpha=0.10, method="beta")
    assert clopper_pearson_lower(k, n, 0.95) == pytest.approx(one_sided, abs=1e-9)


def test_as_dict_is_the_api_interval_object():
    assert Interval(0.5, 0.4, 0.6).as_dict() == {"value": 0.5, "low": 0.4, "high": 0.6}
    undefined = Interval(value=float("nan"), low=None, high=float("inf"), note="no good items")
    assert undefined.as_dict() == {"value": None, "low": None, "high": None, "note": "no good items"}
    assert wilson(0, 0).as_dict()["note"] == "no observations"


def test_interval_stores_plain_floats():
    got = Interval(np.float64(0.25), np.float32(0.125), np.float64(0.5))
    assert type(got.value) is float and type(got.low) is float
    assert got.contains(0.3) and not got.contains(0.6)


def test_stratified_bootstrap_keeps_stratum_sizes():
    strata = np.array([0] * 5 + [1] * 20)
    # Columns: "in stratum 0", "in stratum 1", and a value that differs within each stratum.
    rows = np.column_stack([strata == 0, strata == 1, np.arange(25) % 3]).astype(float)
    totals = bootstrap_totals(rows, 400, np.random.default_rng(1), strata)
    assert np.all(totals[:, 0] == 5) and np.all(totals[:, 1] == 20)
    # ...and does resample: the third column's total varies around its mean (sum 0+1+2+... = 24).
    assert totals[:, 2].std() > 1
    assert math.isclose(totals[:, 2].mean(), rows[:, 2].sum(), rel_tol=0.05)


def test_pooled_bootstrap_has_the_item_bootstrap_distribution():
    """Pooling identical rows must not change the resampling distribution: the total of a 0/1
    column over n resampled items is Binomial(n, share of ones)."""
    rows = np.array([[1.0]] * 30 + [[0.0]] * 70)
    totals = bootstrap_totals(rows, 20_000, np.random.default_rng(2))[:, 0]
    assert totals.mean() == pytest.approx(30, abs=0.15)
    assert totals.var() == pytest.approx(100 * 0.3 * 0.7, rel=0.05)
