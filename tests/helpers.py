"""Assertions shared across the suite."""

from __future__ import annotations

from typing import Any


def assert_cross_tenant_404(client: Any, path: str, method: str = "get", leak: str = "", **kwargs: Any) -> None:
    """One line per endpoint: org A's credentials asking for org B's object must get 404, no data.

    ``leak``: a text only the other organization's object holds; it must not appear in the answer.
    """
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == 404, f"{method.upper()} {path} answered {response.status_code}, expected 404"
    if leak:
        assert leak.encode() not in response.content, f"{path} leaked {leak!r}"


def error_code(response: Any) -> str:
    return response.json()["error"]["code"]
