"""Model prices: an organization's own prices, the price book ingestion reads, and repricing
stored traces (the arithmetic itself is in feedback.prices, with no Django)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from itertools import groupby
from operator import attrgetter
from typing import Any, NamedTuple

import msgspec
from django.core.exceptions import ValidationError
from django.db import transaction

from feedback.enums import SpanKind
from feedback.models import ModelPrice
from feedback.otlp import CACHED_TOKEN_KEYS
from feedback.prices import COST_FROM_CLIENT, COST_FROM_SPANS, MAX_COST, Price, PriceBook, too_costly
from feedback.services.columns import fetch_as
from feedback.services.spend import (
    COUNTED_BY_MODEL,
    STORED_COST,
    Spend,
    spend_difference,
    spend_of_trace,
    spend_sum,
)
from feedback.services.tables import PricedTrace


def price_book_load(cursor: Any) -> PriceBook:
    """The current organization's own prices over the built-in table."""
    cursor.execute(
        "SELECT id, provider, model, input_per_mtok, output_per_mtok, cached_per_mtok, effective_from, effective_to "
        "FROM feedback_modelprice"
    )
    overrides = [
        Price(provider.lower(), model.lower(), inp, out, cached, start, end, f"org:{pk}")
        for pk, provider, model, inp, out, cached, start, end in cursor.fetchall()
    ]
    return PriceBook(overrides)


def traces_reprice(cursor: Any, book: PriceBook, traces: Iterable[PricedTrace]) -> dict[str, str]:
    """Recompute cost from each trace's current tokens. A cost the client sent is never replaced;
    with no price known the cost is cleared, never left stale. Returns why each trace left unpriced is.

    Only a cost that moves is written: a merge that brings no tokens (the root of a trace an SDK split across
    exports, most OTLP exports have one) comes to the stored cost, and writing it again was an UPDATE and a new row
    version of the trace for nothing."""
    updates: list[tuple[Decimal | None, str, int]] = []
    stored: dict[int, tuple[Decimal | None, str]] = {}
    unpriced = {}
    for trace in traces:
        stored[trace.id] = (trace.cost_usd, trace.cost_source)
        if trace.cost_source == COST_FROM_CLIENT or (trace.input_tokens is None and trace.output_tokens is None):
            continue
        price = book.find(trace.provider, trace.model, trace.started_at)
        if price is None:
            updates.append((None, "", trace.id))
            unpriced[trace.trace_id] = (
                "No price known for the merged trace's model: cost left empty. "
                "Send cost_usd or add the model's price in Settings."
            )
            continue
        cost = price.cost(trace.input_tokens or 0, trace.output_tokens or 0, trace.cached_tokens or 0)
        if cost >= MAX_COST:
            updates.append((None, "", trace.id))
            unpriced[trace.trace_id] = too_costly(cost, f"model '{trace.model}'s price")
        else:
            updates.append((cost, price.source, trace.id))
    # As the column keeps it: 8 decimals, half away from zero (costs are never negative).
    moved = [
        (cost, source, pk)
        for cost, source, pk in updates
        if (None if cost is None else cost.quantize(STORED_COST, ROUND_HALF_UP), source) != stored[pk]
    ]
    if moved:
        cursor.executemany("UPDATE feedback_trace SET cost_usd = %s, cost_source = %s WHERE id = %s", moved)
    return unpriced


class _SpanUsage(NamedTuple):
    """A trace that sent no usage of its own, and one of its LLM spans that carries some."""

    id: int
    trace_id: str
    provider: str
    model: str
    customer_id: str
    day: date
    feature_id: int
    started_at: datetime
    cost_usd: Decimal | None
    cost_by_model: str | None  # as spend counts it (spend.COUNTED_BY_MODEL), JSON text (a raw cursor's jsonb)
    span_id: str
    span_model: str
    span_input_tokens: int | None
    span_output_tokens: int | None
    span_cached_tokens: int | None
    span_cost_usd: Decimal | None


_json = msgspec.json.Encoder()
# The most a trace's token count can be (schemas.Tokens): span sums past it are no count.
MAX_TOKENS = 10**12
# A span's cached input tokens (SQL on a feedback_span row): its attributes' value under the first of the OTLP
# mapping's keys it has (CACHED_TOKEN_KEYS), counted when a whole number from 0 to 10^12, or such a number
# written plainly as text (what instrumentations send; spellings the mapping's _as_int also reads, such as
# exponents, count for nothing here); anything else counts for nothing and is never cast (a cast of "many" was
# a 500 that lost an OTLP export, as was a number of 140,000 digits).
_CACHED_TEXT = "COALESCE({}) #>> '{{}}'".format(
    ", ".join(f"NULLIF(NULLIF(attributes->'{key}', 'null'), '\"\"')" for key in CACHED_TOKEN_KEYS)
)
SPAN_CACHED_TOKENS = f"""(SELECT CASE WHEN n <= 1e12 THEN n END FROM (
    SELECT CASE WHEN length(v) <= 40 AND v ~ '^\\s*\\+?[0-9]+(\\.0*)?\\s*$' THEN v::numeric END AS n
    FROM (SELECT {_CACHED_TEXT} AS v) a) b)"""
# Probed trace by trace through the span key's index (a planner with stale counts would scan the span table).
_SPAN_USAGE = f"""
SELECT t.id, t.trace_id, t.provider, t.model, t.customer_id, t.day, t.feature_id, t.started_at, t.cost_usd,
       {COUNTED_BY_MODEL}, s.span_id, s.model, s.input_tokens, s.output_tokens, s.cached::bigint, s.cost_usd
FROM unnest(%s::text[]) AS x(trace_id)
JOIN feedback_trace t ON t.trace_id = x.trace_id
CROSS JOIN LATERAL (
    SELECT span_id, model, input_tokens, output_tokens, {SPAN_CACHED_TOKENS} AS cached, cost_usd, start
    FROM feedback_span
    WHERE trace_id = x.trace_id AND kind = '{SpanKind.LLM}'
      AND (input_tokens IS NOT NULL OR output_tokens IS NOT NULL OR cost_usd IS NOT NULL)
    OFFSET 0
) s
WHERE {{which}}
ORDER BY t.trace_id, s.start NULLS LAST, s.span_id
"""
# Traces that send no usage of their own, or whose usage came from their spans.
_SPAN_USAGE_UNSENT = _SPAN_USAGE.replace(
    "{which}",
    f"t.cost_source = '{COST_FROM_SPANS}' OR (t.input_tokens IS NULL AND t.output_tokens IS NULL "
    "AND t.cost_usd IS NULL)",
)
# Traces whose usage Candor summed itself (OTLP's): every one but those with a cost sent for them.
_SPAN_USAGE_SUMMED = _SPAN_USAGE.replace("{which}", f"t.cost_source <> '{COST_FROM_CLIENT}'")
_SET_USAGE = f"""
UPDATE feedback_trace t
   SET input_tokens = x.i, output_tokens = x.o, cost_usd = x.c, cost_source = '{COST_FROM_SPANS}', model = x.m,
       cost_by_model = x.b
FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[], %s::text[], %s::jsonb[]) AS x(id, i, o, c, m, b)
WHERE t.id = x.id
"""


def traces_usage_from_spans(
    cursor: Any, book: Callable[[], PriceBook], trace_ids: list[str], *, every: bool = False
) -> tuple[dict[str, str], Spend]:
    """Tokens and cost of traces that send none of their own, from their stored LLM spans (the REST path's
    agent traces: a request whose LLM calls are its spans). Input and output tokens are the spans' sums;
    the cost is the sum of each span's cost as sent, else its tokens priced at its own model (the trace's
    when it names none). The trace takes its first LLM span's model when it names none. Marked
    COST_FROM_SPANS, so later spans of the trace move the sums too, until the trace sends usage itself.

    ``every``: each trace but one with a cost sent for it (the OTLP endpoint's traces that called several models,
    whose tokens it sums itself), not only those that send no usage of their own.

    Returns why each trace left unpriced is (a span's model with no price, or a cost past MAX_COST: the
    tokens are kept, the cost left empty), and how far the spend counters move.
    """
    cursor.execute(_SPAN_USAGE_SUMMED if every else _SPAN_USAGE_UNSENT, [trace_ids])
    rows = fetch_as(cursor, _SpanUsage)
    if not rows:
        return {}, {}
    prices = book()
    updates: list[tuple[int, int | None, int | None, Decimal | None, str, str | None]] = []
    unpriced: dict[str, str] = {}
    was: list[Spend] = []
    now: list[Spend] = []
    for trace_id, group in groupby(rows, key=attrgetter("trace_id")):
        spans = list(group)
        trace = spans[0]
        # Decided before any span is priced, so a resend (which finds the model taken) prices alike.
        model = trace.model or next((span.span_model for span in spans if span.span_model), "")
        inputs = [span.span_input_tokens for span in spans if span.span_input_tokens is not None]
        outputs = [span.span_output_tokens for span in spans if span.span_output_tokens is not None]
        tokens = (sum(inputs) if inputs else None, sum(outputs) if outputs else None)
        by_model, unpriced_because = _spans_cost(prices, trace, spans, model)
        cost = sum(by_model.values(), Decimal(0)) if by_model is not None else None
        if any(count is not None and count > MAX_TOKENS for count in tokens):
            tokens, cost, by_model = (None, None), None, None
            unpriced_because = (
                f"Its spans' token counts add up past {MAX_TOKENS:,}, the most a trace counts: "
                "tokens and cost left empty."
            )
        if unpriced_because:
            unpriced[trace_id] = unpriced_because
        # Several models: the cost per model, as the spend counters count it (a budget narrowed to gpt-4o counts
        # the trace's gpt-4o calls, not all of its cost under its first call's model).
        several = {name: str(part) for name, part in by_model.items()} if by_model and len(by_model) > 1 else None
        updates.append((trace.id, *tokens, cost, model, _json.encode(several).decode() if several else None))
        # The spend counters move from what the trace counted for to what it counts for now.
        where = (trace.customer_id, trace.day, trace.feature_id)
        was.append(spend_of_trace(*where, trace.model, trace.cost_usd, trace.cost_by_model))
        now.append(spend_of_trace(*where, model, cost, several))
    cursor.execute(_SET_USAGE, [list(column) for column in zip(*updates, strict=True)])
    return unpriced, spend_difference(spend_sum(*now), spend_sum(*was))


def _spans_cost(
    prices: PriceBook, trace: _SpanUsage, spans: list[_SpanUsage], model: str
) -> tuple[dict[str, Decimal] | None, str]:
    """The spans' costs summed per model (each as sent, else its tokens priced at its model, or ``model``; ``model``
    among them), or None and why not."""
    by_model = {model: Decimal(0)}
    for span in spans:
        priced_at = span.span_model or model
        if span.span_cost_usd is not None:
            by_model[priced_at] = by_model.get(priced_at, Decimal(0)) + span.span_cost_usd
            continue
        if span.span_input_tokens is None and span.span_output_tokens is None:
            continue
        # A span's model may be another provider's than the trace names (a fallback model).
        price = prices.find(trace.provider, priced_at, trace.started_at) or prices.find(
            None, priced_at, trace.started_at
        )
        if price is None:
            return None, (
                f"No price known for model '{priced_at}' of span '{span.span_id}': the trace's cost left empty. "
                "Send cost_usd on the span or add the model's price in Settings."
            )
        cost = price.cost(span.span_input_tokens or 0, span.span_output_tokens or 0, span.span_cached_tokens or 0)
        by_model[priced_at] = by_model.get(priced_at, Decimal(0)) + cost
    cost = sum(by_model.values(), Decimal(0))
    if cost >= MAX_COST:
        return None, too_costly(cost, "its spans' prices")
    return by_model, ""


def model_price_create(
    *,
    provider: str,
    model: str,
    input_per_mtok: Decimal,
    output_per_mtok: Decimal,
    cached_per_mtok: Decimal | None,
    effective_from: datetime,
) -> ModelPrice:
    """An organization's own price for a model (wins over the built-in table from effective_from on).

    The organization's previous open-ended price for the same model ends where this one starts.
    """
    provider, model = provider.strip().lower(), model.strip().lower()
    if not model:
        raise ValidationError({"model": "Name the model, e.g. gpt-4o-mini."})
    for name, value in (("input_per_mtok", input_per_mtok), ("output_per_mtok", output_per_mtok),
                        ("cached_per_mtok", cached_per_mtok)):  # fmt: skip
        if value is not None and value < 0:
            raise ValidationError({name: "A price cannot be negative."})
    with transaction.atomic():
        ModelPrice.objects.filter(
            provider=provider, model=model, effective_to__isnull=True, effective_from__lt=effective_from
        ).update(effective_to=effective_from)
        return ModelPrice.objects.create(
            provider=provider, model=model, input_per_mtok=input_per_mtok, output_per_mtok=output_per_mtok,
            cached_per_mtok=cached_per_mtok, effective_from=effective_from,
        )  # fmt: skip
