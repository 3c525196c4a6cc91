"""The judge calibration page as a PM uses it: the lenient judge's uncorrected pass rate beside the
true success rate with its interval, the agreement table, confusion, reliability, score
distributions, the threshold slider's data, the disagreements and their relabel (which keeps the
item's sampling design and refreshes the report), the verdict history, what each count counts;
other organizations 404."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import numpy as np
from django.test import Client

from evaluation.models import CalibrationSnapshot, CalibrationTarget, Label, WidgetLabelMap
from evaluation.services.calibration_refresh import success_window
from evaluation.services.shared import utc_now
from tests.evaluation.api.test_calibration import World, post_all, seed_world
from tests.evaluation.helpers import sweep_until
from tests.fixtures.organizations import Org, in_tenant, unique
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
    # The monitor's calibration residual (its figures are tested in test_calibration_monitoring), shown.
    assert context["drift"]["residual"] is not None and 'data-testid="residual"' in html
    # The monitor's score shift over the drift page's windows: these traces started today, in neither (said so).
    shift = context["score_shift"]
    assert (shift["baseline_n"], shift["current_n"], shift["status"]) == (0, 0, "too_little_data")
    monitor = html.split('data-testid="score-shift"', 1)[1].split("</div>", 1)[0]
    assert "Fewer than 30 values in a window: 0 scored traces from" in monitor and "psi-chart" not in monitor
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
    # One person's label beside another's blind one is a tie: the label given first stands (one reviewer flipped a
    # judge from exploratory to gating by siding with it on 42 disagreements, each overturning someone's label).
    assert after.context["disagreements_total"] == context["disagreements_total"]
    # A second reviewer who reads it the same way makes a majority: now it counts.
    from tenants.services import member_ensure

    second = member_ensure(organization=org_a.organization, email=f"{unique('rv')}@a.test", password="x" * 12,
                           role="reviewer").user  # fmt: skip
    other = Client()
    other.force_login(second)
    said = other.post(
        org_a.url(f"judges/{world.judge}/calibration/relabel/"),
        {"target": target.id, "trace_id": flip.trace_id, "value": "0" if flip.good else "1"},
        follow=True,
    )
    assert "counts where it makes a majority" in said.content.decode()
    with in_tenant(org_a):
        sweep_until(lambda: CalibrationSnapshot.objects.filter(target=target).count() == 3)
    majority = client.get(org_a.url(f"judges/{world.judge}/calibration/"))
    assert majority.context["disagreements_total"] == context["disagreements_total"] - 1
    # A reviewer changing their own label replaces it: the owner turns back, and the original reading holds 2 to 1.
    client.post(org_a.url(f"judges/{world.judge}/calibration/relabel/"),
                {"target": target.id, "trace_id": flip.trace_id, "value": "1" if flip.good else "0"})  # fmt: skip
    with in_tenant(org_a):
        sweep_until(lambda: CalibrationSnapshot.objects.filter(target=target).count() == 4)
    back = client.get(org_a.url(f"judges/{world.judge}/calibration/"))
    assert back.context["disagreements_total"] == context["disagreements_total"]
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


def _shown(page: str, testid: str) -> str:
    """The text of the element marked ``data-testid``, tags dropped and spaces squeezed."""
    match = re.search(rf'<(\w+)[^>]*data-testid="{testid}"[^>]*>(.*?)</\1>', page, flags=re.S)
    assert match is not None, testid
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(2))).split())


def test_every_count_says_what_it_counts(api_a: ApiClient, org_a: Org, committed_db: None) -> None:
    """100 traces of the success rate's 30 days and 20 older ones, all scored; uniform labels on 60
    recent and 5 old traces, a second reviewer's label on 30 of them (a third's on 10); 2 recent labelled traces the
    judge never scored. The agreement counts 65 traces (95 labels), the success rate 62 labelled
    traces (60 of them scored, which PPI uses) and 100 scored of 120: the page says which is which."""
    now = utc_now()
    old = (now - timedelta(days=40)).isoformat()
    feature, judge, rubric = unique("feat"), unique("judge"), unique("rubric")
    base = unique("t")
    recent = [f"{base}_r{i:03d}" for i in range(100)]
    older = [f"{base}_o{i:03d}" for i in range(20)]
    unscored = [f"{base}_u{i:03d}" for i in range(2)]
    post_all(api_a, "/api/v1/traces", [{"trace_id": t, "feature": feature} for t in recent + unscored]
             + [{"trace_id": t, "feature": feature, "started_at": old} for t in older])  # fmt: skip
    rng = np.random.default_rng(21)
    passed = {t: int(rng.random() < 0.8) for t in recent + older}
    post_all(api_a, "/api/v1/scores", [{"score_id": unique("sc"), "trace_id": t, "name": judge, "value": v,
                                        "scale": "binary"} for t, v in passed.items()])  # fmt: skip
    labelled = recent[:60] + older[:5] + unscored
    uniform = {"design": "uniform", "inclusion_probability": 0.5}
    earlier, later = (now - timedelta(hours=2)).isoformat(), (now - timedelta(hours=1)).isoformat()
    first = [{"label_id": unique("lb"), "trace_id": t, "rubric": rubric, "value": passed.get(t, 1),
              "reviewer": "ann@example.test", "sampling": uniform, "occurred_at": earlier}
             for t in labelled]  # fmt: skip
    # A second reviewer disagrees with the judge on 30 of them: a tie, where the label given first stands (the later
    # one counted, whoever gave it); a third reviewer sides with the second on 10, a majority that counts.
    second = [{"label_id": unique("lb"), "trace_id": t, "rubric": rubric, "value": 1 - passed[t],
               "reviewer": "bob@example.test", "sampling": uniform, "occurred_at": later}
              for t in recent[:25] + older[:5]]  # fmt: skip
    third = [{**label, "label_id": unique("lb"), "reviewer": "cy@example.test"} for label in second[:10]]
    post_all(api_a, "/api/v1/labels", first + second + third)
    with in_tenant(org_a):
        targets = CalibrationTarget.objects.filter(judge_version__judge__name=judge, rubric__name=rubric)
        sweep_until(lambda: targets.filter(snapshots__isnull=False).exists())
        snapshot = CalibrationSnapshot.objects.filter(target=targets.get()).latest("computed_at")
    window = success_window(snapshot.computed_at)
    days = f"{window.first_day:%Y-%m-%d} to {window.last_day:%Y-%m-%d}"
    # The stored counts the page shows: the agreement's of all time, the success rate's of its days.
    assert (snapshot.n_labels, snapshot.n_scored) == (65, 120)
    assert snapshot.success is not None
    assert snapshot.success["estimate"]["method"] == "ppi++" and snapshot.success["estimate"]["n_labels"] == 60
    assert (snapshot.success["human"]["n"], snapshot.success["judge_uncorrected"]["n"]) == (62, 100)
    page = _owner(org_a).get(org_a.url(f"judges/{judge}/calibration/"))
    assert page.status_code == 200
    assert page.context["pairs_n"] == 65
    assert page.context["pair_counts"] == {"labels": 105, "several": 30, "before": 5, "after": 0}
    text = page.content.decode()
    assert _shown(text, "uncorrected-n") == (
        f"100 traces scored by v1, started {days} (UTC); 120 all time. "
        "Not a success rate: the judge's own bias is in it."
    )
    estimate = page.context["latest"].success["estimate"]
    assert _shown(text, "estimate-n") == (
        "60 human-labelled traces from the same days (the uniform audit's that v1 scored, of 62) are worth "
        f"{estimate['effective_labels']:,.0f} with the judge's scores"
    )
    assert _shown(text, "human-n") == "62 human-labelled traces from the same days"
    assert _shown(text, "pairs-note") == (
        "Agreement, confusion and disagreements below: 65 human-labelled traces scored by v1, all time; 5 of them "
        f"started before {window.first_day:%Y-%m-%d}, outside the days above. A trace counts once, with its reviewers' "
        "label (each reviewer's latest; where they differ, the one most hold, a tie to the first given) (105 labels on "
        "them: 30 traces labelled more than once)."
    )
    assert _shown(text, "plan-have") == "60"
    assert f'You have <span data-testid="plan-have">60</span> from {days}, as in the true success rate: ' in text
    # And whether that is enough (the card gave two numbers and left the sum to the reader).
    more = page.context["plan"]["with_judge"] - 60
    assert _shown(text, "plan-more") == (f"about {more:,} more to label" if more > 0 else "enough")
    # This judge's savings, beside the literature's (it said 1.3x-2x alone): planned at the rate in the interval
    # that needs the most labels (see labels_plan), what its scores save there.
    plan = page.context["plan"]
    if plan["savings"] is None:
        assert round(plan["alone"] / plan["with_judge"], 1) <= 1.0
        assert _shown(text, "plan-savings").startswith("a good judge typically saves 1.3× to 2×, not 10×")
    else:
        assert plan["savings"] == round(plan["alone"] / plan["with_judge"], 1) > 1.0
        assert _shown(text, "plan-savings").startswith(f"Here this judge's scores save {plan['savings']}× the labels")
    # The latest snapshot's row: the agreement's labelled traces, then the success rate's days and counts.
    success = snapshot.success
    rates = f"{success['estimate']['value']:.0%} {success['judge_uncorrected']['value']:.0%}"
    assert _shown(text, "history-row") == (
        f"{snapshot.computed_at:%Y-%m-%d %H:%M:%S} 65 {snapshot.verdict} {snapshot.verdict_low:.3f} "
        f"{days} 60 100 of 120 all time {rates}"
    )
    # The confusion matrix and the disagreements count the same 65 traces, each with its reviewers' label: the 10
    # where two reviewers of three disagree with the judge.
    confusion = page.context["report"]["agreement"]["confusion"]
    assert sum(map(sum, confusion)) == 65 and page.context["disagreements_total"] == 10


def test_relabel_and_widget_controls_show_only_to_roles_that_can_use_them(
    api_a: ApiClient, org_a: Org, committed_db: None
) -> None:
    """A viewer reads the disagreements without "mark good / mark bad" (a 403 for them) nor the widget
    mapping; a reviewer relabels; a PM also maps the widget feedback."""
    from tenants.services import member_ensure

    world, _, _ = _lenient_world(api_a, n=20, seed=8)
    with in_tenant(org_a):
        targets = CalibrationTarget.objects.filter(judge_version__judge__name=world.judge, rubric__name=world.rubric)
        sweep_until(lambda: targets.filter(snapshots__isnull=False).exists())
    url = org_a.url(f"judges/{world.judge}/calibration/")
    shown = {}
    for role in ("viewer", "reviewer", "pm"):
        member = member_ensure(
            organization=org_a.organization, email=f"{unique(role)}@a.test", password="x" * 12, role=role
        ).user
        client = Client()
        client.force_login(member)
        page = client.get(url)
        assert page.status_code == 200 and page.context["disagreements"], role
        text = page.content.decode()
        shown[role] = ("calibration/relabel/" in text and ">mark " in text, "calibration/widget/" in text)
    assert shown == {"viewer": (False, False), "reviewer": (True, False), "pm": (True, True)}
