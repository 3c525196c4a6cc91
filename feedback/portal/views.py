from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse


def overview(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(request, "feedback/overview.html", {"nav": "overview"})


def trace_list(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(request, "feedback/trace_list.html", {"nav": "traces"})
