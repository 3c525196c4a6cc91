"""Template helpers for organization-scoped URLs."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

register = template.Library()


@register.simple_tag(takes_context=True)
def ourl(context: dict[str, Any], name: str, *args: Any) -> str:
    """{% ourl 'traces' %} -> /o/<current org>/traces/"""
    request = context["request"]
    return reverse(name, args=(request.tenant.slug, *args))
