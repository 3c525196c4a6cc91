"""Portal pages of evaluation's reports: the overview (the portal's home), a feature's page with
charts and CSV export, and customers. Thin: evaluation.reports.selectors does the reads."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

from evaluation.reports.calibrated import feature_calibrations
from evaluation.reports.selectors import (
    DEFAULT_WINDOW_DAYS,
    MAX_WINDOW_DAYS,
    METADATA_KEY,
    Grouping,
    ReportError,
    Window,
    customers_report,
    feature_get,
    feature_page,
    feature_report,
    overview,
    report_csv_rows,
    window_from,
)
from evaluation.reports.signals import signal_report
from evaluation.services.alerts import open_alerts_by_feature
from evaluation.services.drift import likely_causes
from feedback import services
from feedback.selectors import widget_rejections
from tenants.access import org_url, role_required

WINDOWS = (7, 30, 90)


def _window(request: HttpRequest) -> tuple[Window, str | None]:
    """The window from ?days= or ?since=&until=, or the page's form's ?since=&through= (through: a day, included,
    as the trace explorer's Until: a PM picking one day asked for since >= until, a 400 and 30 days shown);
    a bad one falls back to 30 days with a message."""
    try:
        typed = request.GET.get("days", "").strip()
        if typed:
            base = window_from()
            # "-3" or "abc" fell through to the default window without a word: said, as 0 or 99999 are.
            days = int(typed) if typed.isdigit() else 0
            if not 1 <= days <= MAX_WINDOW_DAYS:
                raise ReportError("days", f"a window is 1 to {MAX_WINDOW_DAYS} days, not {typed[:20]!r}")
            return Window(base.until - timedelta(days=days), base.until), None
        until = request.GET.get("until", "")
        through = request.GET.get("through", "").strip()
        if through:
            try:
                last = date.fromisoformat(through)
                until = (last + timedelta(days=1)).isoformat()
            except (ValueError, OverflowError):
                raise ReportError("through", "use a day (2025-01-31): the last day the report includes") from None
            since = request.GET.get("since", "")
            if since[:10] > last.isoformat():
                raise ReportError("through", "through must be on or after since")
        return window_from(request.GET.get("since", ""), until), None
    except (ReportError, OverflowError) as exc:
        return window_from(), f"{exc}; showing the last {DEFAULT_WINDOW_DAYS} days instead"


def _feature(key: str) -> Any:
    try:
        return feature_get(key)
    except ReportError:
        raise Http404("No such feature.") from None


def overview_page(request: HttpRequest) -> HttpResponse:
    window, error = _window(request)
    features = overview(window=window)
    # Where a feature broke, from its latest drift snapshot in the window: the segment the drift page ranks first
    # (or the one whose own rate fell while the feature's held), so a drop points somewhere.
    causes = likely_causes([f["key"] for f in features], first_day=window.first_day, last_day=window.last_day)
    open_alerts = open_alerts_by_feature()
    for f in features:
        f["cause"] = causes.get(f["key"])
        f["open_alerts"] = open_alerts.get(f["key"], [])
    # Open alerts first (a regression the rules have caught), then clear moves, then traffic.
    features.sort(key=lambda f: (-len(f["open_alerts"]), -f["attention"], -f["figures"]["traces"]))
    return TemplateResponse(
        request,
        "evaluation/overview.html",
        {
            "nav": "overview",
            "features": features,
            "window": window,
            "window_days": (window.until - window.since).days,
            "error": error,
            "windows": WINDOWS,
            "total_traces": sum(f["figures"]["traces"] for f in features),
            "total_cost": sum(f["figures"]["cost_usd"] for f in features),
            "rejections": widget_rejections(since=window.first_day),
            "sparklines": {f["key"]: f["sparkline"] for f in features},
            # The window as asked for, kept by the links to a feature's page and to customers (they read it alike).
            "window_query": ""
            if error
            else urlencode(
                {
                    name: request.GET[name]
                    for name in ("days", "since", "until", "through")
                    if request.GET.get(name, "").strip()
                }
            ),
        },
    )


def _grouping(request: HttpRequest) -> tuple[Grouping, str | None]:
    try:
        return Grouping.parse(request.GET.get("group_by", "")), None
    except ReportError as exc:
        return Grouping("prompt_version"), exc.message


# A drift segment's dimensions the trace explorer filters by (feedback.selectors.TraceFilters), besides
# metadata.<key>: it has no filter for model.
_EXPLORER_DIMENSIONS = ("prompt_version", "customer_id", "variant", "model")
# How evaluation.stats.rootcause writes a segment's missing value and joins its parts.
_NO_VALUE, _JOIN = "(none)", " × "


def segment_parts(label: str) -> list[tuple[str, str]]:
    """A segment's label ("metadata.auth=sso × prompt_version=v2") as (dimension, value) pairs: a dimension
    name holds no "=", so each part splits at its first."""
    return [(dimension, value) for dimension, _, value in (part.partition("=") for part in label.split(_JOIN))]


def segment_links(
    request: HttpRequest,
    *,
    feature_key: str,
    parts: list[tuple[str, str]],
    window: Window,
    group_window: Window | None = None,
) -> dict[str, Any]:
    """Where a segment of a feature leads: ``traces``, the trace explorer filtered to it within the window
    (None when the explorer cannot filter one of its parts: a missing value), and ``groupings``,
    the feature page grouped by each of its dimensions the page groups by, as (dimension, url) pairs, over
    ``group_window`` (default the window: drift spans both its windows, so a retired version is a row)."""
    query = {"feature": feature_key}
    for dimension, value in parts:
        if value == _NO_VALUE or not (dimension in _EXPLORER_DIMENSIONS or dimension.startswith("metadata.")):
            traces = None
            break
        query[dimension] = value
    else:
        # The explorer's Until is a date picker's day, included (a time stays exclusive): a window of whole days
        # is passed as its first and last day (its until, the next midnight, brought in that day's traces too).
        if window.whole_days:
            query.update(since=window.first_day.isoformat(), until=window.last_day.isoformat())
        else:
            query.update(since=window.since.isoformat(), until=window.until.isoformat())
        traces = f"{org_url(request, 'feedback:trace-list')}?{urlencode(query)}"
    feature_url = org_url(request, "evaluation:feature", feature_key)
    # The feature page in the same window (its until is exclusive, as a Window's), not its default 30 days.
    group_window = group_window or window
    span = {k: (t.date() if group_window.whole_days else t).isoformat()
            for k, t in (("since", group_window.since), ("until", group_window.until))}  # fmt: skip
    groupings = []
    for dimension, _ in parts:
        try:
            grouping = Grouping.parse(dimension)
        except ReportError:
            continue
        groupings.append((grouping.label, f"{feature_url}?{urlencode({'group_by': grouping.label, **span})}"))
    return {"traces": traces, "groupings": groupings}


def feature_view(request: HttpRequest, key: str) -> HttpResponse:
    feature = _feature(key)
    window, error = _window(request)
    grouping, group_error = _grouping(request)
    data = feature_page(feature=feature, window=window, grouping=grouping)
    signals = signal_report(feature=feature, window=window)
    choices = ["prompt_version", "variant", "customer_id", "model", "day"]
    choices += [f"metadata.{k}" for k in sorted({*feature.segment_keys, "auth"})]
    if grouping.label not in choices:
        choices.append(grouping.label)
    query = request.GET.copy()
    # What the overview says of this feature, so that its page leads to a regression too: its open alerts, and
    # the likely cause from its latest drift snapshot in the window, with the traces of the cause's segment.
    # The report leaves the holdback arms out (the non-AI path): so do its rows' traces.
    held = data["holdback"] if data["report"]["holdback_traces"] else []
    _group_traces(request, feature_key=feature.key, grouping=grouping, window=window, groups=data["report"]["groups"],
                  exclude_variants=held)  # fmt: skip
    cause = likely_causes([feature.key], first_day=window.first_day, last_day=window.last_day).get(feature.key)
    if cause is not None:
        parts = segment_parts(cause["segment"])
        cause = {**cause, **segment_links(request, feature_key=feature.key, parts=parts, window=window)}
    return TemplateResponse(
        request,
        "evaluation/feature.html",
        {
            "nav": "overview",
            "feature": feature,
            "open_alerts": open_alerts_by_feature().get(feature.key, []),
            "cause": cause,
            "report": data["report"],
            # Groups whose success borrows the report's judge correction (too few audit labels of their own).
            "pooled_groups": [
                g["group"]
                for g in data["report"]["groups"]
                if g["success"]["source"] == "calibrated_judge" and g["notes"].get("success")
            ],  # fmt: skip
            "over_holdback": data["over_holdback"],
            # Each row corrected by its own audit labels, the All row by all of them: its successes and value are not
            # the rows' sum (a PM added the rows up and found $400 missing).
            "rows_apart": data["report"]["success_source"]["name"] == "calibrated_judge"
            and len(data["report"]["groups"]) > 1,
            "calibrations": feature_calibrations(feature),
            "signals": signals,
            "chart_data": {"chart": data["chart"], "segments": data["segments"]},
            "segments": data["segments"],
            "window": window,
            "windows": WINDOWS,
            "grouping": grouping,
            "choices": choices,
            "error": error or group_error,
            "query": query.urlencode(),
            "can_edit": getattr(request, "membership", None) is not None and request.membership.at_least("pm"),  # type: ignore[attr-defined]
        },
    )


def _group_traces(
    request: HttpRequest,
    *,
    feature_key: str,
    grouping: Grouping,
    window: Window,
    groups: list[dict[str, Any]],
    exclude_variants: list[str],
) -> None:
    """Each row's ``traces_url``: the explorer filtered to the row's group within the page's window (a day's row,
    that day), or None where it cannot filter the group (no value). Only customer and metadata rows had links, and
    those led to every day's traces. ``exclude_variants``: the holdback arms the report's rows leave out (the
    explorer listed their traces under a row that does not count them)."""
    leave_out = f"&{urlencode([('exclude_variant', v) for v in exclude_variants])}" if exclude_variants else ""
    for group in groups:
        value = group["group"]
        url: str | None
        if value is None:
            url = None
        elif grouping.name == "day":
            day = datetime.combine(date.fromisoformat(value), time(0), UTC)
            one = Window(day, day + timedelta(days=1))
            url = segment_links(request, feature_key=feature_key, parts=[], window=one)["traces"]
        else:
            parts = [(grouping.label, str(value))]
            url = segment_links(request, feature_key=feature_key, parts=parts, window=window)["traces"]
        group["traces_url"] = url + leave_out if url else None


def feature_csv(request: HttpRequest, key: str) -> HttpResponse:
    feature = _feature(key)
    window, _ = _window(request)
    grouping, _ = _grouping(request)
    report = feature_report(feature=feature, window=window, grouping=grouping)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = f"{feature.key}-{grouping.label}-{window.first_day}-{window.last_day}.csv".replace("/", "_")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    for row in report_csv_rows(report):
        writer.writerow(["" if v is None else v for v in row])
    return response


@require_POST
@role_required("pm")
def feature_value(request: HttpRequest, key: str) -> HttpResponse:
    feature = _feature(key)
    raw = request.POST.get("value_per_success_usd", "").strip()
    try:
        value = Decimal(raw) if raw else None
        if value is not None and (not value.is_finite() or value < 0 or value >= Decimal("1e8")):
            raise InvalidOperation
    except InvalidOperation:
        # The box shows the saved value again after the redirect: the message says what was typed.
        messages.error(
            request,
            f"Value per success: {raw[:40]!r} is not a number of dollars from 0 to 99,999,999 (empty clears it); "
            "the saved value is unchanged.",
        )
    else:
        services.feature_value_set(feature=feature, value_per_success_usd=value)
        messages.success(request, "Value per success saved." if value is not None else "Value per success cleared.")
    url = org_url(request, "evaluation:feature", feature.key)
    query = request.POST.get("next_query", "")
    return redirect(f"{url}?{query}" if query else url)


MAX_SEGMENT_KEYS = 10


@require_POST
@role_required("pm")
def feature_segments(request: HttpRequest, key: str) -> HttpResponse:
    """Declare which metadata keys the rollups count per value (fast grouping, small multiples)."""
    feature = _feature(key)
    typed = request.POST.get("segment_keys", "")
    keys = [k.strip() for k in typed.replace(",", " ").split()]
    bad = [k for k in keys if not METADATA_KEY.match(k)]
    if bad or len(keys) > MAX_SEGMENT_KEYS:
        messages.error(
            request,
            f"Segments unchanged. You typed {typed.strip()[:80]!r}: up to {MAX_SEGMENT_KEYS} metadata keys of "
            f"letters, digits and _.:- ({', '.join(repr(b[:40]) for b in bad[:3]) or 'too many'} is not one).",
        )
    elif not keys and feature.segment_keys and not request.POST.get("clear"):
        # An emptied field would stop counting every segment, and the alerts that watch them: asked, not assumed.
        messages.error(
            request,
            "Segments unchanged: the field was empty. To stop counting every segment (their per-segment alerts "
            "stop too), tick “remove every segment”.",
        )
    else:
        services.feature_segments_set(feature=feature, keys=keys)
        messages.success(request, "Segments saved; the worker fills their history within a minute.")
    url = org_url(request, "evaluation:feature", feature.key)
    query = request.POST.get("next_query", "")  # the page as it was (its grouping and window)
    return redirect(f"{url}?{query}" if query else url)


def customers_page(request: HttpRequest) -> HttpResponse:
    window, error = _window(request)
    return TemplateResponse(
        request,
        "evaluation/customers.html",
        {
            "nav": "customers",
            "data": customers_report(window=window),
            "window": window,
            "windows": WINDOWS,
            "error": error,
        },  # fmt: skip
    )


urlpatterns: list[URLPattern] = [
    path("", overview_page, name="overview"),
    path("customers/", customers_page, name="customers"),
    path("features/<path:key>/report.csv", feature_csv, name="feature-csv"),
    path("features/<path:key>/value", feature_value, name="feature-value"),
    path("features/<path:key>/segments", feature_segments, name="feature-segments"),
    path("features/<path:key>/", feature_view, name="feature"),
]
