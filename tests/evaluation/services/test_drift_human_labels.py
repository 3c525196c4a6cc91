"""Drift reads success as the feature's reports read it: with no judge gating and the uniform audit's labels in
both windows (HumanLabelsSource's minimum in each), from the share of labelled traces people called good, per
segment (it read outcomes here, beside a feature page reading the labels); with too few in a window, the next
source."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pytest

from evaluation.services.drift import drift_windows, feature_drift, top_cause
from feedback.models import Feature
from tests.evaluation.api.test_calibration import post_all
from tests.evaluation.reports.test_human_labels_success import _label
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.server import ApiClient

TODAY = date(2025, 6, 1)


def _feature_with_labels(
    api: ApiClient, labelled_now: int
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """600 traces, half in each window, half of them SSO accounts, whose answers go bad in the current window;
    outcomes on every third trace, and uniform-audit labels on 120 of the baseline's and ``labelled_now`` of the
    current window's traces."""
    rng = np.random.default_rng(5)
    baseline, current = drift_windows(today=TODAY)
    n = 600
    feature, rubric = unique("dhl"), unique("rb")
    late = np.arange(n) >= n // 2
    sso = rng.random(n) < 0.5
    good = rng.random(n) < np.where(late & sso, 0.35, 0.8)
    offsets = rng.integers(0, 7 * 86_400, n)
    starts = [(current.since if late[i] else baseline.since) + timedelta(seconds=int(offsets[i])) for i in range(n)]
    traces = [f"{feature}-{i:04d}" for i in range(n)]
    post_all(api, "/api/v1/traces", [{"trace_id": t, "feature": feature, "started_at": _iso(starts[i]),
                                      "metadata": {"auth": "sso" if sso[i] else "password"}}
                                     for i, t in enumerate(traces)])  # fmt: skip
    post_all(api, "/api/v1/outcomes", [{"outcome_id": unique("oc"), "trace_id": t, "name": "resolved"}
                                       for t in traces[::3]])  # fmt: skip
    labelled = np.zeros(n, dtype=bool)
    labelled[rng.choice(np.flatnonzero(~late), 120, replace=False)] = True
    labelled[rng.choice(np.flatnonzero(late), labelled_now, replace=False)] = True
    post_all(api, "/api/v1/labels", [_label(traces[i], rubric, bool(good[i])) for i in np.flatnonzero(labelled)])
    return feature, late, sso, good, labelled


def test_drift_reads_success_from_human_labels_when_no_judge_gates(
    api_a: ApiClient, org_a: Org, committed_db: None
) -> None:
    feature, late, sso, good, labelled = _feature_with_labels(api_a, labelled_now=120)
    baseline, current = drift_windows(today=TODAY)
    with in_tenant(org_a):
        result = feature_drift(feature=Feature.objects.get(key=feature), baseline=baseline, current=current)
    assert result["success_source"] == "human_labels"
    success = next(rate for rate in result["rates"] if rate["metric"] == "success")
    assert success["label"] == "Success (human labels)"
    assert success["baseline"] == pytest.approx(good[labelled & ~late].mean(), abs=1e-12)
    assert success["current"] == pytest.approx(good[labelled & late].mean(), abs=1e-12)
    assert (success["baseline_n"], success["current_n"]) == (120, 120)  # the labelled traces, not all of them
    first = success["segments"][0]
    assert first["segment"] == "metadata.auth=sso"
    assert first["current_rate"] == pytest.approx(good[labelled & late & sso].mean(), abs=1e-12)
    cause = top_cause(result)
    assert cause is not None and (cause["metric"], cause["segment"]) == ("Success (human labels)", "metadata.auth=sso")


def test_with_too_few_labels_in_a_window_drift_reads_the_next_source(
    api_a: ApiClient, org_a: Org, committed_db: None
) -> None:
    feature, *_ = _feature_with_labels(api_a, labelled_now=29)
    baseline, current = drift_windows(today=TODAY)
    with in_tenant(org_a):
        result = feature_drift(feature=Feature.objects.get(key=feature), baseline=baseline, current=current)
    assert result["success_source"] == "outcomes"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
