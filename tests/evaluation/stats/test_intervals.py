import math

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from evaluation.stats.intervals import (
    Interval,
    bootstrap_totals,
    clopper_pearson,
    clopper_pearson_lower,
    mover_difference,
    mover_ratio,
    t_value,
    wilson,
    z_value,
)

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


# --- MOVER: intervals of a difference and of a ratio from each estimate's own interval ----------------


@pytest.mark.parametrize(("k1", "n1", "k2", "n2"), [(30, 50, 20, 60), (0, 40, 3, 280), (22, 35, 97, 260), (5, 5, 1, 9)])
@pytest.mark.parametrize("confidence", [0.95, 0.99, 1 - 0.05 / 12])
def test_mover_difference_of_two_wilson_intervals_is_newcombes(k1, n1, k2, n2, confidence):
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff", alpha=1 - confidence)
    got = mover_difference(wilson(k1, n1, confidence), wilson(k2, n2, confidence))
    assert got.value == pytest.approx(k1 / n1 - k2 / n2)
    assert (got.low, got.high) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))


def test_mover_difference_with_a_scale_covers_in_simulation():
    """p1 - 0.9 p2 (a success rule's "below 90% of the baseline"): about 95% of intervals cover it."""
    rng = np.random.default_rng(11)
    p1, p2, n1, n2 = 0.55, 0.6, 80, 560
    truth = p1 - 0.9 * p2
    k1, k2 = rng.binomial(n1, p1, 4000), rng.binomial(n2, p2, 4000)
    covered = [
        mover_difference(wilson(a, n1), wilson(b, n2), scale=0.9).contains(truth) for a, b in zip(k1, k2, strict=True)
    ]
    assert 0.935 <= np.mean(covered) <= 0.965


def test_mover_ratio_of_a_mean_cost_and_a_rate_covers_in_simulation():
    """Cost per success = (mean cost of a trace) / (success rate), each estimated from one window's traces
    (skewed, lognormal costs; a binomial rate): about 95% of the ratio's intervals cover the true ratio."""
    rng = np.random.default_rng(5)
    n, rate, mu, sigma = 150, 0.4, -6.0, 0.8
    truth = math.exp(mu + sigma * sigma / 2) / rate
    covered = []
    for _ in range(3000):
        costs = rng.lognormal(mu, sigma, n)
        mean = Interval(costs.mean(), *(costs.mean() + np.array([-1, 1]) * 1.959964 * costs.std(ddof=1) / math.sqrt(n)))
        covered.append(mover_ratio(mean, wilson(rng.binomial(n, rate), n)).contains(truth))
    assert 0.935 <= np.mean(covered) <= 0.965


def test_mover_ratio_bounds():
    got = mover_ratio(Interval(2.0, 1.0, 3.0), Interval(1.0, 0.5, 1.5))
    # On the log scale: log 2 -+ hypot(log 2 - log 1, log 1.5 - log 1) for the low end, and so on.
    assert got.low == pytest.approx(math.exp(math.log(2) - math.hypot(math.log(2), math.log(1.5))))
    assert got.high == pytest.approx(math.exp(math.log(2) + math.hypot(math.log(1.5), math.log(2))))
    # A lower bound of 0 (a rate that may be 0, a cost that may be 0) leaves that side unbounded.
    open_ended = mover_ratio(Interval(2.0, 0.0, 3.0), Interval(1.0, 0.0, 1.5))
    assert open_ended.low == 0.0 and open_ended.high is None
    assert not mover_ratio(Interval(0.0, 0.0, 1.0), Interval(1.0, 0.5, 1.5)).defined


def test_a_wilson_interval_holds_its_own_value_at_the_edges() -> None:
    """0 of 300 gave a low of 8.7e-19 above its value of 0 (rounding in center - half): a report said a rate
    of 0 was at least 8.7e-19. Every count of every size now lies inside its own interval, still statsmodels'."""
    for n in (1, 2, 7, 30, 300, 10_000):
        for x in range(0, n + 1, max(1, n // 50)):
            got = wilson(x, n)
            assert got.low is not None and got.value is not None and got.high is not None
            assert got.low <= got.value <= got.high, (x, n, got)
            low, high = proportion_confint(x, n, method="wilson")
            assert (got.low, got.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert wilson(0, 300).low == 0.0 and wilson(300, 300).high == 1.0


@pytest.mark.parametrize("confidence", [0.95, 0.975, 0.99, 1 - 0.05 / 12])
@pytest.mark.parametrize("df", [1, 3, 28.5])
def test_remembered_quantiles_are_scipys(confidence, df):
    """z_value and t_value remember their answers (a report asked scipy ~120 times): the same as asking again."""
    from scipy import stats

    for _ in range(2):
        assert z_value(confidence) == pytest.approx(stats.norm.ppf(1 - (1 - confidence) / 2), rel=1e-12)
        assert t_value(confidence, df) == pytest.approx(stats.t.ppf(1 - (1 - confidence) / 2, df), rel=1e-12)
    asked = z_value.cache_info().hits, t_value.cache_info().hits
    z_value(confidence), t_value(confidence, df)
    assert (z_value.cache_info().hits, t_value.cache_info().hits) == (asked[0] + 1, asked[1] + 1)  # remembered
    assert t_value(0.95, 1) == pytest.approx(12.7062047, rel=1e-7)
    with pytest.raises(ValueError):
        t_value(1.0, df)
