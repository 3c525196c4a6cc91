"""A success alert read from a real gating judge, end to end: verdicts and a uniform audit through the API, the
calibration sweep, the rollups, then alerts_evaluate. SSO accounts fall from 80% to 45% in the last week; with a
dozen audit labels per segment and window, each window corrected by its own labels hid the fall (the demo's SSO
regression opened no alert); read with one correction for both windows it opens on metadata.auth=sso only."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.test import Client

from evaluation.models import Alert, AlertMetric, AlertRule
from evaluation.services.alerts import alert_rules_ensure, alerts_evaluate
from evaluation.stats import calibrator_from_dict
from evaluation.stats.intervals import z_value
from feedback.models import Feature
from tests.evaluation.api.test_calibration import post_all
from tests.evaluation.experiments_seed import new_feature
from tests.evaluation.helpers import gating_judge_on
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.rollups import rollups_settled
from tests.fixtures.server import ApiClient

NOW = datetime(2025, 8, 22, 12, tzinfo=UTC)


def test_a_segments_fall_read_by_the_calibrated_judge_opens_its_alert(
    api_a: ApiClient, org_a: Org, committed_db: None
) -> None:
    rng = np.random.default_rng(41)
    n = 1200
    with in_tenant(org_a):
        key = new_feature(segment_keys=["auth"])
    judge, rubric = unique("judge"), unique("rb")
    starts = [NOW - timedelta(days=21) + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 21 * 86_400, n))]
    current = datetime(2025, 8, 16, tzinfo=UTC)  # the weekly rule's window: the 7 whole days to tomorrow's midnight
    recent = np.array([s >= current for s in starts])
    in_baseline = np.array([current - timedelta(days=14) <= s < current for s in starts])
    sso = rng.random(n) < 0.4
    good = rng.random(n) < np.where(recent & sso, 0.45, 0.80)
    passed = np.where(rng.random(n) < 0.95, good, ~good)
    traces = [f"{key}-{i:04d}" for i in range(n)]
    post_all(api_a, "/api/v1/traces", [{"trace_id": t, "feature": key, "started_at": starts[i].isoformat(),
                                        "metadata": {"auth": "sso" if sso[i] else "password"}}
                                       for i, t in enumerate(traces)])  # fmt: skip
    audited = np.sort(rng.choice(n, 90, replace=False))  # about a dozen per segment and window
    snapshot = gating_judge_on(api_a, org_a, traces, judge=judge, rubric=rubric, passed=passed, good=good,
                               audited=audited)  # fmt: skip
    with in_tenant(org_a):
        feature = Feature.objects.get(key=key)
        alert_rules_ensure(feature=feature)
        weekly = AlertRule.objects.get(feature=feature, metric=AlertMetric.SUCCESS_HIGH, window_hours=168)
        AlertRule.objects.filter(feature=feature).exclude(id=weekly.id).update(enabled=False)
        rollups_settled()  # the session's worker may hold some of its partitions: waited out
        alerts_evaluate(now=NOW, features=[feature])
        opened = {a.segment: a for a in Alert.objects.filter(rule=weekly)}
    assert set(opened) == {"metadata.auth=sso"}, {s: a.message for s, a in opened.items()}
    alert = opened["metadata.auth=sso"]
    assert alert.opened_source == "calibrated_judge"
    assert "Read from the calibrated judge, one bias correction for both windows (" in alert.opened_message
    assert alert.value is not None and alert.opened_baseline is not None
    assert abs(alert.value - good[recent & sso].mean()) < 0.1 and abs(alert.opened_baseline - 0.8) < 0.1
    # By hand: SSO's week is its mean calibrated score plus one correction, from SSO's audit labels over both
    # windows; its interval is the scores' alone (Bonferroni over the 3 segments read), no correction noise in it.
    assert snapshot.calibrator is not None
    f = calibrator_from_dict(snapshot.calibrator).predict(passed.astype(float))
    labelled = np.zeros(n, dtype=bool)
    labelled[audited] = True
    both = labelled & sso & (recent | in_baseline)
    week = f[recent & sso]
    value = week.mean() + (good[both] - f[both]).mean()
    high = min(value + z_value(1 - 0.05 / 3) * week.std() / np.sqrt(week.size), 1.0)
    assert alert.value == pytest.approx(value, abs=1e-9)
    # The message says whose labels corrected it, as the feature page corrects each window apart.
    assert alert.opened_message.endswith(
        f"({both.sum()} audit labels of this segment; the feature page corrects each window apart, so its rates "
        "may differ by a few points)."
    )
    said = re.search(r"over the last 7 days is ([0-9.]+)% \(at most ([0-9.]+)% by its interval\)", alert.opened_message)
    assert said is not None, alert.opened_message
    assert (float(said[1]), float(said[2])) == (
        pytest.approx(value * 100, abs=0.05),
        pytest.approx(high * 100, abs=0.05),
    )
    # Both pages say why the level they state for SSO differs (one correction over both windows here, the group's
    # own labels in its window on the feature page): three figures for one segment read as a contradiction.
    page = Client()
    page.force_login(org_a.owner)
    alert_page = page.get(org_a.url(f"alerts/{alert.id}/")).content.decode()
    assert 'data-testid="levels-note"' in alert_page and "the move agrees" in alert_page
    window = {"group_by": "metadata.auth", "since": "2025-07-25", "until": "2025-08-23"}
    with in_tenant(org_a):
        Feature.objects.filter(id=feature.id).update(value_per_success_usd=Decimal("250"))
    response = page.get(org_a.url(f"features/{feature.key}/"), window)
    feature_page = response.content.decode()
    assert 'data-testid="levels-note"' in feature_page and "the moves agree" in feature_page
    # Each row corrected apart: the All row says it is not the rows' sum (a PM added the values up, $400 short),
    # and figures read as on every other page ("$31613.71" and an ROI of "1119.89" without its ×).
    report = response.context["report"]
    assert len(report["groups"]) > 1 and 'data-testid="all-not-sum"' in feature_page
    table = feature_page.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    assert all(row["value_usd"] >= 1000 for row in report["groups"]), "no value of thousands: nothing checked"
    for row in (*report["groups"], report["total"]):
        if row["roi"] is not None:
            assert f"{row['roi']:,.1f}×" in table
        if row["value_usd"] is not None and row["value_usd"] >= 1000:
            assert f"${row['value_usd']:,.2f}" in table
    # The calibration card says its own window is not this page's.
    assert "each judge's last 30 days, not this page's window" in feature_page


def test_the_whole_features_alert_names_the_whole_features_labels() -> None:
    """A whole-feature alert with labels enough of its own said "audit labels of this segment"."""
    from evaluation.reports.measures import JudgedSums, Measures
    from evaluation.reports.success import CalibratedJudgeSource
    from evaluation.services.alerts import _over_time

    labelled = Measures(traces=100, judged=JudgedSums.of_scores(0.8, count=100).add(
        JudgedSums(audited=12, r_sum=0.1, r2_sum=1.0)))  # fmt: skip
    whole = JudgedSums(audited=40, r_sum=0.2, r2_sum=3.0)
    for segment, said in (("", "the whole feature"), ("metadata.auth=sso", "this segment")):
        source = _over_time(CalibratedJudgeSource(), labelled, labelled, whole, segment)
        assert isinstance(source, CalibratedJudgeSource) and source.common_of == said
        assert source.common is not None and source.common.audited == 24
