"""The figures of one report group (shared/API.md's feature report) from its Measures.

Rates are shares of traces, except thumbs_up_share (of thumbs) and success (of what its source
counts). successes = success rate x traces (exact for outcomes, an estimate for thumbs), so cost
per success, value (successes x the feature's value per success) and ROI ((value - cost) / cost)
read the same whatever the source. Undefined figures are None with a note saying why, never 0.
"""

from __future__ import annotations

import math
from typing import Any

from evaluation.reports.measures import Measures
from evaluation.reports.success import SuccessSource
from evaluation.stats import Interval
from evaluation.stats.intervals import DEFAULT_CONFIDENCE, normal_interval
from feedback.enums import IMPLICIT_KINDS
from feedback.sketch import quantile

IMPLICIT = tuple(sorted(str(kind) for kind in IMPLICIT_KINDS))
NO_VALUE_NOTE = "set a value per success to see value and ROI"


def cost_per_trace(m: Measures, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """The mean cost of a trace (one without a cost counts 0) with its normal interval: a window's cost is a
    sample of its traces' costs, and a small segment's day can cost much more than its usual by chance."""
    n = m.traces
    if n < 2:
        return Interval.undefined("fewer than 2 traces")
    mean = m.cost_usd / n
    variance = max(m.cost_sq_usd - n * mean * mean, 0.0) / (n - 1)
    return normal_interval(mean, math.sqrt(variance / n), confidence, clip=(0.0, math.inf))


def cost_per_success(m: Measures, source: SuccessSource, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Cost per success with its interval: (cost per trace) / (success rate). The two come from the same
    traces and may move together (failing traces that retry cost more), so their bounds are not combined as
    if independent: each is taken at half the error (Bonferroni), low cost over high rate and high cost over
    low rate, which holds whatever their correlation. Its value is group_figures' cost_per_success_usd. A rate
    whose interval reaches 0 leaves it no upper bound (``high`` None, said in ``note``)."""
    return _per_success(*_at_half_error(m, source, confidence))


def _at_half_error(m: Measures, source: SuccessSource, confidence: float) -> tuple[Interval, Interval]:
    """The cost per trace and the success rate, each at half the error: together they hold at ``confidence``."""
    half = 1 - (1 - confidence) / 2
    return cost_per_trace(m, half), source.estimate(m, half).interval


def _per_success(cost: Interval, rate: Interval) -> Interval:
    if cost.value is None or rate.value is None:
        return Interval.undefined((cost.note if cost.value is None else rate.note) or "no success rate")
    if not (cost.value > 0 and rate.value > 0):
        return Interval.undefined("cost per success needs a positive cost and success rate")
    low = cost.low / rate.high if cost.low is not None and rate.high else None
    high = cost.high / rate.low if cost.high is not None and rate.low else None
    note = "no upper bound: the success rate's interval reaches 0" if high is None and rate.low == 0 else None
    return Interval(cost.value / rate.value, low, high, note)


def _roi(cost: Interval, rate: Interval, value_per_success_usd: float) -> Interval:
    """ROI ((value - cost) / cost) with its interval: value per success x success rate / cost per trace - 1, from the
    same two intervals as cost per success (low rate over high cost, high rate over low cost). Defined with no
    success too (its low is then -1: all cost, no value); a cost per trace whose interval reaches 0 leaves it no
    upper bound."""
    if cost.value is None or rate.value is None:
        return Interval.undefined((cost.note if cost.value is None else rate.note) or "no success rate")
    if not cost.value > 0:
        return Interval.undefined("no cost recorded: ROI is undefined")
    vps = value_per_success_usd
    low = vps * rate.low / cost.high - 1.0 if rate.low is not None and cost.high else None
    high = vps * rate.high / cost.low - 1.0 if rate.high is not None and cost.low else None
    note = "no upper bound: the cost per trace's interval reaches 0" if high is None and cost.low == 0 else None
    return Interval(vps * rate.value / cost.value - 1.0, low, high, note)


def _around(value: float, interval: Interval) -> Interval:
    """``interval`` about ``value`` (the figure as the group computes it): the bounds widened to hold it where the
    two differ in the last digits (the figure's cost is rounded to 8 decimals)."""
    low = None if interval.low is None else min(interval.low, value)
    high = None if interval.high is None else max(interval.high, value)
    return Interval(value, low, high, interval.note)


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def group_figures(
    measures: Measures, *, source: SuccessSource, value_per_success_usd: float | None, intervals: bool = False
) -> dict[str, Any]:
    """The group's figures. ``intervals``: also cost per success and ROI with their intervals (``cost_per_success``,
    ``roi_interval``: interval objects beside the plain numbers API.md names), for the figures a page or report
    shows, not a chart's every point (they read the success source once more, at half the error)."""
    m = measures
    notes: dict[str, str] = {}
    estimate = source.estimate(m)
    if estimate.note:
        notes["success"] = estimate.note
    rate = estimate.interval.value
    successes: float | None = None
    if rate is not None:
        successes = float(m.outcome_traces) if source.name == "outcomes" else rate * m.traces
    cost = round(m.cost_usd, 8)
    cost_per_success_value = None
    if successes is None:
        notes["cost_per_success_usd"] = f"success undefined: {estimate.interval.note}"
    elif successes == 0:
        notes["cost_per_success_usd"] = "zero successes: cost per success is undefined"
    else:
        cost_per_success_value = cost / successes
    value = None
    roi = None
    if value_per_success_usd is None:
        notes["value_usd"] = notes["roi"] = NO_VALUE_NOTE
    elif successes is None:
        notes["value_usd"] = notes["roi"] = f"success undefined: {estimate.interval.note}"
    else:
        value = successes * value_per_success_usd
        if cost > 0:
            roi = (value - cost) / cost
        else:
            notes["roi"] = "no cost recorded: ROI is undefined"
    if m.traces and m.costed_traces < m.traces:
        notes["cost_usd"] = f"{m.traces - m.costed_traces} of {m.traces} traces have no cost"
    thumbs = m.thumbs_up + m.thumbs_down
    extra: dict[str, Any] = {}
    if intervals:
        halves = _at_half_error(m, source, DEFAULT_CONFIDENCE)  # one read of each for both intervals
        per_success = Interval.undefined(notes.get("cost_per_success_usd", ""))
        if cost_per_success_value is not None:
            per_success = _around(cost_per_success_value, _per_success(*halves))
        roi_range = Interval.undefined(notes.get("roi", ""))
        if roi is not None and value_per_success_usd is not None:
            roi_range = _around(roi, _roi(*halves, value_per_success_usd))
        extra = {"cost_per_success": per_success.as_dict(), "roi_interval": roi_range.as_dict()}
    return {
        "traces": m.traces,
        "explicit_feedback_rate": _share(m.explicit_feedback, m.traces),
        "thumbs_up_share": _share(m.thumbs_up, thumbs),
        "thumbs_down_share": _share(m.thumbs_down, thumbs),
        "thumbs": thumbs,
        "mean_rating": _share(m.ratings_sum, m.ratings),
        "edit_rate": _share(m.edited_traces, m.traces),
        "mean_edit_distance": _share(m.edit_distance_sum, m.edits),
        "implicit_rates": {kind: _share(m.traces_by_kind.get(kind, 0), m.traces) for kind in IMPLICIT},
        "fallback_rate": _share(m.fallbacks, m.traces),
        "guardrail_block_rate": _share(m.guardrail_blocks, m.traces),
        "error_rate": _share(m.errors, m.traces),
        "success": {**estimate.interval.as_dict(), "source": estimate.source, "n": estimate.n},
        "successes": successes,
        "cost_usd": cost,
        "cost_per_success_usd": cost_per_success_value,
        "value_usd": value,
        "roi": roi,
        "latency_ms": {f"p{q}": quantile(m.latency_sketch, q / 100) for q in (50, 95, 99)},
        "ttft_ms": {f"p{q}": quantile(m.ttft_sketch, q / 100) for q in (50, 95)},
        "notes": notes,
        **extra,
    }
