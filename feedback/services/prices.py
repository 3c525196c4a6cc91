"""Model prices: an organization's own prices, the price book ingestion reads, and repricing
stored traces (the arithmetic itself is in feedback.prices, with no Django)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from feedback.models import ModelPrice
from feedback.prices import COST_FROM_CLIENT, Price, PriceBook
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


def traces_reprice(cursor: Any, book: PriceBook, traces: Iterable[PricedTrace]) -> list[str]:
    """Recompute cost from each trace's current tokens. A cost the client sent is never replaced;
    with no price known the cost is cleared, never left stale. Returns the unpriced trace IDs."""
    updates: list[tuple[Decimal | None, str, int]] = []
    unpriced = []
    for trace in traces:
        if trace.cost_source == COST_FROM_CLIENT or (trace.input_tokens is None and trace.output_tokens is None):
            continue
        price = book.find(trace.provider, trace.model, trace.started_at)
        if price is None:
            updates.append((None, "", trace.id))
            unpriced.append(trace.trace_id)
        else:
            cost = price.cost(trace.input_tokens or 0, trace.output_tokens or 0, trace.cached_tokens or 0)
            updates.append((cost, price.source, trace.id))
    if updates:
        cursor.executemany("UPDATE feedback_trace SET cost_usd = %s, cost_source = %s WHERE id = %s", updates)
    return unpriced


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
