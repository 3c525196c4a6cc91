"""Which implicit signals carry information: for one feature and window, the AUC (with DeLong's
interval) of each implicit signal (copy, retry, rephrase, abandon, dwell, accept) for telling good
outputs from bad, against the explicit verdicts people gave (thumbs and ratings: a trace is good
when its good choices outnumber its bad ones, the last choice per person counting, as in the
reports) and, where there are enough, against human labels from the API and queues.

A signal is 1 on a trace that received it and 0 otherwise; dwell is its longest value in ms (0
without one). An AUC of 0.5 says nothing; above it the signal points to good outputs, below it to
bad ones (retries, rephrases). AUCs need MIN_EACH good and bad traces, else they are undefined.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection

from evaluation.models import trace_labels_sql
from evaluation.reports.selectors import Window
from evaluation.stats import Interval, signal_auc
from feedback.enums import CHOOSER_SQL, FeedbackKind
from feedback.models import Feature

SIGNALS: tuple[str, ...] = (
    FeedbackKind.COPY, FeedbackKind.ACCEPT, FeedbackKind.DWELL,
    FeedbackKind.RETRY, FeedbackKind.REPHRASE, FeedbackKind.ABANDON,
)  # fmt: skip
MIN_EACH = 10
_SIGNAL_COLUMNS = ", ".join(
    f"max(value) FILTER (WHERE kind = '{kind}')" if kind == FeedbackKind.DWELL else f"bool_or(kind = '{kind}')"
    for kind in SIGNALS
)
_SIGNALS_CTE = f"""
fe AS (
    SELECT f.id, f.trace_id, f.kind, f.value, f.occurred_at,
           {CHOOSER_SQL} AS who
    FROM feedback_feedbackevent f
    WHERE f.feature_id = %(feature)s AND f.trace_day BETWEEN %(d0)s AND %(d1)s
),
sig AS (SELECT trace_id, {_SIGNAL_COLUMNS} FROM fe GROUP BY trace_id)
"""
# Traces with an explicit verdict (not a tie) and their signals.
_BY_FEEDBACK = f"""
WITH {_SIGNALS_CTE},
last_choice AS (
    SELECT DISTINCT ON (trace_id, kind, who) trace_id, kind, value FROM fe
    WHERE kind IN ('{FeedbackKind.THUMB}', '{FeedbackKind.RATING}')
    ORDER BY trace_id, kind, who, occurred_at DESC, id DESC
),
verdict AS (
    SELECT trace_id,
           count(*) FILTER (WHERE (kind = '{FeedbackKind.THUMB}' AND value > 0)
                               OR (kind = '{FeedbackKind.RATING}' AND value >= 4)) AS good,
           count(*) FILTER (WHERE (kind = '{FeedbackKind.THUMB}' AND value < 0)
                               OR (kind = '{FeedbackKind.RATING}' AND value < 4)) AS bad
    FROM last_choice GROUP BY trace_id
)
SELECT (v.good > v.bad)::int, sig.* FROM verdict v JOIN sig USING (trace_id) WHERE v.good <> v.bad
"""
# The graded rubric with the most API / queue labels on the feature's traces in the window.
_RUBRIC = """
SELECT r.id, r.name, r.version, r.scale FROM evaluation_label l
JOIN evaluation_rubric r ON r.id = l.rubric_id AND r.scale IN ('binary', 'ordinal', 'continuous')
JOIN feedback_trace t ON t.trace_id = l.trace_id AND t.feature_id = %(feature)s
    AND t.day BETWEEN %(d0)s AND %(d1)s AND t.started_at >= %(since)s AND t.started_at < %(until)s
WHERE l.source IN ('api', 'queue') AND l.value IS NOT NULL
GROUP BY r.id ORDER BY count(*) DESC, r.id DESC LIMIT 1
"""
# One label per trace (evaluation.models.trace_labels_sql) of the feature's traces in the window.
_FEATURE_LABELS = trace_labels_sql(
    "l.rubric_id = %(rubric)s AND l.source IN ('api', 'queue') AND l.value IS NOT NULL AND EXISTS ("
    "SELECT 1 FROM feedback_trace t WHERE t.trace_id = l.trace_id AND t.feature_id = %(feature)s "
    "AND t.day BETWEEN %(d0)s AND %(d1)s AND t.started_at >= %(since)s AND t.started_at < %(until)s)"
)
_BY_LABELS = f"""
WITH {_SIGNALS_CTE},
lab AS (SELECT l.trace_id, l.value FROM ({_FEATURE_LABELS}) l)
SELECT lab.value, sig.* FROM lab LEFT JOIN sig USING (trace_id)
"""


@dataclass(frozen=True)
class SignalRow:
    signal: str
    traces_with: int  # traces with an explicit verdict that received the signal
    share: float | None
    auc_feedback: Interval
    auc_labels: Interval | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "traces_with": self.traces_with,
            "share": self.share,
            "auc_feedback": self.auc_feedback.as_dict(),
            "auc_labels": self.auc_labels.as_dict() if self.auc_labels is not None else None,
        }


def _matrix(rows: list[tuple[Any, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Labels (first column) and the signal matrix (after trace_id), missing as 0."""
    if not rows:
        return np.zeros(0), np.zeros((0, len(SIGNALS)))
    y = np.array([row[0] for row in rows], dtype=float)
    x = np.array([[float(v or 0) for v in row[2:]] for row in rows], dtype=float)
    return y, x


def _auc(y: np.ndarray, x: np.ndarray) -> Interval:
    good, bad = int(y.sum()), int(y.size - y.sum())
    if min(good, bad) < MIN_EACH:
        return Interval.undefined(f"needs {MIN_EACH} good and {MIN_EACH} bad traces ({good} good, {bad} bad)")
    if np.unique(x).size < 2:
        return Interval.undefined("every trace has the same value", value=0.5)
    return signal_auc(y.astype(int), x)


def signal_report(*, feature: Feature, window: Window) -> dict[str, Any]:
    """Per implicit signal: how often it comes with explicit feedback and how well it predicts it."""
    params: dict[str, Any] = {"feature": feature.id, "d0": window.first_day, "d1": window.last_day,
              "since": window.since, "until": window.until}  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_BY_FEEDBACK, params)
        y_fb, x_fb = _matrix(cursor.fetchall())
        cursor.execute(_RUBRIC, params)
        rubric = cursor.fetchone()
        y_lab, x_lab = np.zeros(0), np.zeros((0, len(SIGNALS)))
        if rubric is not None:
            cursor.execute(_BY_LABELS, {**params, "rubric": rubric[0]})
            rows = cursor.fetchall()
            good_at = {"binary": 1.0, "ordinal": 4.0, "continuous": 0.5}[rubric[3]]
            y_lab, x_lab = _matrix([(float(row[0] >= good_at), *row[1:]) for row in rows])
    out = []
    for i, signal in enumerate(SIGNALS):
        present = int(np.count_nonzero(x_fb[:, i])) if y_fb.size else 0
        out.append(
            SignalRow(
                signal=str(signal),
                traces_with=present,
                share=present / y_fb.size if y_fb.size else None,
                auc_feedback=_auc(y_fb, x_fb[:, i]) if y_fb.size else Interval.undefined("no thumbs or ratings"),
                auc_labels=_auc(y_lab, x_lab[:, i]) if rubric is not None else None,
            )  # fmt: skip
        )
    return {
        "rated_traces": int(y_fb.size),
        "labelled_traces": int(y_lab.size),
        "rubric": f"{rubric[1]} v{rubric[2]}" if rubric is not None else None,
        "signals": [row.as_dict() for row in out],
    }
