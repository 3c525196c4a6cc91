"""Experiments: create and stop them, and read one's results (per arm: metric with interval, lift
versus control from an always-valid sequential test, guardrails, sample-ratio check) with a
plain-language verdict. Arms are the ``variant`` values of the feature's traces in the experiment's
window; their counts come from the rollups through the reports' selectors, and the success rate
from the reports' success source, named in every answer."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from statistics import NormalDist
from typing import Any

from django.db import connection, transaction
from django.db.models import Q

from evaluation.models import Experiment, ExperimentStatus, PrimaryMetric
from evaluation.reports.figures import group_figures
from evaluation.reports.measures import Measures, total
from evaluation.reports.selectors import ReportError, Window, feature_get, measures_by
from evaluation.reports.success import SuccessSource, success_source_for
from evaluation.services.shared import utc_now
from evaluation.stats import Interval, wilson
from evaluation.stats.intervals import z_value
from evaluation.stats.sequential import (
    MIN_PER_ARM,
    ArmSample,
    mixture_tau,
    msprt,
    plan,
    srm_check,
)

KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,200}\Z")
MAX_SEGMENT_VALUES = 10  # per declared key, the values with the most traces
OUTCOME_METRICS = (PrimaryMetric.CONVERSION, PrimaryMetric.VALUE)
GUARDRAIL_METRICS = {
    "cost_per_success_usd": "cost per success",
    "p95_latency_ms": "p95 latency",
    "fallback_rate": "fallback rate",
}
DEFAULT_GUARDRAILS: list[dict[str, Any]] = [
    {"metric": "cost_per_success_usd", "max_increase": 0.2},
    {"metric": "p95_latency_ms", "max_increase": 0.5},
    {"metric": "fallback_rate", "max_increase": 0.5},
]
METHOD = {
    "name": "mSPRT (mixture sequential probability ratio test, normal mixture)",
    "reference": "Johari, Koomen, Pekelis & Walsh, 'Peeking at A/B Tests', KDD 2017; 'Always Valid Inference: "
    "Continuous Monitoring of A/B Tests', Operations Research 70(3), 2022",
    "guarantee": "the chance of ever declaring a difference that is not there stays at or below alpha, however often "
    "the results are looked at; lift intervals are always-valid confidence sequences",
}


class ExperimentError(ValueError):
    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


# --- writes --------------------------------------------------------------------------------------------


def experiment_create(
    *,
    key: str,
    feature_key: str,
    arms: list[dict[str, Any]],
    control: str,
    mde: float,
    primary_metric: str = PrimaryMetric.SUCCESS,
    guardrails: list[dict[str, Any]] | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    max_days: int | None = None,
    started_at: datetime | None = None,
    name: str = "",
    hypothesis: str = "",
) -> Experiment:
    """Validates and stores an experiment; refuses one that overlaps a running experiment of the
    same feature (their arms would share the feature's traffic and the variant counts)."""
    if not key:
        raise ExperimentError("key", "required: 1-200 letters, digits and _.:- (the traces' `experiment` value)")
    if not KEY.match(key):
        raise ExperimentError(
            "key", f"{key[:40]!r} is not 1-200 letters, digits and _.:- (the traces' `experiment` value)"
        )
    if Experiment.objects.filter(key=key).exists():
        raise ExperimentError("key", f"an experiment {key!r} exists already")
    try:
        feature = feature_get(feature_key)
    except ReportError:
        raise ExperimentError("feature", f"no feature {feature_key!r}") from None
    clean_arms: list[dict[str, Any]] = []
    for arm in arms:
        arm_name = str(arm.get("name", "")).strip()
        if not KEY.match(arm_name):
            raise ExperimentError(
                "arms", f"arm {arm_name[:40]!r} is not a variant name: 1-200 letters, digits and _.:-"
            )
        allocation = float(arm.get("allocation", 0) or 0)
        if not 0 < allocation <= 1:
            # "control:50" read as a percent: the message says what an allocation is.
            raise ExperimentError("arms", f"the allocation of arm {arm_name} must be in (0, 1]: a share of traffic, "
                                  "e.g. control:0.5, ai:0.5 (not a percent)")  # fmt: skip
        clean_arms.append({"name": arm_name, "allocation": allocation, "holdback": bool(arm.get("holdback"))})
    names = [a["name"] for a in clean_arms]
    if len(clean_arms) < 2 or len(set(names)) != len(names):
        raise ExperimentError("arms", "at least two arms, each named once")
    if abs(sum(a["allocation"] for a in clean_arms) - 1.0) > 0.01:
        raise ExperimentError("arms", "the allocations must add up to 1")
    if control not in names:
        raise ExperimentError("control", "the control must be one of the arms")
    if primary_metric not in PrimaryMetric.values:
        raise ExperimentError("primary_metric", f"one of {', '.join(PrimaryMetric.values)}")
    if any(a["holdback"] for a in clean_arms) and primary_metric not in OUTCOME_METRICS:
        raise ExperimentError(
            "primary_metric",
            "a holdback arm (the non-AI path) has no AI output to rate, judge or edit: compare arms on an outcome "
            "(conversion or value)",
        )
    if not (isinstance(mde, int | float) and math.isfinite(mde) and 0 < mde < 1e9):
        raise ExperimentError("mde", "a positive absolute change (0.02 = 2 points)")
    if primary_metric != PrimaryMetric.VALUE and mde >= 1:
        raise ExperimentError("mde", f"for a rate, below 1 (0.02 = 2 points), not {mde:g}")
    if not 0 < alpha < 0.5 or not 0.5 <= power < 1:
        raise ExperimentError("alpha", "alpha in (0, 0.5) and power in [0.5, 1)")
    rails = DEFAULT_GUARDRAILS if guardrails is None else guardrails
    for rail in rails:
        if rail.get("metric") not in GUARDRAIL_METRICS or not float(rail.get("max_increase", -1)) >= 0:
            raise ExperimentError("guardrails", f"each is {{metric: {'/'.join(GUARDRAIL_METRICS)}, max_increase >= 0}}")
    if max_days is not None and not 1 <= max_days <= 365:
        raise ExperimentError("max_days", f"1 to 365 days, not {max_days}")
    start = started_at or utc_now()
    with transaction.atomic():
        # Lock the feature's experiments so two overlapping creations cannot both pass the check.
        list(Experiment.objects.select_for_update().filter(feature=feature))
        overlapping = Experiment.objects.filter(feature=feature).filter(
            Q(ended_at__isnull=True) | Q(ended_at__gt=start)
        )
        clash = overlapping.first()
        if clash is not None:
            raise ExperimentError(
                "feature",
                f"experiment {clash.key!r} on {feature.key} overlaps this one: stop it first (two experiments on one "
                "feature would share its traffic and variants)",
            )
        return Experiment.objects.create(
            key=key,
            feature=feature,
            arms=clean_arms,
            control=control,
            primary_metric=primary_metric,
            guardrails=[{"metric": r["metric"], "max_increase": float(r["max_increase"])} for r in rails],
            mde=float(mde),
            alpha=alpha,
            power=power,
            max_days=max_days,
            started_at=start,
            name=name,
            hypothesis=hypothesis,
        )


def experiment_stop(*, experiment: Experiment, at: datetime | None = None) -> Experiment:
    if experiment.status == ExperimentStatus.STOPPED:
        return experiment
    experiment.status = ExperimentStatus.STOPPED
    experiment.ended_at = at or utc_now()
    experiment.save(update_fields=["status", "ended_at"])
    return experiment


# --- reads ---------------------------------------------------------------------------------------------


def experiment_get(key: str) -> Experiment:
    experiment = Experiment.objects.select_related("feature").filter(key=key).first() if "\x00" not in key else None
    if experiment is None:
        raise ExperimentError("key", "no such experiment", 404)
    return experiment


def experiment_window(experiment: Experiment, now: datetime | None = None) -> Window:
    """Whole UTC days from the start's day to the end's (or today's) day, so the rollups answer."""
    now = now or utc_now()
    end = min(experiment.ended_at or now, now)
    since = datetime.combine(experiment.started_at.astimezone(UTC).date(), time(0), UTC)
    until = datetime.combine(end.astimezone(UTC).date() + timedelta(days=1), time(0), UTC)
    return Window(since, until)


@dataclass(frozen=True)
class MetricReading:
    interval: Interval
    sample: ArmSample
    n: int


def _reading(metric: str, m: Measures, source: SuccessSource, value: tuple[int, float, float] | None) -> MetricReading:
    """The primary metric of one arm: its estimate with interval, and what the sequential test uses."""
    no_outcomes = "no outcomes reported for this arm yet (a holdback reports them with variant=holdback)"
    if metric == PrimaryMetric.SUCCESS:
        estimate = source.estimate(m)
        n = estimate.n
        if source.name == "outcomes" and n and not m.outcomes:
            # Zero outcomes is far likelier unwired reporting than a true 0% (never a false verdict).
            return MetricReading(Interval.undefined(no_outcomes), ArmSample(0, math.nan, math.nan), 0)
        if source.name == "outcomes":
            return MetricReading(estimate.interval, ArmSample.proportion(m.outcome_traces, n), n)
        if source.name == "thumbs":
            return MetricReading(estimate.interval, ArmSample.proportion(m.good_traces, n), n)
        # Another source (a gating judge's calibrated estimate) carries more than binomial noise
        # (its audit correction): the test takes the variance its own interval implies.
        ci = estimate.interval
        if ci.value is None or ci.low is None or ci.high is None or not n:
            return MetricReading(ci, ArmSample(0, math.nan, math.nan), 0)
        se = (ci.high - ci.low) / (2 * z_value())
        return MetricReading(ci, ArmSample(n, ci.value, se * se * n), n)
    if metric == PrimaryMetric.THUMBS_UP:
        n = m.thumbs_up + m.thumbs_down
        return MetricReading(_wilson(m.thumbs_up, n, "no thumbs yet"), ArmSample.proportion(m.thumbs_up, n), n)
    if metric == PrimaryMetric.CONVERSION:
        n = m.traces
        if n and not m.outcomes:
            return MetricReading(Interval.undefined(no_outcomes), ArmSample(0, math.nan, math.nan), 0)
        return MetricReading(
            _wilson(m.outcome_traces, n, "no traces yet"), ArmSample.proportion(m.outcome_traces, n), n
        )
    if metric == PrimaryMetric.EDIT_DISTANCE:
        n = m.edits
        if not n:
            return MetricReading(Interval.undefined("no edits yet"), ArmSample(0, math.nan, math.nan), 0)
        sample = ArmSample.bounded_mean(m.edit_distance_sum, n)
        half = 1.96 * math.sqrt(sample.variance / n)
        return MetricReading(Interval(sample.mean, max(0.0, sample.mean - half), sample.mean + half), sample, n)
    # value: mean outcome value per trace, variance from the raw rows
    n, s1, s2 = value or (0, 0.0, 0.0)
    if not n or not m.outcomes:
        note = "no traces yet" if not n else no_outcomes
        return MetricReading(Interval.undefined(note), ArmSample(0, math.nan, math.nan), 0)
    mean = s1 / n
    variance = max(s2 / n - mean * mean, 0.0) * n / max(n - 1, 1)
    half = 1.96 * math.sqrt(variance / n)
    return MetricReading(Interval(mean, mean - half, mean + half), ArmSample(n, mean, variance), n)


def _wilson(x: float, n: int, note: str) -> Interval:
    return wilson(int(round(x)), n) if n else Interval.undefined(note)


def _value_sums(
    experiment: Experiment, window: Window, arms: list[str]
) -> dict[tuple[str, str], tuple[int, float, float]]:
    """(day, arm) -> (traces, sum, sum of squares) of each trace's outcome value (by trace or session)."""
    sql = """
        SELECT t.day, t.variant, count(*), COALESCE(sum(v.value), 0), COALESCE(sum(v.value * v.value), 0)
        FROM feedback_trace t
        LEFT JOIN LATERAL (
            SELECT COALESCE(sum(o.value_usd), 0)::float8 AS value FROM feedback_outcome o
            WHERE o.trace_id = t.trace_id OR o.attributed_trace_id = t.trace_id
        ) v ON true
        WHERE t.feature_id = %s AND t.day BETWEEN %s AND %s AND t.variant = ANY(%s)
        GROUP BY 1, 2
    """
    out = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [experiment.feature_id, window.first_day, window.last_day, arms])
        for day, arm, n, s1, s2 in cursor.fetchall():
            out[(day.isoformat(), arm)] = (int(n), float(s1), float(s2))
    return out


def _guardrails(
    experiment: Experiment, arm: dict[str, Any], figures: dict[str, dict[str, Any]], measures: dict[str, Measures]
) -> list[dict[str, Any]]:
    control = experiment.control
    out = []
    for rail in experiment.guardrails:
        metric, limit = rail["metric"], float(rail["max_increase"])
        row: dict[str, Any] = {"metric": metric, "max_increase": limit, "value": None, "control": None}
        holdbacks = {a["name"] for a in experiment.arms if a.get("holdback")}
        if metric == "p95_latency_ms":
            mine, theirs = figures[arm["name"]]["latency_ms"]["p95"], figures[control]["latency_ms"]["p95"]
        else:
            mine, theirs = figures[arm["name"]][metric], figures[control][metric]
        row["value"], row["control"] = mine, theirs
        if metric != "fallback_rate" and control in holdbacks:
            row.update(
                status="not_applicable", note="the control is the non-AI holdback: no AI cost or latency to compare"
            )
        elif min(measures[arm["name"]].traces, measures[control].traces) < MIN_PER_ARM:
            row.update(status="waiting", note=f"fewer than {MIN_PER_ARM} traces in an arm")
        elif mine is None or theirs is None:
            row.update(status="waiting", note="undefined for an arm so far")
        elif theirs == 0:
            breached = mine > limit if metric == "fallback_rate" else mine > 0
            row.update(status="breached" if breached else "ok", note="control is 0: compared with the limit itself")
        else:
            ratio = mine / theirs - 1.0
            row.update(status="breached" if ratio > limit else "ok", increase=ratio)
        out.append(row)
    return out


def experiment_results(experiment: Experiment, *, now: datetime | None = None, segments: bool = True) -> dict[str, Any]:
    """Everything a PM needs to call the experiment (see the module's docstring); ``segments``: with the
    breakdown by declared segment (the list of experiments leaves it out)."""
    now = now or utc_now()
    window = experiment_window(experiment, now)
    feature = experiment.feature
    arm_names = [a["name"] for a in experiment.arms]
    cells, _ = measures_by(feature=feature, window=window, dims=("day", "variant"))
    days = sorted({d for d, _ in cells if d})
    per_arm = {name: total({d: m for (d, v), m in cells.items() if v == name}) for name in arm_names}
    source = success_source_for(total(per_arm))
    vps = float(feature.value_per_success_usd) if feature.value_per_success_usd is not None else None
    figures = {name: group_figures(m, source=source, value_per_success_usd=vps) for name, m in per_arm.items()}
    metric = experiment.primary_metric
    higher_is_better = metric != PrimaryMetric.EDIT_DISTANCE
    sums = _value_sums(experiment, window, arm_names) if metric == PrimaryMetric.VALUE else {}

    def value_of(name: str, upto: str | None) -> tuple[int, float, float]:
        n = s1 = s2 = 0.0
        for (day, arm), (a, b, c) in sums.items():
            if arm == name and (upto is None or day <= upto):
                n, s1, s2 = n + a, s1 + b, s2 + c
        return int(n), s1, s2

    readings = {name: _reading(metric, per_arm[name], source, value_of(name, None)) for name in arm_names}
    counts = [per_arm[name].traces for name in arm_names]
    allocation = [a["allocation"] for a in experiment.arms]
    srm = srm_check(counts, allocation)
    # A holdback arm beside an AI control is the yardstick of what the AI adds (ROI over holdback), not a
    # candidate: its lift is shown, but it is neither tested for the verdict nor held to the AI's guardrails
    # (the non-AI path falls back by definition: it stopped every such experiment on its fallback rate).
    others = [a for a in experiment.arms if a["name"] != experiment.control]
    yardsticks = {a["name"] for a in others if a["holdback"]} if any(not a["holdback"] for a in others) else set()
    treatments = [a for a in others if a["name"] not in yardsticks]
    alpha_each = experiment.alpha / len(treatments)  # Bonferroni across treatment arms
    tau = mixture_tau(experiment.mde)
    arms_out = []
    tests: dict[str, Any] = {}
    for arm in experiment.arms:
        name = arm["name"]
        reading = readings[name]
        row: dict[str, Any] = {
            "name": name,
            "holdback": arm["holdback"],
            "allocation": arm["allocation"],
            "traces": per_arm[name].traces,
            "metric": {**reading.interval.as_dict(), "n": reading.n},
            "lift": None,
            "relative_lift": None,
            "p_value": None,
            "significant": False,
            "guardrails": [],
            "yardstick": name in yardsticks,
            "figures": {k: figures[name][k] for k in ("cost_usd", "cost_per_success_usd", "fallback_rate")}
            | {"p95_latency_ms": figures[name]["latency_ms"]["p95"]},
        }
        if name != experiment.control:
            looks = []
            for day in days:
                upto = {
                    a: total({d: m for (d, v), m in cells.items() if v == a and d <= day})
                    for a in (name, experiment.control)
                }
                c = _reading(metric, upto[experiment.control], source, value_of(experiment.control, day)).sample
                t = _reading(metric, upto[name], source, value_of(name, day)).sample
                looks.append((c, t))
            test = msprt(looks, tau=tau, alpha=alpha_each)
            if name not in yardsticks:
                tests[name] = test
            control_value = readings[experiment.control].interval.value
            row.update(
                lift=test.interval.as_dict(),
                p_value=test.p_value,
                significant=test.significant,
                relative_lift=(test.difference / control_value)
                if test.difference is not None and control_value
                else None,
                guardrails=[] if arm["holdback"] else _guardrails(experiment, arm, figures, per_arm),
            )
        arms_out.append(row)
    planned = _plan(experiment, {name: r for name, r in readings.items() if name not in yardsticks}, alpha_each)
    verdict = _verdict(experiment, per_arm, readings, tests, srm, arms_out, planned, window, source, now)
    # A winner whose lift is unlike itself in some segment (a prompt that fails one kind of user) ships with
    # that said beside the verdict, wherever the verdict is shown (the list and the digest read no segments).
    by_segment = _segments(experiment, window, source, metric) if segments or verdict["decision"] == "ship" else None
    if by_segment is not None and verdict["decision"] == "ship":
        flagged = [d for d in by_segment["differs"] if d["arm"] == verdict["arm"]]
        verdict["segments_differ"] = flagged
        if flagged:
            verdict["reason"] += "; but not alike for every user: " + "; ".join(
                f"for {d['segment']} its lift is {_pct(d['lift'])}, against {_pct(d['rest'])} for the rest"
                for d in flagged
            )
    return {
        "key": experiment.key,
        "name": experiment.name or experiment.key,
        "feature": feature.key,
        "hypothesis": experiment.hypothesis,
        "status": experiment.status,
        "started_at": experiment.started_at.isoformat(),
        "ended_at": experiment.ended_at.isoformat() if experiment.ended_at else None,
        "window": window.as_dict(),
        "primary_metric": {
            "name": metric,
            "label": PrimaryMetric(metric).label,
            "higher_is_better": higher_is_better,
            "source": source.name if metric == PrimaryMetric.SUCCESS else metric,
            "source_description": source.description if metric == PrimaryMetric.SUCCESS else None,
        },
        "control": experiment.control,
        "mde": experiment.mde,
        "alpha": experiment.alpha,
        "power": experiment.power,
        "max_days": experiment.max_days,
        "arms": arms_out,
        "srm": {
            "chi2": srm.chi2,
            "p_value": srm.p_value,
            "mismatch": srm.mismatch,
            "observed": dict(zip(arm_names, counts, strict=True)),
            "expected": dict(zip(arm_names, srm.expected, strict=True)),
        },
        "sequential_test": {
            **METHOD,
            "tau": tau,
            "alpha": experiment.alpha,
            "alpha_per_comparison": alpha_each,
            "min_per_arm": MIN_PER_ARM,
            "looks": len(days),
        },
        "plan": planned,
        "verdict": verdict,
        "segments": by_segment if segments else None,
    }


def _segments(experiment: Experiment, window: Window, source: SuccessSource, metric: str) -> dict[str, Any]:
    """The primary metric per arm within each value of the feature's declared segment keys, each
    treatment's difference from the control there, and whether that difference differs from the same
    treatment's difference over the key's other values (a prompt that fails one kind of user).

    Exploratory, not the decision: fixed-horizon intervals at the end of the window. The lifts are
    Bonferroni-corrected over the lifts computed, the "differs" tests over the tests made; a segment with
    fewer than MIN_PER_ARM traces in an arm (or whose rest has fewer) is left without one."""
    keys = list(experiment.feature.segment_keys or [])
    if metric == PrimaryMetric.VALUE:
        return {"keys": keys, "rows": [], "differs": [], "note": "Value per trace is not broken down by segment."}
    if not keys:
        note = "The feature declares no segment keys (Settings: segment keys)."
        return {"keys": [], "rows": [], "differs": [], "note": note}
    arm_names = [a["name"] for a in experiment.arms]
    treatments = [name for name in arm_names if name != experiment.control]

    def lift_of(arms: dict[str, Measures], name: str) -> tuple[float, float] | None:
        """(treatment - control, its variance) when both arms have enough traces."""
        c = _reading(metric, arms.get(experiment.control, Measures()), source, None).sample
        t = _reading(metric, arms.get(name, Measures()), source, None).sample
        if min(c.n, t.n) < MIN_PER_ARM or math.isnan(c.mean + t.mean):
            return None
        return t.mean - c.mean, t.variance / t.n + c.variance / c.n

    found: list[tuple[str, dict[str, Measures], dict[str, tuple[float, float] | None], dict[str, Any]]] = []
    for key in keys:
        cells, _ = measures_by(
            feature=experiment.feature, window=window, dims=("metadata", "variant"), metadata_key=key
        )
        per_value: dict[str, dict[str, Measures]] = {}
        for (value, arm), m in cells.items():
            if value is not None and arm in arm_names:
                per_value.setdefault(str(value), {})[arm] = m
        ranked = sorted(per_value.items(), key=lambda item: (-sum(m.traces for m in item[1].values()), item[0]))
        for position, (value, arms) in enumerate(ranked[:MAX_SEGMENT_VALUES]):
            others = {
                name: total({other: per_value[other].get(name, Measures()) for other in per_value if other != value})
                for name in arm_names
            }
            # Two values: "a against the rest" and "b against the rest" are one test, made once, for the
            # smaller segment (the one that differs from the bulk).
            compare = not (len(per_value) == 2 and position == 0)
            found.append(
                (
                    f"metadata.{key}={value}",
                    arms,
                    {name: lift_of(arms, name) for name in treatments},
                    {name: lift_of(others, name) if compare else None for name in treatments},
                )
            )
    lifts = sum(lift is not None for _, _, mine, _ in found for lift in mine.values())
    tests = sum(mine[n] is not None and rest[n] is not None for _, _, mine, rest in found for n in treatments)
    z = NormalDist().inv_cdf(1 - 0.05 / (2 * max(lifts, 1)))
    z_differs = NormalDist().inv_cdf(1 - 0.05 / (2 * max(tests, 1)))
    rows, differs = [], []
    for segment, arms, mine, rest in found:
        by_arm: list[dict[str, Any]] = []
        for name in arm_names:
            reading = _reading(metric, arms.get(name, Measures()), source, None)
            lift: dict[str, Any] | None = None
            own, elsewhere = mine.get(name), rest.get(name)
            if own is not None:
                difference, variance = own
                half = z * math.sqrt(variance)
                low, high = difference - half, difference + half
                lift = {"value": difference, "low": low, "high": high, "clear": low > 0 or high < 0,
                        "rest": None, "differs": False}  # fmt: skip
                if elsewhere is not None:
                    gap = difference - elsewhere[0]
                    lift["rest"] = elsewhere[0]
                    lift["differs"] = abs(gap) > z_differs * math.sqrt(variance + elsewhere[1])
                    if lift["differs"]:
                        differs.append({"segment": segment, "arm": name, "lift": difference, "rest": elsewhere[0]})
            by_arm.append(
                {"arm": name, "traces": arms.get(name, Measures()).traces, "metric": reading.interval.as_dict(),
                 "lift": lift}
            )  # fmt: skip
        rows.append({"segment": segment, "arms": by_arm})
    note = (
        "Exploratory: not the decision above. Fixed-horizon 95% intervals, Bonferroni-corrected over the "
        f'{lifts} differences computed; a lift is marked when its interval excludes 0. "Differs": the '
        f"segment's lift is clearly unlike the same arm's lift over the key's other values (a z-test on the "
        f"two, Bonferroni-corrected over its {tests} tests)."
    )
    return {"keys": keys, "rows": rows, "differs": differs, "note": note, "comparisons": lifts, "tests": tests}


def _plan(experiment: Experiment, readings: dict[str, MetricReading], alpha: float) -> dict[str, Any] | None:
    control = readings[experiment.control].interval.value
    if control is None or experiment.primary_metric == PrimaryMetric.VALUE:
        return None
    baseline = min(max(control, 0.01), 0.99)
    mde = experiment.mde if baseline + experiment.mde < 1 else -experiment.mde
    try:
        p = plan(baseline=baseline, mde=mde, alpha=alpha, power=experiment.power, tau=mixture_tau(experiment.mde))
    except ValueError:
        return None
    smallest = min(r.n for r in readings.values())
    return {
        "per_arm": p.per_arm,
        "baseline": baseline,
        "mde": experiment.mde,
        "power": experiment.power,
        "so_far_per_arm": smallest,
    }


def planner(*, baseline: float, mde: float, alpha: float = 0.05, power: float = 0.8, arms: int = 2) -> int:
    """Traces per arm (units the metric counts) for the sequential test to detect ``mde``."""
    return plan(baseline=baseline, mde=mde, alpha=alpha / max(arms - 1, 1), power=power).per_arm


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.1f} pts"


def _verdict(
    experiment: Experiment,
    per_arm: dict[str, Measures],
    readings: dict[str, MetricReading],
    tests: dict[str, Any],
    srm: Any,
    arms_out: list[dict[str, Any]],
    planned: dict[str, Any] | None,
    window: Window,
    source: SuccessSource,
    now: datetime,
) -> dict[str, Any]:
    metric_label = PrimaryMetric(experiment.primary_metric).label.lower()
    if experiment.primary_metric == PrimaryMetric.SUCCESS:
        metric_label = f"success rate (from {source.name})"
    days_run = max((now - experiment.started_at).total_seconds() / 86400, 0.0)
    out_of_time = experiment.max_days is not None and days_run >= experiment.max_days

    def say(decision: str, reason: str, arm: str | None = None) -> dict[str, Any]:
        return {"decision": decision, "arm": arm, "reason": reason, "metric_source": metric_label}

    missing = [name for name, m in per_arm.items() if m.traces == 0]
    if len(missing) == len(per_arm):
        return say(
            "keep_running",
            f"no traces of this experiment's arms ({', '.join(per_arm)}) on "
            f"{experiment.feature.key} yet: send each trace's variant",
        )
    if missing:
        return say(
            "keep_running",
            f"arm {', '.join(missing)} has no traces yet: check that the app sends "
            f"variant={missing[0]} on {experiment.feature.key}'s traces",
        )
    if srm.mismatch:
        return say(
            "stop",
            f"sample ratio mismatch: traces per arm {srm_text(per_arm)} are off the planned split "
            f"(chi-square p = {srm.p_value:.2g}); assignment or logging is broken, so no result can be trusted",
        )
    undefined = [name for name, r in readings.items() if r.interval.value is None]
    if undefined:
        note = readings[undefined[0]].interval.note or "undefined"
        return say(
            "keep_running",
            f"the {metric_label} is undefined for arm {', '.join(undefined)} ({note}); "
            "no verdict until every arm has data",
        )
    for row in arms_out:
        broken = [g for g in row["guardrails"] if g["status"] == "breached"]
        if broken:
            g = broken[0]
            return say(
                "stop",
                f"arm {row['name']} breaks the {GUARDRAIL_METRICS[g['metric']]} guardrail "
                f"({g['value']:.4g} vs control {g['control']:.4g}, more than +{g['max_increase']:.0%})",
                row["name"],
            )
    sign = 1.0 if experiment.primary_metric != PrimaryMetric.EDIT_DISTANCE else -1.0
    winners = [(n, t) for n, t in tests.items() if t.significant and (t.difference or 0) * sign > 0]
    losers = [(n, t) for n, t in tests.items() if t.significant and (t.difference or 0) * sign < 0]
    if winners:
        name, test = max(winners, key=lambda item: (item[1].difference or 0) * sign)
        ci = test.interval
        rails = next(row["guardrails"] for row in arms_out if row["name"] == name)
        said = []
        for status, words in (
            ("ok", "{} holding"),
            ("not_applicable", "{} not applying"),
            ("waiting", "{} not measurable yet"),
        ):
            these = [g for g in rails if g["status"] == status]
            if these:
                named = " and ".join(str(GUARDRAIL_METRICS[g["metric"]]) for g in these)
                said.append(words.format(named) + (f" ({these[0]['note']})" if status != "ok" else ""))
        held = "guardrails: " + "; ".join(said) if said else "no guardrails set"
        early = ""
        if planned and planned["so_far_per_arm"] < planned["per_arm"]:
            early = (
                f"; called with {planned['so_far_per_arm']:,} traces in its smallest arm, before the planner's "
                f"~{planned['per_arm']:,} "
                "(valid: the test is sequential; an early stop tends to overstate the lift)"
            )
        return say(
            "ship",
            f"{name} beats {experiment.control} on {metric_label} by {_pct(test.difference)} "
            f"(always-valid 95% interval {_pct(ci.low)} to {_pct(ci.high)}); {held}{early}",
            name,
        )
    if losers and len(losers) == len(tests):
        name, test = losers[0]
        return say(
            "stop",
            f"{name} is worse than {experiment.control} on {metric_label} by {_pct(test.difference)} "
            f"(always-valid interval {_pct(test.interval.low)} to {_pct(test.interval.high)})",
            name,
        )
    futile = [
        t
        for t in tests.values()
        if t.interval.defined and -experiment.mde < t.interval.low and t.interval.high < experiment.mde
    ]
    if tests and len(futile) == len(tests):
        return say(
            "stop",
            f"no arm moves {metric_label} by the minimum detectable effect ({experiment.mde:g}): "
            "every lift interval sits inside ±MDE",
        )
    if out_of_time:
        return say(
            "stop",
            f"inconclusive after {days_run:.0f} days (the planned maximum is {experiment.max_days}): "
            "no arm differs from control with confidence",
        )
    if planned:
        left = max(planned["per_arm"] - planned["so_far_per_arm"], 0)
        rate = planned["so_far_per_arm"] / max(days_run, 1.0)
        more = f"; at the current rate about {math.ceil(left / rate)} more days" if left and rate > 0 else ""
        return say(
            "keep_running",
            f"no significant difference yet: {planned['so_far_per_arm']:,} of the "
            f"~{planned['per_arm']:,} per arm the planner asks for to detect {experiment.mde:g}{more}",
        )
    return say("keep_running", "no significant difference yet")


# How a shipping verdict names its guardrails, by status (a breached one stops the experiment instead).
RAIL_WORDS = (("ok", "{} holding"), ("not_applicable", "{} not applying"), ("waiting", "{} not measurable yet"))


def srm_text(per_arm: dict[str, Measures]) -> str:
    return ", ".join(f"{name} {m.traces:,}" for name, m in per_arm.items())


def experiments_list(*, now: datetime | None = None) -> list[dict[str, Any]]:
    out = []
    for experiment in Experiment.objects.select_related("feature").order_by("-started_at"):
        results = experiment_results(experiment, now=now, segments=False)
        out.append(
            {
                k: results[k]
                for k in (
                    "key",
                    "name",
                    "feature",
                    "status",
                    "started_at",
                    "ended_at",
                    "control",
                    "primary_metric",
                    "verdict",
                )
            }
            | {"arms": [{"name": a["name"], "holdback": a["holdback"], "traces": a["traces"]} for a in results["arms"]]}
        )
    return out
