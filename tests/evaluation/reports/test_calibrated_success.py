"""The calibrated-judge success source: where a gating judge is calibrated on a feature, the report
answers success from its calibrated scores corrected by the uniform audit (PPI, lambda = 1), per
group exactly as computed by hand from the same arrays; a group with too few audit labels has no
estimate; without a gating judge the report falls back to outcomes or thumbs. A seeded simulation
checks the interval's coverage."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from django.test import Client

from evaluation.models import CalibrationSnapshot
from evaluation.reports.measures import JudgedSums, Measures, total
from evaluation.reports.selectors import (
    Grouping,
    customers_report,
    feature_get,
    feature_report,
    measures_by,
    window_from,
)
from evaluation.reports.success import CalibratedJudgeSource, _scores_variance
from evaluation.stats import calibrator_from_dict
from tests.evaluation.api.test_calibration import post_all
from tests.evaluation.helpers import gating_judge_on, sweep_until
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.rollups import rollups_settled
from tests.fixtures.server import ApiClient

Z = 1.959963984540054


def _by_hand(f: np.ndarray, audited_f: np.ndarray, audited_y: np.ndarray) -> tuple[float, float, float]:
    r = audited_y - audited_f
    value = f.mean() + r.mean()
    se = math.sqrt(f.var() / f.size + r.var(ddof=1) / r.size)
    return value, max(0.0, value - Z * se), min(1.0, value + Z * se)


def test_a_gating_judge_answers_success_per_group(api_a: ApiClient, org_a: Org, committed_db: None) -> None:
    rng = np.random.default_rng(21)
    n = 900
    feature, judge, rubric = unique("cal"), unique("judge"), unique("rb")
    version = np.where(rng.random(n) < 0.5, "v1", "v2")
    version[:15] = "v3"  # a version too small for 10 audit labels of its own: it borrows the report's correction
    good = np.where(version == "v1", rng.random(n) < 0.8, rng.random(n) < 0.55)
    passed = np.where(rng.random(n) < 0.96, good, ~good)  # a judge that agrees with humans 96% of the time
    traces = [f"{feature}-{i:04d}" for i in range(n)]
    post_all(api_a, "/api/v1/traces", [{"trace_id": t, "feature": feature, "prompt_version": str(version[i])}
                                       for i, t in enumerate(traces)])  # fmt: skip
    audited = np.sort(rng.choice(n, 300, replace=False))
    snapshot = gating_judge_on(api_a, org_a, traces, judge=judge, rubric=rubric, passed=passed, good=good,
                               audited=audited)  # fmt: skip
    with in_tenant(org_a):
        assert snapshot.calibrator is not None
        calibrator = calibrator_from_dict(snapshot.calibrator)
        rollups_settled()  # the session's worker may hold some of its partitions: waited out
        report = feature_report(
            feature=feature_get(feature), window=window_from(), grouping=Grouping.parse("prompt_version")
        )
    assert report["success_source"]["name"] == "calibrated_judge"
    f_all = calibrator.predict(passed.astype(float))
    in_audit = np.zeros(n, dtype=bool)
    in_audit[audited] = True
    groups = {g["group"]: g for g in report["groups"]}
    for label in ("v1", "v2"):
        mask = version == label
        value, low, high = _by_hand(f_all[mask], f_all[mask & in_audit], good[mask & in_audit].astype(float))
        got = groups[label]["success"]
        assert (got["source"], got["value"], got["low"], got["high"]) == (
            "calibrated_judge", pytest.approx(value, abs=1e-9), pytest.approx(low, abs=1e-9),
            pytest.approx(high, abs=1e-9),
        )  # fmt: skip
        assert groups[label]["successes"] == pytest.approx(value * mask.sum(), abs=1e-6)
    # Two dimensions at once (the feature page's charts: day x prompt version) give the same groups.
    with in_tenant(org_a):
        cells, _ = measures_by(feature=feature_get(feature), window=window_from(), dims=("day", "prompt_version"))
    for label in ("v1", "v2"):
        judged = [m.judged for key, m in cells.items() if key[1] == label]
        assert sum(j.scored for j in judged) == int((version == label).sum())
        assert sum(j.audited for j in judged) == int(((version == label) & in_audit).sum())
    # The estimate tracks what humans would say of every trace, group by group.
    assert abs(groups["v2"]["success"]["value"] - good[version == "v2"].mean()) < 0.06
    # The small version's estimate borrows the whole audit's correction: the page marks it and says what
    # that assumes; the versions with labels of their own are not marked.
    assert int((in_audit & (version == "v3")).sum()) < CalibratedJudgeSource.MIN_AUDITED
    assert groups["v3"]["success"]["value"] is not None and "pooled" in groups["v3"]["notes"]["success"]
    owner = Client()
    owner.force_login(org_a.owner)
    page = owner.get(org_a.url(f"features/{feature}/"), {"group_by": "prompt_version"}).content.decode()
    table = page.split('id="report-table"')[1].split("</table>")[0]
    # Keyed by the group's name, the link to its traces taken off.
    rows = {re.sub(r"<[^>]+>", "", row.split("<td>")[1].split("</td>")[0]): row for row in table.split("<tr")[2:]}
    assert 'class="pooled"' in rows["v3"] and not any('class="pooled"' in rows[v] for v in ("v1", "v2"))
    assert 'id="pooled-note"' in page and "in 1 group:" in page
    # The API says so too, in a value its published schema admits (the schema listed outcomes, thumbs, none).
    answer = api_a.get(f"/api/v1/features/{feature}/report", params={"group_by": "prompt_version"}).json()
    schema = api_a.get("/api/v1/schema/", params={"format": "json"}).json()
    node = schema["components"]["schemas"]["ReportSuccess"]["properties"]["source"]
    while "enum" not in node:  # drf-spectacular names the enum apart: {"$ref": ...}, or allOf [{"$ref": ...}]
        ref = node["$ref"] if "$ref" in node else node["allOf"][0]["$ref"]
        node = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    admitted = node["enum"]
    sources = {g["success"]["source"] for g in answer["groups"]} | {answer["total"]["success"]["source"]}
    assert sources == {"calibrated_judge"} and sources <= set(admitted)


def test_a_group_with_too_few_audit_labels_has_no_estimate() -> None:
    source = CalibratedJudgeSource()
    thin_sums = JudgedSums(scored=50, w=50, wf=40, w2=50, w2f=40, w2f2=35, audited=4, r_sum=0.1, r2_sum=0.4)
    thin = Measures(traces=50, judged=thin_sums)
    estimate = source.estimate(thin)
    assert estimate.interval.value is None and "4 audit labels" in (estimate.interval.note or "")
    assert not source.available(thin)
    assert not source.available(Measures(traces=10))
    # In a report, a thin group (a day on a chart) takes the whole report's correction, and says so.
    whole = JudgedSums(scored=500, w=500, wf=400, w2=500, w2f=400, w2f2=340, audited=60, r_sum=-3.0, r2_sum=6.0)
    pooled = source.for_report(Measures(traces=500, judged=whole)).estimate(thin)
    mean_f, var_f = 40 / 50, 35 / 50 - (40 / 50) ** 2
    mean_r, var_r = -3.0 / 60, (6.0 / 60 - (3.0 / 60) ** 2) * 60 / 59
    se = math.sqrt(var_f / 50 + var_r / 60)
    assert pooled.interval.value == pytest.approx(mean_f + mean_r, abs=1e-12)
    assert pooled.interval.low == pytest.approx(mean_f + mean_r - Z * se, abs=1e-9)
    assert pooled.note is not None and "pooled" in pooled.note


@pytest.mark.parametrize("enriched", [False, True])
def test_the_interval_covers_the_true_rate_in_95_percent_of_replications(enriched: bool) -> None:
    """2,000 seeded replications: 5,000 traces, a biased judge score, the judge's own sample (every
    trace, or 20% plus every 'flagged' trace, flags going mostly to bad outputs, as a judge sampling
    every thumbs-down does), a uniform audit of 200 of every trace; the 95% interval's coverage of
    the true rate lies in [0.93, 0.97]. Without the 1 / inclusion-probability weights the enriched
    case misses (checked: the unweighted mean is off by several points)."""
    rng = np.random.default_rng(5 if enriched else 6)
    source = CalibratedJudgeSource()
    big_n, n, hits, reps, unweighted_error = 5000, 200, 0, 2000, 0.0
    for _ in range(reps):
        y = (rng.random(big_n) < 0.62).astype(float)
        f = np.clip(0.25 + 0.6 * y + rng.normal(0, 0.15, big_n), 0, 1)  # lenient: mean f != mean y
        if enriched:
            flagged = rng.random(big_n) < np.where(y == 1, 0.05, 0.45)
            pi = np.where(flagged, 1.0, 0.2)
        else:
            pi = np.ones(big_n)
        scored = rng.random(big_n) < pi
        fs, w = f[scored], 1.0 / pi[scored]
        judged = JudgedSums(scored=int(scored.sum()), w=w.sum(), wf=(w * fs).sum(), w2=(w * w).sum(),
                            w2f=(w * w * fs).sum(), w2f2=(w * w * fs * fs).sum())  # fmt: skip
        audit = rng.choice(big_n, n, replace=False)
        r = y[audit] - f[audit]
        judged.add(JudgedSums(audited=n, r_sum=r.sum(), r2_sum=(r * r).sum()))
        interval = source.estimate(Measures(traces=big_n, judged=judged)).interval
        assert interval.low is not None and interval.high is not None
        hits += interval.low <= y.mean() <= interval.high
        unweighted_error += (f[scored].mean() + r.mean() - y.mean()) / reps
    assert 0.93 <= hits / reps <= 0.97, hits / reps
    if enriched:
        assert unweighted_error < -0.02, unweighted_error  # what the weights repair


def test_sums_built_per_score_equal_the_formulas() -> None:
    f, pi = [0.9, 0.2, 0.6], [1.0, 0.25, 0.5]
    judged = JudgedSums()
    for fi, p in zip(f, pi, strict=True):
        judged.add(JudgedSums.of_scores(fi, inclusion_probability=p))
    w = np.array([1.0, 4.0, 2.0])
    mean = float((w * np.array(f)).sum() / w.sum())
    assert judged.mean_f == pytest.approx(mean, abs=1e-12)
    assert judged.mean_f_variance == pytest.approx(float((w**2 * (np.array(f) - mean) ** 2).sum() / w.sum() ** 2))


def _group(rng: np.random.Generator, size: int, audited: int, bias: float) -> tuple[Measures, float]:
    """A group of ``size`` traces, all scored, ``audited`` of them in the uniform audit, where the judge
    overrates success by ``bias``; also the group's true rate."""
    y = (rng.random(size) < 0.65).astype(float)
    f = np.clip(0.2 + 0.6 * y + bias + rng.normal(0, 0.1, size), 0, 1)
    total_f, total_f2 = float(f.sum()), float((f * f).sum())  # every trace scored, each with probability 1
    judged = JudgedSums(scored=size, w=size, wf=total_f, w2=size, w2f=total_f, w2f2=total_f2,
                        f_low=float(f.min()), f_high=float(f.max()))  # fmt: skip
    pick = rng.choice(size, audited, replace=False)
    r = y[pick] - f[pick]
    judged.add(JudgedSums(audited=audited, r_sum=float(r.sum()), r2_sum=float((r * r).sum())))
    return Measures(traces=size, judged=judged), float(y.mean())


def test_a_borrowed_correction_carries_the_spread_between_groups_with_labels_of_their_own() -> None:
    from scipy import stats as sps
    from statsmodels.stats.meta_analysis import combine_effects

    rng = np.random.default_rng(8)
    labelled = [_group(rng, 400, 40, bias)[0] for bias in (0.0, 0.1, 0.2, -0.05, 0.15)]
    thin, _ = _group(rng, 60, 4, 0.3)
    whole = total(dict(enumerate([*labelled, thin])))
    source = CalibratedJudgeSource().for_report(whole, [*labelled, thin])
    # The spread: DerSimonian-Laird over the five groups' corrections, the within-group variance pooled.
    means = np.array([m.judged.r_sum / m.judged.audited for m in labelled])
    n = np.array([m.judged.audited for m in labelled])
    within = sum(m.judged.r2_sum - k * mu * mu for m, k, mu in zip(labelled, n, means, strict=True)) / (n.sum() - 5)
    tau2 = combine_effects(means, within / n, method_re="dl").tau2
    assert source.spread is not None and source.spread.groups == 5
    assert source.spread.tau2 == pytest.approx(tau2, rel=1e-9) and tau2 > 0
    got = source.estimate(thin)
    j, w = thin.judged, whole.judged
    mean_r = w.r_sum / w.audited
    var_r = (w.r2_sum / w.audited - mean_r**2) * w.audited / (w.audited - 1)
    var_f = _scores_variance(j, w, Z)  # the plug-in, or its floor for a group bunched at the top (tested below)
    half = math.sqrt(Z * Z * (var_f + var_r / w.audited) + sps.t.ppf(0.975, 3) ** 2 * tau2)
    assert got.interval.value == pytest.approx(j.mean_f + mean_r, abs=1e-12)
    assert got.interval.low == pytest.approx(max(0.0, j.mean_f + mean_r - half), abs=1e-9)
    assert got.note is not None and "widened by ±" in got.note and "5 groups" in got.note
    assert f"±{sps.t.ppf(0.975, 3) * math.sqrt(tau2) * 100:.1f} points" in got.note  # the widening applied
    # A group with labels of its own is untouched by the spread.
    plain = CalibratedJudgeSource().for_report(whole).estimate(labelled[0]).interval
    assert source.estimate(labelled[0]).interval == plain
    # Four groups with labels of their own measure no spread (t with 2 df, 4.3, was all or nothing):
    # the note says what is assumed instead.
    four = CalibratedJudgeSource().for_report(whole, [*labelled[:4], thin])
    assert four.spread is None and "assuming the judge errs alike" in (four.estimate(thin).note or "")


def _audit_only(sizes: list[int], means: list[float], noise: float) -> tuple[list[Measures], Measures]:
    """Groups holding only audit sums: ``sizes`` labels each, corrections ``means``, variance ``noise`` within."""
    groups = [Measures(traces=n, judged=JudgedSums(audited=n, r_sum=n * m, r2_sum=n * (m * m + noise)))
              for n, m in zip(sizes, means, strict=True)]  # fmt: skip
    whole = total(dict(enumerate(groups)))
    return groups, whole


def _var_r(whole: Measures) -> float:
    w = whole.judged
    return (w.r2_sum / w.audited - (w.r_sum / w.audited) ** 2) * w.audited / (w.audited - 1)


def test_the_spread_is_at_most_the_variance_of_the_correction() -> None:
    """One large group and four small ones far from it, each nearly without noise: the groups' means vary
    far more than the labels do overall; the spread is cut to Var(r)."""
    from evaluation.stats.estimators import between_groups_variance

    sizes, means = [200, 10, 10, 10, 10], [0.0, 0.8, -0.8, 0.8, -0.8]
    groups, whole = _audit_only(sizes, means, 1e-4)
    uncapped = between_groups_variance(means, [1e-4 * 240 / 235 / n for n in sizes]).tau2
    spread = CalibratedJudgeSource().for_report(whole, groups).spread
    assert uncapped > _var_r(whole)
    assert spread is not None and spread.tau2 == pytest.approx(_var_r(whole), rel=1e-12)


def test_groups_without_noise_of_their_own_spread_as_their_means_do() -> None:
    """Each group's labels differ from its scores by one amount (a step-valued calibrator can do it): the
    within-group variance is 0 up to rounding, and the spread is the variance of the group means, whatever
    the rounding's sign (it decided the answer before)."""
    for last in (0.7, -0.7):
        means = [0.1, 0.3, 0.7, 0.2, last]
        groups, whole = _audit_only([20, 20, 20, 20, 20], means, 0.0)
        spread = CalibratedJudgeSource().for_report(whole, groups).spread
        expected = min(float(np.var(means, ddof=1)), _var_r(whole))
        assert spread is not None and spread.tau2 == pytest.approx(expected, rel=1e-9) and spread.tau2 > 0


def test_a_small_groups_interval_covers_its_rate_when_the_judge_errs_differently_per_group() -> None:
    """600 seeded replications: 7 groups of 300 traces with 25 audit labels each and one of 150 traces with
    6, the judge's bias drawn per group (sd 10 points). The small group's interval, borrowing the report's
    correction alone, covered its true rate in under 60% of them (measured 45% on 300); carrying the spread,
    in 88-99% (measured 93%)."""
    rng = np.random.default_rng(11)
    reps, old, new = 600, 0, 0
    for _ in range(reps):
        biases = rng.normal(0.1, 0.1, 8)
        made = [_group(rng, 300, 25, b) for b in biases[:7]]
        thin, truth = _group(rng, 150, 6, biases[7])
        groups = [m for m, _ in made] + [thin]
        whole = total(dict(enumerate(groups)))
        before = CalibratedJudgeSource().for_report(whole).estimate(thin).interval
        after = CalibratedJudgeSource().for_report(whole, groups).estimate(thin).interval
        old += before.low <= truth <= before.high  # type: ignore[operator]
        new += after.low <= truth <= after.high  # type: ignore[operator]
    assert old / reps < 0.6, old / reps
    assert 0.88 <= new / reps <= 0.99, new / reps


def test_groups_that_agree_within_noise_add_no_spread_and_the_note_says_so() -> None:
    import copy

    rng = np.random.default_rng(12)
    one, _ = _group(rng, 400, 40, 0.1)
    labelled = [copy.deepcopy(one) for _ in range(5)]  # five groups whose corrections are equal
    thin, _ = _group(rng, 60, 4, 0.1)
    whole = total(dict(enumerate([*labelled, thin])))
    source = CalibratedJudgeSource().for_report(whole, [*labelled, thin])
    assert source.spread is not None and source.spread.tau2 == 0.0
    got = source.estimate(thin)
    assert got.interval == CalibratedJudgeSource().for_report(whole).estimate(thin).interval
    assert got.note is not None and "no spread of it measurable beyond noise among the 5 groups" in got.note


def test_customers_below_on_a_borrowed_correction_are_flagged_apart(
    api_a: ApiClient, org_a: Org, committed_db: None
) -> None:
    """A customer with too few audit labels of its own takes the feature's correction; with fewer than 5
    customers labelled, nothing measures how far the judge's bias varies between them, so "clearly below"
    rests on the judge erring alike there: the customers page flags it apart (▽), not as a firm ▼."""
    rng = np.random.default_rng(8)
    feature, judge, rubric = unique("cal"), unique("judge"), unique("rb")
    # Four labelled customers (cus_bad clearly worse) and one small one, also clearly worse, with 3 labels.
    customer = np.array(["cus_a", "cus_b", "cus_c", "cus_bad"] * 200 + ["cus_thin"] * 60)
    good = rng.random(customer.size) < np.where(np.isin(customer, ["cus_bad", "cus_thin"]), 0.3, 0.85)
    passed = np.where(rng.random(customer.size) < 0.95, good, ~good)
    traces = [f"{feature}-{i:04d}" for i in range(customer.size)]
    post_all(api_a, "/api/v1/traces", [{"trace_id": t, "feature": feature, "customer_id": str(customer[i])}
                                       for i, t in enumerate(traces)])  # fmt: skip
    scores = [{"score_id": unique("sc"), "trace_id": t, "name": judge, "value": int(passed[i]), "scale": "binary"}
              for i, t in enumerate(traces)]  # fmt: skip
    post_all(api_a, "/api/v1/scores", scores)
    thin = np.flatnonzero(customer == "cus_thin")[:3]
    audited = np.sort(np.concatenate([rng.choice(800, 240, replace=False), thin]))
    post_all(api_a, "/api/v1/labels", [{"label_id": unique("lb"), "trace_id": traces[i], "rubric": rubric,
                                        "value": int(good[i]), "sampling": {"design": "uniform",
                                        "inclusion_probability": 0.28}} for i in audited])  # fmt: skip
    with in_tenant(org_a):
        sweep_until(lambda: CalibrationSnapshot.objects.filter(target__rubric__name=rubric).exists())
        rollups_settled()
        assert CalibrationSnapshot.objects.get(target__rubric__name=rubric).verdict == "gating"
        report = customers_report(window=window_from())
    rows = {c["customer_id"]: c for c in report["customers"]}
    cells = {name: next(q for q in rows[name]["quality"] if q) for name in ("cus_a", "cus_bad", "cus_thin")}
    assert {q["source"] for q in cells.values()} == {"calibrated_judge"}
    assert (cells["cus_bad"]["below"], cells["cus_bad"]["assumed"]) == (True, False)
    assert (cells["cus_thin"]["below"], cells["cus_thin"]["assumed"]) == (True, True)
    assert (cells["cus_a"]["below"], cells["cus_a"]["assumed"]) == (False, False)
    assert (rows["cus_bad"]["below"], rows["cus_bad"]["below_assumed"]) == (1, 0)
    assert (rows["cus_thin"]["below"], rows["cus_thin"]["below_assumed"]) == (0, 1)
    assert report["below_assumed"] == 1
    page = Client()
    page.force_login(org_a.owner)
    html = page.get(org_a.url("customers/")).content.decode()
    thin_row = html.split('data-customer="cus_thin"')[1].split("</tr>")[0]
    bad_row = html.split('data-customer="cus_bad"')[1].split("</tr>")[0]
    assert 'data-testid="customer-below-assumed"' in thin_row and "▽" in thin_row and "▼" not in thin_row
    assert 'data-testid="customer-below"' in bad_row and "▼" in bad_row
    assert "below on the judge's scores alone" in html
    # A borrowed correction is marked as the feature page marks it (the customers page dropped the mark), and the
    # cell says how many traces the judge scored beside how many the customer has.
    assert cells["cus_thin"]["pooled"] and not cells["cus_bad"]["pooled"]
    assert 'data-testid="customer-pooled">†<' in thin_row and "customer-pooled" not in bad_row
    assert f"{cells['cus_thin']['n']:,} scored by the judge" in thin_row and "†: fewer than 10 audit labels" in html
    # Each customer leads to its spend and budgets, and its spend page back to its row (no page had both).
    spend = bad_row.split('data-testid="customer-spend" href="', 1)[1].split('"', 1)[0]
    assert spend == org_a.url("spend/customers/cus_bad/")
    back = page.get(spend).content.decode().split('data-testid="customer-quality" href="', 1)[1].split('"', 1)[0]
    assert back == f"{org_a.url('customers/')}#customer-cus_bad" and 'id="customer-cus_bad"' in html


def test_a_group_with_a_handful_of_scored_traces_has_no_rate() -> None:
    """Four scored traces with near-equal scores gave a 3-point interval (the spread read from four is all but
    nil): a PM saw "96.6% (93.7-99.4%)" on a 4-trace group. Under 10 scored traces a group has no rate."""
    pooled = JudgedSums(audited=40, r_sum=-2.0, r2_sum=4.0)
    source = CalibratedJudgeSource(pooled=pooled)
    few = Measures(traces=4, judged=JudgedSums.of_scores(0.97, count=3).add(JudgedSums.of_scores(0.99)))
    got = source.estimate(few)
    assert got.interval.value is None and got.n == 4
    assert got.interval.note == "4 traces scored by the gating judge: at least 10 are needed for a rate"
    enough = Measures(traces=10, judged=JudgedSums.of_scores(0.97, count=9).add(JudgedSums.of_scores(0.99)))
    assert source.estimate(enough).interval.value == pytest.approx(0.972 - 0.05, abs=1e-9)


def _binary_group(rng: np.random.Generator, size: int, pass_share: float) -> JudgedSums:
    """``size`` traces scored by a binary judge calibrated to P(good | pass) = 0.95, P(good | fail) = 0.3."""
    passes = int((rng.random(size) < pass_share).sum())
    judged = JudgedSums()
    for f, count in ((0.95, passes), (0.3, size - passes)):
        if count:
            judged.add(JudgedSums.of_scores(f, count=count))
    return judged


def test_a_binary_judges_score_floor_is_the_agresti_coull_interval_of_its_pass_share() -> None:
    """For a two-valued judge the floor of the scores' variance is statsmodels' Agresti-Coull interval of the
    pass share, carried to the rate ((b - a) times its half-width); in a large group the two all but agree."""
    from statsmodels.stats.proportion import proportion_confint

    report = JudgedSums.of_scores(0.95, count=800).add(JudgedSums.of_scores(0.3, count=200))
    for passes, size in ((10, 10), (9, 10), (18, 20), (0, 12)):
        group = JudgedSums.of_scores(0.95, count=passes).add(JudgedSums.of_scores(0.3, count=size - passes))
        low, high = proportion_confint(passes, size, alpha=0.05, method="agresti_coull")
        center = (passes + Z * Z / 2) / (size + Z * Z)  # statsmodels clips a bound at 0 or 1: the other one's half
        half = center - low if high >= 1.0 else high - center
        expected = ((0.95 - 0.3) * half / Z) ** 2
        assert _scores_variance(group, report, Z) == pytest.approx(max(expected, group.mean_f_variance), rel=1e-9)
        assert expected > group.mean_f_variance  # small groups: the floor is what stands
    big = JudgedSums.of_scores(0.95, count=790).add(JudgedSums.of_scores(0.3, count=210))
    assert _scores_variance(big, report, Z) == pytest.approx(big.mean_f_variance, rel=1e-3)


def test_a_small_group_all_passed_has_an_interval_that_covers_its_rate() -> None:
    """1,000 seeded replications: a report of 3,000 traces with 1,000 audit labels, and a customer with 10 to 20
    scored traces of which a binary judge passes 95%. The plug-in variance read from the customer's own scores
    (nil when every one passed: "97.3% (95.0-99.5%)" on ten traces, from the PM review) covered the customer's
    rate in under 75% of them (measured 55%); with the floor, in at least 93% (measured 100%: Agresti-Coull errs
    wide this near the edge, as it should rather than narrow)."""
    rng = np.random.default_rng(21)
    reps, old, new = 1000, 0, 0
    truth = 0.95 * 0.95 + 0.05 * 0.3
    for i in range(reps):
        report = _binary_group(rng, 3000, 0.8)
        f = np.where(rng.random(1000) < 0.8, 0.95, 0.3)
        r = (rng.random(1000) < f).astype(float) - f  # labels of a uniform audit: good with probability f
        report.add(JudgedSums(audited=1000, r_sum=float(r.sum()), r2_sum=float((r * r).sum())))
        group = _binary_group(rng, 10 + i % 11, 0.95)
        got = CalibratedJudgeSource(pooled=report).estimate(Measures(traces=group.scored, judged=group)).interval
        new += got.low <= truth <= got.high  # type: ignore[operator]
        value, se = got.value, math.sqrt(group.mean_f_variance + float(r.var(ddof=1)) / 1000)
        old += value - Z * se <= truth <= value + Z * se  # type: ignore[operator]
    assert old / reps < 0.75, old / reps
    assert new / reps >= 0.93, new / reps
