"""The scores and labels write bodies' OpenAPI schemas, derived from the msgspec types the server
validates with (evaluation.schemas.ScoreIn, LabelIn), plus the rules the types cannot say: value or
label (scores) / value or category (labels), not both; an enriched design names its inclusion
probability."""

from __future__ import annotations

from typing import Any

from evaluation.schemas import LabelIn, ScoreIn
from feedback.api.openapi import struct_components
from feedback.schemas import MAX_BATCH
from tenants.api.openapi import openapi_components_register


def _components() -> dict[str, dict[str, Any]]:
    score = struct_components(ScoreIn)["ScoreIn"]
    score["description"] = (
        "One external score: `value` (a number) or `label` (binary: pass / fail), not both. Each distinct `name` "
        "is a judge of kind external whose scale is fixed by its first score (0/1 binary, integers 1-5 ordinal, "
        "else continuous); a later score off that scale is refused. Resending a score_id is a duplicate, and so "
        "is a second score for a trace the same judge name and `judge_version` already scored (one score per "
        "trace and judge version: send a new `judge_version` to score again)."
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
    return {"ScoreIn": score, "ScoreInBody": body, **_label_components()}


def _exactly_one(*names: str) -> list[dict[str, Any]]:
    """Exactly one of these nullable properties given (non-null): one alternative per name."""
    given = {"not": {"type": "null"}}

    def present(name: str) -> dict[str, Any]:
        return {"required": [name], "properties": {name: given}}

    return [{**present(name), "not": {"anyOf": [present(other) for other in names if other != name]}} for name in names]


def _label_components() -> dict[str, dict[str, Any]]:
    parts = struct_components(LabelIn)
    label, sampling = parts["LabelIn"], parts["SamplingIn"]
    label["description"] = (
        "One human label under a rubric: exactly one of `value` (binary 1 good / 0 bad, ordinal 1-5, "
        "continuous 0-1), `category` (categorical rubrics) or `text` (free-text rubrics). A rubric is created on "
        "first sight as version 1 with the label's scale (`scale`, else `category` categorical, `text` free text, "
        "0/1 binary, integers 1-5 ordinal, else continuous); later labels must fit "
        "it. `rubric_version` defaults to the latest. Resending a label_id is a duplicate."
    )
    label["oneOf"] = _exactly_one("value", "category", "text")
    sampling["description"] = (
        "How the labelled item was selected; `manual` when absent. Stratified and active designs need "
        "`inclusion_probability` (0 < p <= 1)."
    )
    sampling["anyOf"] = [
        {"not": {"required": ["design"]}},
        {"required": ["design"], "properties": {"design": {"enum": ["uniform", "manual"]}}},
        {"required": ["inclusion_probability"], "properties": {"inclusion_probability": {"type": "number"}}},
    ]
    ref = {"$ref": "#/components/schemas/LabelIn"}
    body = {
        "description": f'One label, or {{"batch": [...]}} of at most {MAX_BATCH:,} labels.',
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
    return {"LabelIn": label, "SamplingIn": sampling, "LabelInBody": body}


COMPONENTS = _components()
openapi_components_register(COMPONENTS)


def body(name: str) -> dict[str, str]:
    if name not in COMPONENTS:
        raise KeyError(name)
    return {"$ref": f"#/components/schemas/{name}"}
