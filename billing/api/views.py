"""Billing's endpoints: the budget check of API.md, budgets, and one customer's LLM spend.

All on tenants.api.base.TenantApi: the organization comes from the secret key, and every
read below filters on it."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.http import QueryDict
from django.urls import URLPattern, path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from billing.api import serializers as s
from billing.models import CustomerBudget
from billing.selectors import budget_check, budget_find, budgets_list, customer_detail
from billing.services.budgets import budget_delete, budget_set
from evaluation.api import paging
from feedback.api.serializers import ErrorSerializer
from tenants.api.base import TenantApi, parameter_names
from tenants.api.errors import ApiError
from tenants.selectors import Organization, organization_get
from tenants.services import ResolvedKey

MAX_ESTIMATE_USD = Decimal("100000")


def _organization(request: Request) -> Organization:
    key: Any = request.auth
    organization = organization_get(key.organization_id)
    assert organization is not None  # the key resolved to it a moment ago
    return organization


def _text(query: QueryDict, name: str, *, required: bool = False, limit: int = 200) -> str:
    value = query.get(name, "")
    if required and not value:
        raise ApiError("invalid_parameter", f"'{name}' is required.", 400, {"field": name})
    if len(value) > limit or "\x00" in value:
        raise ApiError("invalid_parameter", f"'{name}' is at most {limit} characters, with no NUL.", 400,
                       {"field": name})  # fmt: skip
    return value


def _text_schema(limit: int, *, required: bool = False) -> dict[str, Any]:
    # No NUL (PostgreSQL text cannot hold one): stated so generated clients know it.
    return {"type": "string", "maxLength": limit, "minLength": 1 if required else 0, "pattern": "^[^\\x00]*$"}


def _validation(exc: ValidationError) -> ApiError:
    details = exc.message_dict if hasattr(exc, "error_dict") else {"non_field": exc.messages}
    first = next(iter(details.values()))[0]
    return ApiError("invalid", first, 400, details)


BUDGET_CHECK_PARAMETERS = [
    OpenApiParameter(
        "customer_id",
        _text_schema(200, required=True),
        required=True,
        description="your end-customer's ID; an unknown one gets the organization's default budget",
    ),
    OpenApiParameter("feature", _text_schema(100), description="feature key, for budgets narrowed to one"),
    OpenApiParameter("model", _text_schema(200), description="model, for budgets narrowed to one model"),
    OpenApiParameter(
        "estimated_cost_usd",
        {"type": "number", "minimum": 0, "maximum": 100000},
        description="the coming call's estimated cost in USD",
    ),
]


class BudgetCheckApi(TenantApi):
    query_parameters = parameter_names(BUDGET_CHECK_PARAMETERS)

    @extend_schema(
        operation_id="budgets_check",
        summary="May this customer make one more LLM call? (fast: call it before every request)",
        description=(
            "The most restrictive budget that applies (the customer's own, else the organization's default; "
            "per day and per month; optionally per feature and model, applying only when the check names that "
            "feature or model) decides. `estimated_cost_usd` counts the "
            "coming call against what remains. Counters move in the same transaction as traces land: the check "
            "sees every committed trace. Checks reserve nothing: concurrent calls that each fit are all allowed. "
            "Checks have a rate budget of their own (per web process), apart from the key's API budget."
        ),
        parameters=BUDGET_CHECK_PARAMETERS,
        responses={200: s.BudgetCheckSerializer, 400: ErrorSerializer},
        tags=["budgets"],
    )
    def get(self, request: Request) -> Response:
        # The hot path (billing.api.hot) serves this URL ahead of DRF, with the same code.
        key: Any = request.auth
        return Response(budget_check_answer(key, request.query_params))


def budget_check_answer(key: ResolvedKey, query: QueryDict) -> dict[str, Any]:
    """The budget check for an admitted secret key and its query string (both doors use it; each refuses
    parameters the check does not take first: TenantApi's, the hot path's own)."""
    customer_id = _text(query, "customer_id", required=True)
    feature, model = _text(query, "feature", limit=100), _text(query, "model")
    raw = query.get("estimated_cost_usd", "") or "0"
    try:
        estimate = Decimal(raw)
    except (InvalidOperation, ValueError):
        estimate = Decimal("NaN")
    if not estimate.is_finite() or estimate < 0 or estimate > MAX_ESTIMATE_USD or math.isnan(float(estimate)):
        raise ApiError("invalid_parameter", f"'estimated_cost_usd' is a number from 0 to {MAX_ESTIMATE_USD}.",
                       400, {"field": "estimated_cost_usd"})  # fmt: skip
    decision = budget_check(
        organization_id=key.organization_id, schema_name=key.schema_name, customer_id=customer_id,
        feature=feature, model=model, estimated_cost_usd=estimate,
    )  # fmt: skip
    return decision.as_dict()


def _budget_place(budget: CustomerBudget) -> str:
    # The cursor's name for a budget: its id zero-padded, so text order is id order (a stable order that
    # new budgets only extend) and any cursor of the shared pattern is still a place in the list.
    return f"{budget.id:020d}"


class BudgetsApi(TenantApi):
    query_parameters = parameter_names(paging.PARAMETERS)

    @extend_schema(operation_id="budgets_list", summary="Customer budgets (defaults and overrides), oldest first",
                   parameters=paging.PARAMETERS, responses={200: s.BudgetListSerializer, 400: ErrorSerializer},
                   tags=["budgets"])  # fmt: skip
    def get(self, request: Request) -> Response:
        after, limit = paging.page_query(request.query_params)
        budgets = sorted(budgets_list(organization=_organization(request)), key=lambda budget: budget.id)
        rows = [budget for budget in budgets if _budget_place(budget) > after][: limit + 1]
        rows, next_cursor = paging.page_of(rows, [_budget_place(budget) for budget in rows], limit)
        return Response({"results": [s.budget_out(b) for b in rows], "next_cursor": next_cursor})

    @extend_schema(
        operation_id="budgets_set",
        summary="Create or replace the budget of one scope (customer or default, feature, model)",
        request=s.BudgetSerializer,
        responses={200: s.BudgetSerializer, 400: ErrorSerializer},
        tags=["budgets"],
    )
    def post(self, request: Request) -> Response:
        body = s.BudgetSerializer(data=request.data)
        if not body.is_valid():
            raise ApiError("invalid", "The budget is not valid.", 400, body.errors)
        try:
            budget = budget_set(organization=_organization(request), **body.validated_data)
        except ValidationError as exc:
            raise _validation(exc) from exc
        return Response(s.budget_out(budget))


def _budget(request: Request, budget_id: str) -> Any:
    """The organization's budget by id; anything else (another organization's, not a number) is None."""
    if not budget_id.isascii() or not budget_id.isdigit() or len(budget_id) > 18:
        return None
    return budget_find(organization=_organization(request), budget_id=int(budget_id))


class BudgetDetailApi(TenantApi):
    @extend_schema(operation_id="budgets_retrieve", summary="One budget",
                   responses={200: s.BudgetSerializer, 404: ErrorSerializer}, tags=["budgets"])  # fmt: skip
    def get(self, request: Request, budget_id: str) -> Response:
        budget = _budget(request, budget_id)
        if budget is None:
            raise ApiError("not_found", "No such budget.", 404)
        return Response(s.budget_out(budget))

    @extend_schema(operation_id="budgets_delete", summary="Remove a budget",
                   responses={204: None, 404: ErrorSerializer}, tags=["budgets"])  # fmt: skip
    def delete(self, request: Request, budget_id: str) -> Response:
        budget = _budget(request, budget_id)
        if budget is None:
            raise ApiError("not_found", "No such budget.", 404)
        budget_delete(budget=budget)
        return Response(status=204)


class CustomerSpendApi(TenantApi):
    @extend_schema(
        operation_id="customers_spend",
        summary="One customer's LLM spend this month: per day, forecast, and its budget check",
        responses={200: s.CustomerSpendSerializer, 404: ErrorSerializer},
        tags=["budgets"],
    )
    def get(self, request: Request, customer_id: str) -> Response:
        if len(customer_id) > 200 or "\x00" in customer_id:
            raise ApiError("not_found", "No such customer.", 404)
        detail = customer_detail(organization=_organization(request), customer_id=customer_id)
        if detail is None:
            raise ApiError("not_found", "No spend recorded for this customer.", 404)
        return Response({
            "customer_id": detail.customer_id, "month_usd": float(detail.month_usd),
            "forecast_usd": float(detail.forecast_usd),
            "days": [{"day": d, "cost_usd": float(c), "traces": n} for d, c, n in detail.days],
            "check": detail.check.as_dict(),
        })  # fmt: skip


urlpatterns: list[URLPattern] = [
    path("budgets/check", BudgetCheckApi.as_view(), name="api-budget-check"),
    path("budgets", BudgetsApi.as_view(), name="api-budgets"),
    path("budgets/<str:budget_id>", BudgetDetailApi.as_view(), name="api-budget-detail"),
    path("customers/<text:customer_id>/spend", CustomerSpendApi.as_view(), name="api-customer-spend"),
]
