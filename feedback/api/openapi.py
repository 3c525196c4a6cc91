"""The write bodies' OpenAPI schemas, derived from the msgspec types the server validates with.

msgspec gives each field's type, bounds, lengths and enums; this module adds the per-item rules
feedback.schemas checks beyond the types (a thumb is 1 or -1, an outcome names a trace or a
session, timestamps are RFC 3339 from 1970 on), so that what the schema forbids, the server
refuses, and what it allows, the server accepts, bar the rules the descriptions state that no
schema can (a day its month lacks, a time more than a day ahead of the server's clock). Unknown
fields are refused with a 400 naming them (a misspelt `promt_version` must not silently lose the
tie to the prompt version): the schemas say so with `additionalProperties: false`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import msgspec
import msgspec.inspect
from drf_spectacular.utils import OpenApiParameter
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from feedback.enums import EXPLICIT_KINDS, FEEDBACK_KINDS, FeedbackKind
from feedback.otlp import BASE64_PATTERN, DIGITS_PATTERNS
from feedback.schemas import MAX_BATCH, MAX_METADATA_BYTES, FeedbackIn, OutcomeIn, SpanIn, TraceIn
from feedback.selectors import CURSOR_PATTERN, MAX_PAGE_SIZE, PAGE_SIZE
from tenants.api.errors import ApiError
from tenants.api.openapi import openapi_components_register

# RFC 3339 with a zone (any fraction of a second, as msgspec reads them), 1970 to 2099. Offsets stop
# at ±15:59, PostgreSQL's limit, which holds every real zone (-12:00 to +14:00): msgspec reads up to
# ±23:59, but feedback, outcomes, scores and labels hand the time to PostgreSQL as sent, which fails
# past ±15:59. Two rules no pattern can follow are the server's alone, and TIMESTAMP_HELP states them:
# a day its month does not have (2025-02-30), and a time before 1970 in UTC or more than a day ahead
# of the server's clock, are refused per item, naming the field. (The contract tests keep generated
# times inside those rules: tests/contract/hooks.py.)
TIMESTAMP_PATTERN = (
    r"^(19[7-9][0-9]|20[0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
TIMESTAMP_HELP = (
    "RFC 3339 with a zone, e.g. 2025-01-31T12:00:00Z: from 1970-01-01T00:00:00Z to at most a day after "
    "the server's clock, on a day the month has."
)
# PostgreSQL text cannot hold NUL: text with U+0000 is refused with the field named.
NO_NUL = r"^[^\x00]*$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


# Free-form objects (metadata, span attributes): any JSON, but no NUL in keys or text, which
# PostgreSQL's jsonb cannot hold.
JSON_VALUE: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
        },
    ]
}
FREE_OBJECT = {"propertyNames": {"pattern": NO_NUL}, "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}}


def tighten(schema: Any) -> Any:
    """Walk a msgspec schema: timestamps get the accepted range, strings refuse NUL, objects accept extras."""
    if isinstance(schema, list):
        return [tighten(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {k: tighten(v) for k, v in schema.items()}
    options = schema.get("anyOf", [])
    if any(o.get("type") == "integer" for o in options) and any(o.get("type") == "number" for o in options):
        # Token counts: a float is accepted only when whole, which is what JSON Schema's integer means.
        schema["anyOf"] = [o for o in options if o.get("type") != "number"]
    if schema.get("type") == "string":
        if schema.get("format") == "date-time":
            schema.update(pattern=TIMESTAMP_PATTERN, description=TIMESTAMP_HELP)
        elif "pattern" not in schema and "enum" not in schema:
            schema["pattern"] = NO_NUL
    if schema.get("type") == "object" and "properties" in schema:
        schema["additionalProperties"] = False
    elif schema.get("type") == "object":
        schema.update(FREE_OBJECT)
    schema.pop("title", None)
    return schema


def _timestamp_fields(struct: type[msgspec.Struct]) -> list[str]:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    found = []
    for field in info.fields:
        options = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        if any(isinstance(option, msgspec.inspect.DateTimeType) for option in options):
            found.append(field.name)
    return found


def struct_components(*structs: type[msgspec.Struct]) -> dict[str, dict[str, Any]]:
    """OpenAPI components for msgspec wire types, as strict as the server: any app's write bodies."""
    _, found = msgspec.json.schema_components(structs, ref_template="#/components/schemas/{name}")
    components = {name: tighten(schema) for name, schema in found.items()}
    for struct in structs:
        for name in _timestamp_fields(struct):
            for option in components[struct.__name__]["properties"][name]["anyOf"]:
                if option.get("type") == "string":
                    option.update(format="date-time", pattern=TIMESTAMP_PATTERN, description=TIMESTAMP_HELP)
    return components


def _components() -> dict[str, dict[str, Any]]:
    components = struct_components(TraceIn, SpanIn, FeedbackIn, OutcomeIn)
    components["JsonValue"] = JSON_VALUE
    components["TraceIn"]["description"] = (
        f"One trace. `metadata` is at most {MAX_METADATA_BYTES // 1024} KB once encoded; a span ends "
        "no earlier than it starts. Resending a trace_id merges: later non-null fields win."
    )
    components["TraceIn"]["properties"]["metadata"]["description"] = 'Free-form, filterable, e.g. {"auth": "sso"}.'
    components["OutcomeIn"]["anyOf"] = [
        {"required": ["trace_id"], "properties": {"trace_id": {"type": "string", "minLength": 1}}},
        {"required": ["session_id"], "properties": {"session_id": {"type": "string", "minLength": 1}}},
    ]
    components["OutcomeIn"]["description"] = "A business outcome tied to a trace, a session, or both."
    components["FeedbackIn"] = _feedback_by_kind(components.pop("FeedbackIn"))
    for name in ("TraceIn", "FeedbackIn", "OutcomeIn"):
        components[f"{name}Body"] = _one_or_batch(name)
    components["WidgetBody"] = {
        "type": "object",
        "required": ["key", "events"],
        "properties": {
            "key": {"type": "string", "description": "The public key, pk_...", "pattern": NO_NUL},
            "events": {"type": "array", "maxItems": MAX_BATCH, "items": {"$ref": "#/components/schemas/FeedbackIn"}},
        },
        "additionalProperties": True,
    }
    components.update(OTLP_COMPONENTS)
    return components


def _feedback_by_kind(base: dict[str, Any]) -> dict[str, Any]:
    """One variant per kind, so that each kind's rules (check_feedback) are in the schema."""
    base["properties"]["event_id"] = {
        "type": "string",
        "format": "uuid",
        "pattern": UUID_PATTERN,
        "description": "Idempotency key: a UUID.",
    }
    value = base["properties"]["value"]
    number = next(option for option in value["anyOf"] if option.get("type") == "number")
    nonblank = {"type": "string", "maxLength": 20_000, "pattern": r"^[^\x00]*[^\x00\s][^\x00]*$"}
    rules: dict[str, tuple[list[str], dict[str, Any]]] = {
        FeedbackKind.THUMB: (["value"], {"value": {"enum": [1, -1]}}),
        FeedbackKind.RATING: (["value"], {"value": {"type": "number", "minimum": 1, "maximum": 5}}),
        FeedbackKind.DWELL: (["value"], {"value": {**number, "minimum": 0}}),
        FeedbackKind.EDIT: (
            ["original_text", "edited_text"],
            {
                "original_text": base["properties"]["original_text"]["anyOf"][0],
                "edited_text": base["properties"]["edited_text"]["anyOf"][0],
            },
        ),  # fmt: skip
        FeedbackKind.COMMENT: (["comment"], {"comment": nonblank}),
        FeedbackKind.CUSTOM: (["name"], {"name": {**base["properties"]["name"]["anyOf"][0], "minLength": 1}}),
    }
    variants = []
    ruled = set(rules)
    for kind, (required, fields) in rules.items():
        variant = copy.deepcopy(base)
        variant["properties"].update(fields)
        variant["properties"]["kind"] = {"enum": [str(kind)]}
        variant["required"] = [*base["required"], *required]
        variants.append(variant)
    free = copy.deepcopy(base)
    free["properties"]["kind"] = {"enum": [k for k in FEEDBACK_KINDS if k not in ruled]}
    variants.append(free)
    return {
        "description": "A feedback event. Explicit kinds: "
        + ", ".join(sorted(EXPLICIT_KINDS))
        + "; the rest are implicit signals. Each kind's required fields and values are in its variant.",
        "oneOf": variants,
    }


def _one_or_batch(name: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{name}"}
    return {
        "description": f'One item, or {{"batch": [...]}} of at most {MAX_BATCH:,} items.',
        "oneOf": [
            ref,
            {
                "type": "object",
                "required": ["batch"],
                "properties": {"batch": {"type": "array", "maxItems": MAX_BATCH, "items": ref}},
                # An item's fields beside a batch are refused (feedback.schemas.split_body): neither
                # reading would keep all that was sent.
                "additionalProperties": False,
            },
        ],
    }


# OTLP/HTTP JSON, generated from opentelemetry-proto's own descriptors (ExportTraceServiceRequest
# and everything it holds), as the protobuf JSON mapping reads it: messages are objects (null is
# an empty message), repeated fields lists of objects, 64-bit integers numbers or digit strings,
# bytes base64 (ids also as hex), enums names or numbers; unknown fields are ignored.
_INT32, _UINT32, _INT64, _UINT64 = (
    {"type": "string", "pattern": DIGITS_PATTERNS[cpp_type]}
    for cpp_type in (
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_UINT32,
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_UINT64,
    )
)
_NON_FINITE = {"enum": ["NaN", "Infinity", "-Infinity"]}


def _whole(low: int, high: int, digits: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [{"type": "integer", "minimum": low, "maximum": high}, digits]}


_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_DOUBLE: {"anyOf": [{"type": "number"}, _NON_FINITE]},
    FieldDescriptor.TYPE_FLOAT: {"anyOf": [{"type": "number", "minimum": -3.4e38, "maximum": 3.4e38}, _NON_FINITE]},
    FieldDescriptor.TYPE_INT32: _whole(-(2**31), 2**31 - 1, _INT32),
    FieldDescriptor.TYPE_UINT32: _whole(0, 2**32 - 1, _UINT32),
    FieldDescriptor.TYPE_FIXED32: _whole(0, 2**32 - 1, _UINT32),
    FieldDescriptor.TYPE_INT64: _whole(-(2**63), 2**63 - 1, _INT64),
    FieldDescriptor.TYPE_SINT64: _whole(-(2**63), 2**63 - 1, _INT64),
    FieldDescriptor.TYPE_SFIXED64: _whole(-(2**63), 2**63 - 1, _INT64),
    FieldDescriptor.TYPE_UINT64: _whole(0, 2**64 - 1, _UINT64),
    FieldDescriptor.TYPE_FIXED64: _whole(0, 2**64 - 1, _UINT64),
    FieldDescriptor.TYPE_BYTES: {"type": "string", "pattern": BASE64_PATTERN},
}
# A span's ids: 16 and 8 bytes, not all zero, in hex (as OTLP/JSON writes them) or base64. Any string is taken:
# a span whose ids are not is refused alone in partialSuccess, the rest of the export kept (not the body's 400).
_SPAN_IDS = {
    "traceId": "16 bytes, not all zero: 32 hex digits or base64. A span without is refused in partialSuccess.",
    "spanId": "8 bytes, not all zero: 16 hex digits or base64. A span without is refused in partialSuccess.",
    "parentSpanId": "8 bytes (16 hex digits or base64), or empty for a root span; a span whose parentSpanId is "
    "neither is refused in partialSuccess.",
}


def _otlp_components(descriptor: Descriptor, found: dict[str, dict[str, Any]]) -> str:
    name = "Otlp" + descriptor.name
    if name in found:
        return name
    properties: dict[str, Any] = {}
    found[name] = {"type": "object", "properties": properties, "additionalProperties": True}
    for field in descriptor.fields:
        if field.message_type is not None:
            item: dict[str, Any] = {"$ref": f"#/components/schemas/{_otlp_components(field.message_type, found)}"}
        elif field.enum_type is not None:
            values = field.enum_type.values
            # A name (the parser ignores names it does not know) or a number.
            item = {
                "anyOf": [{"type": "string"}, _SCALARS[FieldDescriptor.TYPE_INT32]],
                "description": ", ".join(v.name for v in values),
            }
        elif descriptor.full_name == "opentelemetry.proto.trace.v1.Span" and field.json_name in _SPAN_IDS:
            item = {"type": "string", "description": _SPAN_IDS[field.json_name]}
        else:
            item = dict(_SCALARS[field.type])
        if field.label == FieldDescriptor.LABEL_REPEATED:
            properties[field.json_name] = {"type": ["array", "null"], "items": item}
        else:
            properties[field.json_name] = {"anyOf": [item, {"type": "null"}]}
    for oneof in descriptor.oneofs:
        # At most one member of a oneof (AnyValue's stringValue, intValue, ...) may be present.
        members = [f.json_name for f in oneof.fields]
        present = {"not": {"type": "null"}}
        pairs = [
            {"required": [a, b], "properties": {a: present, b: present}}
            for i, a in enumerate(members)
            for b in members[i + 1 :]
        ]
        if pairs:
            found[name]["not"] = {"anyOf": pairs}
    return name


def _otlp() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    request = _otlp_components(ExportTraceServiceRequest.DESCRIPTOR, found)
    found["OtlpTracesRequest"] = {
        "description": "An ExportTraceServiceRequest in OTLP/JSON: resourceSpans > scopeSpans > spans.",
        "allOf": [{"$ref": f"#/components/schemas/{request}"}],
    }
    found["OtlpTracesResponse"] = {
        "type": "object",
        "description": "ExportTraceServiceResponse: empty when every span was stored, else partialSuccess.",
        "properties": {
            "partialSuccess": {
                "type": "object",
                "properties": {
                    "rejectedSpans": {"type": "string", "pattern": "^[0-9]+$", "description": "int64 as a string"},
                    "errorMessage": {"type": "string"},
                },
            }
        },
    }
    logs = _otlp_components(ExportLogsServiceRequest.DESCRIPTOR, found)
    found["OtlpLogsRequest"] = {
        "description": "An ExportLogsServiceRequest in OTLP/JSON: resourceLogs > scopeLogs > logRecords. GenAI "
        "events (gen_ai.user.message, gen_ai.choice, ...) are kept and joined to their trace by traceId; other "
        "records, and records without a 16-byte traceId, are refused in partialSuccess.",
        "allOf": [{"$ref": f"#/components/schemas/{logs}"}],
    }
    found["OtlpLogsResponse"] = {
        "type": "object",
        "description": "ExportLogsServiceResponse: empty when every record was kept, else partialSuccess.",
        "properties": {
            "partialSuccess": {
                "type": "object",
                "properties": {
                    "rejectedLogRecords": {"type": "string", "pattern": "^[0-9]+$", "description": "int64 as a string"},
                    "errorMessage": {"type": "string"},
                },
            }
        },
    }
    return found


OTLP_COMPONENTS = _otlp()

COMPONENTS = _components()
openapi_components_register(COMPONENTS)


def body(name: str) -> dict[str, str]:
    """A request body schema for extend_schema: a reference to one of the components above."""
    if name not in COMPONENTS:
        raise KeyError(name)
    return {"$ref": f"#/components/schemas/{name}"}


# --- GET /api/v1/traces: its query, validated as the schema states it ----------------------------

# A day, or a day and a time with an optional zone (no zone means UTC): any offset ISO 8601 allows (to
# ±23:59; Kiribati is +14:00), as every reader converts the time to UTC before PostgreSQL sees it (it
# refuses offsets past ±15:59). Days 29-31 are left to the parser, which answers 400 naming the parameter
# for a day its month does not have (2025-02-30).
WHEN_PATTERN = (
    r"^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?$"
)
LIMIT_PATTERN = r"^[0-9]{1,3}$"
_TEXT_FILTERS = ("feature", "prompt_version", "customer_id", "variant", "model")
EXCLUDE_VARIANT = "exclude_variant"


_QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    **{name: {"type": "string", "maxLength": 200, "pattern": NO_NUL} for name in _TEXT_FILTERS},
    "since": {"type": "string", "pattern": WHEN_PATTERN},
    "until": {"type": "string", "pattern": WHEN_PATTERN},
    # Empty means the first page.
    "cursor": {"type": "string", "pattern": "^(" + CURSOR_PATTERN.strip("^$") + ")?$"},
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
    "has_thumbs_down": {"type": "boolean"},
    "has_edit": {"type": "boolean"},
}


def _parameter(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, _QUERY_SCHEMAS[name], required=False, description=description)


TRACE_LIST_PARAMETERS: list[OpenApiParameter] = [
    *(_parameter(name, f"Only traces with this {name}.") for name in _TEXT_FILTERS),
    _parameter(
        "since",
        "From this time on (a day or ISO 8601; UTC when no zone). At or after `until`, no trace is "
        "in the window: an empty page (a list filter; the reports, which need a window, answer 400).",
    ),
    _parameter(
        "until", "Before this time (a day or ISO 8601; UTC when no zone): exclusive, a day means its midnight UTC."
    ),
    _parameter("cursor", "`next_cursor` of the previous page."),
    _parameter("limit", f"Page size, 1 to {MAX_PAGE_SIZE} (default {PAGE_SIZE})."),
    _parameter(
        "has_thumbs_down",
        "true: only traces with at least one thumbs-down (a `thumb` event of value -1). "
        "false, or absent: no filter (traces with and without one).",
    ),
    _parameter(
        "has_edit",
        "true: only traces with at least one `edit` event (a user changed the AI output). "
        "false, or absent: no filter (traces with and without one).",
    ),
    OpenApiParameter(
        EXCLUDE_VARIANT,
        {"type": "array", "items": {"type": "string", "maxLength": 200, "pattern": NO_NUL}},
        required=False,
        explode=True,
        description="Leave out traces of this variant; repeat it for several (`exclude_variant=holdback`: the AI "
        "path alone, as the reports count it when the feature runs a holdback arm).",
    ),
    OpenApiParameter(
        "metadata.<key>",
        {"type": "string", "maxLength": 200, "pattern": NO_NUL},
        required=False,
        description="Metadata filter: e.g. `metadata.auth=sso` (any key; an empty value is no filter, as for "
        "the other text filters).",
    ),
]


def trace_list_query(query: Any) -> dict[str, Any]:
    """The list query as the schema states it; anything else is a 400 naming the parameter."""
    clean: dict[str, Any] = {}
    excluded = list(query.getlist(EXCLUDE_VARIANT)) if hasattr(query, "getlist") else []
    if any(len(value) > 200 or "\x00" in value for value in excluded):
        raise ApiError("invalid_filter", f"{EXCLUDE_VARIANT}: at most 200 characters, no NUL", 400,
                       {"field": EXCLUDE_VARIANT})  # fmt: skip
    if excluded:
        clean[EXCLUDE_VARIANT] = excluded
    for name, value in query.items():
        if name == EXCLUDE_VARIANT:
            continue
        schema = _QUERY_SCHEMAS.get(name)
        if schema is None:
            if name.startswith("metadata."):
                if name == "metadata.":  # a key left out is a mistake, not "any key"
                    raise ApiError("invalid_filter", "metadata.<key>: name the key, e.g. metadata.auth=sso", 400,
                                   {"field": name})  # fmt: skip
                if "\x00" in name + value or len(value) > 200:
                    raise ApiError("invalid_filter", f"{name}: at most 200 characters, no NUL", 400, {"field": name})
                clean[name] = value
            continue
        if name == "limit" and value == "":
            continue  # no page size given: the default, as every other list reads an empty limit (and cursor)
        ok = True
        if schema["type"] == "boolean":
            ok = value in ("true", "false")
            value = "1" if value == "true" else ""
        elif schema["type"] == "integer":
            ok = re.fullmatch(LIMIT_PATTERN, value) is not None and schema["minimum"] <= int(value) <= schema["maximum"]
        else:
            ok = len(value) <= schema.get("maxLength", 10_000) and re.fullmatch(schema["pattern"], value) is not None
        if not ok:
            raise ApiError("invalid_filter", f"{name}: {_QUERY_HELP[name]}", 400, {"field": name})
        clean[name] = value
    return clean


_QUERY_HELP = {
    **{name: "at most 200 characters, no NUL" for name in _TEXT_FILTERS},
    "since": "a day (2025-01-31) or an ISO 8601 time (2025-01-31T12:00:00Z)",
    "until": "a day (2025-01-31) or an ISO 8601 time (2025-01-31T12:00:00Z)",
    "cursor": "not a cursor this API gave out",
    "limit": f"a whole number from 1 to {MAX_PAGE_SIZE}",
    "has_thumbs_down": "true or false",
    "has_edit": "true or false",
}
