"""Portal pages of evaluation's judges."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
