"""The human-labels success source: with no judge gating, a feature whose uniform audit has at least 30
labelled traces in the window reads success from them (before outcomes and thumbs, shared/API.md's order),
each group's rate and Wilson interval as statsmodels computes it from that group's labels; the latest label
of a trace counts, labels of another design do not, and under 30 labels the report falls back."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from statsmodels.stats.proportion import proportion_confint

from evaluation.reports.selectors import Grouping, feature_get, feature_report, window_from
from tests.evaluation.api.test_calibration import post_all
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.rollups import rollups_settled
from tests.fixtures.server import ApiClient


def _label(trace_id: str, rubric: str, good: bool, design: str = "uniform", at: str | None = None) -> dict[str, Any]:
    sampling: dict[str, Any] = {"design": design}
    if design != "uniform":
        sampling["inclusion_probability"] = 0.5
    return {"label_id": unique("lb"), "trace_id": trace_id, "rubric": rubric, "value": int(good),
            "sampling": sampling, **({"occurred_at": at} if at else {})}  # fmt: skip


def test_uniform_labels_answer_success_when_no_judge_gates(api_a: ApiClient, org_a: Org, committed_db: None) -> None:
    feature, rubric = unique("hl"), unique("rb")
    traces = [f"{feature}-{i:03d}" for i in range(200)]
    version = {t: ("v1" if i < 120 else "v2") for i, t in enumerate(traces)}
    post_all(api_a, "/api/v1/traces", [{"trace_id": t, "feature": feature, "prompt_version": version[t]}
                                       for t in traces])  # fmt: skip
    # Outcomes on every fifth trace: a source the report would read without the labels.
    post_all(api_a, "/api/v1/outcomes", [{"outcome_id": unique("oc"), "trace_id": t, "name": "resolved"}
                                         for t in traces[::5]])  # fmt: skip
    v1, v2 = traces[:40], traces[120:140]  # 40 labelled on v1 (30 good), 20 on v2 (8 good)
    labels = [_label(t, rubric, i < 30) for i, t in enumerate(v1)] + [
        _label(t, rubric, i < 8, at="2025-01-01T00:00:00Z") for i, t in enumerate(v2)
    ]
    # Not the uniform audit: labels of an enriched queue count for nothing here.
    labels += [_label(t, rubric, False, design="stratified") for t in traces[60:70]]
    post_all(api_a, "/api/v1/labels", labels)
    # A trace labelled again later: its latest label counts (v2's 9th, bad before, good now).
    post_all(api_a, "/api/v1/labels", [_label(v2[8], rubric, True)])
    with in_tenant(org_a):
        rollups_settled()
        report = feature_report(feature=feature_get(feature), window=window_from(),
                                grouping=Grouping.parse("prompt_version"))  # fmt: skip
    assert report["success_source"]["name"] == "human_labels"
    groups = {g["group"]: g["success"] for g in report["groups"]}
    for group, good, n in (("v1", 30, 40), ("v2", 9, 20)):
        low, high = proportion_confint(good, n, alpha=0.05, method="wilson")
        got = groups[group]
        assert got["source"] == "human_labels" and got["n"] == n
        assert got["value"] == pytest.approx(good / n, abs=1e-12)
        assert (got["low"], got["high"]) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))
    whole = report["total"]["success"]
    assert whole["n"] == 60 and whole["value"] == pytest.approx(39 / 60, abs=1e-12)
    page = Client()
    page.force_login(org_a.owner)
    html = page.get(org_a.url(f"features/{feature}/")).content.decode()
    assert "human_labels" in html and "uniform audit" in html


def test_under_30_uniform_labels_the_report_reads_the_next_source(
    api_a: ApiClient, org_a: Org, committed_db: None
) -> None:
    feature, rubric = unique("hl"), unique("rb")
    traces = [f"{feature}-{i:03d}" for i in range(60)]
    post_all(api_a, "/api/v1/traces", [{"trace_id": t, "feature": feature} for t in traces])
    post_all(api_a, "/api/v1/outcomes", [{"outcome_id": unique("oc"), "trace_id": t, "name": "resolved"}
                                         for t in traces[::3]])  # fmt: skip
    post_all(api_a, "/api/v1/labels", [_label(t, rubric, True) for t in traces[:29]])
    with in_tenant(org_a):
        rollups_settled()
        report = feature_report(feature=feature_get(feature), window=window_from(),
                                grouping=Grouping.parse("prompt_version"))  # fmt: skip
    assert report["success_source"]["name"] == "outcomes"
    assert report["total"]["success"]["value"] == pytest.approx(20 / 60, abs=1e-12)
