"""Model prices and cost computation.

The built-in table is maintained here (USD per million tokens, list prices); an
organization's own ModelPrice rows override it. ``input_tokens`` include cached tokens
(OpenAI's convention): cached tokens are billed at the cached price, the rest at the
input price.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

# Trace.cost_source when the client sent cost_usd; a computed cost names its price instead
# (Price.source: "default:<provider>/<model>@<date>" or "org:<price id>").
COST_FROM_CLIENT = "client"
# Trace.cost_source when a trace sent no tokens or cost of its own: its cost and tokens are the sums over
# its LLM spans (each span's cost as sent, else priced at the span's model).
COST_FROM_SPANS = "spans"
# feedback_trace.cost_usd is numeric(16, 8): a cost at or past this cannot be stored.
MAX_COST = Decimal(10) ** 8
MILLION = Decimal(1_000_000)
_D = Decimal


@dataclass(frozen=True)
class Price:
    provider: str
    model: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_per_mtok: Decimal | None
    effective_from: datetime
    effective_to: datetime | None
    source: str

    def applies(self, when: datetime) -> bool:
        return self.effective_from <= when and (self.effective_to is None or when < self.effective_to)

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int) -> Decimal:
        cached = min(cached_tokens, input_tokens)
        cached_price = self.cached_per_mtok if self.cached_per_mtok is not None else self.input_per_mtok
        total = (
            (input_tokens - cached) * self.input_per_mtok + cached * cached_price + output_tokens * self.output_per_mtok
        )
        return (total / MILLION).quantize(Decimal("0.00000001"))


def too_costly(cost: Decimal, priced_at: str) -> str:
    """Why a computed cost past MAX_COST is left empty (it would overflow the column)."""
    return (
        f"The cost computed at {priced_at} is ${cost:,.2f}, past the largest Candor stores "
        f"(${MAX_COST - Decimal('0.01'):,.2f}): cost left empty. Check the token counts and the model's price."
    )


def _t(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


# provider, model, input, output, cached input, effective from, effective to
_DEFAULTS: list[tuple[str, str, str, str, str | None, str, str | None]] = [
    ("openai", "gpt-4o", "5.00", "15.00", None, "2024-05-13", "2024-08-06"),
    ("openai", "gpt-4o", "2.50", "10.00", "1.25", "2024-08-06", None),
    ("openai", "gpt-4o-mini", "0.15", "0.60", "0.075", "2024-07-18", None),
    ("openai", "gpt-4.1", "2.00", "8.00", "0.50", "2025-04-14", None),
    ("openai", "gpt-4.1-mini", "0.40", "1.60", "0.10", "2025-04-14", None),
    ("openai", "gpt-4.1-nano", "0.10", "0.40", "0.025", "2025-04-14", None),
    ("openai", "o3", "2.00", "8.00", "0.50", "2025-06-10", None),
    ("openai", "o4-mini", "1.10", "4.40", "0.275", "2025-04-16", None),
    ("openai", "gpt-5", "1.25", "10.00", "0.125", "2025-08-07", None),
    ("openai", "gpt-5-mini", "0.25", "2.00", "0.025", "2025-08-07", None),
    ("openai", "gpt-5-nano", "0.05", "0.40", "0.005", "2025-08-07", None),
    ("anthropic", "claude-3-haiku", "0.25", "1.25", "0.03", "2024-03-07", None),
    ("anthropic", "claude-3-5-haiku", "0.80", "4.00", "0.08", "2024-10-22", None),
    ("anthropic", "claude-3-5-sonnet", "3.00", "15.00", "0.30", "2024-06-20", None),
    ("anthropic", "claude-3-7-sonnet", "3.00", "15.00", "0.30", "2025-02-24", None),
    ("anthropic", "claude-sonnet-4", "3.00", "15.00", "0.30", "2025-05-22", None),
    ("anthropic", "claude-sonnet-4-5", "3.00", "15.00", "0.30", "2025-09-29", None),
    ("anthropic", "claude-haiku-4-5", "1.00", "5.00", "0.10", "2025-10-15", None),
    ("anthropic", "claude-opus-4", "15.00", "75.00", "1.50", "2025-05-22", None),
    ("anthropic", "claude-opus-4-1", "15.00", "75.00", "1.50", "2025-08-05", None),
    ("google", "gemini-1.5-flash", "0.075", "0.30", "0.01875", "2024-05-14", None),
    ("google", "gemini-2.0-flash", "0.10", "0.40", "0.025", "2025-02-05", None),
    ("google", "gemini-2.0-flash-lite", "0.075", "0.30", None, "2025-02-25", None),
    ("google", "gemini-2.5-flash", "0.30", "2.50", "0.075", "2025-06-17", None),
    ("google", "gemini-2.5-pro", "1.25", "10.00", "0.31", "2025-06-17", None),
    ("mistral", "mistral-small", "0.10", "0.30", None, "2024-09-18", None),
    ("mistral", "mistral-medium", "0.40", "2.00", None, "2025-05-07", None),
    ("mistral", "mistral-large", "2.00", "6.00", None, "2024-11-18", None),
    ("mistral", "codestral", "0.30", "0.90", None, "2025-01-13", None),
]
# Earliest date a default price counts from: traces dated before a model's launch are test data.
_SINCE_EVER = _t("2020-01-01")

DEFAULT_PRICES: list[Price] = [
    Price(
        provider,
        model,
        _D(inp),
        _D(out),
        _D(cached) if cached else None,
        _SINCE_EVER if i == 0 or _DEFAULTS[i - 1][1] != model else _t(start),
        _t(end) if end else None,
        f"default:{provider}/{model}@{start}",
    )
    for i, (provider, model, inp, out, cached, start, end) in enumerate(_DEFAULTS)
]


def _model_matches(table_model: str, model: str) -> bool:
    # "gpt-4o-mini-2024-07-18" and "claude-3-5-haiku-latest" are dated aliases of table entries.
    return model == table_model or model.startswith(table_model + "-")


class PriceBook:
    """Looks prices up: the organization's own rows first, then the defaults."""

    def __init__(self, overrides: Iterable[Price] = ()) -> None:
        self.tables = [list(overrides), DEFAULT_PRICES]
        # Prices change at most daily; a batch asks about a handful of (provider, model, day).
        self._memo: dict[tuple[str | None, str, object], Price | None] = {}
        # On a day a price starts or ends, the answer depends on the time of day: no memo then.
        self._change_days = {
            moment.astimezone(UTC).date()
            for table in self.tables
            for p in table
            for moment in (p.effective_from, p.effective_to)
            if moment
        }

    def find(self, provider: str | None, model: str | None, when: datetime) -> Price | None:
        if not model:
            return None
        day = when.astimezone(UTC).date()
        if day in self._change_days:
            return self._find(provider, model, when)
        key = (provider, model, day)
        if key not in self._memo:
            self._memo[key] = self._find(provider, model, when)
        return self._memo[key]

    def _find(self, provider: str | None, model: str, when: datetime) -> Price | None:
        model = model.strip().lower()
        if "/" in model and not provider:  # "openai/gpt-4o" style names
            provider, model = model.split("/", 1)
        provider = (provider or "").strip().lower()
        for table in self.tables:
            candidates = [
                p
                for p in table
                if _model_matches(p.model, model) and (not provider or p.provider in ("", provider)) and p.applies(when)
            ]
            if candidates:
                return max(candidates, key=lambda p: len(p.model))
        return None
