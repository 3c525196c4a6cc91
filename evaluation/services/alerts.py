"""Alerts: rules relative to a baseline (not fixed points), evaluated on a schedule over each feature
and each value of its declared segment keys; an alert opens once per (rule, segment) and updates while
the rule keeps firing (de-duplication).

An alert resolves when an evaluation with enough data finds the metric recovered: no longer clearly
worse than the baseline it opened against. A lasting regression therefore stays open after the trailing
baseline has taken it in (the rule itself goes quiet then: the new level has become "normal"), until it
is fixed or a person resolves the alert. Resolving by hand accepts the level of the moment: the rule does
not open again on that segment within its baseline period unless the metric gets clearly worse than that.

Opening and resolving notify every enabled channel: signed webhooks (retried with backoff, then the
channel is marked failing) and email. Evaluation never waits on a receiver: it only writes deliveries,
which a separate task sends."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When

from evaluation.models import (
    Alert,
    AlertMetric,
    AlertRule,
    AlertState,
    ChannelKind,
    Delivery,
    DeliveryStatus,
    NotificationChannel,
)
from evaluation.reports.figures import cost_per_success, group_figures
from evaluation.reports.measures import JudgedSums, Measures, total
from evaluation.reports.selectors import Window, holdback_variants, measures_of_ai, outcome_delay
from evaluation.reports.success import CalibratedJudgeSource, SuccessSource, success_source_for
from evaluation.services import webhooks
from evaluation.services.shared import keyring, utc_now
from evaluation.stats import Interval, mover_difference, mover_ratio, wilson
from feedback.models import DailyRollup, Feature
from feedback.sketch import quantile

MAX_ATTEMPTS = 5
BACKOFF_S = (30, 120, 600, 3600)  # after attempt 1, 2, 3, 4
MAX_SEGMENT_VALUES = 50
# The share of a window that traces still waiting for their outcomes may make up before it is moved back.
MATERIAL_DELAY = 0.01

DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    # Acute: a day against the week before.
    {"name": "Thumbs-down share up 50% (24 h)", "metric": AlertMetric.THUMBS_DOWN, "threshold": 0.5, "min_count": 30},
    # Slow: thumbs are sparse (a tenth of traces or less), so a segment's smaller, lasting rise
    # (a prompt change that hurts one kind of user) is read over a week against the two before.
    {
        "name": "Thumbs-down share up 30% (7 days)",
        "metric": AlertMetric.THUMBS_DOWN,
        "threshold": 0.3,
        "window_hours": 168,
        "baseline_days": 14,
        "min_count": 50,
    },
    {"name": "Cost per success up 30%", "metric": AlertMetric.COST_PER_SUCCESS, "threshold": 0.3, "min_count": 30},
    {"name": "p95 latency doubled", "metric": AlertMetric.P95_LATENCY, "threshold": 1.0, "min_count": 50},
    {
        "name": "Success below 90% of its baseline",
        "metric": AlertMetric.SUCCESS_HIGH,
        "threshold": 0.1,
        "min_count": 30,
    },
    # Slow, as for thumbs: a segment's day holds too few traces to show a lasting fall of a few points
    # (a prompt version that fails one kind of user), its week does.
    {
        "name": "Success below 90% of its baseline (7 days)",
        "metric": AlertMetric.SUCCESS_HIGH,
        "threshold": 0.1,
        "window_hours": 168,
        "baseline_days": 14,
        "min_count": 100,
    },
)
# Metrics read through the feature's success source: their levels compare only within one source.
READS_SUCCESS = frozenset({AlertMetric.SUCCESS_HIGH, AlertMetric.COST_PER_SUCCESS})
JUDGED = CalibratedJudgeSource.name  # the source whose windows an alert reads with one correction
COUNT_WORD = {
    AlertMetric.THUMBS_DOWN: "thumbs",
    AlertMetric.COST_PER_SUCCESS: "successes",
    AlertMetric.P95_LATENCY: "traces with latency",
    AlertMetric.SUCCESS_HIGH: "traces counted for success",
    AlertMetric.ERROR_RATE: "traces",
}


class AlertError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- rules and channels --------------------------------------------------------------------------------


def alert_rules_ensure(*, feature: Feature) -> int:
    """The default rules a feature does not have yet, by name: all of them for a feature without rules, a
    default added since for a feature that has the others (a disabled rule stays disabled); a feature set up
    with rules of its own only gets none. Returns how many were made."""
    have = dict(AlertRule.objects.filter(feature=feature).values_list("name", "is_default"))  # one query, every run
    if have and not any(have.values()):
        return 0  # rules of its own before it ever had the defaults: left as they were set up
    made = 0
    for spec in DEFAULT_RULES:
        if spec["name"] not in have:
            _, created = AlertRule.objects.get_or_create(
                feature=feature, name=spec["name"], defaults={**spec, "is_default": True}
            )
            made += created
    return made


def alert_rule_create(
    *,
    feature: Feature,
    name: str,
    metric: str,
    threshold: float,
    window_hours: int = 24,
    baseline_days: int = 7,
    min_count: int = 20,
    per_segment: bool = True,
) -> AlertRule:
    if not name.strip() or len(name) > 200:
        raise AlertError("name", "1 to 200 characters")
    if metric not in AlertMetric.values:
        raise AlertError("metric", f"one of {', '.join(AlertMetric.values)}")
    if not (math.isfinite(threshold) and 0 < threshold <= 100):
        raise AlertError("threshold", "a relative change above 0 (0.5 = +50%; for success, 0.1 = 10% below)")
    if metric == AlertMetric.SUCCESS_HIGH and threshold >= 1:
        raise AlertError("threshold", "for success, a fall below 1 (0.1 = 10% under its baseline; 1 would be 0%)")
    if not 1 <= window_hours <= 24 * 14:
        raise AlertError("window_hours", f"1 to {24 * 14} hours (14 days), not {window_hours}")
    if not 1 <= baseline_days <= 90:
        raise AlertError("baseline_days", f"1 to 90 days, not {baseline_days}")
    if not 1 <= min_count <= 1_000_000:
        raise AlertError("min_count", f"1 to 1,000,000, not {min_count}")
    if AlertRule.objects.filter(feature=feature, name=name.strip()).exists():
        raise AlertError("name", "this feature has a rule of that name already")
    return AlertRule.objects.create(
        feature=feature,
        name=name.strip(),
        metric=metric,
        threshold=threshold,
        window_hours=window_hours,
        baseline_days=baseline_days,
        min_count=min_count,
        per_segment=per_segment,
    )


def alert_rule_toggle(*, rule: AlertRule, enabled: bool, by: str = "", now: datetime | None = None) -> AlertRule:
    """Enable or disable a rule. Disabling resolves its open alerts (no evaluation would ever close them),
    notified like any resolution."""
    now = now or utc_now()
    with transaction.atomic():
        rule.enabled = enabled
        rule.save(update_fields=["enabled"])
        if not enabled:
            who = f" by {by}" if by else ""
            for alert in Alert.objects.select_for_update().filter(rule=rule, state=AlertState.OPEN):
                alert.state, alert.resolved_at, alert.resolved_by = AlertState.RESOLVED, now, by[:254]
                alert.resolution = f"Resolved when its rule was disabled{who}."
                alert.save(update_fields=["state", "resolved_at", "resolved_by", "resolution"])
                _deliveries_create(alert, "resolved", now)
    return rule


def channel_create(*, kind: str, name: str, url: str = "", email: str = "") -> tuple[NotificationChannel, str]:
    """A channel and, for a webhook, its signing secret (shown once; stored encrypted)."""
    if not name.strip() or len(name) > 200:
        raise AlertError("name", "1 to 200 characters")
    if kind == ChannelKind.WEBHOOK:
        if len(url) > 2000:
            raise AlertError("url", "at most 2000 characters")
        problem = webhooks.url_problem(url)
        if problem:
            raise AlertError("url", problem)
        secret = webhooks.new_secret()
        channel = NotificationChannel.objects.create(
            kind=kind, name=name.strip(), url=url, secret_encrypted=keyring().encrypt(secret)
        )
        return channel, secret
    if kind == ChannelKind.EMAIL:
        try:
            validate_email(email)
        except ValidationError:
            raise AlertError("email", "a valid email address") from None
        return NotificationChannel.objects.create(kind=kind, name=name.strip(), email=email), ""
    raise AlertError("kind", "webhook or email")


# --- evaluation ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    value: float | None
    count: int
    low: float | None = None
    high: float | None = None


def _reading(metric: str, m: Measures, source: SuccessSource, confidence: float = 0.95) -> Reading:
    """The metric over one window; ``low`` / ``high``: its interval at ``confidence``."""
    if metric in (AlertMetric.THUMBS_DOWN, AlertMetric.ERROR_RATE):
        thumbs = metric == AlertMetric.THUMBS_DOWN
        bad, n = (m.thumbs_down, m.thumbs_up + m.thumbs_down) if thumbs else (m.errors, m.traces)
        if not n:
            return Reading(None, 0)
        ci = wilson(bad, n, confidence)
        return Reading(bad / n, n, ci.low, ci.high)
    if metric == AlertMetric.COST_PER_SUCCESS:
        figures = group_figures(m, source=source, value_per_success_usd=None)
        value, count = figures["cost_per_success_usd"], int(round(figures["successes"] or 0))
        if value is None:
            return Reading(None, count)
        ratio = cost_per_success(m, source, confidence)
        return Reading(value, count, ratio.low, ratio.high)
    if metric == AlertMetric.P95_LATENCY:
        return Reading(quantile(m.latency_sketch, 0.95) if m.latency_count else None, m.latency_count)
    estimate = source.estimate(m, confidence)
    return Reading(estimate.interval.value, estimate.n, estimate.interval.low, estimate.interval.high)


@dataclass(frozen=True)
class Verdict:
    state: str  # firing / quiet / waiting
    reason: str
    current: Reading
    baseline: Reading
    # The current window at a plain 95%: an open alert is one question asked of one segment, not a search
    # over many (what the Bonferroni-widened ``current`` is for).
    single: Reading
    segments: int = 1  # how many segments the rule read at once (its Bonferroni divisor)
    # Where the current window ended, when not now: success from outcomes, read over traces old enough
    # for their outcomes to have come.
    until: datetime | None = None
    # Where the current window may lie toward "no change" by the interval of the two windows' difference
    # (see _reach): what the rule's "clearly" reads.
    reach: float | None = None


def rule_verdict(
    rule: AlertRule,
    current: Measures,
    baseline: Measures,
    source: SuccessSource,
    *,
    segments: int = 1,
    until: datetime | None = None,
    history_days: int | None = None,
) -> Verdict:
    """Whether the rule fires on these two windows' counts: the current value past the rule's threshold,
    and clearly worse than the baseline by an interval of their difference (their ratio, for cost per
    success) that takes both windows' noise in (MOVER: Newcombe's interval for two shares).

    ``history_days``: the baseline's days that hold traces of the feature. Under half of the rule's
    baseline days, the rule waits: a baseline of a feature's first day or two is no norm (on the demo, a
    7-day rule opened on its second day against the first day's chance 32% and stayed open for weeks).

    The intervals' confidence is 1 - 0.05 / segments (Bonferroni over the segments the rule reads at
    once), so a rule read on many segments does not fire more often by chance than one read on the whole
    feature."""
    confidence = 1 - 0.05 / max(segments, 1)
    cur, base = _reading(rule.metric, current, source, confidence), _reading(rule.metric, baseline, source)
    single = _reading(rule.metric, current, source) if segments > 1 else cur
    word = COUNT_WORD[AlertMetric(rule.metric)]
    if cur.count < rule.min_count or cur.value is None:
        return Verdict(
            "waiting", f"too little data: {cur.count} {word} in the window (needs {rule.min_count})", cur, base, single
        )
    if base.count < rule.min_count or base.value is None:
        return Verdict(
            "waiting", f"too little baseline: {base.count} {word} (needs {rule.min_count})", cur, base, single
        )
    if history_days is not None and 2 * history_days < rule.baseline_days:
        reason = (f"too little history: traces on {history_days} of the baseline's {rule.baseline_days} days "
                  f"(needs {math.ceil(rule.baseline_days / 2)})")  # fmt: skip
        return Verdict("waiting", reason, cur, base, single)
    # The baseline at the current interval's confidence: the two are combined at one level.
    base_at = _reading(rule.metric, baseline, source, confidence) if segments > 1 else base
    reach = _reach(rule, cur, base_at)
    if rule.metric == AlertMetric.SUCCESS_HIGH:
        # Clearly below (1 - threshold) x the baseline: the difference's upper end under 0.
        firing = reach is not None and reach < (1 - rule.threshold) * base.value
        return Verdict("firing" if firing else "quiet", "", cur, base, single, segments, until, reach)
    if base.value <= 0:
        reason = "the baseline is 0: a relative rise is undefined"
        return Verdict("waiting", reason, cur, base, single, segments, until, reach)
    # Past the threshold, and clearly above the baseline (a latency, with no interval: past it is enough).
    clear = rule.metric == AlertMetric.P95_LATENCY or (reach is not None and reach > base.value)
    firing = cur.value >= base.value * (1 + rule.threshold) and clear
    return Verdict("firing" if firing else "quiet", "", cur, base, single, segments, until, reach)


def _interval(reading: Reading) -> Interval:
    return Interval(reading.value, reading.low, reading.high)


def _reach(rule: AlertRule, cur: Reading, base: Reading) -> float | None:
    """How far the current window may lie toward "no change", by the interval of the two windows' difference
    (their ratio, for cost per success), as a level of the metric: a rise is clear when this is above the
    baseline, a fall in success when it is below (1 - threshold) x the baseline. None without intervals
    (a latency: its rise past the threshold is taken as it is)."""
    if rule.metric == AlertMetric.P95_LATENCY or base.value is None:
        return None
    if rule.metric == AlertMetric.SUCCESS_HIGH:
        floor = 1 - rule.threshold
        high = mover_difference(_interval(cur), _interval(base), scale=floor).high
        return None if high is None else floor * base.value + high
    if rule.metric == AlertMetric.COST_PER_SUCCESS:
        low = mover_ratio(_interval(cur), _interval(base)).low
        return None if low is None else base.value * low
    low = mover_difference(_interval(cur), _interval(base)).low
    return None if low is None else base.value + low


def level_text(metric: str, value: float | None) -> str:
    """A metric's value as the alert messages write it (a share as %, a cost in $, a latency in ms)."""
    if value is None:
        return "–"
    if metric in (AlertMetric.THUMBS_DOWN, AlertMetric.SUCCESS_HIGH, AlertMetric.ERROR_RATE):
        return f"{value:.1%}"
    if metric == AlertMetric.COST_PER_SUCCESS:
        return f"${value:.4f}"
    return f"{value:,.0f} ms"


def _message(rule: AlertRule, segment: str, v: Verdict, source: SuccessSource) -> str:
    where = rule.feature.key + (f" ({segment})" if segment else "")
    judged = ""
    if rule.metric in READS_SUCCESS and isinstance(source, CalibratedJudgeSource) and source.common is not None:
        # The calibrated judge's windows share one bias correction: their intervals are its scores' alone. Said with
        # its labels, as the feature page corrects each window apart (a segment's rate read 40.2% here, 46.5% there).
        judged = (f" Read from the calibrated judge, one bias correction for both windows ({source.common.audited} "
                  f"audit labels of {source.common_of or 'the whole feature'}; the feature page corrects each "
                  "window apart, so its rates may differ by a few points).")  # fmt: skip
    label = AlertMetric(rule.metric).label
    cur, base = v.current, v.baseline
    window = _window_words(rule, v.until)
    if rule.metric == AlertMetric.SUCCESS_HIGH:
        return (
            f"Success of {where} over {window} is {level_text(rule.metric, cur.value)} (at most "
            f"{level_text(rule.metric, cur.high)} by its interval), below {1 - rule.threshold:.0%} of its trailing "
            f"{rule.baseline_days}-day {level_text(rule.metric, base.value)} ({cur.count} traces).{judged}"
        )
    change = (cur.value or 0) / base.value - 1 if base.value else math.nan
    least = f" (at least {level_text(rule.metric, cur.low)} by its interval)" if cur.low is not None else ""
    return (
        f"{label} of {where} over {window} is {level_text(rule.metric, cur.value)}{least}, {change:+.0%} versus "
        f"its trailing {rule.baseline_days}-day {level_text(rule.metric, base.value)} "
        f"({cur.count} {COUNT_WORD[AlertMetric(rule.metric)]}).{judged}"
    )


# How an open alert's reading says the rule is quiet against its trailing baseline, the alert held open against
# the level it opened at (the alert page explains it).
HELD_OPEN = "The rule itself does not fire"


def rule_window(rule: AlertRule, at: datetime) -> Window:
    """The rule's current window when read at ``at`` (as alerts_evaluate reads it)."""
    return _windows(at, rule.window_hours, rule.baseline_days)[0]


def _windows(now: datetime, hours: int, days: int, *, complete: bool = False) -> tuple[Window, Window]:
    """A window of whole days (72 h, 7 days) ends with today and reads the rollups; a shorter one
    rolls with the clock and reads the raw rows of its few hours. ``complete``: a window of whole days
    ends with the last day over by ``now`` (for traces older than ``now`` only)."""
    if hours >= 48 and hours % 24 == 0:
        last = now.astimezone(UTC).date() - timedelta(days=1 if complete else 0)
        end = datetime.combine(last + timedelta(days=1), time(0), UTC)
        current = Window(end - timedelta(hours=hours), end)
        return current, Window(current.since - timedelta(days=days), current.since)
    current = Window(now - timedelta(hours=hours), now)
    base_end = datetime.combine((now - timedelta(hours=hours)).astimezone(UTC).date(), time(0), UTC)
    return current, Window(base_end - timedelta(days=days), base_end)


def _segments(feature: Feature, window: Window, per_segment: bool, holdback: set[str]) -> dict[str, Measures]:
    """The feature's measures in ``window``, whole and per segment value, without the traces of its
    ``holdback`` arms: the non-AI path is not the AI's to alert on (a holdback starting would otherwise
    read as the feature's success falling), as the reports leave it out."""
    whole, _, _ = measures_of_ai(feature=feature, window=window, dims=("prompt_version",), holdback=holdback)
    out = {"": total(whole)}
    if per_segment:
        for key in feature.segment_keys or []:
            parts, _, _ = measures_of_ai(
                feature=feature, window=window, dims=("metadata",), metadata_key=key, holdback=holdback
            )
            values = sorted(((k[0], m) for k, m in parts.items() if k[0] is not None), key=lambda i: -i[1].traces)
            for value, m in values[:MAX_SEGMENT_VALUES]:
                out[f"metadata.{key}={value}"] = m
    return out


def _both_audits(current: Measures, baseline: Measures) -> JudgedSums:
    both = JudgedSums()
    both.add(current.judged)
    both.add(baseline.judged)
    return both


def _over_time(
    source: SuccessSource, current: Measures, baseline: Measures, whole: JudgedSums, segment: str = ""
) -> SuccessSource:
    """The source a segment's two windows are read with: the calibrated judge corrects both by one audit, the
    segment's labels over both windows (the whole feature's, where the segment has too few), so a steady
    judge bias cancels in the change the rule tests (see CalibratedJudgeSource.over_time)."""
    if not isinstance(source, CalibratedJudgeSource):
        return source
    audit = _both_audits(current, baseline)
    own = audit.audited >= source.MIN_AUDITED
    return source.over_time(audit if own else whole, of="this segment" if own and segment else "the whole feature")


def _days_in(window: Window, days: set[date]) -> int:
    """How many of ``days`` fall in the window (its UTC days with a moment inside it)."""
    return sum(1 for day in days if window.first_day <= day <= window.last_day)


@dataclass
class EvaluateStats:
    rules: int = 0
    opened: int = 0
    updated: int = 0
    resolved: int = 0
    waiting: int = 0
    holding: int = 0  # quiet against the trailing baseline, still worse than when they opened
    accepted: int = 0  # firing at a level a person accepted by resolving by hand


def alerts_evaluate(*, now: datetime | None = None, features: list[Feature] | None = None) -> EvaluateStats:
    """Evaluate every enabled rule of every feature with traces in the last 30 days (features first
    get the default rule set). Writes alerts and pending deliveries; sends nothing itself."""
    now = now or utc_now()
    stats = EvaluateStats()
    if features is None:
        ids = set(
            DailyRollup.objects.filter(day__gte=(now - timedelta(days=30)).date(), day__lte=now.date()).values_list(
                "feature_id", flat=True
            )
        )
        features = list(Feature.objects.filter(id__in=ids))
    for feature in features:
        alert_rules_ensure(feature=feature)
        rules = list(AlertRule.objects.filter(feature=feature, enabled=True).select_related("feature"))
        groups: dict[tuple[int, int, bool], list[AlertRule]] = {}
        for rule in rules:
            groups.setdefault((rule.window_hours, rule.baseline_days, rule.per_segment), []).append(rule)
        delay: timedelta | None = None  # how late the feature's outcomes come, read once if needed
        holdback = holdback_variants(feature)
        # The days the feature has traces on, as far back as any of its rules' baselines reach.
        reach_back = max((rule.window_hours / 24 + rule.baseline_days for rule in rules), default=0) + 2
        traced = set(
            DailyRollup.objects.filter(
                feature=feature, traces__gt=0, day__gte=(now - timedelta(days=reach_back)).date()
            )
            .values_list("day", flat=True)
            .distinct()
        )
        for (hours, days, per_segment), members in groups.items():
            current_window, baseline_window = _windows(now, hours, days)
            current = _segments(feature, current_window, per_segment, holdback)
            baseline = _segments(feature, baseline_window, per_segment, holdback)
            source = success_source_for(baseline[""] if baseline[""].traces else current[""])
            # Success from outcomes: the window ends before the traces whose outcomes may still come (it
            # would read low, and fire, every day), unless those are under 1% of it (an hour of a week: the
            # bias is under 1%, and a weekly window would otherwise wait for today to end). The rules on
            # other metrics read up to now.
            history = _days_in(baseline_window, traced)
            lagged: tuple[dict[str, Measures], dict[str, Measures], datetime, int] | None = None
            if source.name == "outcomes" and any(rule.metric in READS_SUCCESS for rule in members):
                delay = outcome_delay(feature=feature, now=now) if delay is None else delay
                if delay > timedelta(hours=hours) * MATERIAL_DELAY:
                    late_current, late_baseline = _windows(now - delay, hours, days, complete=True)
                    lagged = (
                        _segments(feature, late_current, per_segment, holdback),
                        _segments(feature, late_baseline, per_segment, holdback),
                        late_current.until,
                        _days_in(late_baseline, traced),
                    )
            for rule in members:
                stats.rules += 1
                whole_state = ""
                now_current, now_baseline, until, traced_days = current, baseline, None, history
                if lagged is not None and rule.metric in READS_SUCCESS:
                    now_current, now_baseline, until, traced_days = lagged
                segments = sorted(set(now_current) | set(now_baseline))
                whole = _both_audits(now_current.get("", Measures()), now_baseline.get("", Measures()))
                for segment in segments:
                    seg_current, seg_baseline = (
                        now_current.get(segment, Measures()),
                        now_baseline.get(segment, Measures()),
                    )
                    read_with = _over_time(source, seg_current, seg_baseline, whole, segment)
                    verdict = rule_verdict(
                        rule,
                        seg_current,
                        seg_baseline,
                        read_with,
                        segments=len(segments),
                        until=until,
                        history_days=traced_days,
                    )
                    state = _apply(rule, segment, verdict, read_with, now, stats)
                    if segment == "":
                        whole_state = {
                            "waiting": verdict.reason,
                            "holding": "quiet; its alert stays open (still worse than when it opened)",
                        }.get(state, state)
                open_on = list(
                    Alert.objects.filter(rule=rule, state=AlertState.OPEN)
                    .exclude(segment="")
                    .order_by("segment")
                    .values_list("segment", flat=True)
                )
                if open_on:
                    shown = ", ".join(open_on[:3]) + (f" and {len(open_on) - 3} more" if len(open_on) > 3 else "")
                    on = f"alert open on {shown}"
                    whole_state = (
                        f"{whole_state} on the whole feature; {on}"
                        if whole_state == "quiet"
                        else (f"{whole_state}; {on}" if whole_state else on)
                    )
                AlertRule.objects.filter(id=rule.id).update(last_state=whole_state[:300], last_evaluated_at=now)
    return stats


def _apply(
    rule: AlertRule, segment: str, verdict: Verdict, source: SuccessSource, now: datetime, stats: EvaluateStats
) -> str:
    """Open, update, hold or resolve the rule's alert on the segment; returns what happened ("firing",
    "holding", "quiet" or "waiting"). Every write to an alert is conditional on it still being open: a
    person resolving it meanwhile keeps their resolution."""
    if verdict.state == "waiting":
        stats.waiting += 1
        return "waiting"  # too little data: neither open nor resolve (never a false verdict)
    existing = Alert.objects.filter(rule=rule, segment=segment, state=AlertState.OPEN).first()
    read_with = source.name if rule.metric in READS_SUCCESS else ""
    still_open = Alert.objects.filter(id=existing.id, state=AlertState.OPEN) if existing is not None else None
    if verdict.state == "firing":
        message = _message(rule, segment, verdict, source)
        fields = {
            "value": verdict.current.value,
            "baseline": verdict.baseline.value,
            "count": verdict.current.count,
            "message": message,
        }
        if still_open is not None:
            still_open.update(last_fired_at=now, evaluations_firing=F("evaluations_firing") + 1, **fields)
            stats.updated += 1
            return "firing"
        accepted = _accepted_level(rule, segment, read_with, now)
        if accepted is not None and not _worse_than(rule, verdict.single, accepted, None):
            stats.accepted += 1  # a person resolved it at this level lately: not news
            return "firing"
        opened_at, bound = verdict.baseline.value, _far_end(rule, verdict.baseline)
        if accepted is not None and opened_at is not None and _past_half(rule, accepted, opened_at):
            opened_at, bound = accepted, None  # worse than what was accepted: recovering means back to that
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    rule=rule,
                    segment=segment,
                    opened_at=now,
                    last_fired_at=now,
                    opened_baseline=opened_at,
                    opened_bound=bound,
                    opened_message=message,
                    opened_source=read_with,
                    **fields,
                )
        except IntegrityError:  # an evaluation running at the same moment opened it: de-duplicated
            stats.updated += 1
            return "firing"
        _deliveries_create(alert, "opened", now)
        stats.opened += 1
        return "firing"
    if existing is None or still_open is None:
        return "quiet"
    opened = existing.opened_baseline
    comparable = opened is not None and existing.opened_source == read_with
    if comparable and opened is not None and _worse_than(rule, verdict.single, opened, existing.opened_bound):
        # Quiet against the trailing baseline (which may have taken the change in), still worse than before.
        held = still_open.update(
            value=verdict.current.value,
            baseline=verdict.baseline.value,
            count=verdict.current.count,
            message=_holding_message(rule, segment, verdict, opened),
        )
        stats.holding += held
        return "holding" if held else "quiet"
    existing.resolution = _recovery(rule, verdict, existing, read_with)
    resolved = still_open.update(
        state=AlertState.RESOLVED,
        resolved_at=now,
        resolution=existing.resolution,
        value=verdict.current.value,
        count=verdict.current.count,
        message=existing.resolution,  # the latest reading's words, as value and count are (not the last firing's)
    )
    if resolved:
        existing.refresh_from_db()
        _deliveries_create(existing, "resolved", now)
        stats.resolved += 1
    return "quiet"


def _worse_than(rule: AlertRule, current: Reading, level: float, bound: float | None) -> bool:
    """Whether ``current`` is still clearly worse than ``level``: its value at least half the rule's change
    past it (hysteresis: an alert does not flap at its threshold), and clearly past ``level`` by the
    interval of their difference, as the rule itself opens (MOVER: both readings' noise), with ``bound``
    the far end of the interval ``level`` was measured with (it is an estimate too); by the current
    interval's near end alone when ``bound`` is not known. A latency, with no interval, by its value.

    (Asking instead that the current interval clear ``bound`` outright, two intervals apart, was a far
    stricter test than the one that opened the alert: a regression as clear as when it opened closed itself
    once a noisy window's interval touched the baseline's.)"""
    if current.value is None or not _past_half(rule, current.value, level):
        return False
    success = rule.metric == AlertMetric.SUCCESS_HIGH
    near = current.high if success else current.low
    if near is None:
        return rule.metric == AlertMetric.P95_LATENCY
    reach = _held_reach(rule, current, level, bound)
    if reach is None:
        return False
    return reach < level if success else reach > level


def _held_reach(rule: AlertRule, current: Reading, level: float, bound: float | None) -> float | None:
    """How far ``current`` may lie toward ``level`` (as a level of the metric): by the interval of their
    difference (their ratio, for cost per success) when ``bound``, the far end of ``level``'s own interval,
    is known; else the current interval's near end."""
    success = rule.metric == AlertMetric.SUCCESS_HIGH
    near = current.high if success else current.low
    if bound is None or near is None:
        return near
    cur = _interval(current)
    if success:  # the baseline's low end is its far end
        high = mover_difference(cur, Interval(level, bound, level)).high
        return None if high is None else level + high
    base = Interval(level, level, bound)
    if rule.metric == AlertMetric.COST_PER_SUCCESS:
        low = mover_ratio(cur, base).low
        return None if low is None else level * low
    low = mover_difference(cur, base).low
    return None if low is None else level + low


def _far_end(rule: AlertRule, baseline: Reading) -> float | None:
    """The end of the baseline's interval a worse metric moves away from (success: its low end)."""
    return baseline.low if rule.metric == AlertMetric.SUCCESS_HIGH else baseline.high


def _past_half(rule: AlertRule, value: float, level: float) -> bool:
    half = rule.threshold / 2
    if rule.metric == AlertMetric.SUCCESS_HIGH:
        return value < level * (1 - half)
    return value >= level * (1 + half)


def _accepted_level(rule: AlertRule, segment: str, read_with: str, now: datetime) -> float | None:
    """The level a person accepted by resolving this rule's alert on this segment by hand, within the
    rule's baseline period (by then the trailing baseline holds that level itself)."""
    accepted = (
        Alert.objects.filter(
            Q(opened_source=read_with) | Q(opened_baseline__isnull=True),  # or opened before sources were kept
            rule=rule,
            segment=segment,
            state=AlertState.RESOLVED,
            resolved_at__gte=now - timedelta(days=rule.baseline_days),
        )
        .exclude(resolved_by="")
        .order_by("-resolved_at")
        .values_list("value", flat=True)
        .first()
    )
    return accepted


def _window_words(rule: AlertRule, until: datetime | None = None) -> str:
    hours = rule.window_hours
    days = hours % 24 == 0 and hours > 24
    if until is None:
        return f"the last {hours // 24} days" if days else f"the last {hours} h"
    # Success from outcomes, over traces old enough for their outcomes to have come.
    if days:
        last = (until - timedelta(days=1)).date().isoformat()
        return f"the {hours // 24} days to {last} (outcomes still come in after)"
    return f"the {hours} h to {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC (later traces' outcomes still come in)"


def _holding_message(rule: AlertRule, segment: str, v: Verdict, opened: float) -> str:
    where, over = rule.feature.key + (f" ({segment})" if segment else ""), _window_words(rule, v.until)
    cur, base, metric = v.current, v.baseline, rule.metric
    success = metric == AlertMetric.SUCCESS_HIGH
    label = "Success" if success else AlertMetric(metric).label
    if success:
        still = f"still below the {level_text(metric, opened)} it opened against"
    else:
        change = (cur.value or 0) / opened - 1 if opened else math.nan
        still = f"still {change:+.0%} versus the {level_text(metric, opened)} it opened against"
    # Why the rule itself is quiet: the trailing baseline has moved, or the two windows are too noisy to say.
    trailing = f"its trailing {rule.baseline_days}-day level, now {level_text(metric, base.value)}"
    # Past the rule's line but within noise ("unclear"), the interval says how far; not past it, nothing to add.
    unclear = True
    if success:
        # "90% of its level, now 51.6%, that is below 46.4%" read as 51.6 below 46.4: the threshold is said first.
        floor_value = None if base.value is None else (1 - rule.threshold) * base.value
        floor = "" if floor_value is None else f"{level_text(metric, floor_value)}, "
        if floor_value is not None and cur.value is not None and cur.value < floor_value:
            # "39.4% ... not clearly below 48.0%" read as a contradiction: below it, yes, but not clearly.
            why = (f"{level_text(metric, cur.value)} is below {floor}{1 - rule.threshold:.0%} of {trailing}, "
                   "but not clearly")  # fmt: skip
        else:
            why, unclear = f"not below {floor}{1 - rule.threshold:.0%} of {trailing}", False
    elif base.value and cur.value is not None and cur.value < base.value * (1 + rule.threshold):
        why, unclear = f"not {rule.threshold:+.0%} over {trailing}", False
    elif base.value and cur.value is not None:
        why = f"{level_text(metric, cur.value)} is {rule.threshold:+.0%} or more over {trailing}, but not clearly"
    else:
        why = f"not clearly over {trailing}"
    if v.reach is not None and unclear:
        widened = f", widened as it is read with {v.segments - 1} other segments at once" if v.segments > 1 else ""
        why += (
            f": by the interval of the two windows' difference, this window may be as {'high' if success else 'low'} "
            f"as {level_text(metric, v.reach)}{widened}"
        )
    return (
        f"{label} of {where} over {over} is {level_text(metric, cur.value)}, {still}: kept open on this reading. "
        f"{HELD_OPEN}: {why} ({cur.count} {COUNT_WORD[AlertMetric(metric)]})."
    )


def _recovery(rule: AlertRule, v: Verdict, alert: Alert, read_with: str) -> str:
    metric, cur = rule.metric, v.current
    now_is, over = level_text(metric, cur.value), _window_words(rule, v.until)
    opened = alert.opened_baseline
    if opened is not None and alert.opened_source == read_with:
        was = level_text(metric, opened)
        if cur.value is None or not _past_half(rule, cur.value, opened):
            return f"Recovered: {now_is} over {over}, back near the {was} it opened against."
        success = metric == AlertMetric.SUCCESS_HIGH
        reach = _held_reach(rule, v.single, opened, alert.opened_bound)
        if alert.opened_bound is not None:
            how = (
                f"by the interval of its difference from the {was} it opened against (that level's own noise included)"
            )
        else:
            how = "by its interval"
        return (
            f"No longer clearly worse: {now_is} over {over}, but {how}, it may be as {'high' if success else 'low'} "
            f"as {level_text(metric, reach)} ({cur.count} {COUNT_WORD[AlertMetric(metric)]})."
        )
    trailing = f"Quiet against its trailing {rule.baseline_days}-day baseline ({level_text(metric, v.baseline.value)})"
    if opened is not None:  # success is read from another source now: levels do not compare
        return (
            f"{trailing}: {now_is} over {over}. Success is now read from {read_with or 'no source'}, not "
            f"{alert.opened_source}, so the level it opened against does not compare."
        )
    return f"{trailing}: {now_is} over {over}."


def alert_resolve(*, alert_id: int, by: str, note: str = "", now: datetime | None = None) -> tuple[Alert | None, bool]:
    """A person resolves an open alert (a known change, or fixed and waiting for the data to show it):
    notified like a recovery. The level of the moment is accepted: see the module's docstring. Returns the
    alert (None when there is no such alert) and whether this call resolved it (an alert already resolved
    is left as it is)."""
    now = now or utc_now()
    note = " ".join(note.split())[:500]
    with transaction.atomic():
        alert = Alert.objects.select_for_update().select_related("rule__feature").filter(id=alert_id).first()
        if alert is None or alert.state != AlertState.OPEN:
            return alert, False
        alert.state, alert.resolved_at, alert.resolved_by = AlertState.RESOLVED, now, by[:254]
        if alert.opened_baseline is None and alert.rule.metric in READS_SUCCESS:
            alert.opened_source = ""  # opened before sources were kept: accepted whatever source reads it
        accepted = level_text(alert.rule.metric, alert.value)
        alert.resolution = (
            f"Resolved by {by} at {accepted}"
            + (f": {note.rstrip('.')}." if note else ".")
            + " The rule opens again on this "
            f"{'segment' if alert.segment else 'feature'} within {alert.rule.baseline_days} days only if it gets "
            "clearly worse than that."
        )
        alert.save(update_fields=["state", "resolved_at", "resolved_by", "resolution", "opened_source"])
        _deliveries_create(alert, "resolved", now)
    return alert, True


def _deliveries_create(alert: Alert, event: str, now: datetime) -> None:
    for channel in NotificationChannel.objects.filter(enabled=True):
        Delivery.objects.get_or_create(alert=alert, channel=channel, event=event, defaults={"next_attempt_at": now})


# --- deliveries ------------------------------------------------------------------------------------------


def alert_dict(alert: Alert) -> dict[str, Any]:
    """An alert as webhooks and the API give it."""
    rule = alert.rule
    return {
        "id": alert.id,
        "feature": rule.feature.key,
        "rule": rule.name,
        "metric": rule.metric,
        "segment": alert.segment or None,
        "state": alert.state,
        "value": alert.value,
        "baseline": alert.baseline,
        "opened_baseline": alert.opened_baseline,
        "count": alert.count,
        "message": alert.message,
        "opened_message": alert.opened_message or None,
        "opened_at": alert.opened_at.isoformat(),
        "last_fired_at": alert.last_fired_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "resolved_by": alert.resolved_by or None,
        "resolution": alert.resolution or None,
    }


def alert_payload(alert: Alert, event: str) -> dict[str, Any]:
    return {"event": f"alert.{event}", "alert": alert_dict(alert)}


def delivery_attempt(*, delivery: Delivery, now: datetime) -> Delivery:
    """Send one delivery once; on failure schedule the next attempt (backoff) or, out of attempts,
    mark it failed and its channel failing."""
    channel, alert = delivery.channel, delivery.alert
    body = json.dumps(alert_payload(alert, delivery.event), separators=(",", ":"), sort_keys=True).encode()
    status: int | None = None
    if channel.kind == ChannelKind.WEBHOOK:
        secret = keyring().decrypt(channel.secret_encrypted).reveal()
        result = webhooks.post(
            url=channel.url,
            secret=secret,
            body=body,
            event=f"alert.{delivery.event}",
            delivery_id=delivery.id,
            timestamp=int(now.timestamp()),
        )
        ok, status, error = result.ok, result.status, result.error
    else:
        try:
            subject = f"[Candor] {'Alert' if delivery.event == 'opened' else 'Resolved'}: {alert.rule.name}"
            subject += f" on {alert.rule.feature.key}" + (f" ({alert.segment})" if alert.segment else "")
            text = alert.message
            if delivery.event != "opened":
                text = f"{alert.resolution or 'Resolved.'}\n\nLast read: {alert.message}"
            send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, [channel.email])
            ok, error = True, ""
        except Exception as exc:  # any mail backend error: retried like a webhook
            ok, error = False, f"{type(exc).__name__}: {exc}"[:500]
    delivery.attempts += 1
    delivery.response_status = status
    if ok:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at, delivery.error = (
            DeliveryStatus.OK,
            now,
            None,
            "",
        )
        NotificationChannel.objects.filter(id=channel.id).update(failing=False, last_error="")
    else:
        delivery.error = error
        if delivery.attempts >= MAX_ATTEMPTS:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
            NotificationChannel.objects.filter(id=channel.id).update(
                failing=True, last_error=f"{delivery.attempts} attempts failed; last: {error}"
            )
        else:
            delivery.next_attempt_at = now + timedelta(seconds=BACKOFF_S[delivery.attempts - 1])
    delivery.save()
    return delivery


def deliveries_send(*, now: datetime | None = None, limit: int = 100) -> datetime | None:
    """Attempt every due pending delivery of an enabled channel (each row locked, skipped when
    another worker holds it); returns when the next pending one comes due, or None."""
    now = now or utc_now()
    due = list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now, channel__enabled=True)
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )
    for delivery_id in due:
        with transaction.atomic():
            delivery = (
                Delivery.objects.select_for_update(skip_locked=True)
                .select_related("channel", "alert__rule__feature")
                .filter(id=delivery_id, status=DeliveryStatus.PENDING)
                .first()
            )
            if delivery is not None:
                delivery_attempt(delivery=delivery, now=now)
    upcoming = (
        Delivery.objects.filter(status=DeliveryStatus.PENDING, channel__enabled=True)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    return upcoming


# --- reads ---------------------------------------------------------------------------------------------


def alerts_history(*, state: str = "", limit: int = 200) -> list[Alert]:
    """Open alerts first, then the rest; newest first within each. ``state``: only open or resolved ones."""
    alerts = Alert.objects.select_related("rule__feature").prefetch_related("deliveries__channel")
    if state in AlertState.values:
        alerts = alerts.filter(state=state)
    open_first = Case(When(state=AlertState.OPEN, then=Value(0)), default=Value(1))
    return list(alerts.order_by(open_first, "-opened_at")[:limit])


def open_alerts_by_feature() -> dict[str, list[Alert]]:
    """Each feature's open alerts (enabled rules), newest first: what the overview ranks by and points at."""
    found: dict[str, list[Alert]] = {}
    open_ones = Alert.objects.filter(state=AlertState.OPEN, rule__enabled=True).select_related("rule__feature")
    for alert in open_ones.order_by("-opened_at"):
        found.setdefault(alert.rule.feature.key, []).append(alert)
    return found


def alert_get(alert_id: int) -> Alert | None:
    return (
        Alert.objects.select_related("rule__feature")
        .prefetch_related("deliveries__channel")
        .filter(id=alert_id)
        .first()
    )
