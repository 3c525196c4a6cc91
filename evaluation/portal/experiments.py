"""Portal pages of experiments, drift, alerts and the weekly digest preview. Thin: the services in
evaluation.services.{experiments,drift,alerts,digest} do the work."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

from evaluation.models import (
    Alert,
    AlertMetric,
    AlertRule,
    AlertState,
    Experiment,
    NotificationChannel,
    PrimaryMetric,
)
from evaluation.portal.reports import segment_links, segment_parts
from evaluation.reports.calibrated import gating_calibration
from evaluation.reports.selectors import MAX_WINDOW_DAYS, ReportError, Window, feature_get, features_list
from evaluation.services import alerts as alert_services
from evaluation.services import drift as drift_services
from evaluation.services.digest import digest_build, digest_render
from evaluation.services.experiments import (
    ExperimentError,
    experiment_create,
    experiment_get,
    experiment_results,
    experiment_stop,
    experiments_list,
    planner,
)
from tenants.access import org_url, role_required


def _experiment(key: str) -> Experiment:
    try:
        return experiment_get(key)
    except ExperimentError:
        raise Http404("No such experiment.") from None


def _number(text: str, field: str, kind: type[float] | type[int] = float) -> Any:
    """A form's number, or a ValueError naming the field and what it takes."""
    if not text.strip():
        raise ValueError(f"{field}: required, {'a whole number' if kind is int else 'a number'}")
    try:
        value = kind(text.strip())
    except (ValueError, OverflowError):
        raise ValueError(f"{field}: {'a whole number' if kind is int else 'a number'}, not '{text[:40]}'") from None
    if kind is float and not math.isfinite(value):
        raise ValueError(f"{field}: a finite number")
    return value


def _plan(query: Any) -> dict[str, Any]:
    try:
        baseline = _number(query["baseline"], "Control rate")
        mde = _number(query.get("mde", ""), "Minimum detectable effect")
        arms = _number(query.get("arms", "2"), "Arms", int)
        if not 0 < baseline < 1:
            raise ValueError("Control rate: a rate between 0 and 1, e.g. 0.5")
        if mde <= 0:
            raise ValueError("Minimum detectable effect: above 0, e.g. 0.03 for three points")
        if not 2 <= arms <= 10:
            raise ValueError("Arms: 2 to 10")
        if baseline + mde >= 1:  # the planner's own words ("baseline + mde") name no field of this form
            raise ValueError(
                f"Minimum detectable effect: below {1 - baseline:g} with a control rate of {baseline:g} "
                f"(the control rate plus the effect must stay under 1, not {baseline + mde:g})"
            )
        try:
            per_arm = planner(baseline=baseline, mde=mde, arms=arms)
        except ValueError as exc:  # left: an effect too small to detect with any realistic sample
            raise ValueError(f"Minimum detectable effect: {exc}") from None
    except ValueError as exc:
        return {"error": f"Planner: {exc}", "baseline": query.get("baseline"), "mde": query.get("mde"),
                "arms": query.get("arms")}  # fmt: skip
    return {"per_arm": per_arm, "baseline": baseline, "mde": mde, "arms": arms}


def _experiments_context(request: HttpRequest) -> dict[str, Any]:
    return {
        "nav": "experiments",
        "experiments": experiments_list(),
        "features": features_list(),
        "metrics": PrimaryMetric.choices,
        "plan": _plan(request.GET) if "baseline" in request.GET else None,
    }


# The new-experiment form's fields by their labels on the page: a refusal names the field the person sees.
_EXPERIMENT_LABELS = {
    "key": "Key",
    "name": "Name",
    "feature": "Feature",
    "arms": "Arms",
    "control": "Control",
    "primary_metric": "Primary metric",
    "mde": "Minimum detectable effect",
    "max_days": "Stop after (days)",
    "hypothesis": "Hypothesis",
}


def experiments_page(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(request, "evaluation/experiments.html", _experiments_context(request))


@require_POST
@role_required("pm")
def experiment_new(request: HttpRequest) -> HttpResponse:
    post = request.POST
    arms = []
    for part in post.get("arms", "").split(","):
        bits = part.strip().split(":")
        if not bits[0]:
            continue
        try:
            allocation = float(bits[1]) if len(bits) > 1 and bits[1] else 0.0
        except ValueError:
            allocation = -1.0
        arms.append(
            {"name": bits[0].strip(), "allocation": allocation, "holdback": bits[0].strip() == post.get("holdback")}
        )
    try:
        mde = _number(post.get("mde", ""), "Minimum detectable effect")
        max_days = _number(post["max_days"], "Stop after (days)", int) if post.get("max_days", "").strip() else None
        experiment = experiment_create(
            key=post.get("key", "").strip(),
            feature_key=post.get("feature", ""),
            arms=arms,
            control=post.get("control", "").strip(),
            mde=mde,
            primary_metric=post.get("primary_metric", "success"),
            max_days=max_days,
            name=post.get("name", "").strip(),
            hypothesis=post.get("hypothesis", "").strip(),
        )
    except ExperimentError as exc:
        problem = f"{_EXPERIMENT_LABELS.get(exc.field, exc.field.replace('_', ' ').capitalize())}: {exc.message}"
    except ValueError as exc:  # a number that did not parse: _number names the field
        problem = str(exc)
    else:
        messages.success(request, f"Experiment {experiment.key} is running.")
        return redirect(org_url(request, "evaluation:experiment-detail", experiment.key))
    # The form again, as it was filled in, with what to change: a redirect lost every field.
    context = _experiments_context(request) | {"new": post, "new_error": f"Experiment not created. {problem}."}
    return TemplateResponse(request, "evaluation/experiments.html", context, status=400)


def experiment_page(request: HttpRequest, key: str) -> HttpResponse:
    experiment = _experiment(key)
    feature = experiment.feature
    # Where the verdict leads on: the feature page by arm over the experiment's days (at most a report window),
    # its drift and the alerts open on it (a segment regressing while an arm ships).
    until = (experiment.ended_at or datetime.now(UTC)).date() + timedelta(days=1)
    since = max(experiment.started_at.date(), until - timedelta(days=MAX_WINDOW_DAYS))
    by_arm = urlencode({"group_by": "variant", "since": since.isoformat(), "until": until.isoformat()})
    results = experiment_results(experiment)
    window = Window(*(datetime.combine(day, time(0), UTC) for day in (since, until)))
    # Each segment row leads to its traces over the experiment's days, and to the feature page grouped by its key.
    for row in (results.get("segments") or {}).get("rows", []):
        row["links"] = segment_links(request, feature_key=feature.key, parts=segment_parts(row["segment"]),
                                     window=window)  # fmt: skip
    return TemplateResponse(
        request,
        "evaluation/experiment_detail.html",
        {
            "nav": "experiments",
            "experiment": experiment,
            "r": results,
            "feature_url": f"{org_url(request, 'evaluation:feature', feature.key)}?{by_arm}",
            # The feature page leaves holdback traces out of its figures (they are not the AI's): its rows by arm hold
            # the AI arms alone, and the link says so rather than lead to one arm of two.
            "holdback_arms": [arm["name"] for arm in experiment.arms if arm.get("holdback")],
            "drift_url": org_url(request, "evaluation:drift", feature.key),
            "open_alerts": alert_services.open_alerts_by_feature().get(feature.key, []),
        },
    )


@require_POST
@role_required("pm")
def experiment_stop_view(request: HttpRequest, key: str) -> HttpResponse:
    experiment_stop(experiment=_experiment(key))
    messages.success(request, "Experiment stopped.")
    return redirect(org_url(request, "evaluation:experiment-detail", key))


# --- drift ---------------------------------------------------------------------------------------------


def drift_index(request: HttpRequest) -> HttpResponse:
    rows = drift_services.drift_summaries()
    return TemplateResponse(request, "evaluation/drift_index.html", {"nav": "drift", "rows": rows})


# The drift form's fields: their labels on the page, and their ranges (drift_services.drift_windows').
_DRIFT_FIELDS = {
    "days": ("Current window", (1, 90)),
    "baseline_days": ("Baseline window", (1, 180)),
    "gap_days": ("Days between them", (0, 180)),
}


def drift_page(request: HttpRequest, key: str) -> HttpResponse:
    """By default today's snapshot (default windows, stored once a day; "Recompute" posts here for a
    fresh one); windows of one's own are computed on the spot."""
    try:
        feature = feature_get(key)
    except ReportError:
        raise Http404("No such feature.") from None
    errors: list[str] = []
    params = dict(drift_services.DEFAULTS)
    typed: dict[str, object] = dict(params)  # what the form shows back: the person's own input, even when wrong
    for name, (label, bounds) in _DRIFT_FIELDS.items():
        raw = request.GET.get(name, "").strip()
        if not raw:
            continue
        typed[name] = raw[:20]
        if raw.isdigit() and len(raw) < 4 and bounds[0] <= int(raw) <= bounds[1]:
            params[name] = int(raw)
        else:
            errors.append(f"{label}: a whole number of days, {bounds[0]} to {bounds[1]} (not {raw[:20]!r})")
    if errors:  # never results for windows nobody asked for, silently: today's default comparison, said so
        params = dict(drift_services.DEFAULTS)
        errors.append("Showing the default comparison instead: the last 7 days against the 14 ending 7 days before.")
    baseline, current = drift_services.drift_windows(
        days=params["days"], baseline_days=params["baseline_days"], gap_days=params["gap_days"]
    )
    error = " ".join(errors) or None
    as_of = None
    if params == drift_services.DEFAULTS:  # asked for, or what a bad window falls back to
        result = drift_services.drift_snapshot_today(feature=feature).result
        as_of = datetime.fromisoformat(result["computed_at"])
    else:
        result = drift_services.feature_drift(feature=feature, baseline=baseline, current=current)
    # Each ranked segment leads on (_drift_segment); both windows as one, at most a report's.
    both = Window(max(baseline.since, current.until - timedelta(days=MAX_WINDOW_DAYS)), current.until)
    rates = [
        {**rate, "money": rate["metric"].endswith("_usd"),
         "segments": [_drift_segment(request, feature.key, s, baseline, current, both, rate["segments"])
                      for s in rate["segments"]]}
        for rate in result["rates"]
    ]  # fmt: skip
    return TemplateResponse(
        request,
        "evaluation/drift.html",
        {
            "nav": "drift",
            "feature": feature,
            "d": {**result, "rates": rates},
            "params": typed if errors else params,
            "error": error,
            "baseline": baseline,
            "current": current,
            "as_of": as_of,
            # The feature's reports read success from a gating judge when one exists (a snapshot taken before drift
            # read it too says outcomes).
            "report_source": "calibrated_judge" if gating_calibration(feature) is not None else None,
        },
    )


# Fewer traces than this on a side: no rate of the segment's own there (the page says new, few or gone).
THIN_COUNT = 30


def _drift_segment(
    request: HttpRequest,
    key: str,
    segment: dict[str, Any],
    baseline: Window,
    current: Window,
    both: Window,
    ranked: list[dict[str, Any]],
) -> dict[str, Any]:
    """A ranked drift segment with where it leads: its traces in the current window, or the baseline's when it has
    none now (``gone``: a retired version), and the feature page grouped by its keys over both windows.

    ``new``: too few traces before for a rate of its own, so its push is not split into mix and rate (PM review:
    SSO on a new v2.3 read "mix -0.068, rate +0.014", as if its own rate had improved, from 10 stray traces). A new
    segment that narrows a broader one is compared with that one's rate before (``parent_before``): SSO on v2.3
    now against SSO before."""
    before, now = segment.get("baseline_count"), segment.get("current_count")
    gone = now is not None and now < 1
    new = before is not None and before < THIN_COUNT
    parts = [(p["dimension"], p["value"]) for p in segment["parts"]]
    links = segment_links(request, feature_key=key, parts=parts, window=baseline if gone else current,
                          group_window=both)  # fmt: skip
    parent_before = None
    if new and segment.get("refines"):
        parent = next((s for s in ranked if s["segment"] == segment["refines"]), None)
        if parent is not None and (parent.get("baseline_count") or 0) >= THIN_COUNT:
            parent_before = parent.get("baseline_rate")
    thin_now = now is not None and now < THIN_COUNT
    return {**segment, "gone": gone, "new": new, "thin_now": thin_now, "parent_before": parent_before, **links}


@require_POST
@role_required("pm")
def drift_recompute(request: HttpRequest, key: str) -> HttpResponse:
    """Today's snapshot again, with the traces since the last one (at most once a minute: seconds of
    aggregation on a busy feature)."""
    try:
        feature = feature_get(key)
    except ReportError:
        raise Http404("No such feature.") from None
    drift_services.drift_snapshot_today(feature=feature, refresh=True)
    return redirect(org_url(request, "evaluation:drift", feature.key))


# --- alerts --------------------------------------------------------------------------------------------


def alerts_page(request: HttpRequest, *, rule_error: str = "", status: int = 200) -> HttpResponse:
    return TemplateResponse(
        request,
        "evaluation/alerts.html",
        {
            "nav": "alerts",
            "alerts": alert_services.alerts_history(state=request.GET.get("state", "")),
            "state": request.GET.get("state", ""),
            "rules": AlertRule.objects.select_related("feature").order_by("feature__key", "name"),
            "channels": NotificationChannel.objects.all(),
            "metrics": AlertMetric.choices,
            "features": features_list(),
            "new_secret": request.session.pop("candor_webhook_secret", None),
            # A rule refused: the form again as it was sent, with what was wrong beside it.
            "rule_error": rule_error,
            "rule_form": request.POST if rule_error else {},
            # The feature a new rule is for: the one sent (a refused rule), or the one the page was opened for.
            "rule_feature": (request.POST if rule_error else request.GET).get("feature", ""),
        },
        status=status,
    )


def _alert_window(alert: Alert) -> Window:
    """The rule's current window at the alert's latest reading: an open alert was last read at the rule's last
    evaluation; a resolved one, when it last fired."""
    rule, read_at = alert.rule, alert.last_fired_at
    if alert.state == AlertState.OPEN and rule.last_evaluated_at and rule.last_evaluated_at > read_at:
        read_at = rule.last_evaluated_at
    return alert_services.rule_window(rule, read_at)


def alert_page(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = alert_services.alert_get(alert_id)
    if alert is None:
        raise Http404("No such alert.")
    opened_level = alert_services.level_text(alert.rule.metric, alert.opened_baseline)
    window = _alert_window(alert)
    # The segment's traces in that window, and the feature page grouped by the segment's key ("" = the feature).
    links = segment_links(
        request,
        feature_key=alert.rule.feature.key,
        parts=segment_parts(alert.segment) if alert.segment else [],
        window=window,
    )
    # What the drift view finds behind it (PM review: the alert named metadata.auth=sso and left the prompt version
    # that broke it to a click into drift): the feature's likely cause over the rule's window, with its traces.
    feature_key = alert.rule.feature.key
    cause = drift_services.likely_causes([feature_key], first_day=window.first_day, last_day=window.last_day).get(
        feature_key
    )
    if cause is not None:
        cause_parts = segment_parts(cause["segment"])
        cause = {
            **cause,
            **segment_links(request, feature_key=feature_key, parts=cause_parts, window=window),
            # The cause lies inside the alert's segment (SSO on v2.3 within SSO): it names what broke there.
            "narrows": bool(alert.segment) and set(segment_parts(alert.segment)) <= set(cause_parts),
        }
    return TemplateResponse(
        request,
        "evaluation/alert_detail.html",
        {
            "nav": "alerts",
            "alert": alert,
            "opened_level": opened_level if alert.opened_baseline is not None else "",
            "window": window,
            "traces_url": links["traces"],
            "groupings": links["groupings"],
            "held_open": alert.state == AlertState.OPEN and alert_services.HELD_OPEN in alert.message,
            "cause": cause,
        },
    )


@require_POST
@role_required("pm")
def alert_resolve(request: HttpRequest, alert_id: int) -> HttpResponse:
    """Resolve an open alert by hand (a known change, or a fix the data has yet to show), with a note."""
    by = getattr(request.user, "email", "") or str(request.user)
    alert, resolved = alert_services.alert_resolve(alert_id=alert_id, by=by, note=request.POST.get("note", ""))
    if alert is None:
        raise Http404("No such alert.")
    if resolved:
        told = alert.deliveries.filter(event="resolved").exists()
        messages.success(request, "Alert resolved." + (" Its channels are told." if told else ""))
    else:
        messages.info(request, "This alert was already resolved.")
    return redirect(org_url(request, "evaluation:alert-detail", alert.id))


# The rule form's fields by their labels on the page: a refusal names the field the person sees.
_RULE_LABELS = {
    "feature": "Feature",
    "name": "Name",
    "metric": "Metric",
    "threshold": "Change",
    "window_hours": "Window (hours)",
    "baseline_days": "Baseline (days)",
    "min_count": "Minimum count",
}


@require_POST
@role_required("pm")
def alert_rule_new(request: HttpRequest) -> HttpResponse:
    post = request.POST
    numbers: dict[str, float] = {}
    for field, kind, default in (
        ("threshold", float, ""),
        ("window_hours", int, "24"),
        ("baseline_days", int, "7"),
        ("min_count", int, "20"),
    ):
        text = post.get(field, default).strip()
        try:
            numbers[field] = kind(text)
        except ValueError:
            what = "a number such as 0.5 (+50%)" if kind is float else "a whole number"
            return alerts_page(request, rule_error=f"{_RULE_LABELS[field]}: '{text[:40]}' is not {what}.", status=400)
    try:
        feature = feature_get(post.get("feature", ""))
        alert_services.alert_rule_create(
            feature=feature,
            name=post.get("name", ""),
            metric=post.get("metric", ""),
            threshold=numbers["threshold"],
            window_hours=int(numbers["window_hours"]),
            baseline_days=int(numbers["baseline_days"]),
            min_count=int(numbers["min_count"]),
        )
    except (alert_services.AlertError, ReportError) as exc:
        field = "feature" if isinstance(exc, ReportError) else exc.field  # feature_get names its parameter "key"
        label = _RULE_LABELS.get(field, field.replace("_", " ").capitalize())
        return alerts_page(request, rule_error=f"{label}: {exc.message}.", status=400)
    messages.success(request, "Rule saved; the next evaluation (every 5 minutes) applies it.")
    return redirect(org_url(request, "evaluation:alerts"))


@require_POST
@role_required("pm")
def alert_rule_toggle(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = AlertRule.objects.filter(id=rule_id).first()
    if rule is None:
        raise Http404("No such rule.")
    by = getattr(request.user, "email", "") or str(request.user)
    alert_services.alert_rule_toggle(rule=rule, enabled=not rule.enabled, by=by)
    return redirect(org_url(request, "evaluation:alerts"))


@require_POST
@role_required("admin")
def channel_new(request: HttpRequest) -> HttpResponse:
    post = request.POST
    try:
        _, secret = alert_services.channel_create(
            kind=post.get("kind", ""),
            name=post.get("name", ""),
            url=post.get("url", "").strip(),
            email=post.get("email", "").strip(),
        )
    except ValueError as exc:
        messages.error(request, f"Channel not saved: {getattr(exc, 'message', exc)}.")
    else:
        if secret:
            request.session["candor_webhook_secret"] = secret
        messages.success(request, "Channel saved.")
    return redirect(org_url(request, "evaluation:alerts"))


# --- digest --------------------------------------------------------------------------------------------


def digest_page(request: HttpRequest) -> HttpResponse:
    subject, text, html = digest_render(digest_build(), base_url=request.build_absolute_uri("/").rstrip("/"))
    return TemplateResponse(
        request,
        "evaluation/digest_preview.html",
        {"nav": "digest", "subject": subject, "text": text, "html": html, "monday": datetime.now(UTC).weekday() == 0},
    )


urlpatterns: list[URLPattern] = [
    path("experiments/", experiments_page, name="experiment-list"),
    path("experiments/new", experiment_new, name="experiment-new"),
    path("experiments/<str:key>/", experiment_page, name="experiment-detail"),
    path("experiments/<str:key>/stop", experiment_stop_view, name="experiment-stop"),
    path("drift/", drift_index, name="drift-index"),
    path("drift/<path:key>/recompute", drift_recompute, name="drift-recompute"),
    path("drift/<path:key>/", drift_page, name="drift"),
    path("alerts/", alerts_page, name="alerts"),
    path("alerts/<int:alert_id>/", alert_page, name="alert-detail"),
    path("alerts/<int:alert_id>/resolve", alert_resolve, name="alert-resolve"),
    path("alerts/rules/new", alert_rule_new, name="alert-rule-new"),
    path("alerts/rules/<int:rule_id>/toggle", alert_rule_toggle, name="alert-rule-toggle"),
    path("alerts/channels/new", channel_new, name="alert-channel-new"),
    path("digest/", digest_page, name="digest"),
]
