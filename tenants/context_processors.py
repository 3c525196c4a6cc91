from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def organization(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    orgs = list(user.organizations()) if user is not None and user.is_authenticated else []
    return {
        "organization": getattr(request, "tenant", None),
        "membership": getattr(request, "membership", None),
        "my_organizations": orgs,
    }
