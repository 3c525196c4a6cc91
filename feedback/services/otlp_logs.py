"""OTLP logs: store the GenAI messages of log events and fill their trace's input and output.

A log may arrive before its span (exporters batch logs and spans separately), so messages are
kept by OTel trace id and joined whichever side lands second: ``otlp_logs_ingest`` fills traces
already stored, ``genai_messages_join`` (called by the OTLP trace path) fills a trace from the
messages that came before it. Both take a transaction-level lock per OTel trace id first, so a
log batch and a span batch of one trace committing at the same moment cannot both miss the other.

A trace's input is the user messages of its first LLM call (the span whose messages came first),
its output the choices of its last: the same rule the span attributes follow (feedback.otlp).
Text the trace got from its spans' attributes (or the REST API) is never replaced by log text.

Messages are a join buffer, not a record (nothing shows them but their trace's text): a daily sweep
deletes those received more than settings.GENAI_MESSAGE_RETENTION_DAYS ago (``genai_messages_prune``).
A trace keeps the text it took from them; spans arriving later than that find no messages waiting.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from django.db import transaction

from feedback.otlp_logs import INPUT, OUTPUT, GenAiMessage
from feedback.services.shared import LOCKED_IDS_MAX, ingest_gate, raw_cursor, utc_now
from tenants.schema import current_schema

_COLUMNS = ", ".join(GenAiMessage._fields)
_INSERT = f"""
INSERT INTO feedback_genaimessage ({_COLUMNS}, received_at)
SELECT *, %s FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::int[], %s::text[],
                         %s::bigint[])
ON CONFLICT (record_key) DO NOTHING
RETURNING id, otel_trace_id
"""
# The stored trace of each OTel trace id (linked by candor.trace_id, else stored under the OTel id),
# its rows locked in one order so concurrent writers of the same traces cannot deadlock.
_TRACES_OF = """
SELECT x.otel, t.trace_id, t.input, t.output
FROM unnest(%s::text[]) AS x(otel)
LEFT JOIN feedback_oteltracelink l ON l.otel_trace_id = x.otel
JOIN feedback_trace t ON t.trace_id = COALESCE(l.trace_id, x.otel)
ORDER BY t.trace_id
FOR UPDATE OF t
"""
_MESSAGES_OF = """
SELECT id, otel_trace_id, span_id, role, position, text, time_unix_nano
FROM feedback_genaimessage WHERE otel_trace_id = ANY(%s) AND role = ANY(%s)
"""
# Log text replaces a trace's text only where it is empty or was itself log text (a later log
# batch brought the last call's choice, say); text from span attributes or the REST API stays.
_FILL = """
UPDATE feedback_trace t SET
    input = CASE WHEN t.input = '' OR t.input = x.old_input THEN x.new_input ELSE t.input END,
    output = CASE WHEN t.output = '' OR t.output = x.old_output THEN x.new_output ELSE t.output END
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) AS x(trace_id, old_input, new_input,
                                                                            old_output, new_output)
WHERE t.trace_id = x.trace_id
"""


@dataclass
class LogsIngestResult:
    stored: int  # messages stored now
    duplicates: int  # messages of a resent export, already stored
    waiting: int  # stored messages whose trace has not arrived yet (joined when it does)


def otlp_logs_ingest(*, messages: Sequence[GenAiMessage]) -> LogsIngestResult:
    """Store GenAI messages once each and fill the input and output of the traces already stored."""
    if not messages:
        return LogsIngestResult(0, 0, 0)
    unique = {m.record_key: m for m in messages}
    columns = list(zip(*unique.values(), strict=True))
    with transaction.atomic():
        cursor = raw_cursor()
        otel_lock(cursor, (m.otel_trace_id for m in messages))
        cursor.execute(_INSERT, [utc_now(), *(list(column) for column in columns)])
        inserted = cursor.fetchall()
        new_ids = {row_id for row_id, _ in inserted}
        joined = _fill(cursor, sorted({otel for _, otel in inserted}), new_ids)
    waiting = sum(1 for _, otel in inserted if otel not in joined)
    return LogsIngestResult(stored=len(inserted), duplicates=len(messages) - len(inserted), waiting=waiting)


# Oldest first, by the arrival index; a batch a transaction, so the sweep never holds many rows locked.
_PRUNE = """
DELETE FROM feedback_genaimessage WHERE id IN (
    SELECT id FROM feedback_genaimessage WHERE received_at < %s ORDER BY received_at LIMIT %s
)
"""


def genai_messages_prune(*, before: datetime, batch: int = 10_000) -> int:
    """Delete the messages received before ``before`` (in this organization's schema); how many.

    Joined messages have given their trace its text already; a message whose trace never came (a span
    exporter that was off, a sampled-out trace) has nothing left to join. A later log batch of a pruned
    trace is stored again and joins as any log does: text from log events is replaced only where it
    is empty or was the same log text before.
    """
    deleted = 0
    while True:
        with transaction.atomic(), raw_cursor() as cursor:
            cursor.execute(_PRUNE, [before, batch])
            count = cursor.rowcount
        deleted += count
        if count < batch:
            return deleted


def otel_lock(cursor: Any, otel_trace_ids: Iterable[str], *, shared: Iterable[str] = ()) -> None:
    """Hold, until commit, a lock per OTel trace id of this schema: the span path and the log path
    of one trace run one after the other, so the second always sees what the first committed.

    ``shared``: ids taken in shared mode, by a span batch that links none of them to a Candor
    trace_id: such batches of one trace need no order among themselves (the trace row and its
    unique key order their writes), only against the log path and against a batch creating the
    link (which takes the lock exclusively, as the log path does), whose orphan adoption must see them.

    Taken before any trace row is written and in sorted order, so no two writers wait on each other.
    """
    ids = sorted({otel for otel in otel_trace_ids if otel})  # a common prefix keeps the keys' order: the ids'
    if ids:
        # The gate, then a lock per id, or past LOCKED_IDS_MAX ids the gate alone (feedback migration 0020).
        shared = set(shared)
        cursor.execute(
            "SELECT candor_ingest_locks(%s, %s, %s, %s, %s)",
            [ingest_gate(), LOCKED_IDS_MAX, f"{current_schema()}:", ids, [otel in shared for otel in ids]],
        )


# The statements that merge a trace an SDK split across two exports (one such trace in most exports) name one or two
# trace_ids: PostgreSQL's custom plan for a one-element array always looks cheaper than its generic plan, so each
# was planned afresh at every run (0 generic plans against 73 custom in one bench-otlp organization), ~0.1-0.2 ms
# each. Their generic plans probe the same indexes (checked with EXPLAIN (GENERIC_PLAN) at 70,000 traces, 60,000
# spans and 35,000 feedback events); the export's other statements had settled on their generic plans already.
# A/B in one process: 3% less CPU a span (PostgreSQL 5%). Replanned as PostgreSQL replans any cached plan: when
# ANALYZE changes a table's statistics.
_GENERIC_PLANS = "set_config('plan_cache_mode', 'force_generic_plan', true)"


class OtelLinks(NamedTuple):
    links: dict[str, str]  # OTel trace id -> the Candor trace_id it is linked to
    waiting: list[str]  # OTel trace ids whose messages wait for their trace (genai_messages_join them once stored)
    named: dict[str, str]  # trace_id -> the feature its stored trace names, among the trace_ids ``asked``
    asked: set[str]  # the trace_ids whose stored feature was read (those of the ``guessing`` ids)


def otel_lock_links(
    cursor: Any,
    otel_trace_ids: Iterable[str],
    *,
    shared: Iterable[str] = (),
    link: Mapping[str, str] | None = None,
    guessing: Iterable[str] = (),
) -> OtelLinks:
    """The trace path's first statement: these OTel trace ids' ``otel_lock`` (``shared`` and the gate: as there),
    then ``link`` (OTel id -> the Candor trace_id the export gives it) stored where no link is, then the links,
    waiting messages and stored features (OtelLinks) of the ids, as committed once the locks were held. One call
    (the schema's candor_otel_lock_links, feedback migration 0019), and the rest of the transaction runs its
    prepared statements on their generic plans (_GENERIC_PLANS).

    ``guessing``: the OTel ids of traces whose feature the export only guessed: ``named`` holds the feature the
    stored trace names (none where that is a guess too), keyed by that trace's trace_id, one of ``asked``:
    ``link[otel]`` where the export names one, else the Candor trace_id the OTel id is linked to, else the OTel
    id."""
    link = link or {}
    shared = set(shared)
    guessed = set(guessing)
    ids = sorted({otel for otel in otel_trace_ids if otel})  # a common prefix keeps the keys' order: the ids'
    cursor.execute(
        f"SELECT l.* FROM candor_otel_lock_links(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) l, {_GENERIC_PLANS}",
        [
            ingest_gate(),
            LOCKED_IDS_MAX,
            f"{current_schema()}:",
            ids,
            [otel in shared for otel in ids],
            list(link),
            list(link.values()),
            [INPUT, OUTPUT],
            [link.get(otel) for otel in ids],
            [otel in guessed for otel in ids],
        ],
    )
    found = OtelLinks({}, [], {}, set())
    for otel, trace_id, waiting, feature in cursor.fetchall():
        if trace_id is not None:
            found.links[otel] = trace_id
        if waiting:
            found.waiting.append(otel)
        if otel in guessed:
            # As the function's COALESCE picks it.
            key = next(value for value in (link.get(otel), trace_id, otel) if value is not None)
            found.asked.add(key)
            if feature is not None:
                found.named[key] = feature
    return found


def genai_messages_join(cursor: Any, otel_trace_ids: Iterable[str]) -> None:
    """The trace path's half: traces just stored take the text of messages that came before them.

    The caller holds the ``otel_lock`` of these OTel trace ids (``otel_lock_links`` says which have messages waiting).
    """
    _fill(cursor, sorted({otel for otel in otel_trace_ids if otel}), set())


def _fill(cursor: Any, otel_ids: list[str], new_ids: set[int]) -> set[str]:
    """Fill the stored traces of these OTel ids from their messages; returns the OTel ids that have a trace."""
    if not otel_ids:
        return set()
    cursor.execute(_MESSAGES_OF, [otel_ids, [INPUT, OUTPUT]])
    by_otel: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in cursor.fetchall():
        by_otel[row[1]].append(row)
    if not by_otel:
        return set()
    cursor.execute(_TRACES_OF, [sorted(by_otel)])
    traces = cursor.fetchall()
    updates: list[tuple[str, str, str, str, str]] = []
    for otel, trace_id, _input, _output in traces:
        rows = by_otel[otel]
        old_input, old_output = _texts([row for row in rows if row[0] not in new_ids])
        new_input, new_output = _texts(rows)
        updates.append((trace_id, old_input, new_input, old_output, new_output))
    if updates:
        cursor.execute(_FILL, [list(column) for column in zip(*updates, strict=True)])
    return {otel for otel, *_ in traces}


def _texts(rows: list[tuple[Any, ...]]) -> tuple[str, str]:
    """(input, output) of one trace's messages: the first call's user messages, the last call's choices."""
    if not rows:
        return "", ""
    calls: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        calls[row[2]].append(row)
    # A call's place: when its first message was logged (messages are logged during the call).
    order = sorted(calls, key=lambda span: min((row[6], row[0]) for row in calls[span]))

    def text(span: str, role: str) -> str:
        picked = sorted((row for row in calls[span] if row[3] == role), key=lambda row: (row[4], row[6], row[0]))
        return "\n\n".join(row[5] for row in picked if row[5])

    inputs = [t for t in (text(span, INPUT) for span in order) if t]
    outputs = [t for t in (text(span, OUTPUT) for span in order) if t]
    return (inputs[0] if inputs else ""), (outputs[-1] if outputs else "")
