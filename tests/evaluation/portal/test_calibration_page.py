"""The judge calibration page as a PM uses it: the lenient judge's uncorrected pass rate beside the
true success rate with its interval, the agreement table, confusion, reliability, score
distributions, the threshold slider's data, the disagreements and their relabel (which keeps the
item's sampling design and refreshes the report), the verdict history; other organizations 404."""

from __future__ import annotations

import numpy as np
from django.test import Client

from evaluation.models import CalibrationSnapshot, CalibrationTarget, Label, WidgetLabelMap
from tests.evaluation.api.test_calibration import World, seed_world
from tests.evaluation.helpers import sweep_until
from tests.fixtures.organizations import Org, in_tenant
from tests.fixtures.server import ApiClient
from tests.helpers import assert_cross_tenant_404


def _owner(org: Org) -> Client:
    client = Client()
    client.force_login(org.owner)
    return client


def _lenient_world(api: ApiClient, n: int = 120, seed: int = 7) -> tuple[World, np.ndarray, np.ndarray]:
    """A binary judge that passes 90% of traces while humans call 60% good (uniform audit)."""
    rng = np.random.default_rng(seed)
    good = (rng.random(n) < 0.6).astype(int)
    passed = np.where(good == 1, rng.random(n) < 0.97, rng.random(n) < 0.75).astype(int)
    uniform = {"design": "uniform", "inclusion_probability": 0.5}
    world = seed_world(
        api, scores=[float(p) for p in passed], scale="binary",
        labels={i: {"value": int(good[i]), "sampling": uniform} for i in range(n)},
    )  # fmt: skip
    return world, good, passed


def test_the_page_exposes_a_lenient_judge_and_a_relabel_refreshes_it(
    api_a: ApiClient, org_a: Org, committed_db: None
) -> None:
    world, good, passed = _lenient_world(api_a)
    with in_tenant(org_a):
        targets = CalibrationTarget.objects.filter(judge_version__judge__name=world.judge, rubric__name=world.rubric)
        sweep_until(lambda: targets.filter(snapshots__isnull=False).exists())
        target = targets.get()
    client = _owner(org_a)
    page = client.get(org_a.url(f"judges/{world.judge}/calibration/"))
    assert page.status_code == 200
    context = page.context
    assert context["target"].id == target.id and context["pairs_n"] == 120
    success = context["latest"].success
    assert success["judge_uncorrected"]["value"] == passed.mean()
    assert success["human"]["value"] == good.mean()
    assert success["judge_uncorrected"]["value"] > success["human"]["high"]  # exposed
    confusion = context["report"]["agreement"]["confusion"]
    cells = [[int(np.sum((good == h) & (passed == j))) for j in (0, 1)] for h in (0, 1)]
    assert confusion == cells
    assert context["disagreements_total"] == int(np.sum(good != passed))
    assert sum(b["good"] for b in context["histograms"]["bins"]) == int(good.sum())
    assert [row["target_precision"] for row in context["thresholds_data"]][:2] == [0.7, 0.75]
    min_score = float(passed.min())  # the judge's raw scores are its 0/1 verdicts here
    for row in context["thresholds_data"]:  # every labelled trace is passed, failed or sent to a person: once
        assert 0 <= row["to_human"] <= row["n"]
        assert row["pass_at"] is None or row["fail_at"] is None or row["fail_at"] < row["pass_at"]
        if row["pass_at"] is None and row["fail_at"] is None:
            assert row["to_human"] == row["n"]
        assert row["pass_all"] == (row["pass_at"] is not None and row["pass_at"] <= min_score)
    html = page.content.decode()
    for text in ("True success rate", "Judge pass rate (uncorrected)", "Cohen", "Reliability", "Verdict history",
                 'id="thresholds-data"', "are worth"):  # fmt: skip
        assert text in html, text
    # The feature page's panel: the same estimate beside the uncorrected rate, linked to this page.
    feature_page = client.get(org_a.url(f"features/{world.feature}/"))
    assert feature_page.status_code == 200
    (row,) = feature_page.context["calibrations"]
    assert (row.judge, row.target_id, row.success) == (world.judge, target.id, success)
    assert f"calibration/?target={target.id}" in feature_page.content.decode()
    # The headline alone for htmx polling.
    poll = client.get(org_a.url(f"judges/{world.judge}/calibration/?target={target.id}"), HTTP_HX_REQUEST="true")
    assert poll.status_code == 200 and b'id="headline"' in poll.content and b"Disagreements" not in poll.content
    # Relabel one disagreement: a new label of the same design and probability; the report follows.
    flip = next(p for p in context["disagreements"])
    answer = client.post(
        org_a.url(f"judges/{world.judge}/calibration/relabel/"),
        {"target": target.id, "trace_id": flip.trace_id, "value": "0" if flip.good else "1"},
    )
    assert answer.status_code == 302
    with in_tenant(org_a):
        label = Label.objects.filter(trace_id=flip.trace_id).order_by("-id").first()
        assert label is not None and label.sampling_design == "uniform" and label.inclusion_probability == 0.5
        assert label.value == (0.0 if flip.good else 1.0) and label.reviewer == org_a.owner.email
        sweep_until(lambda: CalibrationSnapshot.objects.filter(target=target).count() == 2)
    after = client.get(org_a.url(f"judges/{world.judge}/calibration/"))
    assert after.context["disagreements_total"] == context["disagreements_total"] - 1
    # Map the feature's widget thumbs onto the rubric: shown beside the judge, apart from the report.
    mapped = client.post(org_a.url(f"judges/{world.judge}/calibration/widget/"), {"target": target.id, "thumbs": "on"})
    assert mapped.status_code == 302
    with in_tenant(org_a):
        assert WidgetLabelMap.objects.filter(rubric=target.rubric, feature=target.feature, thumbs=True).exists()
    assert after.context["widget"]["n"] == 0


def test_bad_targets_and_other_organizations_are_404(
    api_a: ApiClient, org_a: Org, org_b: Org, committed_db: None
) -> None:
    world, _, _ = _lenient_world(api_a, n=20, seed=8)
    with in_tenant(org_a):
        targets = CalibrationTarget.objects.filter(judge_version__judge__name=world.judge, rubric__name=world.rubric)
        sweep_until(lambda: targets.filter(snapshots__isnull=False).exists())
        target = targets.get()
    mine = _owner(org_a)
    assert mine.get(org_a.url(f"judges/{world.judge}/calibration/?target=999999999")).status_code == 404
    assert mine.get(org_a.url(f"judges/{world.judge}/calibration/?target=x%00")).status_code == 404
    assert mine.post(org_a.url(f"judges/{world.judge}/calibration/relabel/"), {"target": "nope"}).status_code == 404
    for bad in ("nope", "²", "9" * 30, ""):
        answer = mine.post(org_a.url(f"judges/{world.judge}/calibration/widget/"), {"target": bad, "thumbs": "on"})
        assert answer.status_code == 404, bad
    other = _owner(org_b)
    for suffix, method, data in [
        (f"judges/{world.judge}/calibration/", "get", {}),
        (f"judges/{world.judge}/calibration/relabel/", "post",
         {"target": target.id, "trace_id": world.trace_ids[0], "value": "1"}),
        (f"judges/{world.judge}/calibration/widget/", "post", {"target": target.id, "thumbs": "on"}),
    ]:  # fmt: skip
        leak = world.judge if method == "get" else ""
        assert_cross_tenant_404(other, org_b.url(suffix), method, leak=leak, data=data)
        assert_cross_tenant_404(other, org_a.url(suffix), method, data=data)  # not a member of A
