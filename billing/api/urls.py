"""Billing's API: the budget check, budgets and customers' spend (billing.api.views)."""

from billing.api import views

app_name = "billing_api"

urlpatterns = [*views.urlpatterns]
