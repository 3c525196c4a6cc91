"""GET /api/v1/features/{key}/success against the live server: the human rate, the judge's
uncorrected rate and the estimate the labels' sampling design calls for, each equal to
evaluation.stats on the same arrays; a seeded simulation whose known true rate the estimate's
interval covers; filters, 400s and cross-tenant 404s."""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluation.stats import classical_mean, estimate_success, naive_judge_rate, wilson
from tests.evaluation.api.test_calibration import World, assert_close, post_all, seed_world, simulate
from tests.fixtures.organizations import unique
from tests.fixtures.server import ApiClient


def success(api: ApiClient, world: World, *, judge: bool = True, **params: Any) -> dict[str, Any]:
    query = {"rubric": world.rubric, **({"judge": world.judge} if judge else {}), **params}
    answer = api.get(f"/api/v1/features/{world.feature}/success", params=query)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_uniform_audit_is_ppi_and_equals_the_estimator_on_the_same_arrays(api_a: ApiClient) -> None:
    good, score = simulate(400, seed=11, rate=0.62)
    audit = list(range(0, 400, 5))  # 80 uniform labels
    labels = {i: {"value": int(good[i]), "sampling": {"design": "uniform", "inclusion_probability": 0.2}}
              for i in audit}  # fmt: skip
    world = seed_world(api_a, scores=list(score), labels=labels)
    report = success(api_a, world)
    y = good[audit]
    unlabeled = np.delete(score, audit)
    expected = estimate_success(design="uniform", labels=y, scores_labeled=score[audit], scores_unlabeled=unlabeled)
    assert expected.method == "ppi++"
    assert_close(report["estimate"], {**expected.as_dict(), "design": "uniform"})
    assert report["estimate"]["n_labels"] == 80 and report["estimate"]["lambda"] is not None
    assert_close(report["human"], {**wilson(float(y.sum()), 80).as_dict(), "n": 80})
    assert_close(report["judge_uncorrected"], naive_judge_rate((score >= 0.5).astype(int)).as_dict())
    assert report["judge_uncorrected"]["note"].startswith("uncorrected")
    # The simulation's true rate (every trace's human verdict) lies inside the estimate's interval.
    truth = float(good.mean())
    assert report["estimate"]["low"] <= truth <= report["estimate"]["high"]
    assert report["estimate"]["high"] - report["estimate"]["low"] < report["human"]["high"] - report["human"]["low"]


def test_stratified_and_active_designs_use_their_estimators(api_a: ApiClient) -> None:
    good, score = simulate(300, seed=12)
    low = np.flatnonzero(score < 0.5)[:40]
    high = np.flatnonzero(score >= 0.5)[:40]
    n_low, n_high = int((score < 0.5).sum()), int((score >= 0.5).sum())
    pis = {int(i): 40 / n_low for i in low} | {int(i): 40 / n_high for i in high}
    strata = {int(i): "low" for i in low} | {int(i): "high" for i in high}
    labels = {
        i: {
            "value": int(good[i]),
            "sampling": {"design": "stratified", "stratum": strata[i], "inclusion_probability": p},
        }
        for i, p in pis.items()
    }
    world = seed_world(api_a, scores=list(score), labels=labels)
    order = sorted(pis)  # the server reads labels in trace_id order, which is index order here
    expected = estimate_success(
        design="stratified", labels=good[order], strata=[strata[i] for i in order],
        inclusion_probabilities=[pis[i] for i in order],
    )  # fmt: skip
    report = success(api_a, world)
    assert expected.method == "stratified"
    assert_close(report["estimate"], {**expected.as_dict(), "design": "stratified"})
    assert report["estimate"]["low"] <= float(good.mean()) <= report["estimate"]["high"]
    # One active label turns the design into inverse-probability weighting over all of them.
    extra = int(np.flatnonzero(score >= 0.5)[40])
    active = {"design": "active", "inclusion_probability": 0.5}
    item = {"label_id": unique(), "trace_id": world.trace_ids[extra], "rubric": world.rubric, "value": int(good[extra])}
    post_all(api_a, "/api/v1/labels", [{**item, "sampling": active}])
    pis[extra] = 0.5
    order = sorted(pis)
    expected = estimate_success(design="active", labels=good[order], inclusion_probabilities=[pis[i] for i in order])
    report = success(api_a, world)
    assert expected.method == "ipw"
    # n_scored: the 300 traces the judge scored, not the 1 / inclusion probability sum the labels stand for.
    assert expected.n_scored != 300 and report["estimate"]["n_scored"] == 300
    assert_close(report["estimate"], {**expected.as_dict(), "design": "active", "n_scored": 300})


def test_few_or_manual_labels_fall_back_to_labels_alone(api_a: ApiClient) -> None:
    good, score = simulate(100, seed=13)
    world = seed_world(api_a, scores=list(score), labels={i: {"value": int(good[i]), "sampling": {"design": "uniform"}}
                                                          for i in range(20)})  # fmt: skip
    report = success(api_a, world)
    assert report["estimate"]["method"] == "classical" and report["estimate"]["n_labels"] == 20
    assert_close(report["estimate"]["value"], classical_mean(good[:20]).interval.value)
    manual = seed_world(api_a, scores=list(score), labels={i: {"value": int(good[i])} for i in range(60)})
    report = success(api_a, manual, judge=False)
    assert report["estimate"]["method"] == "classical" and report["estimate"]["design"] == "manual"
    assert "not a probability sample" in report["estimate"]["note"]
    assert report["judge_uncorrected"] == {"value": None, "n": 0, "note": "no judge given"}


def test_filters_narrow_labels_and_scores(api_a: ApiClient) -> None:
    good, score = simulate(10, seed=14)
    world = seed_world(api_a, scores=list(score), labels={i: {"value": int(good[i])} for i in range(10)},
                       extra={"customer_id": "acme", "prompt_version": "v1"})  # fmt: skip
    assert success(api_a, world)["human"]["n"] == 10
    assert success(api_a, world, customer_id="acme")["judge_uncorrected"]["n"] == 10
    empty: list[dict[str, Any]] = [
        {"customer_id": "globex"}, {"prompt_version": "v2"}, {"since": "2020-01-01", "until": "2020-02-01"},
    ]  # fmt: skip
    for params in empty:
        report = success(api_a, world, **params)
        assert (report["human"]["n"], report["judge_uncorrected"]["n"]) == (0, 0), params
        assert report["human"]["value"] is None and report["human"]["note"]
    assert success(api_a, world, prompt_version="v1")["human"]["n"] == 10


def test_bad_parameters_are_400s_and_unknowns_404s(api_a: ApiClient, api_b: ApiClient) -> None:
    world = seed_world(api_a, scores=[0.9, 0.2], labels={0: {"value": 1}, 1: {"value": 0}})
    url = f"/api/v1/features/{world.feature}/success"
    for params, field in [
        ({}, "rubric"),
        ({"rubric": world.rubric, "rubric_version": "x"}, "rubric_version"),
        ({"rubric": world.rubric, "until": "31/01/2025"}, "until"),
        ({"rubric": world.rubric, "since": "2020-01-01", "until": "2025-01-01"}, "until"),
        ({"rubric": world.rubric, "customer_id": "a" * 201}, "customer_id"),
    ]:
        answer = api_a.get(url, params=params)
        assert answer.status_code == 400, params
        assert answer.json()["error"]["details"]["field"] == field
    for api, path, params in [
        (api_b, url, {"rubric": world.rubric}),  # A's feature, asked by B
        (api_b, url, {"rubric": world.rubric, "judge": world.judge}),
        (api_a, f"/api/v1/features/{unique('nofeature')}/success", {"rubric": world.rubric}),
        (api_a, url, {"rubric": unique("norubric")}),
        (api_a, url, {"rubric": world.rubric, "judge": unique("nojudge")}),
    ]:
        answer = api.get(path, params=params)
        assert answer.status_code == 404, (path, params)
        assert answer.json()["error"]["code"] == "not_found"
