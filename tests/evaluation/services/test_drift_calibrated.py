"""Drift reads success as the feature's reports read it first: where a gating judge is calibrated, from its
calibrated scores (each window's Hajek mean plus one correction for both, from the uniform audit over both),
computed here by hand from the same arrays, and the segment whose success fell is named by that source (it
said "Success (outcomes)" beside an overview reading the judge)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pytest

from evaluation.services.drift import drift_windows, feature_drift, top_cause
from evaluation.stats import calibrator_from_dict
from feedback.models import Feature
from tests.evaluation.api.test_calibration import post_all
from tests.evaluation.helpers import gating_judge_on
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.server import ApiClient

TODAY = date(2025, 6, 1)


def test_drift_reads_success_from_the_calibrated_judge(api_a: ApiClient, org_a: Org, committed_db: None) -> None:
    rng = np.random.default_rng(31)
    baseline, current = drift_windows(today=TODAY)
    n = 1200
    feature, judge, rubric = unique("dcal"), unique("judge"), unique("rb")
    late = rng.random(n) < 0.5  # in the current window; the rest in the baseline
    sso = rng.random(n) < 0.5
    good = rng.random(n) < np.where(late & sso, 0.45, 0.78)  # SSO accounts fall in the current week
    passed = np.where(rng.random(n) < 0.95, good, ~good)
    offsets = rng.integers(0, 7 * 86_400, n)
    starts = [
        (current.since if late[i] else baseline.since) + timedelta(seconds=int(offsets[i])) for i in range(n)
    ]  # fmt: skip
    traces = [f"{feature}-{i:04d}" for i in range(n)]
    post_all(api_a, "/api/v1/traces", [{"trace_id": t, "feature": feature, "started_at": _iso(starts[i]),
                                        "metadata": {"auth": "sso" if sso[i] else "password"}}
                                       for i, t in enumerate(traces)])  # fmt: skip
    audited = np.sort(rng.choice(n, 240, replace=False))
    snapshot = gating_judge_on(api_a, org_a, traces, judge=judge, rubric=rubric, passed=passed, good=good,
                               audited=audited)  # fmt: skip
    with in_tenant(org_a):
        result = feature_drift(feature=Feature.objects.get(key=feature), baseline=baseline, current=current)
    assert snapshot.calibrator is not None
    f = calibrator_from_dict(snapshot.calibrator).predict(passed.astype(float))
    correction = float((good[audited] - f[audited]).mean())  # one correction, over both windows' audit
    assert result["success_source"] == "calibrated_judge"
    success = next(rate for rate in result["rates"] if rate["metric"] == "success")
    assert success["label"] == "Success (calibrated judge)"
    assert success["baseline"] == pytest.approx(f[~late].mean() + correction, abs=1e-9)
    assert success["current"] == pytest.approx(f[late].mean() + correction, abs=1e-9)
    assert (success["baseline_n"], success["current_n"]) == (pytest.approx((~late).sum()), pytest.approx(late.sum()))
    assert (success["correction"], success["audited"]) == (pytest.approx(correction, abs=1e-9), 240)  # the page says
    first = success["segments"][0]
    assert first["segment"] == "metadata.auth=sso"
    assert first["current_rate"] == pytest.approx(f[late & sso].mean() + correction, abs=1e-9)
    cause = top_cause(result)
    assert cause is not None and cause["metric"] == "Success (calibrated judge)"
    assert cause["segment"] == "metadata.auth=sso"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
