"""The scores write body's OpenAPI schema, derived from the msgspec type the server validates
with (evaluation.schemas.ScoreIn), plus the rule the type cannot say: value or label, not both."""

from __future__ import annotations

from typing import Any

import msgspec

from evaluation.schemas import ScoreIn
from feedback.api.openapi import NO_NUL, TIMESTAMP_PATTERN
from feedback.schemas import MAX_BATCH
from tenants.api.openapi import openapi_components_register


def _tighten(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_tighten(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {k: _tighten(v) for k, v in schema.items()}
    if schema.get("type") == "string":
        if schema.get("format") == "date-time":
            schema["pattern"] = TIMESTAMP_PATTERN
        elif "pattern" not in schema and "enum" not in schema:
            schema["pattern"] = NO_NUL
    if schema.get("type") == "object" and "properties" in schema:
        schema["additionalProperties"] = False
    schema.pop("title", None)
    return schema


def _components() -> dict[str, dict[str, Any]]:
    _, found = msgspec.json.schema_components([ScoreIn], ref_template="#/components/schemas/{name}")
    score = _tighten(found["ScoreIn"])
    score["description"] = (
        "One external score: `value` (a number) or `label` (binary: pass / fail), not both. Each distinct `name` "
        "is a judge of kind external whose scale is fixed by its first score (0/1 binary, integers 1-5 ordinal, "
        "else continuous); a later score off that scale is refused. Resending a score_id is a duplicate."
    )
    score["oneOf"] = [
        {"required": ["value"], "not": {"required": ["label"]}},
        {"required": ["label"], "not": {"required": ["value"]}},
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
