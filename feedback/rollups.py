"""Daily rollups, recomputed whole for each dirty (day, feature) partition.

Recomputing a partition from raw rows (DELETE + INSERT ... SELECT in one transaction)
makes the task idempotent: a rerun, a retry or two workers racing give the same rows,
and nothing is ever counted twice.

One SQL builder (``measures_query``) counts every measure over any grouping of a feature's
traces: the rollups use it per (day, feature) partition, and reports use it over a window of
raw rows (drill-downs, metadata keys a feature does not declare as segments, partial days).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from django.db import connection, transaction

from feedback.enums import CHOICE_KINDS, CHOOSER_SQL, EXPLICIT_KINDS, FeedbackKind, TraceStatus, sql_list
from feedback.services.tables import FEEDBACK_TRACE_JOIN
from feedback.sketch import SQL_BUCKET

# The measure columns of feedback.models.RollupMeasures, in the order measures_query yields them.
MEASURES: tuple[str, ...] = (
    "traces", "errors", "fallbacks", "guardrail_blocks", "explicit_feedback", "implicit_feedback",
    "feedback_by_kind", "traces_by_kind", "thumbs_up", "thumbs_down", "ratings", "ratings_sum",
    "rated_traces", "good_traces", "edits", "edited_traces", "edit_distance_sum", "cost_usd",
    "costed_traces", "input_tokens", "output_tokens", "latency_count", "latency_sketch", "ttft_sketch",
    "outcomes", "outcome_traces", "outcome_value_usd", "cost_sq_usd",
)  # fmt: skip

_SKETCH_TTFT = SQL_BUCKET.replace("latency_ms", "ttft_ms")


def measures_query(*, dims: Sequence[str], traces_from: str, feedback_where: str) -> str:
    """SQL yielding ``g0..gN`` (the ``dims`` expressions over feedback_trace ``t``) then MEASURES.

    ``traces_from``: the FROM and WHERE over ``feedback_trace t`` (may add a join, e.g. one row
    per declared segment key); ``feedback_where``: a cheap, index-friendly superset filter over
    ``feedback_feedbackevent f`` (feedback of traces outside ``traces_from`` is dropped by the join).
    Thumbs and ratings: the last one per person per trace counts (a changed choice replaces the first).
    Float measures are summed as numeric and rounded once: a float8 sum depends on the order the plan
    reads the rows in, so a recomputation could differ from the stored rollup in the last bits.
    """
    gs = [f"g{i}" for i in range(len(dims))]
    g_select = ", ".join(f"{expr} AS {g}" for expr, g in zip(dims, gs, strict=True))
    g_list = ", ".join(gs)
    tr_g = ", ".join(f"tr.{g}" for g in gs)

    def on(alias: str) -> str:
        return " AND ".join(f"{alias}.{g} IS NOT DISTINCT FROM agg.{g}" for g in gs) or "true"

    return f"""
WITH tr AS (
    SELECT t.trace_id, {g_select}, t.status, t.fallback, t.guardrail_blocked, t.cost_usd,
           t.input_tokens, t.output_tokens, t.latency_ms, t.ttft_ms
    {traces_from}
),
fe AS (
    SELECT f.id, f.trace_id, f.kind, f.value, f.edit_distance, f.occurred_at,
           {CHOOSER_SQL} AS who
    FROM feedback_feedbackevent f
    WHERE {feedback_where} AND f.trace_id IN (SELECT trace_id FROM tr)
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
           COALESCE(sum(edit_distance::numeric) FILTER (WHERE kind = '{FeedbackKind.EDIT}'), 0) AS edit_distance_sum
    FROM fe GROUP BY trace_id
),
ch AS (
    SELECT trace_id,
           count(*) FILTER (WHERE kind = '{FeedbackKind.THUMB}' AND value > 0) AS up,
           count(*) FILTER (WHERE kind = '{FeedbackKind.THUMB}' AND value < 0) AS down,
           count(*) FILTER (WHERE kind = '{FeedbackKind.RATING}') AS ratings,
           COALESCE(sum(value) FILTER (WHERE kind = '{FeedbackKind.RATING}'), 0) AS ratings_sum,
           count(*) FILTER (WHERE (kind = '{FeedbackKind.THUMB}' AND value > 0)
                               OR (kind = '{FeedbackKind.RATING}' AND value >= 4)) AS good,
           count(*) FILTER (WHERE (kind = '{FeedbackKind.THUMB}' AND value < 0)
                               OR (kind = '{FeedbackKind.RATING}' AND value < 4)) AS bad
    FROM last_choice GROUP BY trace_id
),
oc AS (
    -- Outcomes tied by trace_id, and outcomes tied only by session_id through their attributed trace.
    SELECT trace_id, count(*) AS n, COALESCE(sum(value_usd), 0) AS value FROM (
        SELECT o.trace_id, o.value_usd FROM feedback_outcome o WHERE o.trace_id IN (SELECT trace_id FROM tr)
        UNION ALL
        SELECT o.attributed_trace_id, o.value_usd FROM feedback_outcome o
        WHERE o.trace_id = '' AND o.attributed_trace_id IN (SELECT trace_id FROM tr)
    ) o GROUP BY trace_id
),
kinds AS (
    SELECT {g_list}, jsonb_object_agg(kind, n) AS by_kind, jsonb_object_agg(kind, nt) AS traces_by_kind FROM (
        SELECT {tr_g}, fe.kind, count(*) n, count(DISTINCT fe.trace_id) nt
        FROM fe JOIN tr USING (trace_id) GROUP BY {tr_g}, fe.kind
    ) k GROUP BY {g_list}
),
lat AS (
    SELECT {g_list}, jsonb_object_agg(b, n) AS sketch, sum(n) AS n FROM (
        SELECT {g_list}, {SQL_BUCKET} b, count(*) n FROM tr WHERE latency_ms IS NOT NULL GROUP BY {g_list}, b
    ) l GROUP BY {g_list}
),
ttft AS (
    SELECT {g_list}, jsonb_object_agg(b, n) AS sketch FROM (
        SELECT {g_list}, {_SKETCH_TTFT} b, count(*) n FROM tr WHERE ttft_ms IS NOT NULL GROUP BY {g_list}, b
    ) l GROUP BY {g_list}
),
agg AS (
    SELECT {tr_g},
           count(*) AS traces,
           count(*) FILTER (WHERE tr.status = '{TraceStatus.ERROR}') AS errors,
           count(*) FILTER (WHERE tr.fallback) AS fallbacks,
           count(*) FILTER (WHERE tr.guardrail_blocked) AS guardrail_blocks,
           COALESCE(sum(fb.explicit_n), 0) AS explicit_n, COALESCE(sum(fb.implicit_n), 0) AS implicit_n,
           COALESCE(sum(ch.up), 0) AS up, COALESCE(sum(ch.down), 0) AS down,
           COALESCE(sum(ch.ratings), 0) AS ratings, COALESCE(sum(ch.ratings_sum), 0) AS ratings_sum,
           count(*) FILTER (WHERE ch.good + ch.bad > 0) AS rated, count(*) FILTER (WHERE ch.good > ch.bad) AS good,
           COALESCE(sum(fb.edits), 0) AS edits, count(*) FILTER (WHERE fb.edits > 0) AS edited,
           COALESCE(sum(fb.edit_distance_sum), 0)::float8 AS edit_distance_sum,
           COALESCE(sum(tr.cost_usd), 0) AS cost, count(tr.cost_usd) AS costed,
           COALESCE(sum(tr.input_tokens), 0) AS input_tokens, COALESCE(sum(tr.output_tokens), 0) AS output_tokens,
           COALESCE(sum(oc.n), 0) AS outcomes, count(oc.n) AS outcome_traces,
           COALESCE(sum(oc.value), 0) AS outcome_value,
           COALESCE(sum(tr.cost_usd * tr.cost_usd), 0)::float8 AS cost_sq
    FROM tr
    LEFT JOIN fb USING (trace_id) LEFT JOIN ch USING (trace_id) LEFT JOIN oc USING (trace_id)
    GROUP BY {tr_g}
)
SELECT {", ".join(f"agg.{g}" for g in gs)}, traces, errors, fallbacks, guardrail_blocks, explicit_n, implicit_n,
       COALESCE(kinds.by_kind, '{{}}'::jsonb), COALESCE(kinds.traces_by_kind, '{{}}'::jsonb), up, down,
       ratings, ratings_sum, rated, good, edits, edited, edit_distance_sum, cost, costed, input_tokens,
       output_tokens, COALESCE(lat.n, 0), COALESCE(lat.sketch, '{{}}'::jsonb), COALESCE(ttft.sketch, '{{}}'::jsonb),
       outcomes, outcome_traces, outcome_value, cost_sq
FROM agg
LEFT JOIN kinds ON {on("kinds")}
LEFT JOIN lat ON {on("lat")}
LEFT JOIN ttft ON {on("ttft")}
"""


# Measures that are maps ({kind: count}, {sketch bucket: count}): merged by adding counts per key.
MAP_MEASURES: frozenset[str] = frozenset({"feedback_by_kind", "traces_by_kind", "latency_sketch", "ttft_sketch"})


def rollup_sum_query(*, table: str, dims: Sequence[str], where: str) -> str:
    """SQL yielding ``g0..gN`` (the ``dims`` column expressions of rollup ``table`` r) then MEASURES,
    summed over the rows matching ``where`` per distinct dims (NULLs group together).

    A report sums thousands of rollup rows (days x versions x variants x customers); doing it here
    sends one row per group to Python. Maps merge in the same pass: each group's maps are collected
    (array_agg, evaluated at the outer level) and re-summed per key in a scalar subquery.
    """
    gs = [f"{expr} AS g{i}" for i, expr in enumerate(dims)]
    group_by = f"GROUP BY {', '.join(f'g{i}' for i in range(len(dims)))}" if dims else ""

    def merged(column: str) -> str:
        return (
            f"(SELECT COALESCE(jsonb_object_agg(e.key, e.n), '{{}}'::jsonb) FROM ("
            f"SELECT m.key, sum(m.value::bigint) AS n FROM unnest(array_agg(r.{column})) AS j(v), "
            f"jsonb_each_text(j.v) AS m GROUP BY m.key) e)"
        )

    columns = [merged(c) if c in MAP_MEASURES else f"COALESCE(sum(r.{c}), 0)" for c in MEASURES]
    return f"""
SELECT {", ".join([*gs, *columns])}
FROM {table} r
WHERE {where}
{group_by}
HAVING count(*) > 0
"""


_PARTITION_TRACES = "FROM feedback_trace t WHERE t.day = %(day)s AND t.feature_id = %(feature)s"
_PARTITION_FEEDBACK = "f.trace_day = %(day)s AND f.feature_id = %(feature)s"
_COLUMNS = ", ".join(MEASURES)

_RECOMPUTE = f"""
INSERT INTO feedback_dailyrollup (day, feature_id, prompt_version_id, variant, customer_id, {_COLUMNS}, computed_at)
SELECT %(day)s, %(feature)s, m.* , now() FROM ({
    measures_query(
        dims=["t.prompt_version_id", "t.variant", "t.customer_id"],
        traces_from=_PARTITION_TRACES,
        feedback_where=_PARTITION_FEEDBACK,
    )
}) m
"""

# One row per trace and declared key: a trace without the key counts under value NULL.
_RECOMPUTE_SEGMENTS = f"""
INSERT INTO feedback_segmentrollup (day, feature_id, prompt_version_id, variant, key, value, {_COLUMNS}, computed_at)
SELECT %(day)s, %(feature)s, m.*, now() FROM ({
    measures_query(
        dims=["t.prompt_version_id", "t.variant", "seg.key", "t.metadata ->> seg.key"],
        traces_from=_PARTITION_TRACES.replace(
            "FROM feedback_trace t", "FROM feedback_trace t CROSS JOIN unnest(%(keys)s::text[]) AS seg(key)"
        ),
        feedback_where=_PARTITION_FEEDBACK,
    )
}) m
"""


# The partition's rows summed over customers: what reports not grouped by customer read.
_RECOMPUTE_VERSIONS = f"""
INSERT INTO feedback_versionrollup (day, feature_id, prompt_version_id, variant, {_COLUMNS}, computed_at)
SELECT %(day)s, %(feature)s, m.*, now() FROM ({
    rollup_sum_query(
        table="feedback_dailyrollup",
        dims=["r.prompt_version_id", "r.variant"],
        where="r.day = %(day)s AND r.feature_id = %(feature)s",
    )
}) m
"""


# By the trace's model (no customer: a model is a handful of rows a day, not one per customer).
_RECOMPUTE_MODELS = f"""
INSERT INTO feedback_modelrollup (day, feature_id, prompt_version_id, variant, model, {_COLUMNS}, computed_at)
SELECT %(day)s, %(feature)s, m.*, now() FROM ({
    measures_query(
        dims=["t.prompt_version_id", "t.variant", "t.model"],
        traces_from=_PARTITION_TRACES,
        feedback_where=_PARTITION_FEEDBACK,
    )
}) m
"""


def rollup_recompute(*, day: date, feature_id: int) -> int:
    """Rebuild one partition (and its version, model and segment rows); returns how many rollup rows it now has."""
    with transaction.atomic(), connection.cursor() as cursor:
        params: dict[str, Any] = {"day": day, "feature": feature_id}
        cursor.execute("DELETE FROM feedback_dailyrollup WHERE day = %(day)s AND feature_id = %(feature)s", params)
        cursor.execute(_RECOMPUTE, params)
        rows = cursor.rowcount
        cursor.execute("DELETE FROM feedback_versionrollup WHERE day = %(day)s AND feature_id = %(feature)s", params)
        cursor.execute(_RECOMPUTE_VERSIONS, params)
        cursor.execute("DELETE FROM feedback_modelrollup WHERE day = %(day)s AND feature_id = %(feature)s", params)
        cursor.execute(_RECOMPUTE_MODELS, params)
        cursor.execute("DELETE FROM feedback_segmentrollup WHERE day = %(day)s AND feature_id = %(feature)s", params)
        cursor.execute("SELECT segment_keys FROM feedback_feature WHERE id = %(feature)s", params)
        found = cursor.fetchone()
        # Django's cursor hands jsonb back as text.
        declared = json.loads(found[0]) if found and isinstance(found[0], str) else (found[0] if found else None)
        keys = [str(k) for k in declared or []]
        if keys:
            cursor.execute(_RECOMPUTE_SEGMENTS, {**params, "keys": keys})
        return rows


def rollups_refresh(*, limit: int = 500) -> int:
    """Recompute dirty partitions of the current schema; returns how many were done.

    The dirty row is claimed with SKIP LOCKED and removed in the same transaction as the
    recompute, so a crash leaves it dirty and two workers never take the same partition.
    A partition dirtied again while it is being recomputed keeps a newer marked_at and stays.
    """
    planner_stats_ensure()
    feedback_rejoin()
    outcomes_attribute()
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


# The tables the refresh reads (spans it never reads: no need to analyze them here).
_READ_TABLES = ["feedback_trace", "feedback_feedbackevent", "feedback_outcome"]
_TAKEN_FOR_EMPTY = """
SELECT c.relname FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(%s)
  AND c.reltuples <= 0 AND pg_relation_size(c.oid) > 8 * current_setting('block_size')::int
ORDER BY c.relname
"""


def planner_stats_ensure() -> list[str]:
    """Analyze the tables the planner takes for empty though they hold rows (analyzed before their first
    bulk load, or never); returns their names. Planned as empty, the outcome attribution walked every trace
    for each outcome and joined every outcome to every outcome (135 s for one refresh in the test suite,
    whose tests load thousands of rows in a transaction autovacuum cannot see); autovacuum mends it only
    a while after the load. One catalog read when the statistics are there."""
    with connection.cursor() as cursor:
        cursor.execute(_TAKEN_FOR_EMPTY, [_READ_TABLES])
        empty = [name for (name,) in cursor.fetchall()]
        for name in empty:
            cursor.execute(f'ANALYZE "{name}"')
    return empty


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


# Each outcome tied only by session: its session's last trace started at or before it, one probe of
# trace_session_recent (session_id, started_at, id). The candidates are materialized: computed once, whatever
# the planner makes of the update's join.
ATTRIBUTE_OUTCOMES = """
WITH cand AS MATERIALIZED (
    SELECT o.id, o.attributed_trace_id AS old,
           (SELECT t.trace_id FROM feedback_trace t
             WHERE t.session_id = o.session_id AND t.started_at <= o.occurred_at
             ORDER BY t.started_at DESC, t.id DESC LIMIT 1) AS new
      FROM feedback_outcome o
     WHERE o.trace_id = '' AND o.session_id <> '' AND o.received_at > now() - interval '7 days'
),
changed AS (
    UPDATE feedback_outcome o SET attributed_trace_id = c.new
      FROM cand c WHERE o.id = c.id AND c.old IS DISTINCT FROM c.new
    RETURNING c.old, c.new
),
touched AS (
    SELECT old AS trace_id FROM changed WHERE old IS NOT NULL
    UNION SELECT new FROM changed WHERE new IS NOT NULL
),
dirty AS (
    INSERT INTO feedback_rollupdirty (day, feature_id, marked_at)
    SELECT day, feature_id, now() FROM (
        SELECT DISTINCT t.day, t.feature_id FROM feedback_trace t JOIN touched USING (trace_id)
    ) m
    ORDER BY day, feature_id
    ON CONFLICT (day, feature_id) DO UPDATE SET marked_at = EXCLUDED.marked_at
)
SELECT count(*) FROM changed
"""


def outcomes_attribute() -> int:
    """Attribute outcomes tied only by session_id to the session's last trace started at or before
    the outcome (ties: the later-stored trace), and mark the partitions of the traces that gained
    or lost an outcome dirty. Returns how many outcomes changed trace.

    Rerun on every refresh, so arrival order does not matter: an outcome that came before its
    session's traces, or a trace that lands later between the attributed one and the outcome,
    moves the outcome on the next sweep. Outcomes received more than 7 days ago are settled
    (not rescanned forever); an outcome with no trace of its session before it stays unattributed.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(ATTRIBUTE_OUTCOMES)
        row = cursor.fetchone()
        return int(row[0]) if row else 0
