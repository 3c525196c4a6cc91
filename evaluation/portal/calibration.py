"""The judge calibration page: how far a judge can be trusted against human labels, per rubric
version and feature. The headline (verdict, true success rate beside the judge's uncorrected pass
rate) and the verdict history come from the stored snapshots (evaluation.services.calibration_refresh);
the panels that need the labelled pairs (agreement, confusion, reliability, score distributions,
thresholds, disagreements) are computed from them on each view, which is cheap: pairs are the
labelled traces only. The headline polls, so a label batch shows within seconds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from django import forms
from django.contrib import messages
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

from evaluation.models import (
    CalibrationSnapshot,
    CalibrationTarget,
    Judge,
    Label,
    LabelSource,
    Rubric,
    RubricScale,
    WidgetLabelMap,
)
from evaluation.reports.calibrated import audit_drift, human_agreement, labels_plan, score_shift
from evaluation.reports.selectors import Window
from evaluation.selectors import TraceScope, judge_find, scoped_labels, scoped_scores
from evaluation.services.calibration import CalibrationError, calibration_parts
from evaluation.services.calibration_refresh import calibration_nudge
from evaluation.services.drift import drift_windows
from evaluation.services.labels import label_good
from evaluation.services.shared import utc_now
from evaluation.stats import threshold_guarantee
from tenants.access import Role, org_url, role_required

TARGETS = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)
HISTOGRAM_BINS = 10
MAX_DISAGREEMENTS = 100


@dataclass(frozen=True)
class Pair:
    trace_id: str
    human: float
    good: bool
    raw: float
    passed: bool
    design: str
    stratum: str
    inclusion_probability: float | None


def _judge_or_404(name: str) -> Judge:
    judge = judge_find(name)
    if judge is None:
        raise Http404("No such judge.")
    return judge


def _targets(judge: Judge) -> list[CalibrationTarget]:
    return list(
        CalibrationTarget.objects.filter(judge_version__judge=judge)
        .select_related("judge_version", "rubric", "feature")
        .order_by("-judge_version__number", "rubric__name", "-rubric__version", "feature__key")
    )


def _chosen(request: HttpRequest, targets: list[CalibrationTarget]) -> CalibrationTarget | None:
    wanted = request.GET.get("target", "")
    for target in targets:
        if str(target.id) == wanted:
            return target
    if wanted:
        raise Http404("No such calibration.")
    if not targets:
        return None
    newest = max(t.judge_version.number for t in targets)
    return next(t for t in targets if t.judge_version.number == newest)


def _pairs(target: CalibrationTarget) -> list[Pair]:
    scope = TraceScope(feature_id=target.feature_id)
    labels = scoped_labels(rubric=target.rubric, scope=scope)
    scores = {
        row.trace_id: row
        for row in scoped_scores(
            judge_version=target.judge_version, scope=scope, trace_ids=[row.trace_id for row in labels]
        )
    }
    return [
        Pair(
            label.trace_id,
            label.value,
            label_good(label.value, target.rubric.scale),
            scores[label.trace_id].raw_score,
            scores[label.trace_id].passed,
            label.design,
            label.stratum,
            label.inclusion_probability,
        )  # fmt: skip
        for label in labels
        if label.trace_id in scores
    ]


def _histograms(pairs: list[Pair]) -> dict[str, Any]:
    """Raw-score distributions of the traces humans called good and bad, on shared bins."""
    if not pairs:
        return {"bins": [], "good": [], "bad": [], "max": 0}
    raw = np.array([p.raw for p in pairs])
    distinct = np.unique(raw)
    if distinct.size <= 6:  # a binary or 1-5 judge: one row per score it gives
        rows = [(float(v), float(v), raw == v) for v in distinct]
    else:
        low, high = float(raw.min()), float(raw.max())
        edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
        index = np.clip(np.searchsorted(edges, raw, side="right") - 1, 0, HISTOGRAM_BINS - 1)
        rows = [(float(edges[i]), float(edges[i + 1]), index == i) for i in range(HISTOGRAM_BINS)]
    good_mask = np.array([p.good for p in pairs])
    counts = [(low, high, int(np.sum(m & good_mask)), int(np.sum(m & ~good_mask))) for low, high, m in rows]
    peak = max([max(g, b) for _, _, g, b in counts] + [1])
    bins = [
        {"low": low, "high": high, "single": low == high, "good": g, "bad": b,
         "good_pct": 100 * g / peak, "bad_pct": 100 * b / peak}
        for low, high, g, b in counts
    ]  # fmt: skip
    return {"bins": bins, "max": peak}


def _thresholds(pairs: list[Pair]) -> list[dict[str, Any]]:
    """The pass / fail thresholds each target precision can guarantee (fixed-sequence testing,
    one family per target), for the page's slider."""
    if len(pairs) < 2:
        return []
    raw = np.array([p.raw for p in pairs])
    good = np.array([int(p.good) for p in pairs])
    rows = []
    for target in TARGETS:
        guarantee = threshold_guarantee(raw, good, target_precision=target).as_dict()
        pass_at, fail_at = guarantee["pass_at"], guarantee["fail_at"]
        # Between the two thresholds; a side with no threshold decides nothing, so its scores go to a person.
        decided = np.zeros(raw.shape, dtype=bool)
        if pass_at is not None:
            decided |= raw >= pass_at
        if fail_at is not None:
            decided |= raw <= fail_at
        to_human = int(np.sum(~decided))
        # A threshold that takes every labelled trace decides nothing a judge is needed for: the labels'
        # own share meets the target (the page says so rather than offer it as a judge's threshold).
        everything = {
            "pass_all": pass_at is not None and pass_at <= float(raw.min()),
            "fail_all": fail_at is not None and fail_at >= float(raw.max()),
        }
        rows.append({**guarantee, **everything, "to_human": to_human, "n": len(pairs)})
    return rows


def _reliability_svg(report: dict[str, Any]) -> list[dict[str, float]]:
    """Points of the reliability diagram in a 0-100 box (x predicted, y observed, r by count)."""
    bins = ((report.get("calibration") or {}).get("reliability")) or []
    total = sum(b["n"] for b in bins) or 1
    return [
        {"x": 100 * b["mean_predicted"], "y": 100 - 100 * b["observed"], "r": 1.5 + 6 * (b["n"] / total) ** 0.5,
         "n": b["n"], "predicted": b["mean_predicted"], "observed": b["observed"]}
        for b in bins
    ]  # fmt: skip


_WIDGET_AGREEMENT = """
SELECT count(*), count(*) FILTER (WHERE (w.value >= %(good_at)s) = s.passed), avg((w.value >= %(good_at)s)::int)
FROM (
    SELECT DISTINCT ON (trace_id) trace_id, value FROM evaluation_label
    WHERE rubric_id = %(rubric)s AND source = 'widget' AND value IS NOT NULL
    ORDER BY trace_id, occurred_at DESC, id DESC
) w
JOIN (
    SELECT DISTINCT ON (trace_id) trace_id, passed FROM evaluation_score
    WHERE judge_version_id = %(version)s AND status = 'ok' AND passed IS NOT NULL
    ORDER BY trace_id, run_index, id
) s USING (trace_id)
WHERE %(feature)s::bigint IS NULL
    OR EXISTS (SELECT 1 FROM feedback_trace t WHERE t.trace_id = w.trace_id AND t.feature_id = %(feature)s)
"""


def _widget(target: CalibrationTarget) -> dict[str, Any]:
    """Widget feedback mapped onto the rubric, beside the judge: never part of the report above."""
    mapping = WidgetLabelMap.objects.filter(rubric=target.rubric, feature=target.feature).first()
    good_at = {"binary": 1.0, "ordinal": 4.0, "continuous": 0.5}.get(target.rubric.scale, 1.0)
    with connection.cursor() as cursor:
        cursor.execute(
            _WIDGET_AGREEMENT,
            {"good_at": good_at, "rubric": target.rubric_id, "version": target.judge_version_id,
             "feature": target.feature_id},
        )  # fmt: skip
        n, agree, good_share = cursor.fetchone()
    return {"map": mapping, "n": n, "agreement": agree / n if n else None, "good_share": good_share}


def _success_window(snapshot: CalibrationSnapshot | None) -> Window | None:
    """The days a snapshot's success rate covers (30 UTC days to the day it was computed): the
    headline's counts are of these days, the agreement's of all time."""
    window = (snapshot.success or {}).get("window") if snapshot is not None else None
    if not window:
        return None
    return Window(datetime.fromisoformat(window["since"]), datetime.fromisoformat(window["until"]))


# What the page's one-label-per-trace counts leave out: the label rows on the paired traces (a
# second reviewer's label, a relabel), and the paired traces outside the success rate's days.
_PAIR_COUNTS = """
SELECT
    (SELECT count(*) FROM evaluation_label l
     WHERE l.rubric_id = %(rubric)s AND l.source IN ('api', 'queue') AND l.value IS NOT NULL
         AND l.trace_id = ANY(%(traces)s)),
    (SELECT count(*) FROM (
        SELECT 1 FROM evaluation_label l
        WHERE l.rubric_id = %(rubric)s AND l.source IN ('api', 'queue') AND l.value IS NOT NULL
            AND l.trace_id = ANY(%(traces)s)
        GROUP BY l.trace_id HAVING count(*) > 1
    ) several),
    (SELECT count(*) FROM feedback_trace t WHERE t.trace_id = ANY(%(traces)s) AND t.started_at < %(since)s),
    (SELECT count(*) FROM feedback_trace t WHERE t.trace_id = ANY(%(traces)s) AND t.started_at >= %(until)s)
"""


def _pair_counts(target: CalibrationTarget, pairs: list[Pair], window: Window | None) -> dict[str, int]:
    """How the labelled traces the agreement counts (one per trace: models.trace_labels_sql) relate to the
    labels on them and to the success rate's days."""
    with connection.cursor() as cursor:
        cursor.execute(
            _PAIR_COUNTS,
            {"rubric": target.rubric_id, "traces": [p.trace_id for p in pairs],
             "since": window.since if window else None, "until": window.until if window else None},
        )  # fmt: skip
        labels, several, before, after = cursor.fetchone()
    return {"labels": labels, "several": several, "before": before, "after": after}


def _context(request: HttpRequest, judge: Judge) -> dict[str, Any]:
    targets = _targets(judge)
    target = _chosen(request, targets)
    membership = getattr(request, "membership", None)
    context: dict[str, Any] = {
        "nav": "judges", "judge": judge, "targets": targets, "target": target,
        # Only the controls the role can use: relabelling is a reviewer's, the widget mapping a PM's.
        "can_relabel": membership is not None and membership.at_least(Role.REVIEWER),
        "can_edit": membership is not None and membership.at_least(Role.PM),
    }  # fmt: skip
    if target is None:
        return context
    snapshots = list(CalibrationSnapshot.objects.filter(target=target).order_by("-computed_at", "-id")[:30])
    latest = snapshots[0] if snapshots else None
    pairs = _pairs(target)
    report: dict[str, Any] = {}
    error = ""
    if target.rubric.scale in (RubricScale.CATEGORICAL, "free_text"):
        error = f"{target.rubric.name} is {target.rubric.scale}: it has no good / bad to agree with."
    else:
        try:
            report = calibration_parts(
                judge=judge, judge_version=target.judge_version, rubric=target.rubric,
                scope=TraceScope(feature_id=target.feature_id),
                feature=target.feature.key if target.feature else None,
            )[0]  # fmt: skip
        except CalibrationError as exc:
            error = exc.message
    disagreements = [p for p in pairs if p.good != p.passed][:MAX_DISAGREEMENTS]
    window = _success_window(latest)
    context.update(
        latest=latest,
        window=window,
        pair_counts=_pair_counts(target, pairs, window),
        history=[(snapshot, _success_window(snapshot)) for snapshot in snapshots],
        report=report,
        error=error,
        pairs_n=len(pairs),
        disagreements=disagreements,
        disagreements_total=sum(1 for p in pairs if p.good != p.passed),
        histograms=_histograms(pairs),
        thresholds=_thresholds(pairs),
        thresholds_data=_thresholds_for_js(pairs),
        reliability=_reliability_svg(report),
        widget=_widget(target),
        humans=human_agreement(rubric=target.rubric, feature_id=target.feature_id),
        drift=audit_drift(target=target),
        score_shift=_score_shift(target),
        plan=labels_plan(success=latest.success if latest else None),
        newer_rubric=Rubric.objects.filter(name=target.rubric.name, version__gt=target.rubric.version).exists(),
    )
    return context


def _score_shift(target: CalibrationTarget) -> dict[str, Any]:
    """The judge's scores on all its traffic, the drift page's windows (the last 7 days against the 14 ending a week
    before them)."""
    baseline, current = drift_windows()
    return score_shift(
        target=target,
        baseline=(baseline.first_day, baseline.last_day),
        current=(current.first_day, current.last_day),
    )


def _thresholds_for_js(pairs: list[Pair]) -> list[dict[str, Any]]:
    return [{k: row[k] for k in ("target_precision", "pass_at", "guaranteed_precision_low", "fail_at",
                                 "guaranteed_npv_low", "pass_all", "fail_all", "to_human", "n")}
            for row in _thresholds(pairs)]  # fmt: skip


def judge_calibration(request: HttpRequest, name: str) -> HttpResponse:
    judge = _judge_or_404(name)
    context = _context(request, judge)
    template = "evaluation/calibration.html"
    if request.htmx:  # type: ignore[attr-defined]
        template += "#headline"
    return TemplateResponse(request, template, context)


class RelabelForm(forms.Form):
    target = forms.IntegerField()
    trace_id = forms.CharField(max_length=200)
    value = forms.FloatField()


@require_POST
@role_required(Role.REVIEWER)
def judge_relabel(request: HttpRequest, name: str) -> HttpResponse:
    """A corrected verdict on a disagreement: a new label of the same rubric version that keeps the
    original label's source, sampling design, stratum and inclusion probability (a correction of
    the same sampled item, so the estimate's design is unchanged). It is one reviewer's label among the trace's
    (models.trace_labels_sql): it replaces the reviewer's own, and overturns another's only with a majority."""
    judge = _judge_or_404(name)
    form = RelabelForm(request.POST)
    if not form.is_valid():
        raise Http404("No such label.")
    target = CalibrationTarget.objects.filter(id=form.cleaned_data["target"], judge_version__judge=judge).first()
    if target is None:
        raise Http404("No such calibration.")
    previous = (
        Label.objects.filter(
            rubric=target.rubric,
            trace_id=form.cleaned_data["trace_id"],
            source__in=[LabelSource.API, LabelSource.QUEUE],
        )
        .order_by("-occurred_at", "-id")
        .first()
    )
    if previous is None:
        raise Http404("No such label.")
    value = form.cleaned_data["value"]
    if value not in (0.0, 1.0) and target.rubric.scale == RubricScale.BINARY:
        messages.error(request, "A binary rubric takes 1 (good) or 0 (bad).")
    else:
        now = utc_now()
        label_reviewer = str(getattr(request.user, "email", ""))
        Label.objects.create(
            label_id=f"relabel:{previous.label_id}:{int(now.timestamp() * 1000)}", trace_id=previous.trace_id,
            rubric=target.rubric, value=value, reviewer=label_reviewer,
            source=previous.source, sampling_design=previous.sampling_design, stratum=previous.stratum,
            inclusion_probability=previous.inclusion_probability, comment="relabelled from the calibration page",
            occurred_at=now, created_at=now,
        )  # fmt: skip
        calibration_nudge()
        others = (
            Label.objects.filter(rubric=target.rubric, trace_id=previous.trace_id, source__in=[LabelSource.API,
                                 LabelSource.QUEUE]).exclude(reviewer=label_reviewer).values("reviewer").distinct().count()
        )  # fmt: skip
        if others:
            messages.success(request, f"Your label on {previous.trace_id} is recorded beside {others} other "
                             f"reviewer{'s' if others > 1 else ''}': it counts where it makes a majority (a tie keeps "
                             "the label given first), so one person cannot overturn another's blind label. The report "
                             "refreshes in a few seconds.")  # fmt: skip
        else:
            messages.success(request, f"Relabelled {previous.trace_id}: the report refreshes in a few seconds.")
    url = org_url(request, "evaluation:judge-calibration", judge.name)
    return redirect(f"{url}?target={target.id}#disagreements")


@require_POST
@role_required(Role.PM)
def judge_widget_map(request: HttpRequest, name: str) -> HttpResponse:
    """Copy (or stop copying) the feature's widget thumbs and ratings onto the target's rubric."""
    judge = _judge_or_404(name)
    wanted = request.POST.get("target", "").strip()
    target = (
        CalibrationTarget.objects.filter(id=int(wanted), judge_version__judge=judge).first()
        if wanted.isascii() and wanted.isdigit() and len(wanted) < 18
        else None
    )
    if target is None:
        raise Http404("No such calibration.")
    thumbs, ratings = request.POST.get("thumbs") == "on", request.POST.get("ratings") == "on"
    if thumbs or ratings:
        WidgetLabelMap.objects.update_or_create(
            rubric=target.rubric, feature=target.feature, defaults={"thumbs": thumbs, "ratings": ratings}
        )
        calibration_nudge()
        messages.success(request, "Widget feedback will be copied onto this rubric as widget labels within seconds.")
    else:
        WidgetLabelMap.objects.filter(rubric=target.rubric, feature=target.feature).delete()
        messages.success(request, "Widget feedback is no longer copied onto this rubric (labels already copied stay).")
    url = org_url(request, "evaluation:judge-calibration", judge.name)
    return redirect(f"{url}?target={target.id}#widget")


urlpatterns: list[URLPattern] = [
    path("judges/<str:name>/calibration/", judge_calibration, name="judge-calibration"),
    path("judges/<str:name>/calibration/relabel/", judge_relabel, name="judge-relabel"),
    path("judges/<str:name>/calibration/widget/", judge_widget_map, name="judge-widget-map"),
]
