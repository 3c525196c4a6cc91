"""Portal pages of evaluation's reports."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
