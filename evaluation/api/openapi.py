"""The scores write body's OpenAPI schema, derived from the msgspec type the server validates
with (evaluation.schemas.ScoreIn), plus the rule the type cannot say: value or label, not both."""

from __future__ import annotations

from typing import Any

from evaluation.schemas import ScoreIn
from feedback.api.openapi import struct_components
from feedback.schemas import MAX_BATCH
from tenants.api.openapi import openapi_components_register


def _components() -> dict[str, dict[str, Any]]:
    score = struct_components(ScoreIn)["ScoreIn"]
    score["description"] = (
        "One external score: `value` (a number) or `label` (binary: pass / fail), not both. Each distinct `name` "
        "is a judge of kind external whose scale is fixed by its first score (0/1 binary, integers 1-5 ordinal, "
        "else continuous); a later score off that scale is refused. Resending a score_id is a duplicate."
    )
    given = {"not": {"type": "null"}}
    absent = {"not": {"required": ["value"]}}
    score["oneOf"] = [
        {"required": ["value"], "properties": {"value": given, "label": {"type": "null"}}},
        {"required": ["value"], "properties": {"value": given}, "not": {"required": ["label"]}},
        {"required": ["label"], "properties": {"label": given, "value": {"type": "null"}}},
        {"required": ["label"], "properties": {"label": given}, **absent},
    ]
    ref = {"$ref": "#/components/schemas/ScoreIn"}
    body = {
        "description": f'One score, or {{"batch": [...]}} of at most {MAX_BATCH:,} scores.',
        "oneOf": [
            ref,
            {
                "type": "object",
                "required": ["batch"],
                "properties": {"batch": {"type": "array", "maxItems": MAX_BATCH, "items": ref}},
                "additionalProperties": True,
            },
        ],
    }
    return {"ScoreIn": score, "ScoreInBody": body}


COMPONENTS = _components()
openapi_components_register(COMPONENTS)


def body(name: str) -> dict[str, str]:
    if name not in COMPONENTS:
        raise KeyError(name)
    return {"$ref": f"#/components/schemas/{name}"}
