"""Signal AUCs on seeded data sent through the live API: each implicit signal's AUC equals
scikit-learn's roc_auc_score on the same per-trace arrays (against thumbs, the last choice per
person counting, and against human labels), informative signals stand out from noise, and too few
good or bad traces leave the AUC undefined with a reason."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evaluation.reports.selectors import window_from
from evaluation.reports.signals import SIGNALS, signal_report
from feedback.models import Feature
from tests.evaluation.api.test_calibration import post_all
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.server import ApiClient


def _event(trace: str, kind: str, value: float | None = None, user: str = "u1", at: str = "") -> dict[str, Any]:
    event: dict[str, Any] = {"event_id": str(uuid.uuid4()), "trace_id": trace, "kind": kind, "user_id": user}
    if value is not None:
        event["value"] = value
    if at:
        event["occurred_at"] = at
    return event


def test_auc_per_signal_equals_scikit_learn(api_a: ApiClient, org_a: Org, committed_db: None) -> None:
    rng = np.random.default_rng(11)
    n = 300
    feature = unique("sig")
    traces = [f"{feature}-{i:04d}" for i in range(n)]
    post_all(api_a, "/api/v1/traces", [{"trace_id": t, "feature": feature} for t in traces])
    good = rng.random(n) < 0.6
    copy = np.where(good, rng.random(n) < 0.7, rng.random(n) < 0.2)  # informative, points to good
    retry = np.where(good, rng.random(n) < 0.1, rng.random(n) < 0.5)  # informative, points to bad
    accept = rng.random(n) < 0.3  # noise
    dwell = np.where(rng.random(n) < 0.5, rng.integers(500, 20000, n), 0)
    events: list[dict[str, Any]] = []
    for i, trace in enumerate(traces):
        # A changed mind: the first thumb is the opposite, the last one per person counts.
        events.append(_event(trace, "thumb", -1 if good[i] else 1, at="2026-01-01T00:00:00Z"))
        events.append(_event(trace, "thumb", 1 if good[i] else -1, at="2026-01-01T00:01:00Z"))
        if copy[i]:
            events.append(_event(trace, "copy"))
        if retry[i]:
            events += [_event(trace, "retry"), _event(trace, "retry", user="u2")]
        if accept[i]:
            events.append(_event(trace, "accept"))
        if dwell[i]:
            events.append(_event(trace, "dwell", float(dwell[i])))
    post_all(api_a, "/api/v1/feedback", events)
    # Human labels on the first 120 traces: the opposite of the thumbs on 20 of them.
    human = good[:120].copy()
    human[:20] = ~human[:20]
    rubric = unique("rb")
    post_all(api_a, "/api/v1/labels", [{"label_id": unique("lb"), "trace_id": traces[i], "rubric": rubric,
                                        "value": int(human[i])} for i in range(120)])  # fmt: skip
    with in_tenant(org_a):
        report = signal_report(feature=Feature.objects.get(key=feature), window=window_from())
    assert report["rated_traces"] == n and report["labelled_traces"] == 120
    assert report["rubric"] == f"{rubric} v1"
    columns = {"copy": copy, "retry": retry, "accept": accept, "dwell": dwell}
    rows = {row["signal"]: row for row in report["signals"]}
    assert list(rows) == [str(s) for s in SIGNALS]
    for name, x in columns.items():
        x = x.astype(float)
        assert rows[name]["auc_feedback"]["value"] == pytest.approx(roc_auc_score(good, x), abs=1e-12)
        assert rows[name]["auc_labels"]["value"] == pytest.approx(roc_auc_score(human, x[:120]), abs=1e-12)
        assert rows[name]["traces_with"] == int(np.count_nonzero(x))
    assert rows["copy"]["auc_feedback"]["low"] > 0.5 and rows["retry"]["auc_feedback"]["high"] < 0.5
    assert rows["accept"]["auc_feedback"]["low"] < 0.5 < rows["accept"]["auc_feedback"]["high"]
    # Nobody sent rephrase or abandon: every trace has the same value, nothing to learn.
    assert rows["rephrase"]["auc_feedback"]["low"] is None and rows["rephrase"]["traces_with"] == 0


def test_too_few_good_or_bad_traces_leave_the_auc_undefined(api_a: ApiClient, org_a: Org, committed_db: None) -> None:
    feature = unique("sig")
    traces = [f"{feature}-{i}" for i in range(15)]
    post_all(api_a, "/api/v1/traces", [{"trace_id": t, "feature": feature} for t in traces])
    post_all(api_a, "/api/v1/feedback", [_event(t, "thumb", 1 if i < 12 else -1) for i, t in enumerate(traces)]
             + [_event(t, "copy") for t in traces[:6]])  # fmt: skip
    with in_tenant(org_a):
        report = signal_report(feature=Feature.objects.get(key=feature), window=window_from())
    copy = next(row for row in report["signals"] if row["signal"] == "copy")
    assert copy["auc_feedback"]["low"] is None and "12 good, 3 bad" in copy["auc_feedback"]["note"]
    assert report["rubric"] is None and copy["auc_labels"] is None
