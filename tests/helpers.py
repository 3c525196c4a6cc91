"""Assertions shared across the suite."""

from __future__ import annotations

from typing import Any


def assert_cross_tenant_404(client: Any, path: str, method: str = "get", **kwargs: Any) -> None:
    """One line per endpoint: org A's credentials asking for org B's object must get 404, no data."""
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == 404, f"{method.upper()} {path} answered {response.status_code}, expected 404"
    body = response.content if hasattr(response, "content") else b""
    assert b"org-beta" not in body.lower() or b"not found" in body.lower()


def error_code(response: Any) -> str:
    return response.json()["error"]["code"]
