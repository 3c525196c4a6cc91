"""Output (and budget input) serializers of billing's endpoints: what the OpenAPI schema shows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from billing.models import CustomerBudget, OverAction


class BudgetRefSerializer(serializers.Serializer):
    customer_id = serializers.CharField(allow_null=True, help_text="null: the organization's default")
    feature = serializers.CharField(allow_null=True)
    model = serializers.CharField(allow_null=True)


class BudgetCheckSerializer(serializers.Serializer):
    allowed = serializers.BooleanField()
    spent_usd = serializers.FloatField(allow_null=True, help_text="spend in the binding period so far")
    cap_usd = serializers.FloatField(allow_null=True)
    remaining_usd = serializers.FloatField(allow_null=True)
    period = serializers.ChoiceField(choices=["day", "month"], allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True, help_text="when the binding period ends (UTC)")
    action = serializers.ChoiceField(choices=["allow", "warn", "block", "fallback"])
    fallback_model = serializers.CharField(
        allow_null=True,
        help_text="for action fallback: the model to use instead (never the `model` asked about: a budget whose "
        "fallback is that model answers block)",
    )
    reason = serializers.CharField(allow_null=True, help_text="why the answer is not a plain allow; null when it is")
    budget = BudgetRefSerializer(allow_null=True, help_text="the budget that decided, null when none applies")


class _Text(serializers.CharField):
    """A JSON string, nothing else (DRF would take 0 and make it "0"), as sent (DRF would trim it)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class _Number(serializers.DecimalField):
    """A JSON number, nothing else (DRF would take "5" and true)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class _Int(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class _Choice(serializers.ChoiceField):
    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class BudgetSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    customer_id = _Text(allow_blank=True, default="", max_length=200,
                                        help_text='"" (or absent): the default for every customer')  # fmt: skip
    feature = _Text(allow_blank=True, default="", max_length=100)
    model = _Text(allow_blank=True, default="", max_length=200)
    daily_cap_usd = _Number(max_digits=14, decimal_places=4, allow_null=True, default=None, min_value=Decimal(0),
                            coerce_to_string=False)  # fmt: skip
    monthly_cap_usd = _Number(max_digits=14, decimal_places=4, allow_null=True, default=None, min_value=Decimal(0),
                              coerce_to_string=False)  # fmt: skip
    thresholds = serializers.ListField(
        child=_Int(min_value=1, max_value=100),
        required=False,
        min_length=1,
        max_length=5,
        help_text="percents, default [80, 90, 100]",
    )
    over_action = _Choice(choices=OverAction.values, default=OverAction.BLOCK)
    fallback_model = _Text(allow_blank=True, default="", max_length=200)

    def to_internal_value(self, data: Any) -> Any:
        # A misspelt field (daly_cap_usd) is refused by name, as ingestion refuses one: never dropped silently.
        if isinstance(data, dict):
            # Only names it does not have: a budget sent back as it was read (with its id) is taken.
            unknown = sorted(key for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({key: ["unknown field: check its spelling"] for key in unknown})
            if "id" in data and (isinstance(data["id"], bool) or not isinstance(data["id"], int)):
                raise serializers.ValidationError({"id": ["a whole number, the id the budget was read with (ignored)"]})
        return super().to_internal_value(data)


def budget_out(budget: CustomerBudget) -> dict[str, Any]:
    return {
        "id": budget.id, "customer_id": budget.customer_id, "feature": budget.feature, "model": budget.model,
        "daily_cap_usd": float(budget.daily_cap_usd) if budget.daily_cap_usd is not None else None,
        "monthly_cap_usd": float(budget.monthly_cap_usd) if budget.monthly_cap_usd is not None else None,
        "thresholds": budget.thresholds, "over_action": budget.over_action, "fallback_model": budget.fallback_model,
    }  # fmt: skip


class BudgetListSerializer(serializers.Serializer):
    results = BudgetSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True, help_text="`cursor` of the next page; null on the last")


class SpendDaySerializer(serializers.Serializer):
    day = serializers.DateField()
    cost_usd = serializers.FloatField()
    traces = serializers.IntegerField()


class CustomerSpendSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    month_usd = serializers.FloatField()
    forecast_usd = serializers.FloatField(
        help_text="to the month's end: spent so far, plus the rest of the month at the average of its full UTC days "
        "(today so far is counted, not extrapolated; on the 1st: today's rate, over at least 6 hours)"
    )
    days = SpendDaySerializer(many=True)
    check = BudgetCheckSerializer()
