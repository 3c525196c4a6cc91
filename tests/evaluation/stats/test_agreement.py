import math

import krippendorff  # GPL: a test-only oracle, never imported by evaluation/stats
import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import cohen_kappa_score, matthews_corrcoef
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.proportion import proportion_confint

from evaluation.stats import (
    binary_agreement,
    coincidence_matrix,
    confusion_matrix,
    gwet_ac1_from_table,
    kappa_from_table,
    krippendorff_alpha,
    mcnemar_p,
    mean_absolute_error,
    ordinal_agreement,
    paired_difference_interval,
    spearman,
    verdict,
    weighted_kappa,
)

Z = 1.959963984540054
NAN = np.nan


def _paired(n, p_good, tpr, tnr, seed):
    rng = np.random.default_rng(seed)
    human = (rng.random(n) < p_good).astype(int)
    judge = np.where(human == 1, rng.random(n) < tpr, rng.random(n) > tnr).astype(int)
    return human, judge


# --- confusion and rates --------------------------------------------------------------------------


def test_confusion_and_rates_match_sklearn_and_statsmodels():
    human, judge = _paired(300, 0.7, 0.9, 0.6, seed=3)
    report = binary_agreement(human, judge)
    expected = sk_confusion_matrix(human, judge, labels=[0, 1])
    assert np.array_equal(np.array(report.confusion), expected)
    (tn, fp), (fn, tp) = expected
    for got, (k, n) in [(report.tpr, (tp, tp + fn)), (report.tnr, (tn, tn + fp)), (report.precision, (tp, tp + fp))]:
        low, high = proportion_confint(k, n, method="wilson")
        assert got.value == pytest.approx(k / n, abs=1e-12)
        assert (got.low, got.high) == pytest.approx((low, high), abs=1e-9)
    assert report.n == 300
    assert report.judge_pass_rate == pytest.approx(judge.mean())
    assert report.human_good_rate == pytest.approx(human.mean())


def test_rates_are_undefined_with_a_note_when_a_class_is_missing():
    report = binary_agreement([1, 1, 1, 1], [1, 0, 1, 1])
    assert report.tnr.as_dict() == {"value": None, "low": None, "high": None, "note": "no bad items"}
    assert report.tpr.value == pytest.approx(0.75)


def test_rejects_non_binary_labels():
    with pytest.raises(ValueError):
        binary_agreement([0, 1, 2], [0, 1, 1])


# --- kappa family ---------------------------------------------------------------------------------


def test_cohen_kappa_matches_sklearn_and_statsmodels_interval():
    human, judge = _paired(250, 0.6, 0.85, 0.7, seed=5)
    report = binary_agreement(human, judge)
    ref = cohens_kappa(sk_confusion_matrix(human, judge))
    assert report.kappa.value == pytest.approx(cohen_kappa_score(human, judge), abs=1e-9)
    assert (report.kappa.low, report.kappa.high) == pytest.approx((ref.kappa_low, ref.kappa_upp), abs=1e-9)


@pytest.mark.parametrize("weighting", ["quadratic", "linear"])
def test_weighted_kappa_matches_sklearn_and_statsmodels(weighting):
    rng = np.random.default_rng(11)
    human = rng.integers(1, 6, 400)
    judge = np.clip(human + rng.integers(-1, 2, 400) + (rng.random(400) < 0.2), 1, 5)
    judge[:3] = 1  # make sure the table is not diagonal-only at the edges
    got = weighted_kappa(human, judge, weighting=weighting)
    assert got.value == pytest.approx(
        cohen_kappa_score(human, judge, labels=[1, 2, 3, 4, 5], weights=weighting), abs=1e-9
    )
    table = sk_confusion_matrix(human, judge, labels=[1, 2, 3, 4, 5])
    ref = cohens_kappa(table, wt=weighting)
    assert (got.low, got.high) == pytest.approx((ref.kappa_low, ref.kappa_upp), abs=1e-9)


def test_weighted_kappa_uses_the_whole_scale_even_when_a_category_is_unused():
    human = [1, 2, 2, 4, 4, 5, 1, 2]  # nobody used 3
    judge = [1, 2, 4, 4, 5, 5, 2, 2]
    got = weighted_kappa(human, judge).value
    assert got == pytest.approx(cohen_kappa_score(human, judge, labels=[1, 2, 3, 4, 5], weights="quadratic"))
    # Without the unused category the distances shrink and kappa differs: the scale matters.
    assert got != pytest.approx(cohen_kappa_score(human, judge, weights="quadratic"))


def test_kappa_is_undefined_when_both_raters_use_one_category():
    assert kappa_from_table([[0, 0], [0, 12]]).low is None


# Gwet's AC1 and its standard error for two raters, from the irrCAC 0.4.4 package's
# CAC(table).gwet() (Gwet's own formulas; it pins numpy < 2, so the values were computed once in
# a separate environment and are pinned here).
IRRCAC_AC1 = [
    ([[5, 6], [4, 110]], 0.906191369606004, 0.030671602447343),
    ([[20, 5], [3, 72]], 0.874055415617128, 0.045035938808956),
    ([[118, 5], [2, 0]], 0.940776337608718, 0.022964551247933),
    ([[40, 9], [6, 45]], 0.700748129675811, 0.071351803359745),
]


@pytest.mark.parametrize(("table", "ac1", "se"), IRRCAC_AC1)
def test_gwet_ac1_matches_irrcac(table, ac1, se):
    got = gwet_ac1_from_table(table)
    assert got.value == pytest.approx(ac1, abs=1e-12)
    assert got.low == pytest.approx(ac1 - Z * se, abs=1e-12)
    assert got.high == pytest.approx(min(1.0, ac1 + Z * se), abs=1e-12)


def test_ac1_stays_high_where_kappa_collapses_under_skew():
    # Gwet's paradox: 93% raw agreement, yet kappa is near zero because almost everything is good.
    table = [[1, 4], [3, 92]]
    kappa = kappa_from_table(table).value
    ac1 = gwet_ac1_from_table(table).value
    pa = 93 / 100
    pi_good = (96 / 100 + 95 / 100) / 2
    pe = 2 * pi_good * (1 - pi_good)
    assert ac1 == pytest.approx((pa - pe) / (1 - pe), abs=1e-12)
    assert kappa < 0.25 < 0.9 < ac1


# --- bias and McNemar -----------------------------------------------------------------------------


@pytest.mark.parametrize(("fp", "fn"), [(0, 0), (3, 9), (10, 2), (12, 12), (30, 14), (55, 80)])
def test_mcnemar_matches_statsmodels(fp, fn):
    table = [[100, fp], [fn, 200]]
    exact = fp + fn < 25
    ref = mcnemar(table, exact=exact, correction=True).pvalue
    assert mcnemar_p(fp, fn) == pytest.approx(ref, abs=1e-9)


def test_bias_is_judge_rate_minus_human_rate_with_mcnemar():
    human, judge = _paired(200, 0.6, 0.95, 0.5, seed=8)  # a lenient judge
    report = binary_agreement(human, judge)
    (tn, fp), (fn, tp) = report.confusion
    assert report.bias.interval.value == pytest.approx(judge.mean() - human.mean(), abs=1e-12)
    assert report.bias.interval.low > 0  # lenient: passes more than humans call good
    assert report.bias.mcnemar_p == pytest.approx(mcnemar([[tn, fp], [fn, tp]], exact=False).pvalue, abs=1e-9)
    assert set(report.bias.as_dict()) == {"value", "low", "high", "mcnemar_p"}


def test_paired_difference_interval_covers_in_simulation():
    rng = np.random.default_rng(21)
    # Cell probabilities tn, fp, fn, tp: judge pass rate 0.75, human good rate 0.70.
    probs = np.array([0.22, 0.08, 0.03, 0.67])
    truth = (probs[1] + probs[3]) - (probs[2] + probs[3])
    tables = rng.multinomial(150, probs, size=1000)
    covered = [paired_difference_interval(t.reshape(2, 2)).contains(truth) for t in tables]
    assert 0.93 <= np.mean(covered) <= 0.97


# --- Spearman and MAE -----------------------------------------------------------------------------


def test_spearman_matches_scipy_and_covers():
    rng = np.random.default_rng(4)
    rho_normal = 0.6
    truth = 6 / math.pi * math.asin(rho_normal / 2)  # population Spearman of a bivariate normal
    cov = [[1, rho_normal], [rho_normal, 1]]
    first = rng.multivariate_normal([0, 0], cov, size=50)
    assert spearman(first[:, 0], first[:, 1]).value == pytest.approx(
        sps.spearmanr(first[:, 0], first[:, 1]).statistic, abs=1e-12
    )
    samples = rng.multivariate_normal([0, 0], cov, size=(800, 50))
    covered = [spearman(s[:, 0], s[:, 1]).contains(truth) for s in samples]
    assert 0.93 <= np.mean(covered) <= 0.975


def test_mae_interval_is_the_t_interval_of_absolute_errors():
    rng = np.random.default_rng(2)
    human = rng.integers(1, 6, 80)
    judge = np.clip(human + rng.integers(-2, 3, 80), 1, 5)
    got = mean_absolute_error(human, judge)
    ref = sps.ttest_1samp(np.abs(judge - human), 0).confidence_interval(0.95)
    assert (got.value, got.low, got.high) == pytest.approx((np.abs(judge - human).mean(), ref.low, ref.high))


# --- Krippendorff's alpha -------------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four observers,
# twelve units, missing values. Published: nominal 0.743, ordinal 0.815, interval 0.849.
K2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
)


@pytest.mark.parametrize(("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_alpha_reproduces_krippendorff_2011_worked_example(level, published):
    got = krippendorff_alpha(K2011, level=level)
    assert round(got.value, 3) == published
    assert got.value == pytest.approx(krippendorff.alpha(K2011, level_of_measurement=level), abs=1e-12)


def test_coincidence_matrix_of_the_worked_example():
    values, o = coincidence_matrix(K2011)
    assert values.tolist() == [1, 2, 3, 4, 5]
    # Krippendorff (2011), section C: row totals n_c = 9, 13, 10, 5, 3 (n = 40) and o_11 = 7.
    assert o.sum(axis=1).tolist() == pytest.approx([9, 13, 10, 5, 3])
    assert o[0, 0] == pytest.approx(7.0)
    assert o[0, 1] == pytest.approx(4 / 3)
    assert np.allclose(o, o.T)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_alpha_matches_the_krippendorff_package_with_many_coders_and_gaps(level):
    rng = np.random.default_rng(7)
    truth = rng.integers(1, 6, 60)
    data = np.clip(truth + rng.integers(-1, 2, (6, 60)), 1, 5).astype(float)
    data[rng.random(data.shape) < 0.25] = np.nan
    got = krippendorff_alpha(data, level=level).value
    assert got == pytest.approx(krippendorff.alpha(data, level_of_measurement=level), abs=1e-9)


def test_alpha_on_continuous_values_matches_the_package():
    rng = np.random.default_rng(9)
    truth = rng.random(40)
    data = truth + rng.normal(0, 0.1, (3, 40))
    data[0, :5] = np.nan
    got = krippendorff_alpha(data, level="interval").value
    assert got == pytest.approx(krippendorff.alpha(data, level_of_measurement="interval"), abs=1e-9)


@pytest.mark.parametrize("level", ["ordinal", "interval"])
def test_alpha_bootstrap_matches_resampling_units_with_the_package(level):
    """The pooled, vectorized bootstrap has the distribution of recomputing alpha on resampled
    units (done here with the krippendorff package and an independent random stream)."""
    rng = np.random.default_rng(3)
    truth = rng.integers(1, 6, 30)
    data = np.clip(truth + rng.integers(-1, 2, (3, 30)), 1, 5).astype(float)
    data[0, :4] = np.nan
    got = krippendorff_alpha(data, level=level, replicates=4000, seed=5)
    draws = np.random.default_rng(6).integers(0, 30, (4000, 30))
    reps = [krippendorff.alpha(data[:, idx], level_of_measurement=level) for idx in draws]
    assert (got.low, got.high) == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])), abs=0.02)
    assert got.low < got.value < got.high


def test_alpha_is_undefined_without_variation():
    assert krippendorff_alpha([[2, 2, 2], [2, 2, 2]]).value is None


# --- ordinal report -------------------------------------------------------------------------------


def test_ordinal_agreement_binary_view_uses_the_pass_threshold():
    human = np.array([5, 4, 3, 2, 1, 4, 5, 2, 3, 4])
    judge = np.array([5, 5, 4, 2, 1, 3, 4, 2, 2, 4])
    report = ordinal_agreement(human, judge)
    expected = sk_confusion_matrix(human >= 4, judge >= 4, labels=[False, True])
    assert np.array_equal(np.array(report.binary.confusion), expected)
    assert report.alpha.value == pytest.approx(
        krippendorff.alpha(np.vstack([human, judge]).astype(float), level_of_measurement="ordinal"), abs=1e-9
    )
    assert report.weighted_kappa.value == pytest.approx(
        cohen_kappa_score(human, judge, labels=[1, 2, 3, 4, 5], weights="quadratic")
    )


# --- inclusion-probability weights ----------------------------------------------------------------


def test_equal_weights_give_the_unweighted_point_estimates():
    human, judge = _paired(300, 0.7, 0.9, 0.6, seed=12)
    plain = binary_agreement(human, judge)
    weighted = binary_agreement(human, judge, weights=np.full(300, 4.0))
    for name in ("tpr", "tnr", "precision", "kappa", "ac1"):
        assert getattr(weighted, name).value == pytest.approx(getattr(plain, name).value, abs=1e-12)
        # The bootstrap interval lands near the analytic one.
        assert getattr(weighted, name).low == pytest.approx(getattr(plain, name).low, abs=0.03)
        assert getattr(weighted, name).high == pytest.approx(getattr(plain, name).high, abs=0.03)
    assert weighted.weighted_confusion[1][1] == 4.0 * plain.confusion[1][1]
    assert weighted.bias.mcnemar_p is None


def test_a_perfect_weighted_rate_still_gets_an_honest_interval():
    # 20 bad items, all caught: TNR is 1 in every resample, yet 20 items cannot prove a TNR of 1.
    human = np.array([0] * 20 + [1] * 40)
    judge = np.array([0] * 20 + [1] * 35 + [0] * 5)
    got = binary_agreement(human, judge, weights=np.where(human == 0, 10.0, 2.0))
    assert got.tnr.value == 1.0
    assert got.tnr.low == pytest.approx(proportion_confint(20, 20, method="wilson")[0])
    assert got.tnr.high == 1.0


def test_weights_undo_an_enriched_queue():
    # A queue that takes each judge fail with probability 0.2 and each pass with 0.025 (Bernoulli
    # selection as traces arrive: sample sizes are random, so no strata are given).
    human, judge = _paired(40_000, 0.8, 0.92, 0.55, seed=30)
    pi = np.where(judge == 0, 0.2, 0.025)
    sampled = np.random.default_rng(31).random(human.size) < pi
    pop = binary_agreement(human, judge)
    naive = binary_agreement(human[sampled], judge[sampled])
    weighted = binary_agreement(human[sampled], judge[sampled], weights=1 / pi[sampled])
    # Over-sampling judge fails drags the unweighted TPR far down; the weights repair it.
    assert pop.tpr.value - naive.tpr.value > 0.1
    assert not naive.tpr.contains(pop.tpr.value)
    # TPR, TNR and kappa mix judge passes and fails, so they need the weights (precision does not
    # here: its cells all lie among judge passes, which share one inclusion probability).
    for name in ("tpr", "tnr", "kappa"):
        assert getattr(weighted, name).contains(getattr(pop, name).value), name
    assert abs(weighted.tnr.value - pop.tnr.value) < abs(naive.tnr.value - pop.tnr.value)
    assert naive.human_good_rate < 0.6 and weighted.human_good_rate == pytest.approx(pop.human_good_rate, abs=0.03)


def _coverage(human, judge, pi, draw, strata_of, reps=150):
    truth = binary_agreement(human, judge)
    hits = {"tpr": 0, "tnr": 0, "precision": 0, "kappa": 0}
    rng = np.random.default_rng(100)
    for r in range(reps):
        s = draw(rng)
        got = binary_agreement(human[s], judge[s], weights=1 / pi[s], strata=strata_of(s), replicates=400, seed=r)
        for name in hits:
            hits[name] += getattr(got, name).contains(getattr(truth, name).value)
    return {name: h / reps for name, h in hits.items()}


def test_weighted_bootstrap_intervals_cover_under_bernoulli_selection():
    human, judge = _paired(60_000, 0.75, 0.9, 0.6, seed=99)
    pi = np.where(judge == 0, 0.006, 0.002)
    cover = _coverage(human, judge, pi, lambda rng: rng.random(human.size) < pi, lambda s: None)
    assert all(0.9 <= c <= 0.99 for c in cover.values()), cover


def test_weighted_bootstrap_intervals_cover_under_stratified_sampling():
    """Fixed sample sizes per stratum (80 judge fails, 80 passes): resampling within strata."""
    human, judge = _paired(60_000, 0.75, 0.9, 0.6, seed=98)
    sizes = np.bincount(judge)
    pi = 80 / sizes[judge]

    def draw(rng):
        picked = np.zeros(human.size, dtype=bool)
        for stratum in (0, 1):
            picked[rng.choice(np.flatnonzero(judge == stratum), 80, replace=False)] = True
        return picked

    cover = _coverage(human, judge, pi, draw, lambda s: judge[s])
    assert all(0.9 <= c <= 0.99 for c in cover.values()), cover


# --- verdict --------------------------------------------------------------------------------------


def test_verdict_bands_follow_the_lower_bound():
    strong = binary_agreement(*_paired(600, 0.5, 0.95, 0.95, seed=1))
    medium = binary_agreement(*_paired(600, 0.5, 0.85, 0.85, seed=1))
    weak = binary_agreement(*_paired(600, 0.5, 0.65, 0.65, seed=1))
    assert strong.kappa.low >= 0.7 and verdict(strong).band == "gating"
    assert 0.4 <= medium.kappa.low < 0.7 and verdict(medium).band == "trends"
    assert weak.kappa.low < 0.4 and verdict(weak).band == "exploratory"
    # A point estimate above 0.7 is not enough when the lower bound is below it.
    few = binary_agreement(*_paired(40, 0.5, 0.93, 0.93, seed=2))
    assert few.kappa.value >= 0.7 > few.kappa.low
    assert verdict(few).band != "gating"


def test_verdict_uses_ac1_when_most_outputs_are_good_and_refuses_gating_below_the_tnr_floor():
    human, judge = _paired(2000, 0.95, 0.995, 0.6, seed=4)
    report = binary_agreement(human, judge)
    v = verdict(report, tnr_floor=0.5)
    assert v.statistic == "ac1" and v.band == "gating"
    assert v.lower_bound == report.ac1.low
    refused = verdict(report, tnr_floor=0.7)
    assert refused.band == "trends" and "TNR" in refused.reason


def test_confusion_matrix_weighted_counts():
    got = confusion_matrix([0, 1, 1, 0], [0, 1, 0, 1], weights=[1.0, 2.0, 3.0, 4.0])
    assert got.tolist() == [[1.0, 4.0], [3.0, 2.0]]


# --- the API's agreement object -------------------------------------------------------------------

API_AGREEMENT_KEYS = {
    *("confusion", "tpr", "tnr", "precision", "kappa", "weighted_kappa", "alpha", "ac1", "spearman", "bias"),
}


def test_binary_report_has_the_api_agreement_object():
    human, judge = _paired(200, 0.6, 0.85, 0.7, seed=13)
    report = binary_agreement(human, judge)
    got = report.as_dict()
    assert API_AGREEMENT_KEYS <= set(got)
    assert got["weighted_kappa"] is None
    assert got["confusion"] == sk_confusion_matrix(human, judge).tolist()
    assert set(got["kappa"]) == {"value", "low", "high"}
    # Alpha treats judge and human as two coders; on 0/1 Spearman is the phi coefficient.
    assert report.alpha.value == pytest.approx(
        krippendorff.alpha(np.vstack([human, judge]).astype(float), level_of_measurement="nominal"), abs=1e-9
    )
    assert report.spearman.value == pytest.approx(matthews_corrcoef(human, judge), abs=1e-9)


def test_ordinal_report_has_the_api_agreement_object():
    rng = np.random.default_rng(14)
    human = rng.integers(1, 6, 150)
    judge = np.clip(human + rng.integers(-1, 2, 150), 1, 5)
    report = ordinal_agreement(human, judge)
    got = report.as_dict()
    assert API_AGREEMENT_KEYS <= set(got)
    assert got["weighted_kappa"]["value"] == pytest.approx(
        cohen_kappa_score(human, judge, labels=[1, 2, 3, 4, 5], weights="quadratic")
    )
    assert got["spearman"]["value"] == pytest.approx(sps.spearmanr(human, judge).statistic)
    assert got["alpha"]["value"] == report.alpha.value != report.binary.alpha.value
