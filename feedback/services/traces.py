"""Trace ingestion: traces and their spans, upserted on trace_id (a resent trace is merged,
column by column, as feedback.services.tables declares), with prompt versions registered and
cost computed from the price book when the client does not send it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec
from django.db import connection, transaction
from psycopg.errors import UniqueViolation

from feedback.prices import COST_FROM_CLIENT, COST_FROM_SPANS, MAX_COST, PriceBook, too_costly
from feedback.schemas import SpanIn, TraceIn, check_trace, decode_body, prompt_hash_of
from feedback.services.columns import IngestTable, copy_encoded, copy_rows, fetch_as, select_list
from feedback.services.prices import price_book_load, traces_reprice, traces_usage_from_spans
from feedback.services.shared import LOCKED_IDS_MAX, IngestResult, ingest_gate, mark_dirty, raw_cursor, utc_now
from feedback.services.spend import (
    COUNTED_BY_MODEL,
    STORED_COST,
    Spend,
    spend_count,
    spend_difference,
    spend_of_rows,
    spend_of_stored,
    spend_of_trace,
    spend_sum,
    usage_count,
)
from feedback.services.tables import (
    FEEDBACK_TRACE_JOIN,
    SPANS,
    TRACES,
    Partition,
    PricedTrace,
    SpanRow,
    StoredTrace,
    TraceRow,
)
from tenants.schema import current_schema

_json = msgspec.json.Encoder()
_COST_TOLERANCE = Decimal("1e-6")  # a rounding that moves a cost by less than a millionth of it goes unsaid

_INSERT_STAGED = f"""
INSERT INTO {TRACES.table} ({TRACES.column_list})
SELECT {TRACES.select_staged()} FROM {TRACES.stage}
ON CONFLICT (trace_id) DO NOTHING
RETURNING {select_list(StoredTrace)}
"""
# Lock these keys (_trace_lock_keys), then say which of these trace_ids are stored: one probe of the unique index each
# (as `trace_id = ANY(%s)`, a table never analyzed since it grew was scanned whole: 3.5 ms at 17,000 traces, on every
# export). One call of the schema's function (feedback migration 0019): its probe, a statement of its own inside
# it, sees what the lock waited for.
_LOCK_AND_PROBE = "SELECT * FROM candor_trace_lock_stored(%s, %s, %s, %s)"
_MERGE_STAGED = f"""
UPDATE {TRACES.table} t SET
    {TRACES.merge_set(old="t", new="s")}
FROM {TRACES.stage} s
-- The resent traces named outright: the staging table is never analyzed, and joined by its rows alone
-- the planner hashed the whole trace table (4 ms at 6,000 traces, growing with the table).
WHERE t.trace_id = ANY(%s) AND s.trace_id = t.trace_id
RETURNING {select_list(PricedTrace, "t")}
"""


class _Counted(NamedTuple):
    """A stored trace about to be merged: what it counts for in the spend counters, and where it lies."""

    trace_id: str
    customer_id: str
    day: date
    feature_id: int
    model: str
    cost_usd: Decimal | None
    cost_by_model: str | None  # as spend counts it (spend.COUNTED_BY_MODEL), JSON text
    cost_source: str
    has_feedback: bool  # feedback names it: a merge that moves its feature, version or day moves that feedback too


_HAS_FEEDBACK = "EXISTS (SELECT FROM feedback_feedbackevent f WHERE f.trace_id = t.trace_id)"
# Locked in the database's order of trace_ids (as spend_of_stored's ORDER BY locks them for the traces API: under a
# collation other than C, Python's order is not the database's, and two orders could deadlock), probed one by one
# through the unique index.
_STORED_LOCKED = f"""
SELECT s.* FROM (SELECT u.trace_id FROM unnest(%s::text[]) AS u(trace_id) ORDER BY 1) AS x
CROSS JOIN LATERAL (
    SELECT {select_list(_Counted, "t", cost_by_model=COUNTED_BY_MODEL, has_feedback=_HAS_FEEDBACK)}
    FROM feedback_trace t WHERE t.trace_id = x.trace_id FOR UPDATE
) s
"""
_MERGE_GIVEN = f"""
UPDATE {TRACES.table} t SET
    {TRACES.merge_set(old="t", new="s")}
FROM {TRACES.given_source("s")}
-- Named outright, as in _MERGE_STAGED: the given rows come with no count the planner can trust.
WHERE t.trace_id = ANY(%s) AND s.trace_id = t.trace_id
RETURNING {select_list(PricedTrace, "t")}
"""
# At most this many stored traces merge from parameters (_merge_stored); more are staged (_upsert).
_MERGED_GIVEN_MAX = 64
_SPANS_USAGE_DROPPED = f"""
UPDATE {TRACES.table}
   SET input_tokens = NULL, output_tokens = NULL, cost_usd = NULL, cost_source = '', cost_by_model = NULL
WHERE trace_id = ANY(%s) AND cost_source = '{COST_FROM_SPANS}'
"""
_STORE_SPANS = f"""
INSERT INTO {SPANS.table} AS t ({SPANS.column_list})
SELECT {SPANS.select_staged()} FROM {SPANS.stage}
ON CONFLICT (trace_id, span_id) DO UPDATE SET
    {SPANS.merge_set(old="t", new="EXCLUDED")}
"""
# A feedback batch racing this one (it looked the trace up before this commit) can still
# miss; feedback.rollups.feedback_rejoin mends those before every rollup refresh.
_JOIN_FEEDBACK = f"""
UPDATE feedback_feedbackevent f
   SET {FEEDBACK_TRACE_JOIN.set_from("t")}
  FROM feedback_trace t
 WHERE t.trace_id = ANY(%s) AND f.trace_id = t.trace_id
   AND ({FEEDBACK_TRACE_JOIN.differs(target="f", source="t")})
"""

_JOIN_WAITING_FEEDBACK = f"""
UPDATE feedback_feedbackevent f
   SET {FEEDBACK_TRACE_JOIN.set_from("t")}
  FROM unnest(%s::text[]) AS x(trace_id)
  -- Probed trace by trace: a bitmap scan of "feature_id IS NULL" would also read every row
  -- version a join left behind until vacuum (15,000 of them per batch in bench-ingest).
  CROSS JOIN LATERAL (
      SELECT id FROM feedback_feedbackevent WHERE feature_id IS NULL AND trace_id = x.trace_id OFFSET 0
  ) w
  -- The trace looked up only for feedback found waiting: joined outright, a planner with stale counts
  -- hashed the whole trace table for every batch (12 ms of 13 at 12,000 traces, growing with the table).
  CROSS JOIN LATERAL (SELECT * FROM feedback_trace WHERE trace_id = x.trace_id OFFSET 0) t
 WHERE f.id = w.id
   -- Decided once, before any probe: most batches of traces find no feedback waiting at all.
   AND EXISTS (SELECT FROM feedback_feedbackevent WHERE feature_id IS NULL)
"""


def traces_ingest(*, body: bytes) -> IngestResult:
    now = utc_now()
    good, errors = decode_body(body, TraceIn, check_trace, now)
    result = traces_ingest_items(items=good, now=now)
    result.errors.extend(errors)
    return result


def traces_ingest_items(*, items: Sequence[tuple[int, TraceIn]], now: datetime | None = None) -> IngestResult:
    """Store already-validated traces (index, item)."""
    result, _ = traces_store(items=items, now=now)
    return result


def traces_store(
    *,
    items: Sequence[tuple[int, TraceIn]],
    now: datetime | None = None,
    expect_known: bool = False,
    span_rows: Sequence[SpanRow] = (),
    span_copy: Sequence[tuple[str, bytes]] = (),
    shared: SharedCounts | None = None,
    usage_from_spans: bool = True,
    feature_guessed: Collection[str] = frozenset(),
    root_missing: Collection[str] = frozenset(),
    price_book: Callable[[], PriceBook] | None = None,
    savepoints: bool = True,
) -> tuple[IngestResult, set[str]]:
    """Store already-validated traces (index, item); also returns the trace_ids stored new by this
    call (no stored trace was merged into them). The OTLP endpoint calls this too.

    ``span_rows``: spans of these traces built as rows already, as stored (the OTLP endpoint's), stored with the
    items' own spans.

    ``span_copy``: the spans of these traces instead as (trace_id, rows in a binary COPY's format), each trace's rows
    ordered by span_id and no trace twice (feedback.otlp.span_copy_of: the OTLP endpoint's, when none of its traces
    needs the rows path); only with no other spans, nor ``savepoints`` (a span stored already is merged from rows).

    ``shared``: what the batch moves in the spend counters and rollup marks is added to it, not written;
    the caller writes it last, with what it moves itself (SharedCounts.write). A stored trace merged from
    parameters (``_merge_stored``) has only what it counted for before subtracted there: the caller adds what it
    counts for after its own changes (SharedCounts.pending_after), in the one read it makes of them anyway.

    ``price_book``: the organization's prices, loaded once by the caller (cached) when it prices traces too.

    ``savepoints``: False, the straight copies take no savepoint of their own (two statements each, through Django's
    transaction machinery): a span or trace stored already fails the caller's transaction with UniqueViolation, and
    the caller does the batch again with savepoints (the OTLP endpoint, whose retried exports are the rare case).

    ``usage_from_spans``: a trace that sends no tokens or cost of its own takes them from its stored LLM
    spans (prices.traces_usage_from_spans); the OTLP endpoint maps and sums its spans itself.

    ``feature_guessed``: traces whose feature is only the OTLP service's name: stored so, they move to a feature
    a later write names, and never out of a named one (tables.FEATURE). ``root_missing``: traces written from OTLP
    spans that all have a parent (their root is in another export): their start, day and latency never replace a
    root's, and an error in them sticks (tables.ROOT_START and its kin).

    ``expect_known``: some traces are likely stored already, or being stored by a concurrent call:
    stage and merge rather than try the straight COPY of the batch, which would fail on them (after
    waiting for that call to commit) and be done again. Each trace_id is locked (``_trace_lock_keys``) and the stored
    ones looked up; a few found stored are merged from parameters, with no staging table.
    """
    received = now or utc_now()
    result = IngestResult()
    if not items:
        return result, set()
    # Sorted by trace_id: concurrent batches lock rows in the same order and cannot deadlock.
    by_trace_id = _merge_repeats(items)
    merged = [by_trace_id[trace_id] for trace_id in sorted(by_trace_id)]
    # Inside a caller's transaction (the OTLP path's) no savepoint of its own: an error fails the whole
    # request anyway, and a savepoint is two more round trips (three: the staging table is then emptied).
    with transaction.atomic(savepoint=False):
        cursor = raw_cursor()
        features = _feature_ids(cursor, (item.feature for _, item in merged))
        versions = _prompt_versions(cursor, [item for _, item in merged], features, received)
        load_book = price_book or functools.cache(lambda: price_book_load(cursor))

        rows: list[TraceRow] = []
        all_span_rows = list(span_rows)
        for index, item in merged:
            if item.ttft_ms is not None and item.latency_ms is not None and item.ttft_ms > item.latency_ms:
                # The first token comes within the call: a time to it past the whole call's is a clock or unit mix-up,
                # and kept it would sit in the TTFT percentiles. The trace is stored without it, and that is said.
                # Within one item: a resend sending a TTFT alone is not compared with the latency stored before.
                said = f"ttft_ms {item.ttft_ms:g} is longer than latency_ms {item.latency_ms:g} (the whole call): "
                result.warnings.append({"index": index, "field": "ttft_ms", "message": said + "stored without it"})
                item.ttft_ms = None
            cost: Decimal | None = None
            cost_source = ""
            if item.cost_usd is not None:
                cost, cost_source = Decimal(repr(item.cost_usd)), COST_FROM_CLIENT
                if abs(cost - cost.quantize(STORED_COST)) > abs(cost) * _COST_TOLERANCE:
                    # The column keeps 8 decimals: 1e-10 was stored as 0 without a word (API review). A float's
                    # last digits (0.1 + 0.2 = 0.30000000000000004) are no loss worth a warning.
                    stored = f"{cost.quantize(STORED_COST):.8f}"
                    said = f"{item.cost_usd!r} has more than 8 decimal places: stored as {stored} (costs are kept to "
                    said += "a hundred-millionth of a dollar)"
                    result.warnings.append({"index": index, "field": "cost_usd", "message": said})
            elif item.model and (item.input_tokens is not None or item.output_tokens is not None):
                price = load_book().find(item.provider, item.model, item.started_at or received)
                if price is None:
                    result.warnings.append(
                        {
                            "index": index,
                            "field": "model",
                            "message": f"No price known for model '{item.model}'"
                            f"{' of ' + item.provider if item.provider else ''}: cost left empty. "
                            "Send cost_usd or add the model's price in Settings.",
                        }
                    )
                else:
                    # Token counts are whole (check_trace), though the wire type also admits 3.0.
                    inp, out, cached = item.input_tokens or 0, item.output_tokens or 0, item.cached_tokens or 0
                    priced = price.cost(int(inp), int(out), int(cached))
                    if priced < MAX_COST:
                        cost, cost_source = priced, price.source
                    else:  # it would overflow the column: a 500 that lost the whole batch
                        result.warnings.append(
                            {
                                "index": index,
                                "field": "cost_usd",
                                "message": too_costly(priced, f"model '{item.model}'s price"),
                            }  # fmt: skip
                        )
            rows.append(
                TraceRow(  # type: ignore[misc]  # as_sent() fills the leading fields
                    *TRACES.as_sent(item),
                    feature_id=features[item.feature],
                    prompt_version_id=versions.ids.get(item.trace_id),
                    cost_usd=cost,
                    cost_source=cost_source,
                    metadata=_json.encode(item.metadata).decode() if item.metadata is not None else None,
                    day=item.started_at.astimezone(UTC).date() if item.started_at else None,
                    received_at=received,
                    feature_guessed=item.trace_id in feature_guessed,
                    root_missing=item.trace_id in root_missing,
                )
            )
            if item.spans:
                all_span_rows.extend(_span_row(item.trace_id, span) for span in item.spans)

        # Every trace taken to be new is copied straight in; when one is stored already, all are staged,
        # inserted or merged. A caller expecting some to be stored (an OTLP export continues a trace of the
        # previous export) has the stored ones looked up first: the others are copied straight in, and only
        # those merged (a concurrent export writing one of them this moment fails the copy: all merge then).
        # Spans first (they name their trace by its ID, no constraint): a trace row another batch is
        # writing this moment (the rest of a trace an SDK split across exports) makes this batch wait
        # for that one's commit; the later the wait, the more of the two batches' work overlaps.
        if span_copy:
            if all_span_rows or savepoints:
                raise ValueError("span_copy: only with no other spans and no savepoints")
            copy_encoded(cursor, SPANS, (rows for _, rows in sorted(span_copy)))  # as _store_spans orders them
        if all_span_rows:
            _store_spans(cursor, all_span_rows, savepoint=savepoints)
        if expect_known:
            copied, dirty = _insert_unknown(cursor, rows, savepoint=savepoints)
        else:
            copied, dirty = _insert_new(cursor, rows, savepoint=savepoints)
        # What was not copied straight in is stored already: merged (all of it when the copy failed).
        copied_ids = set(copied or ())
        known = [row for row in rows if row.trace_id not in copied_ids]
        index_of = {item.trace_id: index for index, item in merged}
        # Traces whose usage may come from their spans: those that send none of their own (a trace whose usage
        # came from its spans keeps it through a merge only when the batch sends none either).
        no_usage = {
            item.trace_id
            for _, item in merged
            if item.input_tokens is None and item.output_tokens is None and item.cost_usd is None
        }
        inserted_ids = list(copied or ())
        # Every copied trace is new: counted from its row.
        spent = spend_of_rows((row for row in rows if row.trace_id in copied_ids), received) if copied else {}
        feedback_join_waiting(cursor, inserted_ids)
        if known:
            unnamed: set[str] = set()  # merged traces no feedback names (as read under their lock)
            # Found stored under their lock (the copy did not fail): a few merge from parameters.
            if expect_known and copied is not None and len(known) <= _MERGED_GIVEN_MAX:
                # The caller reads what they count for after its own changes; usage summed from spans here would
                # move them again in between (counted twice): then they are read here.
                pending = shared.pending_after if shared is not None and not usage_from_spans else None
                staged, staged_dirty, unpriced, staged_spent = _merge_stored(
                    cursor, known, load_book, received, no_usage, pending, unnamed
                )
            else:
                staged, staged_dirty, unpriced, staged_spent = _upsert(cursor, known, load_book, received, no_usage)
            inserted_ids += staged
            dirty |= staged_dirty
            spent = spend_sum(spent, staged_spent)
            result.warnings += [
                {"index": index_of[trace_id], "field": "model", "message": message}
                for trace_id, message in unpriced.items()
            ]
            feedback_join_waiting(cursor, staged)
            result.warnings += _ttfts_not_kept(cursor, known, index_of)
            # A merge may have moved a trace's feature, version or day.
            new = set(staged)
            merged_ids = [row.trace_id for row in known if row.trace_id not in new and row.trace_id not in unnamed]
            if merged_ids:
                feedback_join(cursor, merged_ids)
        # Of those, the new ones with spans, and every stored one (its spans may have come in an earlier batch).
        new_ids = set(inserted_ids)
        deriving = sorted(t for t in no_usage if t not in new_ids or by_trace_id[t][1].spans)
        if deriving and usage_from_spans:
            from_spans, moved = traces_usage_from_spans(cursor, load_book, deriving)
            spent = spend_sum(spent, moved)
            result.warnings += [
                {"index": index_of[trace_id], "field": "spans", "message": message}
                for trace_id, message in from_spans.items()
            ]
        # Rows every batch shares (prompt versions, spend counters, rollup marks) come last, in this
        # order on every path: their locks are held only through the commit, and never cross.
        versions.widen(cursor)
        usage_count(cursor, kind="traces", quantity=len(inserted_ids), received=received)
        if shared is None:
            SharedCounts(spent, dirty).write(cursor)
        else:
            shared.add(spent, dirty)
    result.accepted = len(inserted_ids)
    result.duplicates = len(items) - len(inserted_ids)
    return result, set(inserted_ids)


@dataclass
class SharedCounts:
    """What a write moves in the rows every batch shares and locks (spend counters, then rollup marks),
    written last and once: two writes of them in one transaction could lock in crossing orders."""

    spent: Spend = field(default_factory=dict)
    dirty: set[Partition] = field(default_factory=set)
    # Stored traces whose count before the write is subtracted in ``spent`` already: what they count for after it
    # is the caller's to add, read once its own changes are done.
    pending_after: set[str] = field(default_factory=set)

    def add(self, spent: Spend, dirty: Iterable[Partition]) -> None:
        self.spent = spend_sum(self.spent, spent)
        self.dirty.update(dirty)

    def write(self, cursor: Any) -> None:
        spend_count(cursor, self.spent)
        mark_dirty(cursor, self.dirty)


def _merge_repeats(items: Sequence[tuple[int, TraceIn]]) -> dict[str, tuple[int, TraceIn]]:
    """Collapse repeats of one trace_id inside a batch: later non-null fields win."""
    merged: dict[str, tuple[int, TraceIn]] = {}
    for index, item in items:
        if item.trace_id not in merged:
            merged[item.trace_id] = (index, item)
            continue
        _, earlier = merged[item.trace_id]
        changes = {f: getattr(item, f) for f in item.__struct_fields__ if getattr(item, f) is not None}
        if earlier.metadata and item.metadata:
            changes["metadata"] = {**earlier.metadata, **item.metadata}
        if earlier.spans and item.spans:
            changes["spans"] = [*earlier.spans, *item.spans]
        merged[item.trace_id] = (index, msgspec.structs.replace(earlier, **changes))
    return merged


# --- Features and prompt versions -------------------------------------------------------


def _feature_ids(cursor: Any, keys: Iterable[str]) -> dict[str, int]:
    keys = sorted(set(keys))
    if not keys:
        return {}
    # Read first: features are almost always known, and a read takes no lock and writes nothing.
    cursor.execute("SELECT key, id FROM feedback_feature WHERE key = ANY(%s)", [keys])
    found = dict(cursor.fetchall())
    missing = [key for key in keys if key not in found]
    if missing:
        cursor.execute(
            "INSERT INTO feedback_feature (key, name, owner_email, created_at) "
            "SELECT k, k, '', now() FROM unnest(%s::text[]) AS k ON CONFLICT (key) DO NOTHING",
            [missing],
        )
        cursor.execute("SELECT key, id FROM feedback_feature WHERE key = ANY(%s)", [missing])
        found.update(cursor.fetchall())
    return found


class PromptKey(NamedTuple):
    label: str
    content_hash: str


@dataclass
class _PromptSeen:
    feature_id: int
    prompt: str | None
    model: str | None
    params: dict[str, Any] | None
    first: datetime
    last: datetime


class _StoredPrompt(NamedTuple):
    label: str
    content_hash: str
    id: int
    first_seen: datetime
    last_seen: datetime
    has_prompt: bool
    has_model: bool


_PROMPT_VERSIONS_INSERT = """
INSERT INTO feedback_promptversion
    (label, content_hash, feature_id, prompt_text, model, params, first_seen, last_seen)
SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::jsonb[],
                     %s::timestamptz[], %s::timestamptz[])
ON CONFLICT (label, content_hash) DO"""
# New versions are inserted first and lock nothing stored (DO NOTHING: a version a concurrent batch
# registered meanwhile is widened later instead); known ones are widened (first / last seen) and
# filled (prompt text and model when empty) last, keys in sorted order so batches lock alike.
_PROMPT_VERSIONS_NEW = _PROMPT_VERSIONS_INSERT + " NOTHING"
_PROMPT_VERSIONS_UPSERT = (
    _PROMPT_VERSIONS_INSERT
    + """ UPDATE SET
    first_seen = LEAST(feedback_promptversion.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(feedback_promptversion.last_seen, EXCLUDED.last_seen),
    prompt_text = CASE WHEN feedback_promptversion.prompt_text = ''
                       THEN EXCLUDED.prompt_text ELSE feedback_promptversion.prompt_text END,
    model = CASE WHEN feedback_promptversion.model = ''
                 THEN EXCLUDED.model ELSE feedback_promptversion.model END
"""
)
_STORED_PROMPT_LIST = select_list(_StoredPrompt, has_prompt="prompt_text <> ''", has_model="model <> ''")
_PROMPT_VERSIONS_OF = (
    f"SELECT {_STORED_PROMPT_LIST} FROM feedback_promptversion "
    "WHERE (label, content_hash) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
)


@dataclass
class _PromptVersions:
    """The prompt versions a batch names: their ids now, and the widening of known ones for later."""

    ids: dict[str, int]  # trace_id -> prompt version id
    seen: dict[PromptKey, _PromptSeen]
    to_widen: list[PromptKey]

    def widen(self, cursor: Any) -> None:
        """Move first / last seen (and fill empty text) of known versions: run last, just before commit.

        Every batch of a busy feature names the same few versions, so this row lock is the one
        concurrent batches queue on; taken at the end, it is held only for the commit.
        """
        if self.to_widen:
            _prompt_versions_write(cursor, _PROMPT_VERSIONS_UPSERT, self.seen, self.to_widen)


def _prompt_versions_write(cursor: Any, sql: str, seen: dict[PromptKey, _PromptSeen], keys: list[PromptKey]) -> None:
    entries = [seen[key] for key in keys]
    cursor.execute(
        sql,
        [
            [key.label for key in keys],
            [key.content_hash for key in keys],
            [e.feature_id for e in entries],
            [e.prompt or "" for e in entries],
            [e.model or "" for e in entries],
            [_json.encode(e.params or {}).decode() for e in entries],
            [e.first for e in entries],
            [e.last for e in entries],
        ],
    )


def _prompt_versions(
    cursor: Any, items: Sequence[TraceIn], features: dict[str, int], received: datetime
) -> _PromptVersions:
    """Register the prompt versions the traces name (new ones now; known ones are widened later)."""
    seen: dict[PromptKey, _PromptSeen] = {}
    key_of: dict[str, PromptKey] = {}
    for item in items:
        label = item.prompt_version or (item.prompt_hash[:12] if item.prompt_hash else None)
        if not label:
            continue
        key = PromptKey(label, item.prompt_hash or (prompt_hash_of(item.prompt) if item.prompt else ""))
        key_of[item.trace_id] = key
        at = item.started_at or received
        if key in seen:
            entry = seen[key]
            entry.first, entry.last = min(entry.first, at), max(entry.last, at)
            entry.prompt = entry.prompt or item.prompt
        else:
            seen[key] = _PromptSeen(features[item.feature], item.prompt, item.model, item.params, at, at)
    if not seen:
        return _PromptVersions({}, seen, [])
    keys = sorted(seen)
    stored = _stored_prompts(cursor, keys)
    missing = [key for key in keys if key not in stored]
    inserted: set[PromptKey] = set()
    if missing:
        # New versions: inserted now (the traces need their ids). Taking no lock on a stored row
        # here is what keeps two batches from deadlocking: every stored row is locked at the end.
        _prompt_versions_write(cursor, _PROMPT_VERSIONS_NEW + " RETURNING label, content_hash", seen, missing)
        inserted = {PromptKey(label, content_hash) for label, content_hash in cursor.fetchall()}
        stored.update(_stored_prompts(cursor, missing))
    to_widen = [
        key
        for key in keys
        if key not in inserted
        and key in stored
        and (
            seen[key].first < stored[key].first_seen
            or seen[key].last > stored[key].last_seen
            or (seen[key].prompt and not stored[key].has_prompt)
            or (seen[key].model and not stored[key].has_model)
        )
    ]
    ids = {trace_id: stored[key].id for trace_id, key in key_of.items() if key in stored}
    return _PromptVersions(ids, seen, to_widen)


def _stored_prompts(cursor: Any, keys: list[PromptKey]) -> dict[PromptKey, _StoredPrompt]:
    cursor.execute(_PROMPT_VERSIONS_OF, [[key.label for key in keys], [key.content_hash for key in keys]])
    return {PromptKey(p.label, p.content_hash): p for p in fetch_as(cursor, _StoredPrompt)}


# --- Writing traces ------------------------------------------------------------------------


def _ttfts_not_kept(cursor: Any, rows: list[TraceRow], index_of: dict[str, int]) -> list[dict[str, Any]]:
    """Warnings for the times to first token these merged rows sent that the merge did not keep: longer than the
    latency the stored trace kept (tables.TTFT_WITHIN_LATENCY). One read, only when a merged row sent a TTFT."""
    sent = {row.trace_id: row.ttft_ms for row in rows if row.ttft_ms is not None}
    if not sent:
        return []
    cursor.execute(f"SELECT trace_id, ttft_ms, latency_ms FROM {TRACES.table} WHERE trace_id = ANY(%s)", [sorted(sent)])
    return [
        {
            "index": index_of[trace_id],
            "field": "ttft_ms",
            "message": f"ttft_ms {sent[trace_id]:g} is longer than the stored trace's latency_ms {latency:g} (the "
            "whole call): not stored",
        }
        for trace_id, ttft, latency in cursor.fetchall()
        if ttft != sent[trace_id] and latency is not None
    ]


def _insert_new(
    cursor: Any, rows: list[TraceRow], *, savepoint: bool = True
) -> tuple[list[str] | None, set[Partition]]:
    """The common case, every trace new: COPY straight into the table (no staging, no upsert).

    A trace that already exists makes the COPY fail on the unique constraint; the savepoint
    rolls it back and the caller takes the merging path. Returns (None, ...) in that case.
    Without ``savepoint`` the failure is the caller's transaction's (traces_store's ``savepoints``).
    """
    final = [TRACES.with_defaults(row) for row in rows]
    if not savepoint:
        copy_rows(cursor, TRACES, final)
    else:
        try:
            with transaction.atomic():
                copy_rows(cursor, TRACES, final)
        except UniqueViolation:
            return None, set()
    return [row.trace_id for row in final], {Partition(row.day, row.feature_id) for row in final}


def _insert_unknown(
    cursor: Any, rows: list[TraceRow], *, savepoint: bool = True
) -> tuple[list[str] | None, set[Partition]]:
    """``_insert_new`` of the traces not stored yet, looked up first (one indexed probe each). Returns (None, ...)
    when the copy failed (a trace written by a concurrent batch meanwhile), else the trace_ids copied (none when
    every trace is stored): the others are those found stored.

    Every trace_id is locked first, until commit (the callers that expect known traces take this lock on each
    trace they write): a concurrent batch writing one of them (the rest of a trace an SDK split across exports,
    sent by another of its exporters this moment) is waited for here, its trace then found stored and merged.
    Unlocked, the copy waited for that batch just the same, then failed, and the whole batch was merged instead
    (56 of bench-otlp's 118 exports from its 4 concurrent clients)."""
    trace_ids = [row.trace_id for row in rows]
    cursor.execute(_LOCK_AND_PROBE, [ingest_gate(), LOCKED_IDS_MAX, _trace_lock_keys(trace_ids), trace_ids])
    stored = {trace_id for (trace_id,) in cursor.fetchall()}
    fresh = [row for row in rows if row.trace_id not in stored]
    return _insert_new(cursor, fresh, savepoint=savepoint) if fresh else ([], set())


def _trace_lock_keys(trace_ids: Iterable[str]) -> list[str]:
    """The advisory lock keys of these trace_ids in this schema, in sorted order (no two holders wait on each
    other), held until commit."""
    schema = current_schema()
    return sorted({f"{schema}:trace:{trace_id}" for trace_id in trace_ids})


def _upsert(
    cursor: Any, rows: list[TraceRow], price_book: Callable[[], PriceBook], received: datetime, no_usage: set[str]
) -> tuple[list[str], set[Partition], dict[str, str], Spend]:
    """Some traces were seen before: stage them, insert the new ones, merge the rest.

    ``no_usage``: traces sent with no usage of their own; a merged one whose usage came from its spans is
    not repriced here (the caller sums its spans again).

    Returns what was inserted, the partitions touched, why each trace left unpriced is, and how far the
    batch moved the spend counters (counted by the caller, with the other shared rows).
    """
    _stage(cursor, TRACES, rows)
    cursor.execute(_INSERT_STAGED)
    inserted = fetch_as(cursor, StoredTrace)
    inserted_ids = [trace.trace_id for trace in inserted]
    dirty = {Partition(trace.day, trace.feature_id) for trace in inserted}
    unpriced: dict[str, str] = {}
    # Spend counters move by what the batch changed: taken after the INSERT (which waited for any
    # concurrent batch holding one of these trace_ids), with the merged rows locked.
    merging = sorted({row.trace_id for row in rows} - set(inserted_ids))
    spent_before = spend_of_stored(cursor, merging, lock=True) if merging else {}
    if len(inserted) < len(rows):
        # Resent traces: the partitions a merge moves them out of must be recomputed too; and which of them have
        # their usage from their spans.
        cursor.execute(
            f"SELECT {select_list(Partition)}, trace_id, cost_source FROM feedback_trace WHERE trace_id = ANY(%s)",
            [merging],
        )
        stored = cursor.fetchall()
        dirty.update(Partition(day, feature_id) for day, feature_id, _, _ in stored)
        sources = {trace_id: source for _, _, trace_id, source in stored}
        unpriced = _merge(cursor, _MERGE_STAGED, [merging], sources, no_usage, price_book, dirty)
    # New traces count as stored, from their rows; merged ones by what the merge moved.
    new = set(inserted_ids)
    spent = spend_of_rows((row for row in rows if row.trace_id in new), received)
    if merging:
        spent = spend_sum(spent, spend_difference(spend_of_stored(cursor, merging), spent_before))
    return inserted_ids, dirty, unpriced, spent


def _merge(
    cursor: Any,
    sql: str,
    params: list[Any],
    sources: dict[str, str],
    no_usage: set[str],
    price_book: Callable[[], PriceBook],
    dirty: set[Partition],
) -> dict[str, str]:
    """Merge resent rows into stored traces (``sql``: _MERGE_STAGED or _MERGE_GIVEN, RETURNING PricedTrace) and
    reprice them; ``sources``: each stored trace's cost_source before. Adds the partitions the merged traces lie in
    to ``dirty``; returns why each trace left unpriced is."""
    # Usage a trace sends replaces what its spans gave it, whole (not one count of two).
    sending = sorted(t for t, source in sources.items() if source == COST_FROM_SPANS and t not in no_usage)
    if sending:
        cursor.execute(_SPANS_USAGE_DROPPED, [sending])
    cursor.execute(sql, params)
    merged = fetch_as(cursor, PricedTrace)
    dirty.update(Partition(trace.day, trace.feature_id) for trace in merged)
    # A trace whose usage came from its spans, sent with none of its own, is summed again by the caller.
    repriced = [t for t in merged if not (t.cost_source == COST_FROM_SPANS and t.trace_id in no_usage)]
    return traces_reprice(cursor, price_book(), repriced) if repriced else {}


def _merge_stored(
    cursor: Any,
    rows: list[TraceRow],
    price_book: Callable[[], PriceBook],
    received: datetime,
    no_usage: set[str],
    pending: set[str] | None,
    unnamed: set[str],
) -> tuple[list[str], set[Partition], dict[str, str], Spend]:
    """``_upsert`` of traces found stored by a caller holding their trace locks (``_insert_unknown``: an OTLP export
    continuing a trace an earlier export began): merged from the rows as parameters, with no staging table (its DDL,
    its copy, and the emptying at commit of every table of its kind), no insert tried first, and one read of what
    they count for.

    ``pending``: where the caller reads what these traces count for once its own changes are done
    (SharedCounts.pending_after); only what they counted for before is subtracted here. None: read here.

    ``unnamed``: the found traces no feedback names are added to it (their merge has no feedback to move: the caller
    skips feedback_join for them).

    A trace deleted since it was found goes through ``_upsert``. Returns as ``_upsert`` does.
    """
    cursor.execute(_STORED_LOCKED, [[row.trace_id for row in rows]])
    stored = fetch_as(cursor, _Counted)
    found = {trace.trace_id for trace in stored}
    # Feedback arriving after this read joins the trace as committed then, and feedback_rejoin mends it before the
    # rollups (as it mends a feedback batch racing any trace write).
    unnamed.update(trace.trace_id for trace in stored if not trace.has_feedback)
    before = spend_sum(
        *(
            spend_of_trace(t.customer_id, t.day, t.feature_id, t.model, t.cost_usd, t.cost_by_model) for t in stored
        )  # fmt: skip
    )
    dirty = {Partition(trace.day, trace.feature_id) for trace in stored}
    present = [row for row in rows if row.trace_id in found]
    unpriced: dict[str, str] = {}
    if present:
        sources = {trace.trace_id: trace.cost_source for trace in stored}
        given = [TRACES.given_json(present), sorted(found)]
        unpriced = _merge(cursor, _MERGE_GIVEN, given, sources, no_usage, price_book, dirty)
    if pending is None:
        spent = spend_difference(spend_of_stored(cursor, sorted(found)), before) if found else {}
    else:
        spent = spend_difference({}, before)
        pending.update(found)
    gone = [row for row in rows if row.trace_id not in found]
    if not gone:
        return [], dirty, unpriced, spent
    inserted, more_dirty, more_unpriced, more_spent = _upsert(cursor, gone, price_book, received, no_usage)
    return inserted, dirty | more_dirty, unpriced | more_unpriced, spend_sum(spent, more_spent)


def feedback_join(cursor: Any, trace_ids: list[str]) -> None:
    """Feedback of these traces takes the trace's feature, version and day where they differ
    (feedback that came first, or a resent trace that moved)."""
    cursor.execute(_JOIN_FEEDBACK, [trace_ids])


def feedback_join_waiting(cursor: Any, trace_ids: list[str]) -> None:
    """Feedback that arrived before these (new) traces gets their feature, version and day.

    Only unjoined feedback can name a new trace: probed through the small partial index of
    feedback waiting for its trace, not the index of all feedback.
    """
    if trace_ids:
        cursor.execute(_JOIN_WAITING_FEEDBACK, [trace_ids])


# --- Spans ---------------------------------------------------------------------------------


def _span_row(trace_id: str, span: SpanIn) -> SpanRow:
    """The span as stored (NOT NULL defaults filled in)."""
    row = SpanRow(  # type: ignore[misc]  # as_sent() fills the leading fields
        *SPANS.as_sent(span),
        trace_id=trace_id,
        cost_usd=Decimal(repr(span.cost_usd)) if span.cost_usd is not None else None,
        attributes=_json.encode(span.attributes or {}).decode(),
    )
    return SPANS.with_defaults(row)


def _store_spans(cursor: Any, span_rows: list[SpanRow], *, savepoint: bool = True) -> None:
    # Rows come as stored, NOT NULL defaults filled in (_span_row, the OTLP endpoint's feedback.otlp.span_rows_of).
    # Repeats of a span within the batch merge as they would across batches (later non-empty
    # wins, attributes merge); sorted so concurrent batches lock in the same order.
    merged: dict[tuple[str, str], SpanRow] = {}
    for row in span_rows:
        key = (row.trace_id, row.span_id)
        merged[key] = SPANS.merged(merged[key], row) if key in merged else row
    rows = [merged[key] for key in sorted(merged)]
    # Spans are new but for a resend: COPY them straight in, and merge through staging only
    # when one is already stored (the savepoint undoes the failed COPY).
    if not savepoint:  # a span stored already fails the caller's transaction (traces_store's savepoints)
        copy_rows(cursor, SPANS, rows)
        return
    try:
        with transaction.atomic():
            copy_rows(cursor, SPANS, rows)
    except UniqueViolation:
        _stage(cursor, SPANS, rows)
        cursor.execute(_STORE_SPANS)


def _stage(cursor: Any, table: IngestTable[Any], rows: Iterable[tuple[Any, ...]]) -> None:
    """feedback.services.shared.stage with a binary COPY (columns.copy_rows): the table's staging table,
    created on first use, emptied at commit, holding these rows."""
    cursor.execute(table.stage_ddl)
    if connection.savepoint_ids:  # only a caller's enclosing transaction can leave rows behind
        cursor.execute(f"DELETE FROM {table.stage}")
    copy_rows(cursor, table, rows, into=table.stage)
