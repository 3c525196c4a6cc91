"""Reads behind the feature report, the feature page, customers and the overview.

Big numbers come from the rollups (feedback_dailyrollup, and feedback_segmentrollup for metadata
keys a feature declares as segments); a window that is not whole UTC days, or a metadata key the
feature does not declare, is answered from the raw rows by the same SQL the rollups run
(feedback.rollups.measures_query), so both paths give the same figures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import connection
from django.db.models import Max, Min

from evaluation.reports.figures import group_figures
from evaluation.reports.measures import MEASURE_NAMES, Measures, total
from evaluation.reports.success import SuccessSource, success_source_for
from feedback.models import DailyRollup, Feature, PromptVersion, SegmentRollup
from feedback.rollups import measures_query

MAX_WINDOW_DAYS = 400
DEFAULT_WINDOW_DAYS = 30
SIMPLE_GROUPS = ("prompt_version", "variant", "customer_id", "day")
METADATA_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
GROUP_BY_PATTERN = r"^(prompt_version|variant|customer_id|day|metadata\.[A-Za-z0-9_.:-]{1,100})$"


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
        raise ReportError("since", "since must be before until")
    if end - start > timedelta(days=MAX_WINDOW_DAYS):
        raise ReportError("until", f"a window is at most {MAX_WINDOW_DAYS} days")
    return Window(start, end)


@dataclass(frozen=True)
class Grouping:
    """What a report groups by: one of SIMPLE_GROUPS or a metadata key."""

    name: str  # prompt_version | variant | customer_id | day | metadata
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
            "group_by", "one of prompt_version, variant, customer_id, day or metadata.<key> (letters, digits, _.:-)"
        )

    @property
    def label(self) -> str:
        return f"metadata.{self.metadata_key}" if self.name == "metadata" else self.name


def feature_get(key: str) -> Feature:
    feature = Feature.objects.filter(key=key).first()
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
    if dim in ("variant", "customer_id"):
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
    declared = metadata_key in (feature.segment_keys or [])
    n = len(dims)
    if window.whole_days and (not segment or declared):
        days = {"feature": feature, "day__gte": window.first_day, "day__lte": window.last_day}
        if segment:
            columns = ["value" if d == "metadata" else _DIMS[d][0] for d in dims]
            rows: Iterable[tuple[Any, ...]] = SegmentRollup.objects.filter(key=metadata_key, **days).values_list(
                *columns, *MEASURE_NAMES
            )
        else:
            rows = DailyRollup.objects.filter(**days).values_list(*(_DIMS[d][0] for d in dims), *MEASURE_NAMES)
        for row in rows:
            put(tuple(row[:n]), Measures.from_row(row[n:]))
        return out, "rollups"
    sql = measures_query(
        dims=[("t.metadata ->> %(mkey)s" if d == "metadata" else _DIMS[d][1]) for d in dims] or ["true"],
        traces_from="FROM feedback_trace t WHERE t.feature_id = %(feature)s AND t.day BETWEEN %(d0)s AND %(d1)s "
        "AND t.started_at >= %(since)s AND t.started_at < %(until)s",
        feedback_where="f.feature_id = %(feature)s AND f.trace_day BETWEEN %(d0)s AND %(d1)s",
    )
    params: dict[str, Any] = {"feature": feature.id, "d0": window.first_day, "d1": window.last_day,
                              "since": window.since, "until": window.until, "mkey": metadata_key}  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for row in cursor.fetchall():
            width = max(n, 1)
            put(tuple(row[:n]), Measures.from_row(row[width:]))
    return out, "raw"


# --- the feature report ----------------------------------------------------------------------------


def _value_per_success(feature: Feature) -> float | None:
    return float(feature.value_per_success_usd) if feature.value_per_success_usd is not None else None


def _group_sort_key(grouping: Grouping, item: tuple[Any, Measures]) -> tuple[Any, ...]:
    key, measures = item
    if grouping.name == "day":
        return (key or "",)
    return (-measures.traces, str(key))


def feature_report(*, feature: Feature, window: Window, grouping: Grouping) -> dict[str, Any]:
    """shared/API.md's feature report, plus ``total`` (all groups together), ``source`` (rollups or
    raw rows), ``value_per_success_usd`` and ``success_source`` with its description."""
    parts, origin = measures_by(
        feature=feature, window=window, dims=(grouping.name,), metadata_key=grouping.metadata_key
    )
    groups = {key[0]: m for key, m in parts.items()}
    whole = total(groups)
    source = success_source_for(whole)
    vps = _value_per_success(feature)
    note = None
    if grouping.name == "metadata" and all(key is None for key in groups):
        # No trace in the window carries the key: an explicit empty state, not one "(none)" group.
        groups = {}
        note = f"no trace of this feature in the window has metadata.{grouping.metadata_key}"
    elif not groups:
        note = "no traces in this window"
    rows = [
        {"group": key, **group_figures(m, source=source, value_per_success_usd=vps)}
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
        "total": {"group": None, **group_figures(whole, source=source, value_per_success_usd=vps)},
        "groups": rows,
    }


def features_list() -> list[dict[str, Any]]:
    """Every feature with its declared value and the first / last day it has traces (from rollups)."""
    seen = {
        row["feature_id"]: row
        for row in DailyRollup.objects.values("feature_id").annotate(first=Min("day"), last=Max("day"))
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
        for f in Feature.objects.order_by("key")
    ]


__all__ = [
    "GROUP_BY_PATTERN",
    "Grouping",
    "ReportError",
    "SuccessSource",
    "Window",
    "feature_get",
    "feature_report",
    "features_list",
    "measures_by",
    "window_from",
]
