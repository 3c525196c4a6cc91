"""The budget check's hot path (tenants.hotpath): called before every LLM request, so it is
served without the middleware stack and DRF, admitted as BudgetCheckApi would admit it (a secret
key, its rate) and answered by the same code (billing.api.views.budget_check_answer)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from billing.api.views import BudgetCheckApi, budget_check_answer
from tenants.api.base import refuse_unknown_parameters
from tenants.hotpath import bearer_token, guarded, hot_path, json_response
from tenants.services import secret_key_admit

BUDGET_CHECK_PATH = "/api/v1/budgets/check"


@hot_path("GET", BUDGET_CHECK_PATH)
def budget_check(request: HttpRequest) -> HttpResponse:
    def answer() -> HttpResponse:
        key = secret_key_admit(raw_key=bearer_token(request), budget_check=True)
        refuse_unknown_parameters(request.GET, BudgetCheckApi.query_parameters)  # as TenantApi.initial does
        return json_response(budget_check_answer(key, request.GET))

    response = guarded(answer, "the budget check")
    if response.status_code == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response
