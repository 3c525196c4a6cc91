"""GET /api/v1/judges/{name}/calibration against the live server: every number equals
evaluation.stats on the same arrays (pairs in trace_id order), widget labels and other rubric
versions stay out, an empty state below two labels, 400s for bad parameters and 404s for unknown
or another organization's judges and rubrics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pytest

from evaluation.services.labels import labels_ingest
from evaluation.stats import (
    binary_agreement,
    calibrate,
    ordinal_agreement,
    threshold_guarantee,
    verdict,
)
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.server import ApiClient


@dataclass
class World:
    """Traces of one feature, one external judge's scores and one rubric's labels on them."""

    feature: str
    judge: str
    rubric: str
    trace_ids: list[str]


def post_all(api: ApiClient, path: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 1000):
        answer = api.post(path, {"batch": items[start : start + 1000]})
        assert answer.status_code == 200, answer.text


def seed_world(
    api: ApiClient,
    *,
    scores: list[float],
    scale: str = "continuous",
    labels: dict[int, dict[str, Any]],
    rubric: str | None = None,
    feature: str | None = None,
    extra: dict[str, Any] | None = None,
    starts: list[datetime] | None = None,
) -> World:
    """One trace per score; ``labels`` maps a trace's index to the label's fields (value, sampling...); ``starts``,
    each trace's start (else the time it is received)."""
    world = World(feature or unique("feat"), unique("judge"), rubric or unique("rubric"), [])
    base = unique("t")  # one prefix, so the server's trace_id order is the index order
    world.trace_ids = [f"{base}_{i:05d}" for i in range(len(scores))]
    traces = [{"trace_id": t, "feature": world.feature, **(extra or {})} for t in world.trace_ids]
    for trace, start in zip(traces, starts or (), strict=False):
        trace["started_at"] = start.isoformat()
    post_all(api, "/api/v1/traces", traces)
    post_all(
        api,
        "/api/v1/scores",
        [{"score_id": unique("sc"), "trace_id": t, "name": world.judge, "value": v, "scale": scale}
         for t, v in zip(world.trace_ids, scores, strict=True)],
    )  # fmt: skip
    post_all(
        api,
        "/api/v1/labels",
        [{"label_id": unique("lb"), "trace_id": world.trace_ids[i], "rubric": world.rubric, **fields}
         for i, fields in labels.items()],
    )  # fmt: skip
    return world


def assert_close(got: Any, expected: Any, path: str = "") -> None:
    """Equal to 1e-9, through nested dicts and lists (None stays None)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) >= set(expected), path
        for key, value in expected.items():
            assert_close(got[key], value, f"{path}.{key}")
    elif isinstance(expected, list | tuple):
        assert isinstance(got, list) and len(got) == len(expected), path
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_close(g, e, f"{path}[{i}]")
    elif isinstance(expected, float | int) and not isinstance(expected, bool):
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-9), path
    else:
        assert got == expected, path


def simulate(
    n: int, seed: int, rate: float = 0.7, separation: float = 0.3, noise: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Human verdicts (1 good) and a noisy continuous judge score in [0, 1] that leans towards them."""
    rng = np.random.default_rng(seed)
    good = (rng.random(n) < rate).astype(int)
    score = np.clip(0.5 - separation / 2 + separation * good + rng.normal(0, noise, n), 0, 1).round(4)
    return good, score


def calibration(api: ApiClient, world: World, **params: Any) -> dict[str, Any]:
    answer = api.get(f"/api/v1/judges/{world.judge}/calibration", params={"rubric": world.rubric, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_binary_report_equals_the_statistics_on_the_same_pairs(api_a: ApiClient) -> None:
    good, score = simulate(130, seed=1, separation=0.6, noise=0.15)
    world = seed_world(api_a, scores=list(score), labels={i: {"value": int(good[i])} for i in range(130)})
    # Labels on traces the judge never scored count as unscored, not as pairs.
    post_all(api_a, "/api/v1/labels", [{"label_id": unique("lb"), "trace_id": unique("unscored"),
                                        "rubric": world.rubric, "value": 1} for _ in range(20)])  # fmt: skip
    report = calibration(api_a, world)
    h, s = good[:130], score[:130]
    j = (s >= 0.5).astype(int)
    assert (report["n_labels"], report["n_labels_unscored"], report["n_scored"]) == (130, 20, 130)
    assert (report["judge_version"], report["rubric_version"], report["rubric_scale"]) == (1, 1, "binary")
    agreement = binary_agreement(h, j)
    assert_close(report["agreement"], agreement.as_dict())
    assert report["agreement"]["confusion"] == [list(r) for r in agreement.confusion]
    for name in ("tpr", "tnr", "precision", "kappa", "alpha", "ac1", "spearman"):
        assert set(report["agreement"][name]) >= {"value", "low", "high"}
    kappa = report["agreement"]["kappa"]
    assert kappa["low"] < kappa["value"] < kappa["high"]
    cal = calibrate(s, h)
    assert report["calibration"]["method"] == cal.method == "platt"
    assert report["calibration"]["brier"] == pytest.approx(cal.brier, abs=1e-12)
    assert report["calibration"]["ece"] == pytest.approx(cal.ece, abs=1e-12)
    assert_close(report["calibration"]["reliability"], [b.as_dict() for b in cal.reliability])
    assert_close(report["threshold"], threshold_guarantee(s, h, target_precision=0.9).as_dict())
    assert report["threshold"]["pass_at"] is not None
    assert report["verdict"] == verdict(agreement).band


def test_enriched_labels_are_weighted_by_inverse_inclusion_probability(api_a: ApiClient) -> None:
    good, score = simulate(120, seed=2)
    pi = np.where(score < 0.5, 0.8, 0.2)  # failures over-sampled
    strata = np.where(score < 0.5, "low", "high")
    labels = {i: {"value": int(good[i]), "sampling": {"design": "stratified", "stratum": str(strata[i]),
                                                       "inclusion_probability": float(pi[i])}}
              for i in range(120)}  # fmt: skip
    world = seed_world(api_a, scores=list(score), labels=labels)
    report = calibration(api_a, world)
    expected = binary_agreement(good, (score >= 0.5).astype(int), weights=1 / pi, strata=list(strata))
    assert expected.weighted_confusion is not None
    assert_close(report["agreement"], {**expected.as_dict(), "weighted_confusion": expected.weighted_confusion})
    unweighted = binary_agreement(good, (score >= 0.5).astype(int))
    assert report["agreement"]["tpr"]["value"] != pytest.approx(unweighted.tpr.value)


def test_ordinal_judge_and_rubric_report_weighted_kappa(api_a: ApiClient) -> None:
    rng = np.random.default_rng(3)
    human = rng.integers(1, 6, 80)
    judge = np.clip(human + rng.integers(-1, 2, 80), 1, 5)
    world = seed_world(api_a, scores=[int(v) for v in judge], scale="ordinal",
                       labels={i: {"value": int(human[i])} for i in range(80)})  # fmt: skip
    report = calibration(api_a, world)
    expected = ordinal_agreement(human, judge)
    assert report["rubric_scale"] == "ordinal"
    assert_close(report["agreement"], expected.as_dict())
    assert report["agreement"]["weighted_kappa"]["value"] > 0.5
    assert report["calibration"]["brier"] == pytest.approx(calibrate(judge, (human >= 4).astype(int)).brier)


def test_widget_labels_other_versions_and_other_features_stay_out(api_a: ApiClient, org_a: Org) -> None:
    good, score = simulate(40, seed=4)
    world = seed_world(api_a, scores=list(score), labels={i: {"value": int(good[i])} for i in range(20)})
    # Widget labels on the other 20 traces (not a sample of traces) change nothing.
    with in_tenant(org_a):
        body = {"batch": [{"label_id": unique("w"), "trace_id": world.trace_ids[i], "rubric": world.rubric,
                           "value": 1} for i in range(20, 40)]}  # fmt: skip
        assert labels_ingest(body=json.dumps(body).encode(), source="widget").accepted == 20
    assert calibration(api_a, world)["n_labels"] == 20
    # Labels of another feature's traces count only without a feature filter.
    elsewhere = [unique("other"), unique("other")]
    post_all(api_a, "/api/v1/traces", [{"trace_id": t, "feature": unique("feat")} for t in elsewhere])
    post_all(api_a, "/api/v1/scores", [{"score_id": unique(), "trace_id": t, "name": world.judge, "value": 0.9}
                                       for t in elsewhere])  # fmt: skip
    post_all(api_a, "/api/v1/labels", [{"label_id": unique(), "trace_id": t, "rubric": world.rubric, "value": 1}
                                       for t in elsewhere])  # fmt: skip
    assert calibration(api_a, world)["n_labels"] == 22
    assert calibration(api_a, world, feature=world.feature)["n_labels"] == 20
    assert calibration(api_a, world, feature=world.feature)["n_scored"] == 40


def test_fewer_than_two_labels_is_an_empty_report_not_an_error(api_a: ApiClient) -> None:
    world = seed_world(api_a, scores=[0.9, 0.2, 0.4], labels={0: {"value": 1}})
    report = calibration(api_a, world)
    assert (report["n_labels"], report["n_scored"]) == (1, 3)
    assert report["agreement"] is report["calibration"] is report["threshold"] is report["verdict"] is None
    assert "at least 2" in report["note"]
    # Two labels of one class: a report whose undefined figures are null with a note.
    post_all(api_a, "/api/v1/labels", [{"label_id": unique("lb"), "trace_id": world.trace_ids[1],
                                        "rubric": world.rubric, "value": 1}])  # fmt: skip
    report = calibration(api_a, world)
    assert report["n_labels"] == 2 and report["verdict"] == "exploratory"
    assert report["calibration"]["note"] == "fewer than 2 labels of one class: no cross-fitting possible"


def test_bad_parameters_are_400s(api_a: ApiClient) -> None:
    world = seed_world(api_a, scores=[0.9], labels={0: {"value": 1}})
    cats = unique("cats")
    post_all(api_a, "/api/v1/labels", [{"label_id": unique(), "trace_id": world.trace_ids[0], "rubric": cats,
                                        "category": "billing"}])  # fmt: skip
    url = f"/api/v1/judges/{world.judge}/calibration"
    for params, field in [
        ({}, "rubric"),
        ({"rubric": world.rubric, "version": "one"}, "version"),
        ({"rubric": world.rubric, "version": "0"}, "version"),
        ({"rubric": world.rubric, "since": "yesterday"}, "since"),
        ({"rubric": world.rubric, "since": "2025-02-01", "until": "2025-01-01"}, "since"),
        ({"rubric": "!bad"}, "rubric"),
        ({"rubric": cats}, "rubric"),
    ]:
        answer = api_a.get(url, params=params)
        assert answer.status_code == 400, params
        assert answer.json()["error"]["details"]["field"] == field


def test_unknown_and_other_organizations_judges_and_rubrics_are_404s(api_a: ApiClient, api_b: ApiClient) -> None:
    world = seed_world(api_a, scores=[0.9, 0.1], labels={0: {"value": 1}, 1: {"value": 0}})
    assert api_a.get(f"/api/v1/judges/{world.judge}/calibration", params={"rubric": world.rubric}).status_code == 200
    for api, judge, params in [
        (api_b, world.judge, {"rubric": world.rubric}),  # A's judge and rubric, asked by B
        (api_a, unique("nojudge"), {"rubric": world.rubric}),
        (api_a, world.judge, {"rubric": unique("norubric")}),
        (api_a, world.judge, {"rubric": world.rubric, "rubric_version": "2"}),
        (api_a, world.judge, {"rubric": world.rubric, "version": "7"}),
        (api_a, world.judge, {"rubric": world.rubric, "feature": unique("nofeature")}),
    ]:
        answer = api.get(f"/api/v1/judges/{judge}/calibration", params=params)
        assert answer.status_code == 404, (judge, params)
        assert answer.json()["error"]["code"] == "not_found"
