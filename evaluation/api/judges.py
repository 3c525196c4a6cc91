"""Endpoints of evaluation's judges (views on tenants.api.base.TenantApi)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
