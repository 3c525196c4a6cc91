"""Selecting traces after they land: per enabled judge version, scan traces received since its
last scan and older than its delay, decide each one (code checks take every trace in scope,
LLM judges sample with a known inclusion probability) and queue a pending score for each
selected trace, with its design, stratum and inclusion probability written at selection time.

The decision is deterministic (evaluation.judges.sampling), the queue insert is ON CONFLICT DO
NOTHING on (trace_id, judge_version, run_index): a rerun of the sweep never doubles a score.

A judge of the output (``needs_output``) draws a trace that has no output yet like any other, but
parks the draw (evaluation_outputwait) instead of queueing a run that could only fail: SDKs export
a long model call, or the root span carrying the answer, after the rest of the trace. Each sweep
queues the parked draws whose trace has an output now, and drops those older than OUTPUT_WAIT (a
call that failed before answering never gets one). A trace of the non-AI path (``fallback``: an
experiment's holdback arm) is not waited for at all.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.models import Q

from evaluation.judges.sampling import SamplingRule as SamplingSpec
from evaluation.judges.sampling import TraceFacts, sample_decision
from evaluation.models import Judge, JudgeKind, OutputWait, SamplingRule
from evaluation.services.shared import utc_now

logger = logging.getLogger(__name__)

SCAN_BATCH = 5000
# Traces younger than this are left for the next sweep whatever the rule's delay: a batch still
# committing may hold lower IDs than one already visible.
SETTLE = timedelta(seconds=2)
# A slower batch commits IDs below the scan mark after a sweep has passed them: each sweep also
# re-decides the traces received in this trailing window (deterministic draws; queueing is
# ON CONFLICT DO NOTHING), so a trace is skipped only if its batch took longer than this to commit.
LOOKBACK = timedelta(seconds=60)
# How long a drawn trace may wait for its output (a reasoning model's call, an agent's run).
OUTPUT_WAIT = timedelta(hours=1)

_SCAN = """
SELECT t.id, t.trace_id, t.feature_id, f.key, pv.label, t.customer_id, t.metadata, t.guardrail_blocked, t.day,
       EXISTS (SELECT 1 FROM feedback_feedbackevent e WHERE e.trace_id = t.trace_id AND e.kind = 'thumb'
               AND e.value < 0),
       EXISTS (SELECT 1 FROM feedback_feedbackevent e WHERE e.trace_id = t.trace_id AND e.kind = 'edit'),
       t.output ~ '[^[:space:]]', t.fallback IS TRUE
FROM feedback_trace t
JOIN feedback_feature f ON f.id = t.feature_id
LEFT JOIN feedback_promptversion pv ON pv.id = t.prompt_version_id
WHERE {range} AND t.received_at <= %s {scope}
ORDER BY t.id
LIMIT %s
"""

QUEUE_COLUMNS = (
    "score_id", "trace_id", "judge_id", "judge_version_id", "run_index", "status", "sampling_design", "stratum",
    "inclusion_probability", "feature_id", "trace_day", "backfill_id", "due_at", "created_at",
)  # fmt: skip
_QUEUE = f"""
INSERT INTO evaluation_score ({", ".join(QUEUE_COLUMNS)}, raw_score, rationale, raw_response, error_code,
    error_message, model, attempts, comment)
SELECT *, NULL, '', '', '', '', '', 0, '' FROM unnest(
    %s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::smallint[], %s::text[], %s::text[], %s::text[],
    %s::float8[], %s::bigint[], %s::date[], %s::bigint[], %s::timestamptz[], %s::timestamptz[])
ON CONFLICT DO NOTHING
"""
_PARK = """
INSERT INTO evaluation_outputwait
    (judge_version_id, judge_id, trace_id, sampling_design, stratum, inclusion_probability, parked_at)
SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::float8[],
                     %s::timestamptz[])
ON CONFLICT DO NOTHING
"""
# Draws whose trace has an output now leave the wait, with the trace's feature and day as they are now.
_RELEASE = """
DELETE FROM evaluation_outputwait w USING feedback_trace t
WHERE w.judge_version_id = %s AND t.trace_id = w.trace_id AND t.output ~ '[^[:space:]]'
RETURNING w.trace_id, w.judge_id, w.judge_version_id, w.sampling_design, w.stratum, w.inclusion_probability,
          t.feature_id, t.day
"""


@dataclass(frozen=True)
class QueuedScore:
    trace_id: str
    judge_id: int
    judge_version_id: int
    design: str
    stratum: str
    inclusion_probability: float
    feature_id: int | None
    trace_day: Any
    backfill_id: int | None = None
    run_index: int = 0


def scores_queue(cursor: Any, rows: list[QueuedScore], *, now: datetime) -> int:
    """Insert pending scores; rows already queued or scored are skipped. Returns how many were new."""
    if not rows:
        return 0
    columns: list[list[Any]] = [
        [uuid.uuid4().hex for _ in rows], [r.trace_id for r in rows], [r.judge_id for r in rows],
        [r.judge_version_id for r in rows], [r.run_index for r in rows], ["pending"] * len(rows),
        [r.design for r in rows], [r.stratum for r in rows], [r.inclusion_probability for r in rows],
        [r.feature_id for r in rows], [r.trace_day for r in rows], [r.backfill_id for r in rows],
        [now] * len(rows), [now] * len(rows),
    ]  # fmt: skip
    cursor.execute(_QUEUE, columns)
    return int(cursor.rowcount)


def rule_spec(rule: SamplingRule, judge: Judge) -> SamplingSpec:
    features = frozenset(rule.features) if rule.features else None
    if judge.feature_id is not None:
        features = frozenset({judge.feature.key}) if judge.feature else features
    return SamplingSpec(
        base_rate=1.0 if judge.kind == JudgeKind.CODE else rule.base_rate,
        features=features,
        prompt_versions=frozenset(rule.prompt_versions) if rule.prompt_versions else None,
        customers=frozenset(rule.customers) if rule.customers else None,
        metadata=rule.metadata or {},
        thumbs_down_multiplier=rule.thumbs_down_multiplier,
        edited_multiplier=rule.edited_multiplier,
        guardrail_multiplier=rule.guardrail_multiplier,
        delay_s=rule.delay_s,
    )


def scan_rows(cursor: Any, *, after_id: int, received_before: datetime, feature_id: int | None, limit: int) -> list:  # type: ignore[type-arg]
    scope = "AND t.feature_id = %s" if feature_id is not None else ""
    params: list[Any] = [after_id, received_before, *([feature_id] if feature_id is not None else []), limit]
    cursor.execute(_SCAN.format(range="t.id > %s", scope=scope), params)
    return cursor.fetchall()


def lookback_rows(cursor: Any, *, through_id: int, received_before: datetime, feature_id: int | None) -> list:  # type: ignore[type-arg]
    """Traces at or below the scan mark received within LOOKBACK of the cutoff (late committers)."""
    scope = "AND t.feature_id = %s" if feature_id is not None else ""
    params: list[Any] = [
        through_id, received_before - LOOKBACK, received_before,
        *([feature_id] if feature_id is not None else []), SCAN_BATCH,
    ]  # fmt: skip
    cursor.execute(_SCAN.format(range="t.id <= %s AND t.received_at > %s", scope=scope), params)
    return cursor.fetchall()


def facts_of(row: tuple[Any, ...]) -> TraceFacts:
    """The sampling facts of a scanned trace row (its first 11 columns; what follows is each scan's own)."""
    _, trace_id, _, feature, prompt_version, customer_id, metadata, guardrail, _, thumbs_down, edited = row[:11]
    return TraceFacts(
        trace_id=trace_id, feature=feature, prompt_version=prompt_version, customer_id=customer_id or None,
        metadata=metadata or {}, thumbs_down=bool(thumbs_down), edited=bool(edited), guardrail_blocked=bool(guardrail),
    )  # fmt: skip


def needs_output(judge: Judge) -> bool:
    """Every run of the judge needs the trace's output: an LLM judge (its template must show {{ output }})
    and the offline one. A trace without one (an experiment's holdback arm, a call that failed before
    answering) is then nothing for it to judge, rather than a missing_input error each. A code check may
    target the input or context instead: it says itself what it lacks."""
    return judge.kind != JudgeKind.CODE


class Decided(NamedTuple):
    queued: list[QueuedScore]  # to run now
    waiting: list[QueuedScore]  # drawn, but the trace has no output yet (a judge of the output)


def decide(judge: Judge, spec: SamplingSpec, version_hash: str, rows: list) -> Decided:  # type: ignore[type-arg]
    """The scores for scanned trace rows: every in-scope trace for a code check, else the sample. A judge
    that needs an output (``needs_output``) waits for the output of a drawn trace that has none yet, unless
    the trace took the non-AI path (``fallback``), which never gets one."""
    assert judge.current_version_id is not None
    decided = Decided([], [])
    wait_for_output = needs_output(judge)
    for row in rows:
        decision = sample_decision(spec, facts_of(row), judge_version_hash=version_hash)
        if not decision.in_scope:
            continue
        if judge.kind == JudgeKind.CODE:
            design, stratum, p = "all", "all", 1.0
        elif decision.sampled:
            design, stratum, p = "sampled", decision.stratum, decision.inclusion_probability
        else:
            continue
        score = QueuedScore(row[1], judge.id, judge.current_version_id, design, stratum, p, row[2], row[8])
        if not wait_for_output or row[11]:
            decided.queued.append(score)
        elif not row[12]:  # a trace of the non-AI path (fallback: an experiment's holdback) gets no output
            decided.waiting.append(score)
    return decided


def _queue_or_park(cursor: Any, decided: Decided, *, now: datetime) -> int:
    """Queue the runs, park the draws waiting for an output; returns how many runs were new."""
    if decided.waiting:
        rows = decided.waiting
        cursor.execute(_PARK, [
            [r.judge_version_id for r in rows], [r.judge_id for r in rows], [r.trace_id for r in rows],
            [r.design for r in rows], [r.stratum for r in rows], [r.inclusion_probability for r in rows],
            [now] * len(rows),
        ])  # fmt: skip
    return scores_queue(cursor, decided.queued, now=utc_now())


def outputs_landed(cursor: Any, judge_version_id: int) -> list[QueuedScore]:
    """The parked draws of a judge version whose trace has an output now, out of the wait."""
    cursor.execute(_RELEASE, [judge_version_id])
    return [QueuedScore(*row) for row in cursor.fetchall()]


def sampling_sweep(*, now: datetime | None = None, batch: int = SCAN_BATCH, max_batches: int = 20) -> int:
    """Decide every newly landed trace for every enabled, unpaused judge; returns scores queued."""
    now = now or utc_now()
    queued = 0
    judges = Judge.objects.filter(enabled=True, paused=False, current_version__isnull=False).exclude(
        kind=JudgeKind.EXTERNAL
    )
    for judge in judges.select_related("feature", "current_version"):
        rule = SamplingRule.objects.filter(judge_version_id=judge.current_version_id).first()
        if rule is None:
            continue
        try:
            spec = rule_spec(rule, judge)
        except ValueError:  # a rule the checks refuse stops its own judge, not every judge after it
            logger.exception("sampling: judge %s has a sampling rule out of bounds; skipped", judge.name)
            continue
        version_hash = judge.current_version.content_hash  # type: ignore[union-attr]
        cutoff = now - max(SETTLE, timedelta(seconds=rule.delay_s))
        for _ in range(max_batches):
            with transaction.atomic():
                cursor = connection.cursor()
                # Locks the rule: two sweeps at once do not scan the same traces twice.
                cursor.execute(
                    "SELECT scanned_through FROM evaluation_samplingrule WHERE id = %s FOR UPDATE", [rule.id]
                )
                (after,) = cursor.fetchone()
                rows = scan_rows(
                    cursor, after_id=after, received_before=cutoff, feature_id=judge.feature_id, limit=batch
                )
                if not rows:
                    break
                queued += _queue_or_park(cursor, decide(judge, spec, version_hash, rows), now=now)
                cursor.execute(
                    "UPDATE evaluation_samplingrule SET scanned_through = %s WHERE id = %s", [rows[-1][0], rule.id]
                )
            if len(rows) < batch:
                break
        with transaction.atomic():
            cursor = connection.cursor()
            cursor.execute("SELECT scanned_through FROM evaluation_samplingrule WHERE id = %s", [rule.id])
            (through,) = cursor.fetchone()
            late = lookback_rows(cursor, through_id=through, received_before=cutoff, feature_id=judge.feature_id)
            queued += _queue_or_park(cursor, decide(judge, spec, version_hash, late), now=now)
            queued += scores_queue(cursor, outputs_landed(cursor, rule.judge_version_id), now=utc_now())
        # Still no output after the wait, or drawn for a version no longer current: dropped, unjudged. Only for
        # a judge swept now: a paused judge's draws wait for it (released first when it runs again).
        waits = OutputWait.objects.filter(judge_id=judge.id)
        waits.filter(Q(parked_at__lt=now - OUTPUT_WAIT) | ~Q(judge_version_id=rule.judge_version_id)).delete()
    return queued


def scores_join() -> int:
    """Copy the trace's feature and day onto scores that arrived before their trace."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE evaluation_score s SET feature_id = t.feature_id, trace_day = t.day FROM feedback_trace t "
            "WHERE s.feature_id IS NULL AND t.trace_id = s.trace_id"
        )
        return int(cursor.rowcount)
