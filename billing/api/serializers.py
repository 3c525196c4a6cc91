"""Output (and budget input) serializers of billing's endpoints: what the OpenAPI schema shows."""

from __future__ import annotations

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
    fallback_model = serializers.CharField(allow_null=True)
    budget = BudgetRefSerializer(allow_null=True, help_text="the budget that decided, null when none applies")


class BudgetSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    customer_id = serializers.CharField(allow_blank=True, default="", max_length=200,
                                        help_text='"" (or absent): the default for every customer')  # fmt: skip
    feature = serializers.CharField(allow_blank=True, default="", max_length=100)
    model = serializers.CharField(allow_blank=True, default="", max_length=200)
    daily_cap_usd = serializers.DecimalField(max_digits=14, decimal_places=4, allow_null=True, default=None,
                                             coerce_to_string=False)  # fmt: skip
    monthly_cap_usd = serializers.DecimalField(max_digits=14, decimal_places=4, allow_null=True, default=None,
                                               coerce_to_string=False)  # fmt: skip
    thresholds = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=100), required=False,
                                       max_length=5, help_text="percents, default [80, 90, 100]")  # fmt: skip
    over_action = serializers.ChoiceField(choices=OverAction.values, default=OverAction.BLOCK)
    fallback_model = serializers.CharField(allow_blank=True, default="", max_length=200)


def budget_out(budget: CustomerBudget) -> dict[str, Any]:
    return {
        "id": budget.id, "customer_id": budget.customer_id, "feature": budget.feature, "model": budget.model,
        "daily_cap_usd": float(budget.daily_cap_usd) if budget.daily_cap_usd is not None else None,
        "monthly_cap_usd": float(budget.monthly_cap_usd) if budget.monthly_cap_usd is not None else None,
        "thresholds": budget.thresholds, "over_action": budget.over_action, "fallback_model": budget.fallback_model,
    }  # fmt: skip


class BudgetListSerializer(serializers.Serializer):
    results = BudgetSerializer(many=True)


class SpendDaySerializer(serializers.Serializer):
    day = serializers.DateField()
    cost_usd = serializers.FloatField()
    traces = serializers.IntegerField()


class CustomerSpendSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    month_usd = serializers.FloatField()
    forecast_usd = serializers.FloatField(help_text="straight-line forecast to the month's end")
    days = SpendDaySerializer(many=True)
    check = BudgetCheckSerializer()
