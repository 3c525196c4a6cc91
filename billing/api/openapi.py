"""What the budget schema states beyond what its serializer tells drf-spectacular."""

from __future__ import annotations

from typing import Any


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """A budget body holds the serializer's fields and nothing else (the server refuses others by name); the id
    of a budget read back may come with it, and is ignored."""
    budget = result["components"]["schemas"]["BudgetRequest"]
    budget["additionalProperties"] = False
    budget["properties"]["id"] = {"type": "integer", "description": "ignored: a budget sent back as read carries it"}
    return result
