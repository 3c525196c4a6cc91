"""Daily rollups, recomputed whole for each dirty (day, feature) partition.

Recomputing a partition from raw rows (DELETE + INSERT ... SELECT in one transaction)
makes the task idempotent: a rerun, a retry or two workers racing give the same rows,
and nothing is ever counted twice.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db import connection, transaction

from feedback.enums import CHOICE_KINDS, EXPLICIT_KINDS, FeedbackKind, TraceStatus, sql_list
from feedback.services.tables import FEEDBACK_TRACE_JOIN
from feedback.sketch import SQL_BUCKET

_GROUP = "COALESCE(prompt_version_id, 0), variant, customer_id"

# Thumbs and ratings: the last one per person per trace counts (a changed choice replaces the first).
_RECOMPUTE = f"""
WITH tr AS (
    SELECT trace_id, prompt_version_id, variant, customer_id, status, fallback, guardrail_blocked,
           cost_usd, input_tokens, output_tokens, latency_ms
    FROM feedback_trace WHERE day = %(day)s AND feature_id = %(feature)s
),
fe AS (
    SELECT f.id, f.trace_id, f.kind, f.value, f.edit_distance, f.occurred_at,
           COALESCE(NULLIF(f.user_id, ''), NULLIF(f.session_id, ''), f.event_id::text) AS who
    FROM feedback_feedbackevent f
    WHERE f.trace_day = %(day)s AND f.feature_id = %(feature)s
),
last_choice AS (
    SELECT DISTINCT ON (trace_id, kind, who) trace_id, kind, value
    FROM fe WHERE kind IN ({sql_list(CHOICE_KINDS)})
    ORDER BY trace_id, kind, who, occurred_at DESC, id DESC
),
fb AS (
    SELECT trace_id,
           -- Per trace: did it get explicit / implicit feedback at all (a thumb, then a reason
           -- chip, then a changed mind is still one trace with explicit feedback).
           (count(*) FILTER (WHERE kind IN ({sql_list(EXPLICIT_KINDS)})) > 0)::int AS explicit_n,
           (count(*) FILTER (WHERE kind NOT IN ({sql_list(EXPLICIT_KINDS)})) > 0)::int AS implicit_n,
           count(*) FILTER (WHERE kind = '{FeedbackKind.EDIT}') AS edits,
           COALESCE(sum(edit_distance) FILTER (WHERE kind = '{FeedbackKind.EDIT}'), 0) AS edit_distance_sum
    FROM fe GROUP BY trace_id
),
ch AS (
    SELECT trace_id,
           count(*) FILTER (WHERE kind = '{FeedbackKind.THUMB}' AND value > 0) AS up,
           count(*) FILTER (WHERE kind = '{FeedbackKind.THUMB}' AND value < 0) AS down,
           count(*) FILTER (WHERE kind = '{FeedbackKind.RATING}') AS ratings,
           COALESCE(sum(value) FILTER (WHERE kind = '{FeedbackKind.RATING}'), 0) AS ratings_sum
    FROM last_choice GROUP BY trace_id
),
oc AS (
    SELECT o.trace_id, count(*) AS n, COALESCE(sum(o.value_usd), 0) AS value
    FROM feedback_outcome o JOIN tr USING (trace_id) GROUP BY o.trace_id
),
kinds AS (
    SELECT g0, g1, g2, jsonb_object_agg(kind, n) AS by_kind FROM (
        SELECT COALESCE(tr.prompt_version_id, 0) g0, tr.variant g1, tr.customer_id g2, fe.kind, count(*) n
        FROM fe JOIN tr USING (trace_id) GROUP BY 1, 2, 3, 4
    ) k GROUP BY g0, g1, g2
),
lat AS (
    SELECT g0, g1, g2, jsonb_object_agg(b, n) AS sketch, sum(n) AS n FROM (
        SELECT COALESCE(prompt_version_id, 0) g0, variant g1, customer_id g2, {SQL_BUCKET} b, count(*) n
        FROM tr WHERE latency_ms IS NOT NULL GROUP BY 1, 2, 3, 4
    ) l GROUP BY g0, g1, g2
),
agg AS (
    SELECT COALESCE(tr.prompt_version_id, 0) g0, tr.variant g1, tr.customer_id g2,
           count(*) AS traces,
           count(*) FILTER (WHERE tr.status = '{TraceStatus.ERROR}') AS errors,
           count(*) FILTER (WHERE tr.fallback) AS fallbacks,
           count(*) FILTER (WHERE tr.guardrail_blocked) AS guardrail_blocks,
           COALESCE(sum(fb.explicit_n), 0) AS explicit_n, COALESCE(sum(fb.implicit_n), 0) AS implicit_n,
           COALESCE(sum(ch.up), 0) AS up, COALESCE(sum(ch.down), 0) AS down,
           COALESCE(sum(ch.ratings), 0) AS ratings, COALESCE(sum(ch.ratings_sum), 0) AS ratings_sum,
           COALESCE(sum(fb.edits), 0) AS edits, COALESCE(sum(fb.edit_distance_sum), 0) AS edit_distance_sum,
           COALESCE(sum(tr.cost_usd), 0) AS cost, count(tr.cost_usd) AS costed,
           COALESCE(sum(tr.input_tokens), 0) AS input_tokens, COALESCE(sum(tr.output_tokens), 0) AS output_tokens,
           COALESCE(sum(oc.n), 0) AS outcomes, COALESCE(sum(oc.value), 0) AS outcome_value
    FROM tr
    LEFT JOIN fb USING (trace_id) LEFT JOIN ch USING (trace_id) LEFT JOIN oc USING (trace_id)
    GROUP BY 1, 2, 3
)
INSERT INTO feedback_dailyrollup (
    day, feature_id, prompt_version_id, variant, customer_id, traces, errors, fallbacks, guardrail_blocks,
    explicit_feedback, implicit_feedback, feedback_by_kind, thumbs_up, thumbs_down, ratings, ratings_sum,
    edits, edit_distance_sum, cost_usd, costed_traces, input_tokens, output_tokens, latency_count,
    latency_sketch, outcomes, outcome_value_usd, computed_at)
SELECT %(day)s, %(feature)s, NULLIF(agg.g0, 0), agg.g1, agg.g2, traces, errors, fallbacks, guardrail_blocks,
       explicit_n, implicit_n, COALESCE(kinds.by_kind, '{{}}'::jsonb), up, down, ratings, ratings_sum,
       edits, edit_distance_sum, cost, costed, input_tokens, output_tokens, COALESCE(lat.n, 0),
       COALESCE(lat.sketch, '{{}}'::jsonb), outcomes, outcome_value, now()
FROM agg
LEFT JOIN kinds ON (kinds.g0, kinds.g1, kinds.g2) = (agg.g0, agg.g1, agg.g2)
LEFT JOIN lat ON (lat.g0, lat.g1, lat.g2) = (agg.g0, agg.g1, agg.g2)
"""


def rollup_recompute(*, day: date, feature_id: int) -> int:
    """Rebuild one partition; returns how many rollup rows it now has."""
    with transaction.atomic(), connection.cursor() as cursor:
        params: dict[str, Any] = {"day": day, "feature": feature_id}
        cursor.execute("DELETE FROM feedback_dailyrollup WHERE day = %(day)s AND feature_id = %(feature)s", params)
        cursor.execute(_RECOMPUTE, params)
        return cursor.rowcount


def rollups_refresh(*, limit: int = 500) -> int:
    """Recompute dirty partitions of the current schema; returns how many were done.

    The dirty row is claimed with SKIP LOCKED and removed in the same transaction as the
    recompute, so a crash leaves it dirty and two workers never take the same partition.
    A partition dirtied again while it is being recomputed keeps a newer marked_at and stays.
    """
    feedback_rejoin()
    done = 0
    while done < limit:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, day, feature_id, marked_at FROM feedback_rollupdirty "
                "ORDER BY marked_at LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
            row = cursor.fetchone()
            if row is None:
                return done
            dirty_id, day, feature_id, marked_at = row
            rollup_recompute(day=day, feature_id=feature_id)
            cursor.execute("DELETE FROM feedback_rollupdirty WHERE id = %s AND marked_at = %s", [dirty_id, marked_at])
        done += 1
    return done


def feedback_rejoin() -> int:
    """Give feedback whose trace exists but was missed by the join (a feedback batch that
    looked its trace up just before the trace's batch committed) the trace's feature, version
    and day, and mark those partitions dirty. Returns how many events were mended."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH mended AS (
                UPDATE feedback_feedbackevent f
                   SET {FEEDBACK_TRACE_JOIN.set_from("t")}
                  FROM feedback_trace t
                 WHERE f.feature_id IS NULL AND f.trace_id = t.trace_id
                   -- feedback whose trace never came is not rescanned forever
                   AND f.received_at > now() - interval '7 days'
             RETURNING t.day, t.feature_id
            )
            INSERT INTO feedback_rollupdirty (day, feature_id, marked_at)
            -- same lock order as ingestion's mark_dirty: no deadlock between the two
            SELECT day, feature_id, now() FROM (SELECT DISTINCT day, feature_id FROM mended) m
            ORDER BY day, feature_id
            ON CONFLICT (day, feature_id) DO UPDATE SET marked_at = EXCLUDED.marked_at
            RETURNING 1
            """
        )
        return cursor.rowcount
