"""Budgets on end-customers' LLM spend: the organization's defaults (customer_id "") and
per-customer overrides, each optionally for one feature and/or model, per day and per month;
and the sweep that warns once when a customer's spend passes a budget's threshold."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from typing import TypeVar

from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from billing.models import CustomerBudget, OverAction
from billing.selectors import BudgetRule, applicable_budgets
from billing.services.accounts import parse_usd
from billing.services.notices import notice_send
from billing.services.shared import month_start, organization_schema
from feedback.schemas import FEATURE_KEY_PATTERN
from tenants.selectors import Organization

T = TypeVar("T")

MAX_BUDGET_USD = Decimal("1000000")
DEFAULT_THRESHOLDS = (80, 90, 100)


def _thresholds(values: Sequence[object] | str | None) -> list[int]:
    if values is None or values == "":
        return list(DEFAULT_THRESHOLDS)
    items: list[object] = list(values.replace(",", " ").split() if isinstance(values, str) else values)
    try:
        out = sorted({int(str(v).strip().rstrip("%")) for v in items})
    except ValueError:
        raise ValidationError({"thresholds": "Give whole percents, e.g. 80, 90, 100."}) from None
    if not out or len(out) > 5 or out[0] < 1 or out[-1] > 100:
        raise ValidationError({"thresholds": "Give one to five whole percents between 1 and 100, e.g. 80, 90, 100."})
    return out


def _collect(errors: dict[str, str], read: Callable[[], T]) -> T | None:
    """``read()``, or None with its ValidationError's messages added to ``errors``."""
    try:
        return read()
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.setdefault(name, " ".join(messages))
        return None


def budget_set(
    *,
    organization: Organization,
    customer_id: str = "",
    feature: str = "",
    model: str = "",
    daily_cap_usd: object = None,
    monthly_cap_usd: object = None,
    thresholds: Sequence[object] | str | None = None,
    over_action: str = OverAction.BLOCK,
    fallback_model: str = "",
) -> CustomerBudget:
    """Create or replace the budget of one scope (customer or default, feature, model). Every field's mistake is
    said at once (a person fixing the amount, then the fallback model, then the thresholds sent the form thrice)."""
    errors: dict[str, str] = {}
    for name, value, limit in (("customer_id", customer_id, 200), ("feature", feature, 100), ("model", model, 200),
                               ("fallback_model", fallback_model, 200)):  # fmt: skip
        if len(value) > limit or "\x00" in value:
            errors[name] = f"At most {limit} characters, no NUL."
        # Matched exactly as traces and the budget check send them: "c1 " trimmed to "c1" replaced c1's budget
        # and never applied to "c1 ".
        elif value != value.strip():
            errors[name] = "Starts or ends with a space: IDs are matched exactly as traces send them."
    if "feature" not in errors and feature and not re.fullmatch(FEATURE_KEY_PATTERN, feature):
        # A display name ("Support Copilot") would never match: the check and the counters name features by key.
        errors["feature"] = f"'{feature}' is not a feature key (as traces send it, e.g. support-copilot)."
    daily = _collect(errors, lambda: parse_usd(daily_cap_usd, field="daily_cap_usd", maximum=MAX_BUDGET_USD))
    monthly = _collect(errors, lambda: parse_usd(monthly_cap_usd, field="monthly_cap_usd", maximum=MAX_BUDGET_USD))
    amounts_read = not {"daily_cap_usd", "monthly_cap_usd"} & set(errors)
    if amounts_read and daily is None and monthly is None:
        errors["monthly_cap_usd"] = "Set a daily cap, a monthly cap or both."
    if daily is not None and monthly is not None and daily > monthly:
        errors["daily_cap_usd"] = f"The daily cap ({daily}) is above the monthly cap ({monthly})."
    if over_action not in OverAction.values:
        errors["over_action"] = f"'{over_action}' is not block or fallback."
    if over_action == OverAction.FALLBACK and not fallback_model and "fallback_model" not in errors:
        errors["fallback_model"] = "Name the cheaper model to fall back to."
    levels = _collect(errors, lambda: _thresholds(thresholds))
    if errors:
        raise ValidationError(errors)
    budget, _ = CustomerBudget.objects.update_or_create(
        organization=organization, customer_id=customer_id, feature=feature, model=model,
        defaults={
            "daily_cap_usd": daily, "monthly_cap_usd": monthly, "thresholds": levels,
            "over_action": over_action, "fallback_model": fallback_model if over_action == OverAction.FALLBACK else "",
            "updated_at": timezone.now(),
        },
    )  # fmt: skip
    return budget


def budget_delete(*, budget: CustomerBudget) -> None:
    budget.delete()


def budget_thresholds_sweep(*, organization: Organization, today: date) -> int:
    """Warn once per (budget, customer, period, threshold) crossed this day or month; returns warnings sent."""
    rules = [
        BudgetRule(b.id, b.customer_id, b.feature, b.model, b.daily_cap_usd, b.monthly_cap_usd,
                   tuple(b.thresholds or ()), b.over_action, b.fallback_model)
        for b in CustomerBudget.objects.filter(organization=organization)
    ]  # fmt: skip
    if not rules:
        return 0
    month = month_start(today)
    spend: dict[str, list[tuple[str, str, Decimal, Decimal]]] = defaultdict(list)
    with organization_schema(organization), connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.customer_id, f.key, c.model, coalesce(sum(c.cost_usd) FILTER (WHERE c.day = %s), 0), "
            "sum(c.cost_usd) FROM feedback_spendcounter c JOIN feedback_feature f ON f.id = c.feature_id "
            "WHERE c.day >= %s AND c.day <= %s AND c.customer_id <> '' GROUP BY 1, 2, 3",
            [today, month, today],
        )
        for customer_id, feature, model, day_usd, month_usd in cursor.fetchall():
            spend[customer_id].append((feature, model, day_usd, month_usd))
    sent = 0
    for customer_id, rows in spend.items():
        for rule in applicable_budgets([r for r in rules if r.customer_id in ("", customer_id)], customer_id):
            matching = [r for r in rows if rule.feature in ("", r[0]) and rule.model in ("", r[1])]
            for period, cap, spent, start in (
                ("day", rule.daily_cap_usd, sum((r[2] for r in matching), Decimal(0)), today),
                ("month", rule.monthly_cap_usd, sum((r[3] for r in matching), Decimal(0)), month),
            ):
                if not cap:
                    continue
                share = spent / cap * 100
                for threshold in rule.thresholds:
                    if share >= threshold:
                        sent += notice_send(
                            organization=organization,
                            key=f"budget:{rule.id}:{customer_id}:{period}:{start.isoformat()}:{threshold}",
                            kind="customer_budget",
                            subject=f"Customer {customer_id} at {threshold}% of its "
                            f"{'daily' if period == 'day' else 'monthly'} LLM budget",
                            payload={"customer_id": customer_id, "threshold": threshold, "period": period,
                                     "period_start": start.isoformat(), "spent_usd": str(spent), "cap_usd": str(cap),
                                     "feature": rule.feature or None, "model": rule.model or None},
                        )  # fmt: skip
    return sent
