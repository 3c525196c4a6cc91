"""Billing's portal pages, under /o/<org>/: plan and cap (settings), customers' spend, budgets, features."""

from billing.portal import views

app_name = "billing"

urlpatterns = [*views.urlpatterns]
