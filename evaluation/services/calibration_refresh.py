"""Keeping calibration current: when labels or judge scores arrive, the (judge version x rubric
version x feature) they touch comes due; a debounced Celery refresh recomputes its calibration
report and success estimate and stores them as a snapshot (the verdict's history).

Arrivals are found by the sweep itself (labels by id, finished scores by scored_at, each past a
cursor), so every path that writes labels or scores (API, queues, runner, backfill) is covered
without a hook in each; ``calibration_nudge`` only makes the next sweep come sooner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction

from evaluation.models import CalibrationCursor, CalibrationSnapshot, CalibrationTarget, RubricScale, WidgetLabelMap
from evaluation.reports.selectors import Window
from evaluation.selectors import ScoreSummary, TraceScope, feature_scores_summaries
from evaluation.services.calibration import CalibrationError, calibration_parts, success_estimate
from evaluation.services.shared import utc_now
from feedback.enums import CHOOSER_SQL

# A nudge waits this long before its sweep, so a burst of labels is one recompute, not one per label...
LABEL_DEBOUNCE = timedelta(seconds=2)
# ...and new scores alone recompute a target at most this often (they move n_scored and the estimate).
SCORE_INTERVAL = timedelta(seconds=60)
SUCCESS_WINDOW_DAYS = 30
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REFRESH_BATCH = 20
# How long a sweep holds the targets it claimed: one that dies before computing them (a killed worker,
# an error other than CalibrationError) leaves them due again after this, as the judge runner's leases do.
CLAIM_LEASE = timedelta(minutes=10)

# Targets the new labels touch: every judge version that scored a labelled trace, per feature.
_FROM_LABELS = """
INSERT INTO evaluation_calibrationtarget (judge_version_id, rubric_id, feature_id, due_at, created_at)
SELECT DISTINCT s.judge_version_id, l.rubric_id, s.feature_id, %(due)s::timestamptz, %(now)s::timestamptz
FROM evaluation_label l
JOIN evaluation_rubric r ON r.id = l.rubric_id AND r.scale <> 'categorical' AND r.scale <> 'free_text'
JOIN evaluation_score s ON s.trace_id = l.trace_id AND s.status = 'ok'
WHERE l.id > %(after)s AND l.id <= %(upto)s AND l.source IN ('api', 'queue')
ON CONFLICT ON CONSTRAINT calibration_target_once DO UPDATE
SET due_at = LEAST(coalesce(evaluation_calibrationtarget.due_at, EXCLUDED.due_at), EXCLUDED.due_at)
"""
# Targets new scores touch: the rubrics already labelled on any trace this judge version scored.
_FROM_SCORES = """
INSERT INTO evaluation_calibrationtarget (judge_version_id, rubric_id, feature_id, due_at, created_at)
SELECT DISTINCT s.judge_version_id, l.rubric_id, s.feature_id, %(due)s::timestamptz, %(now)s::timestamptz
FROM (
    SELECT DISTINCT judge_version_id, feature_id FROM evaluation_score
    WHERE status = 'ok' AND scored_at > %(after)s AND scored_at <= %(upto)s
) fresh
JOIN evaluation_score s ON s.judge_version_id = fresh.judge_version_id
    AND s.feature_id IS NOT DISTINCT FROM fresh.feature_id AND s.status = 'ok'
JOIN evaluation_label l ON l.trace_id = s.trace_id AND l.source IN ('api', 'queue')
JOIN evaluation_rubric r ON r.id = l.rubric_id AND r.scale <> 'categorical' AND r.scale <> 'free_text'
ON CONFLICT ON CONSTRAINT calibration_target_once DO UPDATE
SET due_at = LEAST(
    coalesce(evaluation_calibrationtarget.due_at, 'infinity'),
    GREATEST(
        EXCLUDED.due_at,
        coalesce(evaluation_calibrationtarget.refreshed_at, '-infinity') + make_interval(secs => %(interval)s)
    )
)
"""
# The batch is picked in a MATERIALIZED CTE, evaluated once: as a subquery in UPDATE ... FROM the
# planner may rerun it for every row (a nested loop, when the statistics say the table is empty),
# each run locking the next rows, so one claim took every due target (as evaluation.services.runs
# found for scores). A claimed target counts as refreshed from the claim on: a sweep that marks it
# from new scores while its snapshot is being computed makes it due a minute on, not at once (with
# refreshed_at set only after the computation, that sweep refreshed the same target a second time).
# A claim leases the target (due_at moves to the lease's end); the sweep clears the lease once the target
# is computed, unless new labels or scores made it due again meanwhile.
_CLAIM = """
WITH c AS MATERIALIZED (
    SELECT id FROM evaluation_calibrationtarget WHERE due_at <= %(now)s ORDER BY due_at, id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE evaluation_calibrationtarget t SET due_at = %(lease_until)s, refreshed_at = %(now)s
FROM c
WHERE t.id = c.id
RETURNING t.id
"""


# Widget thumbs and ratings copied onto a mapped rubric as labels of source "widget" (kept out of
# calibration by every read: scoped_labels takes api and queue labels only).
_WIDGET_VALUE = {
    "binary": "CASE WHEN f.kind = 'thumb' THEN (f.value > 0)::int ELSE (f.value >= 4)::int END",
    "continuous": "CASE WHEN f.kind = 'thumb' THEN (f.value > 0)::int ELSE (f.value - 1) / 4.0 END",
    "ordinal": "f.value",
}
# The person behind an event, as the rollups count them (feedback.rollups, last_choice).
_WHO = CHOOSER_SQL
# One label per (trace, kind, person, rubric): the person's latest thumb (or rating) on the trace, as the
# rollups count it, so a thumb then a reason chip (a second thumb carrying the reason) is one label and a
# changed mind replaces the first. ``{touched}`` selects the new events (``f``); every event of the people
# they come from on those traces is then read through the index on trace_id (a few rows a trace), and
# the latest is upserted under a label ID made of (rubric, kind, trace, person): rerun, it changes
# nothing. Labels the copy once wrote per event ('widget:<event>:<rubric>') of those people go.
# Thumbs a backend relays through the API are the end user's too: copied like the widget's (the label
# source stays "widget", the one source kept out of calibration), the door they came by in
# sampling_design.
_WIDGET_UPSERT = """
WITH touched AS MATERIALIZED (
    SELECT DISTINCT f.trace_id, f.kind, {who} AS who FROM feedback_feedbackevent f {touched}
),
mine AS MATERIALIZED (
    SELECT f.*, w.who FROM touched w
    JOIN feedback_feedbackevent f ON f.trace_id = w.trace_id AND f.kind = w.kind
    WHERE {who} = w.who AND f.id <= %(upto)s AND f.value IS NOT NULL
),
legacy AS (
    DELETE FROM evaluation_label l USING mine f
    WHERE l.label_id = 'widget:' || f.event_id::text || ':' || %(rubric)s AND l.source = 'widget'
)
INSERT INTO evaluation_label (label_id, trace_id, rubric_id, value, category, text, reviewer, source,
    sampling_design, stratum, inclusion_probability, comment, occurred_at, created_at)
SELECT DISTINCT ON (f.trace_id, f.kind, f.who)
    'widget:' || %(rubric)s || ':' || f.kind || ':' || md5(length(f.trace_id) || ':' || f.trace_id || f.who),
    f.trace_id, %(rubric)s, {value}, '', '', left(f.user_id, 254), 'widget', f.source, '', NULL, f.comment,
    f.occurred_at, %(now)s
FROM mine f
ORDER BY f.trace_id, f.kind, f.who, f.occurred_at DESC, f.id DESC
ON CONFLICT (label_id) DO UPDATE SET value = EXCLUDED.value, reviewer = EXCLUDED.reviewer,
    sampling_design = EXCLUDED.sampling_design, comment = EXCLUDED.comment, occurred_at = EXCLUDED.occurred_at
WHERE (evaluation_label.value, evaluation_label.reviewer, evaluation_label.sampling_design,
       evaluation_label.comment, evaluation_label.occurred_at)
    IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.reviewer, EXCLUDED.sampling_design, EXCLUDED.comment,
                      EXCLUDED.occurred_at)
"""
# New events: by id, past the map's mark.
_WIDGET_NEW = """
WHERE f.id > %(after)s AND f.id <= %(upto)s AND f.kind = ANY(%(kinds)s) AND f.value IS NOT NULL
    AND (%(feature)s::bigint IS NULL OR f.feature_id = %(feature)s)
"""


ORPHAN_WAIT = timedelta(hours=1)
# Late joins: the feature's recent events whose trace landed after them (the mark passed them while
# they had no feature). Recent traces only (their day within two days), so the index on
# (feature, trace_day) bounds the read.
_WIDGET_LATE = """
JOIN feedback_trace t ON t.trace_id = f.trace_id AND t.received_at >= f.received_at
WHERE f.feature_id = %(feature)s AND f.trace_day >= (%(now)s::timestamptz - interval '2 days')::date
    AND f.received_at > %(since)s AND f.id <= %(upto)s AND f.kind = ANY(%(kinds)s) AND f.value IS NOT NULL
"""


def _widget_upsert(touched: str, scale: str) -> str:
    return _WIDGET_UPSERT.format(touched=touched, who=_WHO, value=_WIDGET_VALUE[scale])


def widget_labels_copy(*, now: datetime | None = None) -> int:
    """Copy new widget thumbs / ratings onto each mapped rubric; the number of labels written or changed.

    One label per person, trace and kind: their latest thumb (or rating), replaced when they change
    their mind. New events (by id, past the map's mark) are copied when their trace is known. Feedback
    that arrived before its trace has no feature until the trace lands: a map for one feature also
    copies, on each sweep, its feature's events received in the last ORPHAN_WAIT whose trace was
    received after them (late joins; label IDs make the copy idempotent). Feedback whose trace
    never comes holds nothing back."""
    now = now or utc_now()
    written = 0
    for mapping in WidgetLabelMap.objects.select_related("rubric"):
        scale = mapping.rubric.scale
        kinds = [kind for kind, on in (("thumb", mapping.thumbs and scale != "ordinal"), ("rating", mapping.ratings))
                 if on]  # fmt: skip
        if scale not in _WIDGET_VALUE or not kinds:
            continue
        with transaction.atomic(), connection.cursor() as cursor:
            # Sweeps side by side take a map in turn: one with an older snapshot of the events must not
            # put back a label another just replaced, nor move the mark back.
            mark = WidgetLabelMap.objects.select_for_update().filter(id=mapping.id).values_list(
                "event_id_mark", flat=True
            ).first()  # fmt: skip
            if mark is None:
                continue  # removed meanwhile
            params: dict[str, Any] = {
                "rubric": mapping.rubric_id, "now": now, "after": mark, "kinds": kinds,
                "feature": mapping.feature_id, "since": now - ORPHAN_WAIT,
            }  # fmt: skip
            cursor.execute("SELECT coalesce(max(id), 0) FROM feedback_feedbackevent")
            (upto,) = cursor.fetchone()
            if upto > mark:
                cursor.execute(_widget_upsert(_WIDGET_NEW, scale), {**params, "upto": upto})
                written += cursor.rowcount
                WidgetLabelMap.objects.filter(id=mapping.id).update(event_id_mark=upto)
            if mapping.feature_id is not None:
                cursor.execute(_widget_upsert(_WIDGET_LATE, scale), {**params, "upto": upto})
                written += cursor.rowcount
    return written


@dataclass
class SweepStats:
    labels: int = 0
    scores_upto: datetime | None = None
    refreshed: int = 0
    failed: int = 0


def calibration_mark(*, now: datetime | None = None) -> SweepStats:
    """Mark due every target that labels or finished scores arrived for since the last sweep."""
    now = now or utc_now()
    stats = SweepStats()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor_row, _ = CalibrationCursor.objects.select_for_update().get_or_create(pk=1)
        cursor.execute("SELECT coalesce(max(id), 0) FROM evaluation_label")
        (label_upto,) = cursor.fetchone()
        if label_upto > cursor_row.label_id:
            cursor.execute(_FROM_LABELS, {"due": now, "now": now, "after": cursor_row.label_id, "upto": label_upto})
            stats.labels = label_upto - cursor_row.label_id
        # Scores finished up to a moment ago (a runner's open transaction may still commit rows
        # stamped a little earlier: the 60 s overlap re-reads them; re-marking is harmless).
        score_upto = now
        after = cursor_row.scored_at - timedelta(seconds=60) if cursor_row.scored_at else EPOCH
        cursor.execute(
            _FROM_SCORES,
            {"due": now, "now": now, "after": after, "upto": score_upto, "interval": SCORE_INTERVAL.total_seconds()},
        )
        stats.scores_upto = score_upto
        CalibrationCursor.objects.filter(pk=1).update(
            label_id=max(label_upto, cursor_row.label_id), scored_at=score_upto
        )
    return stats


def calibration_claim(*, now: datetime, limit: int) -> list[int]:
    """Lease up to ``limit`` due targets to this sweep until ``now + CLAIM_LEASE`` (none another sweep
    holds); their IDs."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CLAIM, {"now": now, "limit": limit, "lease_until": now + CLAIM_LEASE})
        return [row[0] for row in cursor.fetchall()]


def calibration_refresh_due(*, now: datetime | None = None, limit: int = REFRESH_BATCH) -> SweepStats:
    """Recompute the due targets (at most ``limit``) and store a snapshot of each."""
    now = now or utc_now()
    stats = SweepStats()
    ids = calibration_claim(now=now, limit=limit)
    for target in CalibrationTarget.objects.filter(id__in=ids).select_related(
        "judge_version__judge", "rubric", "feature"
    ):
        try:
            calibration_snapshot_take(target, now=now)
            stats.refreshed += 1
        except CalibrationError:
            stats.failed += 1  # this target cannot be computed as it is: done until new labels or scores
        # The lease ends with the work, unless a mark moved due_at meanwhile (then it is due again).
        CalibrationTarget.objects.filter(id=target.id, due_at=now + CLAIM_LEASE).update(due_at=None)
    return stats


def calibration_sweep(*, now: datetime | None = None) -> SweepStats:
    """Copy widget labels, mark what arrived, then refresh what is due."""
    now = now or utc_now()
    widget_labels_copy(now=now)
    marked = calibration_mark(now=now)
    done = calibration_refresh_due(now=now)
    done.labels, done.scores_upto = marked.labels, marked.scores_upto
    return done


def success_window(now: datetime) -> Window:
    end = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return Window(end - timedelta(days=SUCCESS_WINDOW_DAYS), end)


def calibration_snapshot_take(target: CalibrationTarget, *, now: datetime | None = None) -> CalibrationSnapshot:
    """Compute the target's calibration report and the feature's success estimate; store both."""
    now = now or utc_now()
    started = time.perf_counter()
    version = target.judge_version
    judge = version.judge
    rubric = target.rubric
    if rubric.scale in (RubricScale.CATEGORICAL, "free_text"):
        raise CalibrationError("rubric", f"{rubric.name!r} has no good / bad to agree with")
    feature_key = target.feature.key if target.feature is not None else None
    scope = TraceScope(feature_id=target.feature_id)
    success: dict[str, Any] | None = None
    summaries: list[ScoreSummary] = []
    if target.feature is not None:
        window = success_window(now)
        feature_id = target.feature_id
        assert feature_id is not None

        def windowed() -> ScoreSummary:
            # One pass gives the window's summary (for the estimate) and the history's (n_scored).
            summaries.extend(
                feature_scores_summaries(
                    judge_version=version, feature_id=feature_id, since=window.since, until=window.until
                )
            )
            return summaries[1]

        success = success_estimate(
            feature=target.feature.key, rubric=rubric, judge=judge, judge_version=version,
            scope=TraceScope(feature_id=target.feature_id, since=window.since, until=window.until), window=window,
            summary_of=windowed,
        )  # fmt: skip
    report, calibrator, low = calibration_parts(
        judge=judge, judge_version=version, rubric=rubric, scope=scope, feature=feature_key,
        n_scored=summaries[0].n if summaries else None,
    )  # fmt: skip
    snapshot = CalibrationSnapshot.objects.create(
        target=target,
        computed_at=now,
        n_labels=report["n_labels"],
        n_scored=report["n_scored"],
        verdict=report.get("verdict") or "",
        verdict_low=low,
        report=report,
        success=success,
        calibrator=calibrator,
        millis=int((time.perf_counter() - started) * 1000),
    )
    CalibrationTarget.objects.filter(id=target.id).update(refreshed_at=now)
    return snapshot


def calibration_nudge() -> None:
    """Ask for a sweep of this organization soon (after the debounce); the beat sweep is the net."""
    from evaluation.tasks import schedule_calibration_sweep
    from tenants.schema import current_schema

    schedule_calibration_sweep(current_schema(), countdown=LABEL_DEBOUNCE.total_seconds())
