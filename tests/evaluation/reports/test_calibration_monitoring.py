"""Monitoring a calibrated judge: the CUSUM on judge-human disagreement along the uniform audit
stream in traffic order (equal to evaluation.stats.cusum on the same sequence, alarming on a planted shift and not
on a steady stream), the shift of its scores on all its traffic (PSI and KS as evaluation.stats computes them),
Krippendorff's alpha among reviewers on shared traces (equal to the statistic on the same matrix), and the
labels-needed planner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from evaluation.models import CalibrationTarget, Rubric
from evaluation.reports.calibrated import CUSUM_H, RESIDUAL_MATERIAL, audit_drift, human_agreement, labels_plan
from evaluation.stats import (
    calibrator_from_dict,
    cusum,
    disagreement_cusum_reference,
    krippendorff_alpha,
    labels_needed,
    rolling_residual,
)
from tests.evaluation.api.test_calibration import post_all, seed_world
from tests.evaluation.helpers import sweep_until
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.server import ApiClient

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _stream(api: ApiClient, passed: np.ndarray, good: np.ndarray) -> tuple[str, str]:
    """One uniform-audit label per trace, the traces a minute apart and labelled in their order."""
    labels = {
        i: {"value": int(good[i]), "sampling": {"design": "uniform", "inclusion_probability": 0.1},
            "occurred_at": (T0 + timedelta(minutes=i)).isoformat().replace("+00:00", "Z")}
        for i in range(len(good))
    }  # fmt: skip
    starts = [T0 + timedelta(minutes=i) for i in range(len(good))]
    world = seed_world(api, scores=[float(p) for p in passed], scale="binary", labels=labels, starts=starts)
    return world.judge, world.rubric


@pytest.mark.parametrize("shift", [False, True])
def test_the_drift_monitor_is_the_cusum_of_the_audit_stream(
    api_a: ApiClient, org_a: Org, committed_db: None, shift: bool
) -> None:
    rng = np.random.default_rng(3 if shift else 4)
    n = 120
    good = rng.random(n) < 0.7
    wrong = rng.random(n) < np.where(np.arange(n) < 60, 0.08, 0.45 if shift else 0.08)
    passed = np.where(wrong, ~good, good)
    judge, rubric = _stream(api_a, passed, good)
    with in_tenant(org_a):
        targets = CalibrationTarget.objects.filter(judge_version__judge__name=judge, rubric__name=rubric)
        sweep_until(lambda: targets.filter(snapshots__isnull=False).exists())
        target = targets.get()
        drift = audit_drift(target=target)
    x = (good != passed).astype(float)
    k = disagreement_cusum_reference(x[:60].mean(), min(1.0, max(2 * x[:60].mean(), x[:60].mean() + 0.05)))
    expected = cusum(x, k=k, h=CUSUM_H)
    assert drift["n"] == n and drift["k"] == pytest.approx(k, abs=1e-12)
    assert drift["alarm_index"] == expected.alarm_index
    assert (drift["alarm_index"] is not None) is shift
    if shift:
        assert drift["alarm_index"] >= 60 and drift["alarm_at"] == T0 + timedelta(minutes=drift["alarm_index"])
    # The calibration residual: label - calibrated P(good) over the latest 50 audit traces, as stats computes it
    # with the target's fitted calibrator.
    with in_tenant(org_a):
        fitted = target.snapshots.filter(calibrator__isnull=False).order_by("-computed_at", "-id").first()
        assert fitted is not None and fitted.calibrator is not None
    calibrated = calibrator_from_dict(fitted.calibrator).predict(passed.astype(float))
    rolled = rolling_residual(good.astype(float), calibrated, window=50)
    residual = drift["residual"]
    assert residual["mean"] == pytest.approx(rolled.mean[-1], abs=1e-12)
    assert (residual["low"], residual["high"]) == (pytest.approx(rolled.low[-1]), pytest.approx(rolled.high[-1]))
    # Off only past RESIDUAL_MATERIAL with 0 outside: the steady judge's small, tightly estimated lean (+0.03 here)
    # is no alarm; the shifted one leans past it, but 50 audit traces leave 0 inside (the CUSUM is what alarms).
    material = abs(residual["mean"]) >= RESIDUAL_MATERIAL
    assert residual["off"] is (material and not residual["low"] <= 0 <= residual["high"])
    assert material is shift


def test_a_stale_calibration_reads_off_and_the_page_says_so(api_a: ApiClient, org_a: Org, committed_db: None) -> None:
    """A fit that no longer reads the judge (here one that calls nearly every trace good, where a third are bad) leans
    the labels well below it, 0 outside the interval: off, and the calibration page says to re-calibrate."""
    from django.test import Client

    from evaluation.models import CalibrationSnapshot

    rng = np.random.default_rng(5)
    n = 120
    good = rng.random(n) < 0.7
    passed = np.where(rng.random(n) < 0.08, ~good, good)
    judge, rubric = _stream(api_a, passed, good)
    with in_tenant(org_a):
        targets = CalibrationTarget.objects.filter(judge_version__judge__name=judge, rubric__name=rubric)
        sweep_until(lambda: targets.filter(snapshots__isnull=False).exists())
        target = targets.get()
        stale = {"method": "platt", "slope": 0.0, "intercept": 5.0}  # P(good) = 0.993 whatever the score
        CalibrationSnapshot.objects.filter(target=target).update(calibrator=stale)
        residual = audit_drift(target=target)["residual"]
    expected = rolling_residual(good.astype(float), np.full(n, 1 / (1 + np.exp(-5.0))), window=50)
    assert residual["mean"] == pytest.approx(expected.mean[-1]) and residual["mean"] <= -RESIDUAL_MATERIAL
    assert residual["high"] < 0 and residual["off"] is True
    client = Client()
    client.force_login(org_a.owner)
    page = client.get(org_a.url(f"judges/{judge}/calibration/?target={target.id}")).content.decode()
    said = page.split('data-testid="residual"', 1)[1].split("</p>", 1)[0]
    assert 'badge bad">off' in said and "label more to re-calibrate" in said


def test_the_drift_monitor_reads_the_audit_in_traffic_order_not_labelling_order(
    api_a: ApiClient, org_a: Org, committed_db: None
) -> None:
    """A backlog labelled in random order: the CUSUM runs along the traces' starts (its alarm where the traffic
    changed, dated by the trace), not along the labels' times (which shuffled the shift away)."""
    rng = np.random.default_rng(3)
    n = 120
    good = rng.random(n) < 0.7
    passed = np.where(rng.random(n) < np.where(np.arange(n) < 60, 0.08, 0.45), ~good, good)
    labelled = rng.permutation(n)  # trace i labelled labelled[i] hours into the backlog
    labels = {
        i: {"value": int(good[i]), "sampling": {"design": "uniform", "inclusion_probability": 0.1},
            "occurred_at": (T0 + timedelta(days=30, hours=int(labelled[i]))).isoformat()}
        for i in range(n)
    }  # fmt: skip
    starts = [T0 + timedelta(minutes=i) for i in range(n)]
    world = seed_world(api_a, scores=[float(p) for p in passed], scale="binary", labels=labels, starts=starts)
    with in_tenant(org_a):
        targets = CalibrationTarget.objects.filter(judge_version__judge__name=world.judge, rubric__name=world.rubric)
        sweep_until(lambda: targets.filter(snapshots__isnull=False).exists())
        drift = audit_drift(target=targets.get())
    x = (good != passed).astype(float)
    k = disagreement_cusum_reference(x[:60].mean(), min(1.0, max(2 * x[:60].mean(), x[:60].mean() + 0.05)))
    in_traffic = cusum(x, k=k, h=CUSUM_H)
    assert drift["alarm_index"] == in_traffic.alarm_index and in_traffic.alarm_index is not None
    assert drift["alarm_at"] == starts[in_traffic.alarm_index]
    order = np.argsort(labelled)  # what labelling order would have read
    shuffled = x[order]
    k_shuffled = disagreement_cusum_reference(
        shuffled[:60].mean(), min(1.0, max(2 * shuffled[:60].mean(), shuffled[:60].mean() + 0.05))
    )
    assert cusum(shuffled, k=k_shuffled, h=CUSUM_H).alarm_index != in_traffic.alarm_index


def test_the_judges_scores_on_all_its_traffic_are_compared_across_windows(
    api_a: ApiClient, org_a: Org, committed_db: None
) -> None:
    """The monitor's score shift: PSI and KS of the judge's scores (labelled or not) between two windows of trace
    days, equal to evaluation.stats on the same arrays; a planted move is 'shifted'; too few scores say so."""
    from datetime import date

    from evaluation.reports.calibrated import score_shift
    from evaluation.stats import ks_shift, psi

    rng = np.random.default_rng(12)
    before, now = rng.beta(5, 2, 150), rng.beta(2, 5, 120)  # the judge scores lower this week
    starts = [T0 + timedelta(hours=int(h)) for h in rng.integers(0, 24 * 7, 150)]
    starts += [T0 + timedelta(days=14, hours=int(h)) for h in rng.integers(0, 24 * 7, 120)]
    labels = {i: {"value": float(v > 0.5)} for i, v in enumerate(np.concatenate([before, now])[:40])}
    world = seed_world(api_a, scores=[float(v) for v in [*before, *now]], labels=labels, starts=starts)
    baseline, current = (date(2026, 11, 1), date(2026, 11, 7)), (date(2026, 11, 15), date(2026, 11, 21))
    with in_tenant(org_a):
        targets = CalibrationTarget.objects.filter(judge_version__judge__name=world.judge, rubric__name=world.rubric)
        sweep_until(lambda: targets.filter(snapshots__isnull=False).exists())
        target = targets.get()
        shift = score_shift(target=target, baseline=baseline, current=current)
        thin = score_shift(target=target, baseline=baseline, current=(date(2026, 11, 22), date(2026, 11, 28)))
    assert shift["baseline_n"] == 150 and shift["current_n"] == 120
    assert shift["psi"] == pytest.approx(psi(before, now, bins=10))
    assert shift["ks"] == pytest.approx(ks_shift(before, now).statistic)
    assert shift["status"] == "shifted" and len(shift["bins"]) == 10
    assert thin["psi"] is None and thin["status"] == "too_little_data" and thin["current_n"] == 0


def test_reviewers_alpha_and_the_labels_planner(api_a: ApiClient, org_a: Org, committed_db: None) -> None:
    rng = np.random.default_rng(9)
    n = 40
    truth = rng.integers(1, 6, n)
    world = seed_world(api_a, scores=[float(v) for v in truth], scale="ordinal", labels={})
    reviewers = ["ann@acme.test", "bo@acme.test", "cy@acme.test"]
    matrix = np.full((3, n), np.nan)
    items = []
    for r, reviewer in enumerate(reviewers):
        for i in range(n):
            if r == 2 and i % 2:  # the third reviewer labelled every other trace
                continue
            value = int(np.clip(truth[i] + rng.integers(-1, 2), 1, 5))
            matrix[r, i] = value
            items.append({"label_id": unique("lb"), "trace_id": world.trace_ids[i], "rubric": world.rubric,
                          "value": value, "reviewer": reviewer})  # fmt: skip
    post_all(api_a, "/api/v1/labels", items)
    with in_tenant(org_a):
        got = human_agreement(rubric=Rubric.objects.get(name=world.rubric), feature_id=None)
    expected = krippendorff_alpha(matrix, level="ordinal")
    assert got["units"] == n and got["reviewers"] == 3
    assert got["alpha"]["value"] == pytest.approx(expected.value, abs=1e-12)
    # The planner: labels alone versus with a judge worth 1.6x its labels (rho^2 = 1 - 1/1.6).
    estimate = {"value": 0.7, "n_labels": 100, "effective_labels": 160.0, "method": "ppi++"}
    plan = labels_plan(success={"estimate": estimate})
    assert plan is not None
    assert plan["alone"] == labels_needed(half_width=0.03, rate=0.7)
    assert plan["with_judge"] == labels_needed(half_width=0.03, rate=0.7, rho=(1 - 100 / 160) ** 0.5)
    assert plan["with_judge"] < plan["alone"]
    assert plan["more"] == max(0, plan["with_judge"] - 100)
    # What this judge saves, said beside the literature's 1.3x-2x rather than the literature alone.
    assert plan["savings"] == round(plan["alone"] / plan["with_judge"], 1) == 1.6
    # Another design's estimate uses no judge: no savings said ("saves 1.0x" read as a judge found useless).
    stratified = labels_plan(success={"estimate": {**estimate, "method": "stratified", "effective_labels": 100.0}})
    assert stratified is not None and stratified["savings"] is None
    assert labels_plan(success=None) is None
    # One label, passed: the point estimate 1.0 planned 1 label and said "enough" beside an interval of 21-100%.
    # The plan takes the rate within the interval that needs the most labels (here 50%).
    one = labels_plan(success={"estimate": {"value": 1.0, "low": 0.21, "high": 1.0, "n_labels": 1,
                                            "method": "classical"}})  # fmt: skip
    assert one is not None and one["planned_rate"] == 0.5
    assert one["alone"] == labels_needed(half_width=0.03, rate=0.5) == 1068 and one["more"] == 1067
    # An interval wholly above 50%: its lower bound, the rate nearest 50%, needs the most.
    high = labels_plan(success={"estimate": {"value": 0.9, "low": 0.85, "high": 0.94, "n_labels": 200}})
    assert high is not None and high["planned_rate"] == 0.85
    assert high["alone"] == labels_needed(half_width=0.03, rate=0.85)
