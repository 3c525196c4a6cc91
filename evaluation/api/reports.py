"""Endpoints of evaluation's reports (views on tenants.api.base.TenantApi)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
