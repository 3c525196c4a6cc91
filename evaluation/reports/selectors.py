"""Reads behind the feature report, the feature page, customers and the overview.

Big numbers come from the rollups (feedback_dailyrollup by customer, feedback_versionrollup, the same
summed over customers, for every other grouping, and feedback_segmentrollup for metadata keys a
feature declares as segments); a window that is not whole UTC days, or a metadata key the
feature does not declare, is answered from the raw rows by the same SQL the rollups run
(feedback.rollups.measures_query), so both paths give the same figures.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import connection
from django.db.models import Exists, F, Max, Min, OuterRef, Q, Sum

from evaluation.models import Experiment, trace_labels_sql
from evaluation.reports.figures import cost_per_success, group_figures
from evaluation.reports.measures import JudgedSums, LabelSums, Measures, total
from evaluation.reports.success import SuccessSource, success_source_for
from evaluation.stats import mover_difference, mover_ratio
from feedback.models import DailyRollup, Feature, ModelRollup, PromptVersion, SegmentRollup, Trace, VersionRollup
from feedback.rollups import measures_query, rollup_sum_query
from tenants.templatetags.candor import unit_usd_filter

MAX_WINDOW_DAYS = 400
DEFAULT_WINDOW_DAYS = 30
SIMPLE_GROUPS = ("prompt_version", "variant", "customer_id", "model", "day")
METADATA_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,100}\Z")
GROUP_BY_PATTERN = r"^(prompt_version|variant|customer_id|model|day|metadata\.[A-Za-z0-9_.:-]{1,100})$"


class ReportError(ValueError):
    """Bad input: ``field`` names the parameter; ``status`` is 400 or 404."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


# --- window and grouping -------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """[since, until): since inclusive, until exclusive, both aware (UTC)."""

    since: datetime
    until: datetime

    @property
    def whole_days(self) -> bool:
        return all(t.time() == time(0) for t in (self.since, self.until))

    @property
    def reaches_today(self) -> bool:
        """The window ends inside today (UTC): its last day is still arriving."""
        return self.since <= datetime.now(UTC) < self.until

    @property
    def days(self) -> int:
        """How many UTC days have a moment inside the window."""
        return (self.last_day - self.first_day).days + 1

    @property
    def first_day(self) -> date:
        return self.since.date()

    @property
    def last_day(self) -> date:
        """The last UTC day with a moment inside the window."""
        return (self.until - timedelta(microseconds=1)).date()

    def previous(self) -> Window:
        return Window(self.since - (self.until - self.since), self.since)

    def as_dict(self) -> dict[str, str]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat()}


def _parse_when(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(name, "use a day (2025-01-31) or ISO 8601 (2025-01-31T12:00:00Z)") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def window_from(since: str = "", until: str = "", *, now: datetime | None = None) -> Window:
    """Defaults: until = the end of today (UTC), since = 30 days before until."""
    now = now or datetime.now(UTC)
    end = _parse_when(until, "until") if until else datetime.combine(now.date() + timedelta(days=1), time(0), UTC)
    start = _parse_when(since, "since") if since else end - timedelta(days=DEFAULT_WINDOW_DAYS)
    if start >= end:
        if until:
            raise ReportError("since", "since must be before until")
        # No until sent: the default one is what since came after.
        raise ReportError("since", f"since must be before until, which defaults to the end of today "
                          f"({end.date().isoformat()}T00:00:00Z): send an until after since")  # fmt: skip
    if end - start > timedelta(days=MAX_WINDOW_DAYS):
        # With since alone (until defaults to today) the start given is what lies too far back.
        raise ReportError("until" if until else "since", f"a window is at most {MAX_WINDOW_DAYS} days "
                          f"(since is {(end - start).days} days before until)")  # fmt: skip
    return Window(start, end)


@dataclass(frozen=True)
class Grouping:
    """What a report groups by: one of SIMPLE_GROUPS or a metadata key."""

    name: str  # prompt_version | variant | customer_id | model | day | metadata
    metadata_key: str = ""

    @classmethod
    def parse(cls, value: str) -> Grouping:
        value = value or "prompt_version"
        if value in SIMPLE_GROUPS:
            return cls(value)
        if value.startswith("metadata."):
            key = value.removeprefix("metadata.")
            if METADATA_KEY.match(key):
                return cls("metadata", key)
        raise ReportError(
            "group_by",
            "one of prompt_version, variant, customer_id, model, day or metadata.<key> (letters, digits, _.:-)",
        )

    @property
    def label(self) -> str:
        return f"metadata.{self.metadata_key}" if self.name == "metadata" else self.name


def feature_get(key: str) -> Feature:
    # A key PostgreSQL text cannot even hold (NUL) names no feature: 404, not a database error.
    feature = Feature.objects.filter(key=key).first() if "\x00" not in key else None
    if feature is None:
        raise ReportError("key", "no such feature", 404)
    return feature


# --- measure rows: rollups or raw ------------------------------------------------------------------

# Dimension names -> (DailyRollup column, raw SQL expression over feedback_trace t).
_DIMS = {
    "day": ("day", "t.day"),
    "prompt_version": ("prompt_version_id", "t.prompt_version_id"),
    "variant": ("variant", "t.variant"),
    "customer_id": ("customer_id", "t.customer_id"),
    "model": ("model", "t.model"),  # in feedback_modelrollup alone (not with customers or metadata keys)
}


def _labels() -> dict[int | None, str | None]:
    out: dict[int | None, str | None] = {None: None}
    out.update(PromptVersion.objects.values_list("id", "label"))
    return out


def _clean(dim: str, value: Any, labels: dict[int | None, str | None]) -> Any:
    if dim == "prompt_version":
        return labels.get(value)
    if dim == "day":
        return value.isoformat() if value else None
    if dim in ("variant", "customer_id", "model"):
        return value or None
    return value  # metadata value: None when the trace lacks the key


def measures_by(
    *, feature: Feature, window: Window, dims: tuple[str, ...], metadata_key: str = ""
) -> tuple[dict[tuple[Any, ...], Measures], str]:
    """Measures per combination of ``dims`` (names of _DIMS, or "metadata" for ``metadata_key``).

    Returns the groups and where they came from: "rollups" or "raw".
    """
    labels = _labels()
    out: dict[tuple[Any, ...], Measures] = {}

    def put(key: tuple[Any, ...], measures: Measures) -> None:
        clean = tuple(_clean(d, v, labels) for d, v in zip(dims, key, strict=True))
        if clean in out:
            out[clean].add(measures)
        else:
            out[clean] = measures

    segment = "metadata" in dims
    declared = metadata_key in (feature.segment_keys or []) and not _segments_pending(feature, window)
    n = len(dims)
    by_model = "model" in dims
    if window.whole_days and (not segment or declared) and not (by_model and (segment or "customer_id" in dims)):
        params: dict[str, Any] = {"feature": feature.id, "d0": window.first_day, "d1": window.last_day,
                                  "mkey": metadata_key}  # fmt: skip
        where = "r.feature_id = %(feature)s AND r.day BETWEEN %(d0)s AND %(d1)s"
        if segment:
            table, where = SegmentRollup._meta.db_table, f"{where} AND r.key = %(mkey)s"
            columns = [f"r.{'value' if d == 'metadata' else _DIMS[d][0]}" for d in dims]
        else:
            # Not by customer: the rows summed over customers (one per day and version, not per customer).
            rollup = ModelRollup if by_model else DailyRollup if "customer_id" in dims else VersionRollup
            table = rollup._meta.db_table
            columns = [f"r.{_DIMS[d][0]}" for d in dims]
        with connection.cursor() as cursor:
            cursor.execute(rollup_sum_query(table=table, dims=columns, where=where), params)
            for row in cursor.fetchall():
                put(tuple(row[:n]), Measures.from_row(row[n:]))
        _attach_judged(out, feature=feature, window=window, dims=dims, metadata_key=metadata_key, labels=labels)
        return out, "rollups"
    sql = measures_query(
        dims=[("t.metadata ->> %(mkey)s" if d == "metadata" else _DIMS[d][1]) for d in dims] or ["true"],
        traces_from="FROM feedback_trace t WHERE t.feature_id = %(feature)s AND t.day BETWEEN %(d0)s AND %(d1)s "
        "AND t.started_at >= %(since)s AND t.started_at < %(until)s",
        feedback_where="f.feature_id = %(feature)s AND f.trace_day BETWEEN %(d0)s AND %(d1)s",
    )
    params = {"feature": feature.id, "d0": window.first_day, "d1": window.last_day,
              "since": window.since, "until": window.until, "mkey": metadata_key}  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for row in cursor.fetchall():
            width = max(n, 1)
            put(tuple(row[:n]), Measures.from_row(row[width:]))
    _attach_judged(out, feature=feature, window=window, dims=dims, metadata_key=metadata_key, labels=labels)
    return out, "raw"


def holdback_variants(feature: Feature, arms: list[tuple[set[str], set[str]]] | None = None) -> set[str]:
    """The names of the feature's holdback arms (experiment arms marked holdback: the non-AI path).
    ``arms``: holdback_arms()'s for this feature, if read."""
    experiments = holdback_arms([feature]).get(feature.id, []) if arms is None else arms
    return set().union(*(held for held, _ in experiments))


def measures_of_ai(
    *, feature: Feature, window: Window, dims: tuple[str, ...], metadata_key: str = "", holdback: set[str]
) -> tuple[dict[tuple[Any, ...], Measures], str, Measures]:
    """``measures_by`` without the traces of the ``holdback`` arms, and those traces' measures apart.

    A holdback trace took the non-AI path: its successes (an outcome, say) are not the AI's, so counted in
    a feature's figures they would credit the AI with what it did not do, and its judge-less, cost-less
    rows would dilute the success and cost rates. ROI over holdback (holdback_roi) compares against them."""
    if not holdback:
        parts, origin = measures_by(feature=feature, window=window, dims=dims, metadata_key=metadata_key)
        return parts, origin, Measures()
    with_variant = dims if "variant" in dims else (*dims, "variant")
    parts, origin = measures_by(feature=feature, window=window, dims=with_variant, metadata_key=metadata_key)
    at = with_variant.index("variant")
    out: dict[tuple[Any, ...], Measures] = {}
    held = Measures()
    for key, m in parts.items():
        if key[at] in holdback:
            held.add(m)
            continue
        kept = key if "variant" in dims else key[:at] + key[at + 1 :]
        if kept in out:
            out[kept].add(m)
        else:
            out[kept] = m
    return out, origin, held


def holdback_note(held: Measures) -> str | None:
    if not held.traces:
        return None
    return (
        f"{held.traces:,} traces of the holdback arm (the non-AI path) are left out: their successes are not the "
        "AI's (ROI over holdback compares against them; the experiment shows the arms side by side)"
    )


# --- a gating judge's calibrated scores, per group (the calibrated-judge success source) ----------

# One label per trace on the rubric (models.trace_labels_sql; API and queue labels: widget copies are no audit).
_TRACE_LABELS = (
    "lab AS (SELECT l.trace_id, l.value, l.sampling_design FROM ("
    + trace_labels_sql("l.rubric_id = %(rubric)s AND l.source IN ('api', 'queue') AND l.value IS NOT NULL")
    + ") l)"
)
# The feature's traces in the window, each with its group's values (g0, g1, ...): what judged and labelled sums
# are read per group over.
_WINDOW_TRACES = """
WITH tr AS (
    SELECT {dims}, t.trace_id FROM feedback_trace t
    WHERE t.feature_id = %(feature)s AND t.day BETWEEN %(d0)s AND %(d1)s
        AND t.started_at >= %(since)s AND t.started_at < %(until)s{where}
)"""
_JUDGED_TRACES = (
    _WINDOW_TRACES
    + """,
sc AS (
    SELECT DISTINCT ON (s.trace_id) s.trace_id, s.raw_score, coalesce(s.inclusion_probability, 1.0) AS pi
    FROM evaluation_score s
    WHERE s.judge_version_id = %(version)s AND s.feature_id = %(feature)s AND s.trace_day BETWEEN %(d0)s AND %(d1)s
        AND s.status = 'ok' AND s.raw_score IS NOT NULL
    ORDER BY s.trace_id, s.run_index, s.id
)
"""
)
# Scored traces per group and distinct raw score (the calibrator maps each value once).
_JUDGED = _JUDGED_TRACES + (
    "SELECT {keys}, sc.raw_score, sc.pi, count(*) FROM tr JOIN sc USING (trace_id) GROUP BY {keys}, sc.raw_score, sc.pi"
)
# The uniform-audit labels (latest per trace) on scored traces, with their group and raw score.
_AUDITED = (
    _JUDGED_TRACES
    + ",\n"
    + _TRACE_LABELS
    + """
SELECT {keys}, sc.raw_score, lab.value FROM tr JOIN sc USING (trace_id) JOIN lab USING (trace_id)
WHERE lab.sampling_design = 'uniform'
"""
)
_GOOD_AT = {"binary": 1.0, "ordinal": 4.0, "continuous": 0.5}


def _attach_judged(
    out: dict[tuple[Any, ...], Measures],
    *,
    feature: Feature,
    window: Window,
    dims: tuple[str, ...],
    metadata_key: str,
    labels: dict[int | None, str | None],
) -> None:
    """When a gating judge is calibrated on the feature, add its calibrated scores and the uniform
    audit's residuals to every group (Measures.judged); otherwise leave them empty."""
    exprs = [("t.metadata ->> %(mkey)s" if d == "metadata" else _DIMS[d][1]) for d in dims]
    sums = judged_by(feature=feature, window=window, exprs=exprs, params={"mkey": metadata_key})
    merged: dict[tuple[Any, ...], JudgedSums] = {}
    for raw, judged in (sums or {}).items():
        merged.setdefault(tuple(_clean(d, v, labels) for d, v in zip(dims, raw, strict=True)), JudgedSums()).add(judged)
    for key, judged in merged.items():
        if key in out:
            out[key].judged = judged
    if sums:
        return  # a gating judge scored traces here: it answers for success (the labels are its audit)
    human: dict[tuple[Any, ...], LabelSums] = {}
    for raw, counts in labelled_by(feature=feature, window=window, exprs=exprs, params={"mkey": metadata_key}).items():
        human.setdefault(tuple(_clean(d, v, labels) for d, v in zip(dims, raw, strict=True)), LabelSums()).add(counts)
    for key, counts in human.items():
        if key in out:
            out[key].human = counts


# The rubric a feature's human labels answer on, when no judge is gating: the one with the most of the feature's
# traces in the uniform audit stream, over all time (so the windows a page compares read the same rubric), then
# the newest.
_LABEL_RUBRIC = """
SELECT l.rubric_id, r.scale FROM evaluation_label l
JOIN evaluation_rubric r ON r.id = l.rubric_id
JOIN feedback_trace t ON t.trace_id = l.trace_id
WHERE t.feature_id = %(feature)s
    AND l.source IN ('api', 'queue') AND l.value IS NOT NULL AND l.sampling_design = 'uniform'
    AND r.scale IN ('binary', 'ordinal', 'continuous')
GROUP BY l.rubric_id, r.scale
ORDER BY count(DISTINCT l.trace_id) DESC, l.rubric_id DESC
LIMIT 1
"""
# Per group: the traces of the window whose label on the rubric (models.trace_labels_sql) is from the uniform
# audit, and the good ones. From the labels, each trace found by its ID (a CTE over the window's traces read twice
# would be materialised: every trace of the window scanned).
_LABELLED = (
    "WITH "
    + _TRACE_LABELS
    + """
SELECT {dims}, count(*), count(*) FILTER (WHERE lab.value >= %(good_at)s)
FROM lab JOIN feedback_trace t USING (trace_id)
WHERE lab.sampling_design = 'uniform' AND t.feature_id = %(feature)s AND t.day BETWEEN %(d0)s AND %(d1)s
    AND t.started_at >= %(since)s AND t.started_at < %(until)s{where}
GROUP BY {groups}
"""
)


def labelled_by(
    *, feature: Feature, window: Window, exprs: list[str], params: dict[str, Any] | None = None, where: str = ""
) -> dict[tuple[Any, ...], LabelSums]:
    """The uniform audit's human labels (LabelSums) over the feature's traces in ``window``, per combination of
    the SQL ``exprs`` on the trace ``t`` (as ``judged_by``), on the rubric most of them are labelled on; empty
    when none is."""
    n, width, fill, values = _grouped(feature, window, exprs, where, params)
    out: dict[tuple[Any, ...], LabelSums] = {}
    with connection.cursor() as cursor:
        cursor.execute(_LABEL_RUBRIC, values)
        found = cursor.fetchone()
        if found is None:
            return out
        values |= {"rubric": found[0], "good_at": _GOOD_AT[found[1]]}
        cursor.execute(fill(_LABELLED), values)
        for row in cursor.fetchall():
            out[tuple(row[:n])] = LabelSums(labelled=int(row[width]), good=int(row[width + 1]))
    return out


def _grouped(
    feature: Feature, window: Window, exprs: list[str], where: str, params: dict[str, Any] | None
) -> tuple[int, int, Callable[[str], str], dict[str, Any]]:
    """What a per-group read of the window's traces needs: the number of group values, the column its counts
    start at, the query filled with the groups' SQL, and the window's parameters (with ``params``)."""
    n = len(exprs)
    names = [f"g{i}" for i in range(max(n, 1))]
    select = ", ".join(f"{e} AS {name}" for e, name in zip(exprs or ["true"], names, strict=True))
    keys = ", ".join(f"tr.{name}" for name in names)
    values: dict[str, Any] = {"feature": feature.id, "d0": window.first_day, "d1": window.last_day,
                              "since": window.since, "until": window.until, **(params or {})}  # fmt: skip
    groups = ", ".join(names)
    return n, max(n, 1), lambda sql: sql.format(dims=select, keys=keys, groups=groups, where=where), values


def judged_by(
    *, feature: Feature, window: Window, exprs: list[str], params: dict[str, Any] | None = None, where: str = ""
) -> dict[tuple[Any, ...], JudgedSums] | None:
    """A gating judge's calibrated scores and the uniform audit's residuals (JudgedSums) over the feature's
    traces in ``window``, per combination of the SQL ``exprs`` on the trace ``t`` (keyed by their raw values;
    ``params`` for theirs, ``where`` one more condition on ``t``, starting " AND"); None when no gating judge
    is calibrated on the feature."""
    from evaluation.reports.calibrated import gating_calibration
    from evaluation.stats import calibrator_from_dict

    gating = gating_calibration(feature)
    if gating is None or gating.calibrator is None or gating.rubric_scale not in _GOOD_AT:
        return None
    calibrator = calibrator_from_dict(gating.calibrator)
    good_at = _GOOD_AT[gating.rubric_scale]
    n, width, fill, values = _grouped(feature, window, exprs, where, params)
    values |= {"version": gating.judge_version_id, "rubric": gating.rubric_id}
    sums: dict[tuple[Any, ...], JudgedSums] = {}
    with connection.cursor() as cursor:
        cursor.execute(fill(_JUDGED), values)
        for row in cursor.fetchall():
            raw, pi, count = float(row[width]), float(row[width + 1]), int(row[width + 2])
            f = float(calibrator.predict([raw])[0])
            part = sums.setdefault(tuple(row[:n]), JudgedSums())
            part.add(JudgedSums.of_scores(f, count=count, inclusion_probability=min(max(pi, 1e-6), 1.0)))
        cursor.execute(fill(_AUDITED), values)
        for row in cursor.fetchall():
            raw, value = float(row[width]), float(row[width + 1])
            r = float(value >= good_at) - float(calibrator.predict([raw])[0])
            part = sums.setdefault(tuple(row[:n]), JudgedSums())
            part.add(JudgedSums(audited=1, r_sum=r, r2_sum=r * r))
    return sums


def _segments_pending(feature: Feature, window: Window) -> bool:
    """Days of the window the worker has yet to (re)count: right after a segment key is declared its
    rows are still being filled, so until then the raw rows answer (slower, never an empty report)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM feedback_rollupdirty WHERE feature_id = %s AND day BETWEEN %s AND %s)",
            [feature.id, window.first_day, window.last_day],
        )
        (pending,) = cursor.fetchone()
    return bool(pending)


# --- the feature report ----------------------------------------------------------------------------


def _value_per_success(feature: Feature) -> float | None:
    return float(feature.value_per_success_usd) if feature.value_per_success_usd is not None else None


def _group_sort_key(grouping: Grouping, item: tuple[Any, Measures]) -> tuple[Any, ...]:
    key, measures = item
    if grouping.name == "day":
        return (key or "",)
    return (-measures.traces, str(key))


def feature_report(
    *, feature: Feature, window: Window, grouping: Grouping, holdback: set[str] | None = None
) -> dict[str, Any]:
    """shared/API.md's feature report, plus ``total`` (all groups together), ``source`` (rollups or
    raw rows), ``value_per_success_usd`` and ``success_source`` with its description."""
    parts, origin, held = measures_of_ai(
        feature=feature, window=window, dims=(grouping.name,), metadata_key=grouping.metadata_key,
        holdback=holdback_variants(feature) if holdback is None else holdback,
    )  # fmt: skip
    groups = {key[0]: m for key, m in parts.items()}
    whole = total(groups)
    source = success_source_for(whole, groups.values())
    vps = _value_per_success(feature)
    note = None
    if grouping.name == "metadata" and all(key is None for key in groups):
        # No trace in the window carries the key: an explicit empty state, not one "(none)" group.
        groups = {}
        note = f"no trace of this feature in the window has metadata.{grouping.metadata_key}"
    elif not groups:
        note = "no traces in this window"
    rows = [
        {"group": key, **group_figures(m, source=source, value_per_success_usd=vps, intervals=True)}
        for key, m in sorted(groups.items(), key=lambda item: _group_sort_key(grouping, item))
    ]
    return {
        "feature": feature.key,
        "window": window.as_dict(),
        "group_by": grouping.label,
        "value_per_success_usd": vps,
        "success_source": {"name": source.name, "description": source.description},
        "source": origin,
        "note": note,
        "holdback_note": holdback_note(held),
        "holdback_traces": held.traces,
        "total": {"group": None, **group_figures(whole, source=source, value_per_success_usd=vps, intervals=True)},
        "groups": rows,
    }


def features_list(*, after: str = "", limit: int | None = None) -> list[dict[str, Any]]:
    """Every feature (by key; ``after`` a key, at most ``limit``) with its declared value and the first /
    last day it has traces (from rollups). A feature with no trace that nobody set up is left out: one an
    OTLP export named after its service.name, before the span carrying candor.feature arrived and took its
    traces to their real feature."""
    # Ingestion names a feature it creates after its key; a person names it otherwise, or values it.
    named = ~Q(name="") & ~Q(name=F("key"))
    set_up = named | Q(value_per_success_usd__isnull=False) | ~Q(owner_email="") | ~Q(segment_keys=[])
    features = Feature.objects.filter(set_up | Exists(Trace.objects.filter(feature=OuterRef("pk")))).order_by("key")
    if after:
        features = features.filter(key__gt=after)
    if limit is not None:
        features = features[:limit]
    chosen = list(features)
    seen = {
        row["feature_id"]: row
        for row in DailyRollup.objects.filter(feature_id__in=[f.id for f in chosen])
        .values("feature_id")
        .annotate(first=Min("day"), last=Max("day"))
    }
    return [
        {
            "key": f.key,
            "name": f.name or f.key,
            "value_per_success_usd": _value_per_success(f),
            "segment_keys": list(f.segment_keys or []),
            "first_seen": seen[f.id]["first"].isoformat() if f.id in seen else None,
            "last_seen": seen[f.id]["last"].isoformat() if f.id in seen else None,
        }
        for f in chosen
    ]


__all__ = [
    "GROUP_BY_PATTERN",
    "Grouping",
    "ReportError",
    "SuccessSource",
    "Window",
    "feature_get",
    "customers_report",
    "feature_page",
    "feature_report",
    "features_list",
    "overview",
    "report_csv_rows",
    "measures_by",
    "window_from",
]


# --- the feature page: series over time per prompt version, small multiples per segment -------------

CHART_METRICS = {
    "success": "Success",
    "cost_per_success_usd": "Cost per success (USD)",
    "p95_latency_ms": "p95 latency (ms)",
    "thumbs_down_share": "Thumbs-down share",
}
MAX_SEGMENTS = 12


def _chart_point(figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "success": figures["success"]["value"],
        "cost_per_success_usd": figures["cost_per_success_usd"],
        "p95_latency_ms": figures["latency_ms"]["p95"],
        "thumbs_down_share": figures["thumbs_down_share"],
        "traces": figures["traces"],
        "thumbs": figures["thumbs"],
        "success_n": figures["success"]["n"],  # what the success rate is a share of (scored, rated... traces)
    }


def _series(
    cells: dict[tuple[Any, ...], Measures], days: list[str], source: SuccessSource, vps: float | None
) -> dict[str, Any]:
    """cells keyed (day, version) -> {"versions": [...], "points": {version: [point per day]}}."""
    versions = sorted({key[1] for key in cells}, key=lambda v: (v is None, v or ""))
    points: dict[str, list[dict[str, Any] | None]] = {}
    for version in versions:
        row: list[dict[str, Any] | None] = []
        for day in days:
            m = cells.get((day, version))
            row.append(_chart_point(group_figures(m, source=source, value_per_success_usd=vps)) if m else None)
        points[version or "(none)"] = row
    return {"versions": [v or "(none)" for v in versions], "points": points}


def feature_page(*, feature: Feature, window: Window, grouping: Grouping) -> dict[str, Any]:
    """The report, plus what the feature page charts: per day x prompt version over the window, the
    day each version first had traces, and the same series per segment of the grouping."""
    arms = holdback_arms([feature]).get(feature.id, [])  # read once: the report, the charts and ROI over holdback
    holdback = holdback_variants(feature, arms)
    report = feature_report(feature=feature, window=window, grouping=grouping, holdback=holdback)
    vps = _value_per_success(feature)
    cells, _, _ = measures_of_ai(feature=feature, window=window, dims=("day", "prompt_version"), holdback=holdback)
    source = success_source_for(total(cells))
    days = [
        (window.first_day + timedelta(days=i)).isoformat() for i in range((window.last_day - window.first_day).days + 1)
    ]
    first_seen = {label: day.isoformat() for label, day in _first_days(feature).items()}
    markers = [{"version": v, "day": d} for v, d in sorted(first_seen.items(), key=lambda i: i[1]) if d in days]
    segments: list[dict[str, Any]] = []
    if grouping.name != "day":
        seg_cells, _, _ = measures_of_ai(
            feature=feature, window=window, dims=(grouping.name, "day", "prompt_version"),
            metadata_key=grouping.metadata_key, holdback=holdback,
        )  # fmt: skip
        by_segment: dict[Any, dict[tuple[Any, ...], Measures]] = {}
        for (segment, day, version), m in seg_cells.items():
            by_segment.setdefault(segment, {})[(day, version)] = m
        ranked = sorted(by_segment.items(), key=lambda item: -sum(m.traces for m in item[1].values()))
        for segment, seg in ranked[:MAX_SEGMENTS]:
            if grouping.name == "metadata" and segment is None and len(ranked) == 1:
                break
            segments.append({"segment": segment, **_series(seg, days, source, vps)})
    chart = {"days": days, "metrics": CHART_METRICS, "markers": markers, **_series(cells, days, source, vps)}
    partial = _partial_day(days)
    for series in (chart, *segments):
        _blank_day(series, days, partial)
    # A version with nothing left to draw (its only traces today's, still arriving: the demo page's one beta trace)
    # has no line, no legend entry and no "first appeared" mark on every chart.
    drawn = {v for v, points in chart["points"].items() if any(p is not None for p in points)}
    chart["versions"] = [v for v in chart["versions"] if v in drawn]
    chart["points"] = {v: points for v, points in chart["points"].items() if v in drawn}
    chart["markers"] = [m for m in markers if m["version"] in drawn]
    over_holdback = holdback_roi(feature=feature, window=window, source=source, value_per_success_usd=vps, arms=arms)
    return {"report": report, "chart": {**chart, "partial_day": partial}, "segments": segments,
            "segments_total": len(segments), "over_holdback": over_holdback, "holdback": sorted(holdback)}  # fmt: skip


def _partial_day(days: list[str]) -> str | None:
    """Today (UTC), when the window reaches it: a day still in progress, whose success is not final
    (outcomes and late feedback arrive after their traces), so charts leave it out rather than dip."""
    today = datetime.now(UTC).date().isoformat()
    return today if today in days else None


def _blank_day(series: dict[str, Any], days: list[str], day: str | None) -> None:
    if day is None:
        return
    index = days.index(day)
    for points in series["points"].values():
        points[index] = None


# Outcome delays are read over a week of traces that ended a day before (their outcomes have had a day:
# the longest delay counted), an evenly spread sample of at most about this many.
_DELAY_SAMPLE = 20_000
MAX_OUTCOME_DELAY = timedelta(hours=24)
_OUTCOME_DELAY = """
SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY o.first - t.started_at)
FROM feedback_trace t
CROSS JOIN LATERAL (
    SELECT min(occurred_at) AS first FROM (
        SELECT occurred_at FROM feedback_outcome WHERE trace_id = t.trace_id
        UNION ALL  -- tied by session only: through the trace it was attributed to
        SELECT occurred_at FROM feedback_outcome WHERE trace_id = '' AND attributed_trace_id = t.trace_id
    ) tied
) o
WHERE t.feature_id = %(feature)s AND t.day BETWEEN %(d0)s AND %(d1)s AND t.id %% %(stride)s = 0
  AND o.first IS NOT NULL AND t.started_at IS NOT NULL
"""


def outcome_delay(*, feature: Feature, now: datetime) -> timedelta:
    """How long the feature's outcomes take to arrive after their traces: the 95th percentile of each trace's
    first outcome's delay, over the traces of the 7 days ending the day before yesterday (evenly sampled),
    in whole hours, at most a day; 0 when there are none. Until then a trace's outcome may still come: a
    success rate read over traces younger than this reads low."""
    day = now.astimezone(UTC).date()
    d0, d1 = day - timedelta(days=8), day - timedelta(days=2)
    traces = DailyRollup.objects.filter(feature=feature, day__range=(d0, d1)).aggregate(n=Sum("traces"))["n"] or 0
    if not traces:
        return timedelta(0)
    params: dict[str, Any] = {"feature": feature.id, "d0": d0, "d1": d1, "stride": max(1, traces // _DELAY_SAMPLE)}
    with connection.cursor() as cursor:
        cursor.execute(_OUTCOME_DELAY, params)
        found = cursor.fetchone()
    delay = found[0] if found and found[0] is not None else timedelta(0)
    hours = math.ceil(max(delay, timedelta(0)) / timedelta(hours=1))
    return min(timedelta(hours=hours), MAX_OUTCOME_DELAY)


def _first_days(feature: Feature) -> dict[str, date]:
    """The first day each prompt version of the feature had traces (over all time, from rollups)."""
    labels = _labels()
    out: dict[str, date] = {}
    for pv, first in (
        DailyRollup.objects.filter(feature=feature, prompt_version__isnull=False)
        .values_list("prompt_version_id")
        .annotate(first=Min("day"))
    ):
        label = labels.get(pv)
        if label and (label not in out or first < out[label]):
            out[label] = first
    return out


def report_csv_rows(report: dict[str, Any]) -> list[list[Any]]:
    """The report's groups as CSV rows (header first); implicit rates and percentiles flattened."""
    kinds = sorted(report["total"]["implicit_rates"])
    header = [
        report["group_by"], "traces", "success", "success_low", "success_high", "success_source", "successes",
        "cost_usd", "cost_per_success_usd", "value_usd", "roi", "explicit_feedback_rate", "thumbs_up_share",
        "thumbs_down_share", "mean_rating", "edit_rate", "mean_edit_distance", *(f"{k}_rate" for k in kinds),
        "fallback_rate", "guardrail_block_rate", "error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
        "ttft_p50_ms", "ttft_p95_ms", "cost_per_success_low_usd", "cost_per_success_high_usd", "roi_low", "roi_high",
    ]  # fmt: skip
    rows: list[list[Any]] = [header]
    for g in [*report["groups"], {**report["total"], "group": "(all)"}]:
        s = g["success"]
        rows.append([
            "(none)" if g["group"] is None else g["group"], g["traces"], s["value"], s["low"], s["high"], s["source"],
            g["successes"], g["cost_usd"], g["cost_per_success_usd"], g["value_usd"], g["roi"],
            g["explicit_feedback_rate"], g["thumbs_up_share"], g["thumbs_down_share"], g["mean_rating"],
            g["edit_rate"], g["mean_edit_distance"], *(g["implicit_rates"][k] for k in kinds), g["fallback_rate"],
            g["guardrail_block_rate"], g["error_rate"], g["latency_ms"]["p50"], g["latency_ms"]["p95"],
            g["latency_ms"]["p99"], g["ttft_ms"]["p50"], g["ttft_ms"]["p95"], g["cost_per_success"]["low"],
            g["cost_per_success"]["high"], g["roi_interval"]["low"], g["roi_interval"]["high"],
        ])  # fmt: skip
    return rows


# --- customers -------------------------------------------------------------------------------------


def customers_report(*, window: Window, limit: int = 50) -> dict[str, Any]:
    """Per end-customer over all features: spend and traces, and each feature's success for the customer
    (from that feature's own source, with its interval; features' success rates do not add up, so none is
    summed across them), flagged when clearly below the feature's rate over its other customers (``assumed``
    when that rests on the judge's correction borrowed from the whole feature); and daily
    spend spikes (> 3 sigma above the customer's trailing 28 days) on the window's last 7 days."""
    from evaluation.reports.spikes import spend_spikes

    customers: dict[str | None, dict[str, Any]] = {}
    features: list[tuple[str, dict[str | None, Measures], Measures, SuccessSource]] = []
    arms = holdback_arms()  # one read for every feature
    for feature in Feature.objects.order_by("key"):
        # One SQL sum per feature over its rollups (and the calibrated judge's sums when it has a
        # gating one), so each feature's success comes from the same source as its own report.
        parts, _, _ = measures_of_ai(
            feature=feature,
            window=window,
            dims=("customer_id",),
            holdback=holdback_variants(feature, arms.get(feature.id, [])),
        )
        if not parts:
            continue
        by_customer = {key[0]: m for key, m in parts.items()}
        whole = total(by_customer)
        features.append((feature.key, by_customer, whole, success_source_for(whole, by_customer.values())))
        for customer, m in by_customer.items():
            c = customers.setdefault(customer, {"customer_id": customer, "traces": 0, "cost_usd": 0.0})
            c["traces"] += m.traces
            c["cost_usd"] += m.cost_usd
    top = sorted(customers.values(), key=lambda c: -c["cost_usd"])[:limit]
    # Columns by traffic, the busiest first (by key they put a quiet feature before the one a PM reads).
    features.sort(key=lambda f: (-f[2].traces, f[0]))
    # Each shown customer's success in each feature against the same feature's other customers,
    # Bonferroni-corrected over the comparisons made: "below" only when clearly so.
    cells = [
        (c, key, by_customer[c["customer_id"]], whole, source)
        for c in top
        for key, by_customer, whole, source in features
        if c["customer_id"] in by_customer
    ]
    confidence = 1 - 0.05 / max(len(cells), 1)
    for c in top:
        c["quality"], c["below"], c["below_assumed"] = [], 0, 0
    for c, key, m, whole, source in cells:
        rest = whole.without(m)
        mine = source.estimate(m, confidence)
        gap = mover_difference(mine.interval, source.estimate(rest, confidence).interval)
        below = gap.high is not None and gap.high < 0
        # A customer with too few audit labels of its own borrows the judge's correction from the whole
        # feature: "below" then says the judge scores it clearly lower, and holds only if the judge errs
        # alike for this customer. Flagged apart, so a PM knows to label some of its traces.
        assumed = below and mine.assumes_alike
        shown = source.estimate(m)
        c["quality"].append({"feature": key, "traces": m.traces, "source": source.name, "below": below,
                             "assumed": assumed, "success": shown.interval.as_dict(), "n": shown.n,
                             "pooled": shown.pooled, "others": source.estimate(rest).interval.value})  # fmt: skip
        c["below"] += below and not assumed
        c["below_assumed"] += assumed
    # One cell per feature, in the features' order (None where the customer has no traces), for a table.
    order = [key for key, *_ in features]
    for c in top:
        by_feature = {cell["feature"]: cell for cell in c["quality"]}
        c["quality"] = [by_feature.get(key) for key in order]
    # Spikes: daily spend over the window's last 7 days against the 28 days before each.
    spend_since = window.last_day - timedelta(days=7 + 28)
    daily: dict[str, dict[date, float]] = {}
    for customer, day, cost in (
        DailyRollup.objects.filter(day__gte=spend_since, day__lte=window.last_day)
        .values_list("customer_id", "day")
        .annotate(cost=Sum("cost_usd"))
    ):
        daily.setdefault(customer, {})[day] = float(cost or 0)
    recent = [window.last_day - timedelta(days=i) for i in range(7)]
    spikes = spend_spikes(daily, recent)
    return {
        "window": window.as_dict(),
        "customers": top,
        "customers_total": len(customers),
        "below_assumed": sum(c["below_assumed"] for c in top),
        "pooled": sum(bool(q and q["pooled"]) for c in top for q in c["quality"]),
        "features": [{"key": key, "source": source.name} for key, _, _, source in features],
        "success_sources": sorted({source.name for *_, source in features}),
        "spikes": [
            {
                "customer_id": s.customer_id or None,
                "day": s.day.isoformat(),
                "spend_usd": s.spend_usd,
                "trailing_mean_usd": s.trailing_mean_usd,
                "trailing_sd_usd": s.trailing_sd_usd,
                "sigmas": s.sigmas,
            }
            for s in spikes
        ],  # fmt: skip
    }


# --- what the AI adds over its holdback ------------------------------------------------------------

MIN_HOLDBACK_TRACES = 100


def holdback_arms(features: list[Feature] | None = None) -> dict[int, list[tuple[set[str], set[str]]]]:
    """Per feature id, each experiment's (holdback arms, other arms) for experiments that have a holdback:
    one query for every feature (the overview asks for all)."""
    found: dict[int, list[tuple[set[str], set[str]]]] = {}
    experiments = Experiment.objects.all()
    if features is not None:
        experiments = experiments.filter(feature__in=features)
    for feature_id, arms in experiments.values_list("feature_id", "arms"):
        held = {str(arm["name"]) for arm in arms if arm.get("holdback")}
        if held:
            found.setdefault(feature_id, []).append((held, {str(arm["name"]) for arm in arms} - held))
    return found


def holdback_roi(
    *,
    feature: Feature,
    window: Window,
    source: SuccessSource,
    value_per_success_usd: float | None,
    arms: list[tuple[set[str], set[str]]] | None = None,
) -> dict[str, Any] | None:
    """ROI on what the AI adds, when the feature runs a holdback (an experiment arm marked holdback: the
    non-AI path). The plain ROI counts every success as the AI's, also those the non-AI path would have
    had; here a success counts only past the holdback's own rate.

    The lift is the experiment's own: its AI arms against its holdback, on the days of the window the
    holdback ran (randomised, same days), on outcomes when both report them, else on the success source
    when it reads both paths; None when one side reports nothing (zero outcomes is unwired reporting far
    likelier than a true 0%). It applies to the AI's traces of those days only (value = lift x those traces x
    value per success, against their cost, with a 95% interval from the lift's): on a day the holdback did not
    run nothing measured what the non-AI path would have had, and the AI's own rate may differ then (another
    prompt version, say). None without a holdback of
    MIN_HOLDBACK_TRACES traces, or without a value per success. ``arms``: holdback_arms()'s, if read."""
    if value_per_success_usd is None:
        return None
    experiments = holdback_arms([feature]).get(feature.id, []) if arms is None else arms
    if not experiments:
        return None
    parts, _ = measures_by(feature=feature, window=window, dims=("day", "variant"))
    every_holdback = set().union(*(held for held, _ in experiments))
    best: tuple[Measures, Measures, set[Any]] | None = None
    for held_names, ai_names in experiments:
        days = {day for (day, variant), m in parts.items() if variant in held_names and m.traces}
        held = total({k: m for k, m in parts.items() if k[1] in held_names})
        treated = total({k: m for k, m in parts.items() if k[1] in ai_names and k[0] in days})
        if held.traces >= MIN_HOLDBACK_TRACES and treated.traces and (best is None or held.traces > best[0].traces):
            best = (held, treated, days)
    if best is None:
        return None
    held, treated, days = best
    if treated.outcomes and held.outcomes:
        rate_source = "outcomes"
        x_ai, x_held = float(treated.outcome_traces), float(held.outcome_traces)
    elif source.name != "outcomes":
        rate_source = source.name
        ai_rate = group_figures(treated, source=source, value_per_success_usd=None)["success"]["value"]
        held_rate = group_figures(held, source=source, value_per_success_usd=None)["success"]["value"]
        if ai_rate is None or held_rate is None:
            return None
        x_ai, x_held = ai_rate * treated.traces, held_rate * held.traces
    else:
        return None
    ai_rate, held_rate = x_ai / treated.traces, x_held / held.traces
    lift = ai_rate - held_rate
    smooth_ai, smooth_held = (x_ai + 1) / (treated.traces + 2), (x_held + 1) / (held.traces + 2)
    half = 1.959964 * math.sqrt(
        smooth_ai * (1 - smooth_ai) / treated.traces + smooth_held * (1 - smooth_held) / held.traces
    )
    # Every AI trace of the holdback's days (also those of no experiment arm: the feature's AI path).
    ai_all = total({k: m for k, m in parts.items() if k[1] not in every_holdback and k[0] in days})
    cost = round(ai_all.cost_usd, 8)

    def roi(rate: float) -> float | None:
        return (rate * ai_all.traces * value_per_success_usd - cost) / cost if cost > 0 else None

    return {
        "rate_source": rate_source,
        "ai_rate": ai_rate,
        "holdback_rate": held_rate,
        "holdback_traces": held.traces,
        "lift": {"value": lift, "low": lift - half, "high": lift + half},
        "ai_traces": ai_all.traces,
        "days": len(days),
        "traffic_days": len({day for (day, _), m in parts.items() if m.traces}),
        "added_successes": lift * ai_all.traces,
        "value_usd": lift * ai_all.traces * value_per_success_usd,
        "cost_usd": cost,
        "roi": roi(lift),
        "roi_low": roi(lift - half),
        "roi_high": roi(lift + half),
    }


# --- overview --------------------------------------------------------------------------------------


def overview(*, window: Window, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every feature with traces in this or the previous window: the report's total for both windows,
    a daily sparkline of success and cost, and what needs attention (largest clear drop in success or
    rise in cost per success versus the previous window) first, then the busiest."""
    previous = window.previous()
    # One SQL sum per feature and window over its rollups (plus a gating judge's sums, as the
    # feature report reads them), so the overview's figures are the feature page's figures.
    features: dict[int, Feature] = {}
    cur: dict[int, dict[str, Measures]] = {}
    prev: dict[int, Measures] = {}
    arms = holdback_arms()
    for feature in Feature.objects.order_by("key"):
        # The AI's traces: a holdback arm's are the non-AI path's (measures_of_ai).
        holdback = holdback_variants(feature, arms.get(feature.id, []))
        now_parts, _, _ = measures_of_ai(feature=feature, window=window, dims=("day",), holdback=holdback)
        before_parts, _, _ = measures_of_ai(feature=feature, window=previous, dims=("day",), holdback=holdback)
        if not now_parts and not before_parts:
            continue
        features[feature.id] = feature
        cur[feature.id] = {key[0]: m for key, m in now_parts.items()}
        prev[feature.id] = total(before_parts)
    days = [
        (window.first_day + timedelta(days=i)).isoformat() for i in range((window.last_day - window.first_day).days + 1)
    ]
    out = []
    for feature_id in set(cur) | set(prev):
        feature = features[feature_id]
        now_total = total(cur.get(feature_id, {}))
        before = prev.get(feature_id, Measures())
        source = success_source_for(now_total if now_total.traces else before)
        vps = _value_per_success(feature)
        figures = group_figures(now_total, source=source, value_per_success_usd=vps, intervals=True)
        earlier = group_figures(before, source=source, value_per_success_usd=vps)
        # What got worse against the previous window: "clear" when beyond both windows' noise (the interval of
        # the difference, of the ratio for cost per success); only clear moves rank a feature up.
        reasons: list[dict[str, Any]] = []
        attention = 0.0
        # Success from outcomes: compared over the days whose outcomes have come (today's are still arriving
        # and would read as a fall against a complete previous window).
        compared, until = now_total, ""
        if source.name == "outcomes":
            at = now or datetime.now(UTC)
            settled = (at - outcome_delay(feature=feature, now=at)).date()
            complete = {d: m for d, m in cur.get(feature_id, {}).items() if date.fromisoformat(str(d)) < settled}
            if complete and len(complete) < len(cur.get(feature_id, {})):
                compared, until = total(complete), f" (to {max(map(str, complete))[5:]}; later outcomes still coming)"
        now_figures = group_figures(compared, source=source, value_per_success_usd=vps) if until else figures
        s_now, s_before = now_figures["success"]["value"], earlier["success"]["value"]
        # A move under 5% of the earlier level is not mentioned unless it is clear (42.2% -> 41.9% is no move).
        if s_now is not None and s_before is not None and s_now < s_before:
            gap = mover_difference(source.estimate(compared).interval, source.estimate(before).interval)
            clear = gap.high is not None and gap.high < 0
            attention = max(attention, (s_before - s_now) * 10 if clear else 0.0)  # 1 point ~ a 10% cost rise
            if clear or s_now < s_before * 0.95:
                reasons.append({"text": f"success {s_before:.1%} → {s_now:.1%}{until}", "clear": clear})
        c_now, c_before = now_figures["cost_per_success_usd"], earlier["cost_per_success_usd"]
        if c_now is not None and c_before and c_now > c_before:
            low = mover_ratio(cost_per_success(compared, source), cost_per_success(before, source)).low
            clear = low is not None and low > 1
            attention = max(attention, (c_now - c_before) / c_before if clear else 0.0)
            if clear or c_now > c_before * 1.05:
                said = f"cost per success {unit_usd_filter(c_before)} → {unit_usd_filter(c_now)}{until}"
                reasons.append({"text": said, "clear": clear})
        daily = cur.get(feature_id, {})
        spark: list[dict[str, Any]] = []
        partial = _partial_day(days)
        for day in days:
            if day == partial:  # today is still arriving: left out of both lines (a cost of 0 would read as a fall)
                spark.append({"day": day, "success": None, "cost_usd": None})
                continue
            day_measures = daily.get(day)
            f = group_figures(day_measures, source=source, value_per_success_usd=vps) if day_measures else None
            spark.append({"day": day, "success": f["success"]["value"] if f else None,
                          "cost_usd": f["cost_usd"] if f else 0.0})  # fmt: skip
        added = holdback_roi(
            feature=feature, window=window, source=source, value_per_success_usd=vps, arms=arms.get(feature_id, [])
        )
        out.append({
            "key": feature.key, "name": feature.name or feature.key, "value_per_success_usd": vps,
            "figures": figures, "previous": earlier, "attention": attention, "reasons": reasons,
            # The earlier window holds under a quarter of this one's traces: its figures are said to be thin.
            "previous_thin": 0 < before.traces < now_total.traces / 4,
            "sparkline": spark, "over_holdback": added,
        })  # fmt: skip
    return sorted(out, key=lambda f: (-f["attention"], -f["figures"]["traces"]))
