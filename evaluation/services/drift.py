"""Drift of a feature between a baseline window and the current one: distribution shifts (PSI and
Kolmogorov-Smirnov) of judge score, response length, latency and feedback rate, and, per rate, the
segments that explain its move (evaluation.stats.rootcause: mix and rate effects). Counts come from
the rollups' own SQL (feedback.rollups.measures_query) and success from the reports' source."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from evaluation.models import DriftSnapshot, Experiment
from evaluation.reports.calibrated import feature_calibrations, gating_calibration
from evaluation.reports.measures import JudgedSums, Measures, total
from evaluation.reports.selectors import Window, judged_by, labelled_by
from evaluation.reports.shift import DISTRIBUTIONS, MIN_SAMPLE, distribution_shift
from evaluation.reports.success import CalibratedJudgeSource, HumanLabelsSource
from evaluation.services.shared import utc_now
from evaluation.stats.rootcause import Counts, partitions_from_cells, root_causes
from feedback.enums import EXPLICIT_KINDS
from feedback.models import Feature, PromptVersion
from feedback.rollups import measures_query

SAMPLE = 20_000
MAX_KEYS = 6
MAX_VALUES = 40
KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,100}\Z")
DEFAULTS = {"days": 7, "baseline_days": 14, "gap_days": 7}
MOVED = 0.03  # a rate 3% (relative) worse than its baseline is "moved" in the digest
SEGMENT_Z = 3.5  # a segment's own move must clear this z to be named (dozens of segments are tried)
PROPORTIONS = ("success", "thumbs_down_share", "edit_rate", "error_rate")


def drift_windows(
    *, days: int = 7, baseline_days: int = 14, gap_days: int = 7, today: date | None = None
) -> tuple[Window, Window]:
    """Current: the last ``days`` whole UTC days before today. Baseline: ``baseline_days`` whole days
    ending ``gap_days`` before the current window starts, so a change that ramps in over a few days
    shows whole rather than half in both. Today is left out, as the feature page's charts leave it: its
    outcomes and feedback are still arriving, and a partial day set against whole ones reads as a fall
    (one day each side, with today in: success 0.537 -> 0.340 on the demo, nothing real)."""
    if not (1 <= days <= 90 and 1 <= baseline_days <= 180 and 0 <= gap_days <= 180):
        raise ValueError("days 1-90, baseline_days 1-180, gap_days 0-180")
    today = today or utc_now().date()
    end = datetime.combine(today, time(0), UTC)
    start = end - timedelta(days=days)
    base_end = start - timedelta(days=gap_days)
    return Window(base_end - timedelta(days=baseline_days), base_end), Window(start, end)


# --- rates and their root cause ------------------------------------------------------------------------

# name -> (label, numerator, denominator, bad direction)
RateSpec = tuple[str, Callable[[Measures], float], Callable[[Measures], float], int]


def _calibrated_success(judged: JudgedSums) -> RateSpec | None:
    """Success from a gating judge's calibrated scores, as a share per cell: each cell's Hajek mean score plus
    one correction for every cell and both windows (the uniform audit's over them all: a steady judge bias
    cancels in a change, as the alerts read it). Its counts are the scored traces' weights scaled to the
    number scored, so cells add up to the Hajek mean of their union and the noise tests see the traces the
    judge read, not the ones its weights stand for. None without a scored trace or with too few audit labels."""
    if judged.scored == 0 or judged.audited < CalibratedJudgeSource.MIN_AUDITED:
        return None
    correction, scale = judged.r_sum / judged.audited, judged.scored / judged.w

    def good(m: Measures) -> float:
        return min(max(m.judged.wf + correction * m.judged.w, 0.0), m.judged.w) * scale

    return ("Success (calibrated judge)", good, lambda m: m.judged.w * scale, -1)


def _success(before: Measures, after: Measures) -> tuple[str, RateSpec]:
    """Success per segment as the reports read it first (both windows' measures decide): a gating judge's
    calibrated scores, else the uniform audit's human labels (HumanLabelsSource's minimum in each window, as a
    report of either window would read them), else outcomes, else thumbs; the source's name and its rate."""
    both = Measures().add(before).add(after)
    calibrated = _calibrated_success(both.judged)
    if calibrated is not None:
        return "calibrated_judge", calibrated
    if min(before.human.labelled, after.human.labelled) >= HumanLabelsSource.MIN_LABELS:
        return "human_labels", ("Success (human labels)", lambda m: m.human.good, lambda m: m.human.labelled, -1)
    if both.outcomes:
        return "outcomes", ("Success (outcomes)", lambda m: m.outcome_traces, lambda m: m.traces, -1)
    return "thumbs", ("Success (thumbs)", lambda m: m.good_traces, lambda m: m.rated_traces, -1)


def _rates(success: RateSpec) -> dict[str, RateSpec]:
    return {
        "success": success,
        "thumbs_down_share": ("Thumbs-down share", lambda m: m.thumbs_down, lambda m: m.thumbs_up + m.thumbs_down, 1),
        "edit_rate": ("Edit rate", lambda m: m.edited_traces, lambda m: m.traces, 1),
        "error_rate": ("Error rate", lambda m: m.errors, lambda m: m.traces, 1),
        "cost_per_trace_usd": ("Cost per trace (USD)", lambda m: m.cost_usd, lambda m: m.traces, 1),
    }


def segment_keys(feature: Feature, window: Window) -> list[str]:
    """The feature's declared segment keys, then other metadata keys of its traces in the window with
    2 to MAX_VALUES values (a key with one value or an ID per trace segments nothing)."""
    keys = [k for k in (feature.segment_keys or []) if KEY.match(k)]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT k, count(DISTINCT t.metadata ->> k) AS n
            FROM feedback_trace t, jsonb_object_keys(CASE WHEN jsonb_typeof(t.metadata) = 'object'
                                                           THEN t.metadata ELSE '{}'::jsonb END) k
            WHERE t.feature_id = %s AND t.day BETWEEN %s AND %s
            GROUP BY k ORDER BY count(*) DESC LIMIT 50
            """,
            [feature.id, window.first_day, window.last_day],
        )
        for key, n in cursor.fetchall():
            if key not in keys and KEY.match(key) and 2 <= n <= MAX_VALUES:
                keys.append(key)
    return keys[:MAX_KEYS]


def _holdbacks(feature: Feature) -> list[str]:
    """ "experiment/variant" of every holdback arm on the feature: the non-AI path is an experiment's
    yardstick, not the AI's behaviour, so drift leaves it out."""
    return [
        f"{e.key}/{arm['name']}"
        for e in Experiment.objects.filter(feature=feature)
        for arm in e.arms
        if arm.get("holdback")
    ]


NOT_HOLDBACK = "(t.experiment || '/' || t.variant) <> ALL(%(holdbacks)s)"


def _finest(feature: Feature, window: Window, keys: list[str]) -> dict[tuple[Any, ...], Measures]:
    dims = ["t.prompt_version_id", "t.model", "t.customer_id"] + [f"t.metadata ->> %(k{i})s" for i in range(len(keys))]
    sql = measures_query(
        dims=dims,
        traces_from="FROM feedback_trace t WHERE t.feature_id = %(feature)s AND t.day BETWEEN %(d0)s AND %(d1)s "
        f"AND t.started_at >= %(since)s AND t.started_at < %(until)s AND {NOT_HOLDBACK}",
        feedback_where="f.feature_id = %(feature)s AND f.trace_day BETWEEN %(d0)s AND %(d1)s",
    )
    params: dict[str, Any] = {
        "feature": feature.id,
        "d0": window.first_day,
        "d1": window.last_day,
        "since": window.since,
        "until": window.until,
        "holdbacks": _holdbacks(feature),
    }
    params.update({f"k{i}": k for i, k in enumerate(keys)})
    labels: dict[Any, Any] = dict(PromptVersion.objects.values_list("id", "label"))
    out: dict[tuple[Any, ...], Measures] = {}
    n = len(dims)

    def key_of(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return (labels.get(row[0]), row[1] or None, row[2] or None, *row[3:n])

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for row in cursor.fetchall():
            key, m = key_of(row), Measures.from_row(row[n:])
            if key in out:
                out[key].add(m)
            else:
                out[key] = m
    # A gating judge's calibrated scores per cell, where one is calibrated on the feature: success read as the
    # reports read it first.
    judged = judged_by(feature=feature, window=window, exprs=dims, params=params, where=f" AND {NOT_HOLDBACK}")
    for raw, sums in (judged or {}).items():
        out.setdefault(key_of(raw), Measures()).judged.add(sums)
    if not judged:  # no gating judge scored here: the uniform audit's human labels, as the reports read them next
        labelled = labelled_by(feature=feature, window=window, exprs=dims, params=params, where=f" AND {NOT_HOLDBACK}")
        for raw, counts in labelled.items():
            out.setdefault(key_of(raw), Measures()).human.add(counts)
    return out


def _rate_of(m: Measures, spec: RateSpec) -> float | None:
    den = spec[2](m)
    return spec[1](m) / den if den else None


def root_cause_report(
    feature: Feature, baseline: Window, current: Window, *, top: int = 10
) -> tuple[list[dict[str, Any]], str]:
    keys = segment_keys(feature, current)
    before, after = _finest(feature, baseline, keys), _finest(feature, current, keys)
    baseline_total, current_total = total(before), total(after)
    source_name, success = _success(baseline_total, current_total)
    both = Measures().add(baseline_total).add(current_total)
    # The calibrated judge's one correction (label - score, over both windows' audit), where it is read: the page says.
    judged = source_name == "calibrated_judge"
    audit = {"correction": both.judged.r_sum / both.judged.audited, "audited": both.judged.audited} if judged else {}
    dims = ("prompt_version", "model", "customer_id", *(f"metadata.{k}" for k in keys))
    out = []
    for name, spec in _rates(success).items():
        label, num, den, bad = spec
        cells = {
            key: Counts(
                num(before[key]) if key in before else 0.0,
                den(before[key]) if key in before else 0.0,
                num(after[key]) if key in after else 0.0,
                den(after[key]) if key in after else 0.0,
            )
            for key in set(before) | set(after)
        }
        decomposition = root_causes(partitions_from_cells(cells, dims), direction=bad, top=top)
        baseline_n, current_n = sum(c.den0 for c in cells.values()), sum(c.den1 for c in cells.values())
        out.append(
            {
                "metric": name,
                "label": label,
                "bad_direction": "up" if bad > 0 else "down",
                "baseline": decomposition.rate0,
                "current": decomposition.rate1,
                "change": decomposition.change,
                "baseline_n": baseline_n,
                "current_n": current_n,
                "note": decomposition.note,
                "correction": audit.get("correction") if name == "success" else None,
                "audited": audit.get("audited") if name == "success" else None,
                "segments": [
                    {
                        "segment": c.label,
                        "parts": [{"dimension": d, "value": v} for d, v in c.segment],
                        "contribution": c.total,
                        "mix": c.mix,
                        "rate": c.rate,
                        "share_of_change": c.share_of_change,
                        "baseline_share": c.weight0,
                        "current_share": c.weight1,
                        "baseline_rate": c.rate0,
                        "current_rate": c.rate1,
                        # What each rate is a share of (traces, thumbs, or the judge's scored traces).
                        "baseline_count": c.weight0 * baseline_n,
                        "current_count": c.weight1 * current_n,
                        "refines": " × ".join(f"{d}={v}" for d, v in c.refines) if c.refines else None,
                    }
                    for c in decomposition.ranked
                ],
            }
        )
    return out, source_name


# --- distributions --------------------------------------------------------------------------------------


def scoring_judge(feature: Feature, baseline: Window, current: Window) -> tuple[int, str] | None:
    """The judge version whose scores the judge score's drift reads, and its name: the feature's gating judge (the
    one its reports read success from), else its most labelled calibrated one, else the one that scored most of
    its traces over both windows; None when none scored any. One judge: the average of every judge's scores on a
    trace (a lenient exploratory judge's with the gating one's) moved with their mix, not with the answers."""
    calibrations = feature_calibrations(feature)
    chosen = gating_calibration(feature, calibrations) or next(iter(calibrations), None)
    if chosen is not None:
        return chosen.judge_version_id, f"{chosen.judge} v{chosen.judge_version}"
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT s.judge_version_id, j.name, v.number FROM evaluation_score s
               JOIN feedback_trace t ON t.trace_id = s.trace_id
               JOIN evaluation_judgeversion v ON v.id = s.judge_version_id JOIN evaluation_judge j ON j.id = v.judge_id
               WHERE t.feature_id = %s AND t.day BETWEEN %s AND %s AND s.status = 'ok'
               GROUP BY 1, 2, 3 ORDER BY count(*) DESC, 1 LIMIT 1""",
            [feature.id, baseline.first_day, current.last_day],
        )
        row = cursor.fetchone()
    return (row[0], f"{row[1]} v{row[2]}") if row else None


def _samples(feature: Feature, window: Window, judge_version_id: int | None) -> dict[str, np.ndarray]:
    explicit = [str(k) for k in EXPLICIT_KINDS]
    sql = """
        SELECT t.latency_ms, char_length(t.output),
               EXISTS (SELECT 1 FROM feedback_feedbackevent f WHERE f.trace_id = t.trace_id AND f.kind = ANY(%s)),
               (SELECT avg(s.score) FROM evaluation_score s
                WHERE s.trace_id = t.trace_id AND s.status = 'ok' AND s.judge_version_id = %s)
        FROM feedback_trace t
        WHERE t.feature_id = %s AND t.day BETWEEN %s AND %s AND t.started_at >= %s AND t.started_at < %s
          AND (t.experiment || '/' || t.variant) <> ALL(%s)
        ORDER BY md5(t.trace_id) LIMIT %s
    """
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                explicit,
                judge_version_id,
                feature.id,
                window.first_day,
                window.last_day,
                window.since,
                window.until,
                _holdbacks(feature),
                SAMPLE,
            ],
        )
        rows = cursor.fetchall()

    def col(i: int) -> np.ndarray:
        return np.array([float(r[i]) for r in rows if r[i] is not None], dtype=float)

    return {"latency_ms": col(0), "response_length": col(1), "feedback_rate": col(2), "judge_score": col(3)}


def feature_drift(*, feature: Feature, baseline: Window, current: Window, top: int = 10) -> dict[str, Any]:
    """The drift page and the daily snapshot: distributions, then rates with their root causes."""
    with transaction.atomic(), connection.cursor() as cursor:
        # Its aggregates sort or hash every trace of both windows: with PostgreSQL's default 4 MB they
        # spill to disk (at 300,000 traces a window: 4.8 s a page, 3.0 s with 64 MB).
        cursor.execute("SELECT set_config('work_mem', %s, true)", [settings.REPORT_WORK_MEM])
        judge = scoring_judge(feature, baseline, current)
        judge_version_id = judge[0] if judge else None
        before, after = _samples(feature, baseline, judge_version_id), _samples(feature, current, judge_version_id)
        rates, source = root_cause_report(feature, baseline, current, top=top)
    distributions = [distribution_shift(name, before[name], after[name]) for name in DISTRIBUTIONS]
    for row in distributions:
        if row["metric"] == "judge_score":
            row["judge"] = judge[1] if judge else None
            if judge is None:
                row["note"] = "no judge scored this feature's traces"
    return {
        "feature": feature.key,
        "baseline": baseline.as_dict(),
        "current": current.as_dict(),
        "success_source": source,
        "distributions": distributions,
        "rates": rates,
        "computed_at": utc_now().isoformat(),
        "shape": SNAPSHOT_SHAPE,
    }


def drift_snapshot_store(*, feature: Feature, today: date | None = None) -> DriftSnapshot:
    """Today's drift of the feature with the default windows (idempotent per feature and day)."""
    today = today or utc_now().date()
    baseline, current = drift_windows(
        today=today, days=DEFAULTS["days"], baseline_days=DEFAULTS["baseline_days"], gap_days=DEFAULTS["gap_days"]
    )
    result = feature_drift(feature=feature, baseline=baseline, current=current)
    snapshot, _ = DriftSnapshot.objects.update_or_create(feature=feature, day=today, defaults={"result": result})
    return snapshot


def drift_snapshot_today(*, feature: Feature, refresh: bool = False) -> DriftSnapshot:
    """Today's snapshot (the default windows): the stored one, else, or when ``refresh``, computed and
    stored now (a refresh within RECOMPUTE_EVERY of the last computation returns that one). What the drift
    page shows by default: seconds of aggregation at a few hundred thousand traces a week, paid once a
    day (the beat's, or the first view's) or when someone asks for it again."""
    snapshot = DriftSnapshot.objects.filter(feature=feature, day=utc_now().date()).first()
    if snapshot is not None:
        computed = datetime.fromisoformat(snapshot.result["computed_at"])
        current_shape = snapshot.result.get("shape") == SNAPSHOT_SHAPE  # else taken before the page read its figures
        if current_shape and (not refresh or utc_now() - computed < RECOMPUTE_EVERY):
            return snapshot
    return drift_snapshot_store(feature=feature)


# A recompute asked for within this long of the last computation returns that one.
RECOMPUTE_EVERY = timedelta(minutes=1)
# What a snapshot holds, counted up when that changes (2: each distribution's bins): today's snapshot of an older
# shape is computed again when asked for, rather than shown without what the page now reads from it.
SNAPSHOT_SHAPE = 2


def drift_snapshots_daily(*, today: date | None = None) -> int:
    """Beat, once a day per organization: a snapshot of every feature with traces in the last 30 days."""
    today = today or utc_now().date()
    features = _active_features(today)
    for feature in features:
        drift_snapshot_store(feature=feature, today=today)
    return len(features)


def _active_features(today: date) -> list[Feature]:
    from feedback.models import DailyRollup

    ids = set(DailyRollup.objects.filter(day__gte=today - timedelta(days=30)).values_list("feature_id", flat=True))
    return list(Feature.objects.filter(id__in=ids).order_by("key"))


def top_cause(result: dict[str, Any]) -> dict[str, Any] | None:
    """What the digest names as the week's likely cause, or None when nothing moved beyond noise.

    A share that moved the bad way clearly overall (the largest two-proportion z, at least 2, and MOVED
    relative), with its first-ranked segment. When no share moved overall, a segment whose own rate did
    (z at least SEGMENT_Z, stricter since many segments are tried; MIN_SAMPLE traces each side) is named
    under ``within``: a regression one segment suffers while the others hold the overall rate (the demo's
    SSO accounts on support-v2.3) is what a PM most needs the digest to say. Per rate, the first such
    segment in the drift page's ranking; of the rates, the one whose segment fell clearest.
    """
    best: tuple[float, dict[str, Any]] | None = None
    inside: tuple[float, dict[str, Any], dict[str, Any]] | None = None
    for rate in result.get("rates", []):
        base, cur, n0, n1 = rate["baseline"], rate["current"], rate["baseline_n"], rate["current_n"]
        if rate["metric"] not in PROPORTIONS or None in (base, cur) or not (base and n0 and n1) or not rate["segments"]:
            continue
        sign = 1 if rate["bad_direction"] == "up" else -1
        z = _worse_z(base, cur, n0, n1, sign)
        if z >= 2 and (cur - base) * sign / base > MOVED and (best is None or z > best[0]):
            best = (z, rate)
        # The first segment in the drift page's own order whose rate clearly fell: the largest z of all would
        # pick a narrower slice of it by chance (sso x one model, where sso itself fell as far).
        for segment in rate["segments"]:
            r0, r1 = segment["baseline_rate"], segment["current_rate"]
            m0, m1 = (segment["baseline_share"] or 0) * n0, (segment["current_share"] or 0) * n1
            if None in (r0, r1) or not r0 or min(m0, m1) < MIN_SAMPLE:
                continue
            z = _worse_z(r0, r1, m0, m1, sign)
            if z >= SEGMENT_Z and (r1 - r0) * sign / r0 > MOVED:
                if inside is None or z > inside[0]:
                    inside = (z, rate, segment)
                break
    alike = False
    named: dict[str, Any] | None = None
    if best is not None:
        z, rate = best
        within = None
        # Ranked by how much of the move it carries, the first segment of a rate that fell everywhere is merely the
        # largest (the majority's auth=password): the cause named is the first in that order whose own rate fell
        # beyond the rest's (sso, 10% of traces, 60% -> 30% while password went 60% -> 55%); none such, and the
        # first is said to have fallen as the others did.
        first, *rest = rate["segments"]
        if _fell_apart(rate, first) is False:
            named = next((segment for segment in rest if _fell_apart(rate, segment)), None)
            alike = named is None
    elif inside is not None:
        z, rate, segment = inside
        within = {"segment": segment["segment"], "baseline": segment["baseline_rate"],
                  "current": segment["current_rate"]}  # fmt: skip
    else:
        return None
    return {
        "metric": rate["label"],
        "baseline": rate["baseline"],
        "current": rate["current"],
        "relative_change": (rate["current"] - rate["baseline"]) / rate["baseline"],
        "z": z,
        "segment": (named or rate["segments"][0])["segment"],
        "within": within,
        "alike": alike,
    }


def _fell_apart(rate: dict[str, Any], segment: dict[str, Any]) -> bool | None:
    """Whether the segment's rate moved the bad way beyond the rest of the traces' (the difference of the two
    changes, z at least 2), None where either side is too small to tell."""
    n0, n1 = rate["baseline_n"], rate["current_n"]
    r0, r1 = segment["baseline_rate"], segment["current_rate"]
    m0, m1 = (segment["baseline_share"] or 0) * n0, (segment["current_share"] or 0) * n1
    if None in (r0, r1) or min(m0, m1, n0 - m0, n1 - m1) < MIN_SAMPLE:
        return None
    # The rest's rates: the whole's count less the segment's, over the rest's traces.
    c0 = min(max((rate["baseline"] * n0 - r0 * m0) / (n0 - m0), 0.0), 1.0)
    c1 = min(max((rate["current"] * n1 - r1 * m1) / (n1 - m1), 0.0), 1.0)
    variance = sum(r * (1 - r) / n for r, n in ((r0, m0), (r1, m1), (c0, n0 - m0), (c1, n1 - m1)))
    sign = 1 if rate["bad_direction"] == "up" else -1
    return variance > 0 and ((r1 - r0) - (c1 - c0)) * sign / math.sqrt(variance) >= 2


def likely_causes(feature_keys: list[str], *, first_day: date, last_day: date) -> dict[str, dict[str, Any]]:
    """Each feature's likely cause (``top_cause``) from its latest drift snapshot describing days within the
    ones given (a snapshot of day D reads the whole days before D: taken from first_day + 1 to last_day + 1),
    by feature key; a feature without one, or whose drift moved nothing beyond noise, is left out."""
    if not feature_keys:
        return {}
    since, until = first_day + timedelta(days=1), last_day + timedelta(days=1)
    snapshots = (
        DriftSnapshot.objects.filter(feature__key__in=feature_keys, day__gte=since, day__lte=until)
        .select_related("feature")
        .order_by("feature_id", "-day")
        .distinct("feature_id")
    )
    found: dict[str, dict[str, Any]] = {}
    for snapshot in snapshots:
        cause = top_cause(snapshot.result)
        if cause is not None:
            # Which days the snapshot compared: the cause is its own, whatever window the page shows.
            found[snapshot.feature.key] = {**cause, **days_compared(snapshot.result)}
    return found


def drift_summaries(*, today: date | None = None) -> list[dict[str, Any]]:
    """The drift index's rows, worst first, from each feature's latest snapshot of the last 7 days (read, never
    computed: opening a feature's page computes today's): its likely cause, the distributions that moved
    (PSI over 0.1, worst first) and the days compared. A feature without a recent snapshot has
    ``snapshot`` None."""
    today = today or utc_now().date()
    features = list(Feature.objects.order_by("key"))
    latest = {
        snapshot.feature_id: snapshot
        for snapshot in DriftSnapshot.objects.filter(
            feature__in=features, day__gte=today - timedelta(days=7), day__lte=today
        )
        .order_by("feature_id", "-day")
        .distinct("feature_id")
    }
    rows = []
    for feature in features:
        snapshot = latest.get(feature.id)
        row: dict[str, Any] = {"feature": feature, "snapshot": snapshot, "cause": None, "moved": []}
        if snapshot is not None:
            result = snapshot.result
            row["cause"] = top_cause(result)
            row["moved"] = sorted(
                (d for d in result.get("distributions", []) if d.get("status") in ("moderate", "shifted")),
                key=lambda d: -(d.get("psi") or 0.0),
            )
            row.update(days_compared(result))
        rows.append(row)
    # What needs a look first: a likely cause, then distributions that moved (the largest PSI first), then the
    # features read this week, then the rest; by key (as people read it, not by code point) within each.
    rows.sort(key=lambda r: (r["cause"] is None, -max((d.get("psi") or 0.0 for d in r["moved"]), default=0.0),
                             r["snapshot"] is None, r["feature"].key.lower(), r["feature"].key))  # fmt: skip
    return rows


def days_compared(result: dict[str, Any]) -> dict[str, str]:
    """A snapshot's windows as "11-27 to 12-03" (whole days, the last one included)."""

    def days(window: dict[str, str] | None) -> str:
        if not window:
            return ""
        since = datetime.fromisoformat(window["since"])
        last = datetime.fromisoformat(window["until"]) - timedelta(days=1)
        return f"{since:%m-%d} to {last:%m-%d}"

    return {"current_days": days(result.get("current")), "baseline_days": days(result.get("baseline"))}


def _worse_z(base: float, cur: float, n0: float, n1: float, sign: int) -> float:
    """Two-proportion z of the move, positive when it went the bad way."""
    se = math.sqrt(base * (1 - base) / n0 + cur * (1 - cur) / n1)
    return (cur - base) * sign / se if se else 0.0
