"""OTLP/HTTP trace export -> Candor trace dicts.

Pure Python (no Django): turns the body of an OTLP/HTTP ``ExportTraceServiceRequest``
(protobuf or OTLP-JSON) into a list of dicts shaped exactly like the items of
``POST /api/v1/traces`` (see shared/API.md), so the OTLP endpoint can hand them to the
same ingestion service as the REST API (``otlp_parse``). The endpoint itself takes each
trace's spans apart as records (``otlp_map``), and stores them as span rows directly.

Mapping rules, in short:

* all spans sharing an OTLP trace id form one Candor trace; its ``trace_id`` is the
  ``candor.trace_id`` attribute when a span carries one, else the 32-hex OTLP id;
* the root span (no parent, else parent not in the batch, else earliest) gives
  ``started_at`` and ``latency_ms``;
* GenAI semantic conventions (current and older attribute names) give model, provider,
  tokens and input/output text; ``candor.*`` attributes (span or resource) give the
  Candor fields; ``service.name`` is the fallback feature key;
* keys whose value would be ``None`` are left out of trace dicts, because a trace sent
  twice is merged and a missing key must not null out what an earlier export set.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
import re
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeVar

import msgspec
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from feedback.enums import SpanKind, TraceStatus
from feedback.schemas import FEATURE_KEY_CHARS, FEATURE_KEY_PATTERN, MAX_FEATURE_KEY, MAX_ID, MAX_SPAN_NAME, MAX_TEXT

Row = TypeVar("Row", bound=tuple[Any, ...])

__all__ = [
    "FEATURE_GUESSED",
    "JSON_CONTENT_TYPES",
    "MARKS",
    "PROTOBUF_CONTENT_TYPES",
    "ROOT_MISSING",
    "MappedSpan",
    "OtlpBadSpan",
    "OtlpError",
    "OtlpMediaType",
    "otlp_map",
    "otlp_parse",
    "otlp_response",
    "span_dict",
]

# Keys of a mapped trace that are no traces API field (the OTLP endpoint takes them out): what one export could not
# tell of its trace, so that it does not overwrite what another export of the trace told. FEATURE_GUESSED: no span
# named candor.feature, the feature is the service's name; ROOT_MISSING: every span has a parent (a child exported
# apart from its root), so the start, latency and status are not the root's.
FEATURE_GUESSED: Final = "feature_guessed"
ROOT_MISSING: Final = "root_missing"
MARKS: Final = (FEATURE_GUESSED, ROOT_MISSING)
PROTOBUF_CONTENT_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
JSON_CONTENT_TYPES = frozenset({"application/json"})

# Guard against gzip bombs when a client compresses without a Content-Encoding header.
MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
# Limits of the traces API (feedback/schemas.py): instrumentation cannot be told to
# respect them, so long texts are clipped here rather than the whole trace rejected; the
# clip is recorded in metadata.candor_clipped and reported in the OTLP answer.
MAX_TEXT_CHARS = MAX_TEXT
MAX_SPAN_NAME_CHARS = MAX_SPAN_NAME
MAX_FEATURE_CHARS = MAX_FEATURE_KEY

_STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
_STATUS_NAMES = {1: "OK", 2: "ERROR"}
_SPAN_KIND_NAMES = {
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}

# Attribute names, current semconv first, older names after.
_MODEL_KEYS = ("gen_ai.request.model", "gen_ai.response.model", "llm.model_name")
_PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
_INPUT_TOKEN_KEYS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
)
_OUTPUT_TOKEN_KEYS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
)
# Public: the OTLP service sums cached tokens again from stored spans' attributes under these keys.
CACHED_TOKEN_KEYS: Final = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.input_tokens.cached",
    "gen_ai.usage.cached_tokens",
)
_SPAN_COST_KEYS = ("candor.cost_usd", "gen_ai.usage.cost")
_INPUT_MESSAGE_KEYS = ("gen_ai.input.messages", "gen_ai.prompt")
_OUTPUT_MESSAGE_KEYS = ("gen_ai.output.messages", "gen_ai.completion")
_INDEXED_MESSAGE = re.compile(r"^gen_ai\.(prompt|completion)\.(\d+)\.(content|role)$")
# OpenInference: llm.input_messages.0.message.role / .content, llm.output_messages.0.message.content.
_OPENINFERENCE_MESSAGE = re.compile(r"^llm\.(input|output)_messages\.(\d+)\.message\.(content|role)$")
_OPENINFERENCE_SIDE = {"input": "prompt", "output": "completion"}
_INPUT_EVENTS = frozenset({"gen_ai.user.message", "gen_ai.content.prompt"})
_OUTPUT_EVENTS = frozenset({"gen_ai.choice", "gen_ai.assistant.message", "gen_ai.content.completion"})

# Normalise semconv provider ids to the short names Candor's price table uses.
_PROVIDER_ALIASES = {
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "gemini": "google",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
}

# Trace-level string fields: (candor key, standard fallbacks consulted only after it).
_STRING_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "prompt_version": (("candor.prompt_version",), ()),
    "prompt_hash": (("candor.prompt_hash",), ()),
    "prompt": (("candor.prompt",), ()),
    "customer_id": (("candor.customer_id",), ()),
    "user_id": (("candor.user_id",), ("user.id", "enduser.id")),
    "session_id": (("candor.session_id",), ("session.id", "gen_ai.conversation.id")),
    "experiment": (("candor.experiment",), ()),
    "variant": (("candor.variant",), ()),
}
_HEX_ID = re.compile(r"^[0-9a-fA-F]*$")
# Enum values as plain str: reading an enum member is a Python call, even compiled.
_LLM: Final[str] = SpanKind.LLM.value
_RETRIEVAL: Final[str] = SpanKind.RETRIEVAL.value
_TOOL: Final[str] = SpanKind.TOOL.value
_OTHER: Final[str] = SpanKind.OTHER.value
_TRACE_OK: Final[str] = TraceStatus.OK.value
_TRACE_ERROR: Final[str] = TraceStatus.ERROR.value


class OtlpError(ValueError):
    """The body cannot be read as an OTLP trace export request."""


class OtlpTooLarge(OtlpError):
    """The body inflates past the size limit (a gzip bomb, or simply too big a batch)."""


class OtlpMediaType(OtlpError):
    """A Content-Type OTLP/HTTP does not define (its spec: answer 415 Unsupported Media Type)."""


class OtlpBadSpan(OtlpError):
    """One span cannot be read (an ID of the wrong length, or all zeros): refused alone where the caller collects
    refusals (``otlp_map``'s ``refused``), the whole body otherwise."""


# The mapping's own records are plain classes (not dataclasses, NamedTuples or enums): compiled, their
# construction and reads are native, where a dataclass's __init__, a NamedTuple's __new__ and an enum
# member's lookup stay Python calls (~25% of the compiled mapping's time, profiled in the server).
class _Span:
    __slots__ = ("trace_id", "span_id", "parent_span_id", "name", "kind", "start_ns", "end_ns", "attrs", "events",
                 "status_code", "status_message", "resource", "scope")  # fmt: skip

    def __init__(
        self,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None,
        name: str,
        kind: int,
        start_ns: int,
        end_ns: int,
        attrs: dict[str, Any],
        events: list[tuple[str, dict[str, Any]]],
        status_code: int,
        status_message: str,
        resource: dict[str, Any],
        scope: str,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.name = name
        self.kind = kind
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.attrs = attrs
        self.events = events
        self.status_code = status_code
        self.status_message = status_message
        self.resource = resource
        self.scope = scope


# --------------------------------------------------------------------------- decoding


def otlp_parse(body: bytes, content_type: str, max_bytes: int = MAX_DECOMPRESSED_BYTES) -> list[dict[str, Any]]:
    """Map an OTLP/HTTP traces export body onto Candor trace dicts.

    ``content_type`` is the request's Content-Type header (parameters such as
    ``charset`` are ignored). Gzip bodies are inflated even without a
    Content-Encoding header. Raises :class:`OtlpError` for an unsupported content
    type, an undecodable body or spans with invalid ids, :class:`OtlpTooLarge` for a
    body that inflates past ``max_bytes``. An empty request gives ``[]``.
    """
    mapped = otlp_map(body, content_type, max_bytes)
    return [
        {**{k: v for k, v in trace.items() if k not in MARKS}, "spans": [span_dict(span) for span in spans]}
        for trace, spans in mapped
    ]


def otlp_map(
    body: bytes,
    content_type: str,
    max_bytes: int = MAX_DECOMPRESSED_BYTES,
    refused: list[str] | None = None,
    *,
    native: bool = True,
) -> list[tuple[dict[str, Any], list[MappedSpan]]]:
    """``otlp_parse`` with each trace's spans apart, as :class:`MappedSpan` records rather than dicts:
    what the OTLP endpoint stores (its spans go straight to span rows, not through JSON). A trace whose feature
    is its service's name holds ``FEATURE_GUESSED``: True; one whose spans all have a parent, ``ROOT_MISSING``: True.

    ``refused``: where a span whose IDs cannot be read is said (and the span left out), rather than the whole
    body refused (OtlpError): the rest of the export is kept."""
    request, validated = _decode(body, content_type, max_bytes, refused)
    if validated is not None and native and _native is not None:
        mapped: list[tuple[dict[str, Any], list[MappedSpan]]] | None = _native.map(validated, _NATIVE_CONFIG)
        if mapped is not None:  # else something the C reading leaves to this one (it says why, if anything)
            return mapped
    # A protobuf body upb has accepted is read again straight from its bytes (_wire_spans): the same
    # spans, without a Python object per field read through upb's message API.
    spans = _wire_spans(validated, refused) if validated is not None else list(_iter_spans(request, refused))
    groups: dict[str, list[_Span]] = {}
    for span in spans:
        groups.setdefault(span.trace_id, []).append(span)
    built = [_build_trace(otel_id, group) for otel_id, group in groups.items()]
    # Stable order: by root start time, then by trace id.
    built.sort(key=lambda built_trace: (built_trace.root_start_ns, built_trace.trace["trace_id"]))
    return [(built_trace.trace, built_trace.spans) for built_trace in built]


def otlp_response(content_type: str, rejected_spans: int = 0, error_message: str = "") -> tuple[bytes, str]:
    """Body and Content-Type of the OTLP/HTTP success answer, in the request's encoding.

    The OTLP spec answers HTTP 200 with an ``ExportTraceServiceResponse``; when some
    spans were refused it carries ``partial_success`` (count and reason) instead of a
    non-2xx status, which exporters would retry or drop wholesale.
    """
    response = ExportTraceServiceResponse()
    if rejected_spans or error_message:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected_spans, error_message=error_message)
        )
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in JSON_CONTENT_TYPES:
        return json.dumps(json_format.MessageToDict(response)).encode(), "application/json"
    return response.SerializeToString(), "application/x-protobuf"


def _decode(
    body: bytes, content_type: str, max_bytes: int, refused: list[str] | None = None
) -> tuple[ExportTraceServiceRequest, bytes | None]:
    """The request, and for a protobuf body its (inflated) bytes, which upb has accepted."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in PROTOBUF_CONTENT_TYPES and media_type not in JSON_CONTENT_TYPES:
        raise OtlpMediaType(
            f"unsupported content type {content_type!r}: send application/x-protobuf or application/json"
        )
    if not isinstance(body, bytes | bytearray | memoryview):
        raise OtlpError("body must be bytes")
    body = inflate(bytes(body), max_bytes)
    request = ExportTraceServiceRequest()
    if media_type in PROTOBUF_CONTENT_TYPES:
        try:
            request.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise OtlpError(f"body is not a valid OTLP protobuf ExportTraceServiceRequest: {exc}") from exc
        return request, body
    if not body:
        return request, None  # an empty JSON body is an empty export (whitespace alone is not JSON: a 400)
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OtlpError(f"body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise OtlpError("body nests objects or lists too deeply") from None
    if not isinstance(document, dict):
        raise OtlpError("OTLP JSON body must be an object with a 'resourceSpans' list")
    if refused is not None:
        _take_out_unreadable(document, refused)
    try:
        require_messages(document, ExportTraceServiceRequest.DESCRIPTOR, "")
    except RecursionError:
        raise OtlpError("body nests objects or lists too deeply") from None
    _hex_ids_to_base64(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise OtlpError(f"body is not a valid OTLP JSON ExportTraceServiceRequest: {exc}") from exc
    return request, None


# Standard or URL-safe base64, padded (hex ids are a subset: even length, hex digits).
BASE64_PATTERN = r"^([A-Za-z0-9+/_-]{4})*([A-Za-z0-9+/_-]{2}==|[A-Za-z0-9+/_-]{3}=)?$"
BASE64 = re.compile(BASE64_PATTERN)


_NUMBERS = {
    FieldDescriptor.CPPTYPE_DOUBLE: "number",
    FieldDescriptor.CPPTYPE_FLOAT: "number",
    FieldDescriptor.CPPTYPE_INT32: "integer",
    FieldDescriptor.CPPTYPE_INT64: "integer",
    FieldDescriptor.CPPTYPE_UINT32: "integer",
    FieldDescriptor.CPPTYPE_UINT64: "integer",
}
# Integers written as strings, by width: always in range (64-bit unsigned: nanosecond times).
DIGITS_PATTERNS = {
    FieldDescriptor.CPPTYPE_INT32: r"^-?[0-9]{1,9}$",
    FieldDescriptor.CPPTYPE_UINT32: r"^[0-9]{1,9}$",
    FieldDescriptor.CPPTYPE_INT64: r"^-?[0-9]{1,18}$",
    FieldDescriptor.CPPTYPE_UINT64: r"^[0-9]{1,19}$",
}
_DIGITS = {cpp_type: re.compile(pattern) for cpp_type, pattern in DIGITS_PATTERNS.items()}


def _number_ok(field: FieldDescriptor, value: Any) -> bool:
    """What the OpenAPI schema says of a number field (the parser alone also reads "1_0", " 7" or "1e3")."""
    if isinstance(value, bool):
        return False
    if field.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return isinstance(value, int | float) or value in ("NaN", "Infinity", "-Infinity")
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return True
    return isinstance(value, str) and _DIGITS[field.cpp_type].match(value) is not None


def require_messages(value: dict[str, Any], descriptor: Descriptor, path: str) -> None:
    """Every message in an OTLP-JSON document is an object and every repeated field a list.

    The protobuf JSON parser reads a string where a message belongs as an empty message
    (``"scopeSpans": ["AAA"]`` would be an export of nothing, answered 200): refuse instead.
    """
    fields = {name: f for f in descriptor.fields for name in (f.name, f.json_name)}
    for key, item in value.items():
        field = fields.get(key)
        if field is not None and field.enum_type is not None and item is not None:
            # The parser would read 2.5e-42 as an enum number; an enum is a name or a whole number
            # (JSON Schema's integer, so 2.0 too: made an int here for the parser).
            elements = item if isinstance(item, list) else [item]
            for i, element in enumerate(elements):
                if isinstance(element, float) and element.is_integer():
                    elements[i] = int(element)
                elif isinstance(element, bool) or not isinstance(element, int | str):
                    raise OtlpError(f"OTLP JSON: {path + '.' if path else ''}{key} must be a name or a whole number")
            if not isinstance(item, list):
                value[key] = elements[0]
        if field is not None and field.cpp_type in _NUMBERS and item is not None:
            for element in item if isinstance(item, list) else [item]:
                if not _number_ok(field, element):
                    where = f"{path}.{key}" if path else key
                    raise OtlpError(f"OTLP JSON: {where} is not a valid {_NUMBERS[field.cpp_type]}")
        if field is not None and field.type == FieldDescriptor.TYPE_BYTES and item is not None:
            # The parser pads and skips what base64 cannot hold ("!!" reads as b""); refuse instead.
            for element in item if isinstance(item, list) else [item]:
                if not isinstance(element, str) or not BASE64.match(element):
                    raise OtlpError(f"OTLP JSON: {path + '.' if path else ''}{key} must be base64 (or hex for ids)")
        if field is None or item is None or field.message_type is None:
            continue  # unknown keys are ignored; other scalars are the parser's to check
        where = f"{path}.{key}" if path else key
        repeated = field.label == FieldDescriptor.LABEL_REPEATED
        if repeated and not isinstance(item, list):
            raise OtlpError(f"OTLP JSON: {where} must be a list")
        for i, element in enumerate(item if repeated else [item]):
            at = f"{where}[{i}]" if repeated else where
            if not isinstance(element, dict):
                raise OtlpError(f"OTLP JSON: {at} must be an object")
            require_messages(element, field.message_type, at)


def inflate(body: bytes, max_bytes: int) -> bytes:
    """The body, gunzipped when it is gzip (with or without Content-Encoding), at most ``max_bytes`` inflated."""
    # 0x1f cannot start a valid protobuf (wire type 7) nor JSON, so sniffing is safe.
    if body[:2] != b"\x1f\x8b":
        return body
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, max_bytes)
    except zlib.error as exc:
        raise OtlpError(f"body looks gzip-compressed but cannot be inflated: {exc}") from exc
    if inflater.unconsumed_tail:
        raise OtlpTooLarge(f"the gzip body inflates past {max_bytes:,} bytes: send smaller batches")
    return out


def _json_scope_spans(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Each scopeSpans object of an OTLP-JSON document that holds a list of spans, where the shape is right (the
    rest is the parser's to judge). OTLP < 0.15 called scopes "instrumentation libraries": renamed here."""
    resource_spans = document.get("resourceSpans", document.get("resource_spans"))
    for rs in resource_spans if isinstance(resource_spans, list) else []:
        if not isinstance(rs, dict):
            continue
        if "instrumentationLibrarySpans" in rs and "scopeSpans" not in rs:
            rs["scopeSpans"] = rs.pop("instrumentationLibrarySpans")
            for ss in rs["scopeSpans"] if isinstance(rs["scopeSpans"], list) else []:
                if isinstance(ss, dict) and "instrumentationLibrary" in ss:
                    ss["scope"] = ss.pop("instrumentationLibrary")
        scope_spans = rs.get("scopeSpans", rs.get("scope_spans"))
        for ss in scope_spans if isinstance(scope_spans, list) else []:
            if isinstance(ss, dict) and isinstance(ss.get("spans"), list):
                yield ss


def _take_out_unreadable(document: dict[str, Any], refused: list[str]) -> None:
    """A JSON span with an ID that is neither hex nor base64 (which would fail the whole body's parse) is taken out
    of the document and said in ``refused``."""
    for ss in _json_scope_spans(document):
        kept = []
        for span in ss["spans"]:
            unreadable = _unreadable_id(span) if isinstance(span, dict) else None
            if unreadable is None:
                kept.append(span)
            else:
                refused.append(f"span {str(span.get('name', ''))[:100]!r} has an invalid {unreadable}")
        ss["spans"] = kept


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP-JSON writes ids as hex; the protobuf JSON mapping wants base64 for bytes."""
    for ss in _json_scope_spans(document):
        for span in ss["spans"]:
            if not isinstance(span, dict):
                continue
            _convert_ids(span)
            for link in span.get("links") or []:
                if isinstance(link, dict):
                    _convert_ids(link)


# OTLP-JSON's ID fields (both spellings), with their width in bytes.
_ID_FIELDS = (("traceId", "trace_id", 16), ("spanId", "span_id", 8), ("parentSpanId", "parent_span_id", 8))


def _unreadable_id(span: dict[str, Any]) -> str | None:
    """Which of a JSON span's IDs is a string neither hex nor base64 (its name and what it holds), if one is."""
    for camel, snake, size in _ID_FIELDS:
        for key in (camel, snake):
            value = span.get(key)
            # fullmatch: "$" also matches before a final newline, which the parser refuses (the whole body).
            if not isinstance(value, str) or BASE64.fullmatch(value):
                continue
            if len(value) == 2 * size and _HEX_ID.fullmatch(value):
                continue
            return f"{snake} ({value[:40]!r}: neither {2 * size} hex digits nor base64)"
    return None


def _convert_ids(obj: dict[str, Any]) -> None:
    for camel, snake, size in _ID_FIELDS:
        for key in (camel, snake):
            value = obj.get(key)
            # Only rewrite what is really hex of the right width; anything else is left
            # for the protobuf parser (which accepts base64) to accept or reject.
            if isinstance(value, str) and len(value) == 2 * size and _HEX_ID.match(value):
                obj[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")


def _iter_spans(request: ExportTraceServiceRequest, refused: list[str] | None = None) -> Iterator[_Span]:
    for rs in request.resource_spans:
        resource = _attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope.name
            for s in ss.spans:
                # Each read of a bytes field builds a new object: read once.
                trace_id, span_id, parent_id = s.trace_id, s.span_id, s.parent_span_id
                bad = _bad_ids(s.name, trace_id, span_id)
                if bad is not None:
                    if refused is None:
                        raise OtlpBadSpan(bad)
                    refused.append(bad)
                    continue
                yield _Span(
                    trace_id=trace_id.hex(),
                    span_id=span_id.hex(),
                    parent_span_id=parent_id.hex() if any(parent_id) else None,
                    name=s.name,
                    kind=int(s.kind),
                    start_ns=int(s.start_time_unix_nano),
                    end_ns=int(s.end_time_unix_nano),
                    attrs=_attributes(s.attributes),
                    events=[(e.name, _attributes(e.attributes)) for e in s.events],
                    status_code=int(s.status.code),
                    status_message=s.status.message,
                    resource=resource,
                    scope=scope,
                )


def _attributes(key_values: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in key_values:
        value = kv.value
        # Nearly every attribute is a non-empty string: read it without asking which value is set.
        text = value.string_value
        out[kv.key] = text if text else _any_value(value)
    return out


def _any_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, which)


# --------------------------------------------------------------------------- the wire, read again

# Reading fields through upb's message API builds a Python object per read (a wrapper per KeyValue and
# AnyValue, a str per key): 5.6 us a span of the 6 the whole decoding took, where upb's own parse took
# 0.4. Once upb has accepted a body (so every length, varint and string in it is valid), the spans are
# read again here, from the bytes, with the parser's rules: a field of the wrong wire type is an unknown
# field and skipped; a singular field seen twice keeps its last value, a singular message seen twice is
# merged (read as one), a oneof takes its last case. tests/feedback/test_otlp_wire.py compares the two
# readings on generated and mutated bodies.

_U64: Final = (1 << 64) - 1
_LEN: Final = 2  # wire types
_FIXED64: Final = 1
_VARINT: Final = 0
_ANY_NONE: Final = 0
_ANY_ARRAY: Final = 5
_ANY_KVLIST: Final = 6


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _U64, pos
        shift += 7
        if shift > 63:
            raise OtlpError("a varint longer than 10 bytes")


def _delimited(buf: bytes, pos: int) -> tuple[int, int]:
    """Where a length-delimited value starts and ends; ``pos`` at its length prefix. The end is where the
    next field starts."""
    size, pos = _varint(buf, pos)
    return pos, pos + size


def _skip(buf: bytes, pos: int, tag: int) -> int:
    """Past the value of a field this reading does not use (any wire type, groups included)."""
    wire = tag & 7
    if wire == _VARINT:
        return _varint(buf, pos)[1]
    if wire == _FIXED64:
        return pos + 8
    if wire == _LEN:
        return _delimited(buf, pos)[1]
    if wire == 5:
        return pos + 4
    if wire == 3:  # a group: fields up to its end tag
        while True:
            inner, pos = _varint(buf, pos)
            if inner & 7 == 4:
                if inner >> 3 != tag >> 3:
                    raise OtlpError("a group ends with another field's tag")
                return pos
            pos = _skip(buf, pos, inner)
    raise OtlpError(f"wire type {wire} where none is allowed")


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _wire_spans(body: bytes, refused: list[str] | None = None) -> list[_Span]:
    """The spans of an ExportTraceServiceRequest upb has accepted, as _iter_spans reads them."""
    out: list[_Span] = []
    try:
        for first, last in _ranges(body, 0, len(body), 1):  # resource_spans
            _resource_spans(body, first, last, out, refused)
    except (IndexError, ValueError, struct.error) as exc:  # not for bytes upb accepted; never a 500 if it did
        if isinstance(exc, OtlpError):
            raise
        raise OtlpError(f"body is not a valid OTLP protobuf ExportTraceServiceRequest: {exc}") from None
    return out


def _ranges(buf: bytes, start: int, end: int, field: int) -> list[tuple[int, int]]:
    """Where each length-delimited occurrence of ``field`` lies, in order."""
    found: list[tuple[int, int]] = []
    pos = start
    wanted = (field << 3) | _LEN
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == wanted:
            first, pos = _delimited(buf, pos)
            found.append((first, pos))
        else:
            pos = _skip(buf, pos, tag)
    return found


def _head_and_items(buf: bytes, start: int, end: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Where fields 1 (a singular message: its occurrences merge) and 2 (a repeated one) lie, in one pass:
    the shape of ResourceSpans (resource, scope_spans) and of ScopeSpans (scope, spans)."""
    heads: list[tuple[int, int]] = []
    items: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == 0x0A or tag == 0x12:
            first, pos = _delimited(buf, pos)
            (heads if tag == 0x0A else items).append((first, pos))
        else:
            pos = _skip(buf, pos, tag)
    return heads, items


def _resource_spans(buf: bytes, start: int, end: int, out: list[_Span], refused: list[str] | None) -> None:
    # The resource (merged over its occurrences) applies to every span, wherever it lies in the message.
    heads, scopes = _head_and_items(buf, start, end)
    resource: dict[str, Any] = {}
    for head_start, head_end in heads:
        for first, last in _ranges(buf, head_start, head_end, 1):  # Resource.attributes
            _key_value_into(buf, first, last, resource)
    for first, last in scopes:
        _scope_spans(buf, first, last, resource, out, refused)


def _scope_spans(
    buf: bytes, start: int, end: int, resource: dict[str, Any], out: list[_Span], refused: list[str] | None
) -> None:
    heads, spans = _head_and_items(buf, start, end)
    scope = ""
    for head_start, head_end in heads:
        for first, last in _ranges(buf, head_start, head_end, 1):  # InstrumentationScope.name: the last wins
            scope = buf[first:last].decode()
    for first, last in spans:
        try:
            out.append(_span(buf, first, last, resource, scope))
        except OtlpBadSpan as exc:
            if refused is None:
                raise
            refused.append(str(exc))


def _span(buf: bytes, start: int, end: int, resource: dict[str, Any], scope: str) -> _Span:
    trace_id = span_id = parent_id = b""
    name = status_message = ""
    kind = start_ns = end_ns = status_code = 0
    attrs: dict[str, Any] = {}
    events: list[tuple[str, dict[str, Any]]] = []
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == _LEN and (field <= 5 or field == 9 or field == 11 or field == 15):
            begin, pos = _delimited(buf, pos)  # 3, trace_state: skipped
            if field == 9:
                _key_value_into(buf, begin, pos, attrs)
            elif field == 1:
                trace_id = buf[begin:pos]
            elif field == 2:
                span_id = buf[begin:pos]
            elif field == 4:
                parent_id = buf[begin:pos]
            elif field == 5:
                name = buf[begin:pos].decode()
            elif field == 11:
                events.append(_event(buf, begin, pos))
            elif field == 15:
                status_code, status_message = _status(buf, begin, pos, status_code, status_message)
        elif wire == _FIXED64 and (field == 7 or field == 8):
            value = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
            if field == 7:
                start_ns = value
            else:
                end_ns = value
        elif wire == _VARINT and field == 6:
            value, pos = _varint(buf, pos)
            kind = _signed(value, 32)
        else:
            pos = _skip(buf, pos, tag)
    bad = _bad_ids(name, trace_id, span_id)
    if bad is not None:
        raise OtlpBadSpan(bad)
    return _Span(
        trace_id=trace_id.hex(),
        span_id=span_id.hex(),
        parent_span_id=parent_id.hex() if any(parent_id) else None,
        name=name,
        kind=kind,
        start_ns=start_ns,
        end_ns=end_ns,
        attrs=attrs,
        events=events,
        status_code=status_code,
        status_message=status_message,
        resource=resource,
        scope=scope,
    )


def _bad_ids(name: str, trace_id: bytes, span_id: bytes) -> str | None:
    """Why a span's IDs cannot be taken (the same words whichever reading found it), or None."""
    if len(trace_id) != 16 or not any(trace_id):
        return f"span {name[:100]!r} has an invalid trace_id ({len(trace_id)} bytes; must be 16 non-zero bytes)"
    if len(span_id) != 8 or not any(span_id):
        return f"span {name[:100]!r} has an invalid span_id ({len(span_id)} bytes; must be 8 non-zero bytes)"
    return None


def _event(buf: bytes, start: int, end: int) -> tuple[str, dict[str, Any]]:
    name = ""
    attrs: dict[str, Any] = {}
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == 0x12 or tag == 0x1A:  # 2 name, 3 attributes
            first, pos = _delimited(buf, pos)
            if tag == 0x12:
                name = buf[first:pos].decode()
            else:
                _key_value_into(buf, first, pos, attrs)
        else:
            pos = _skip(buf, pos, tag)
    return name, attrs


def _status(buf: bytes, start: int, end: int, code: int, message: str) -> tuple[int, str]:
    """Status read on top of what an earlier occurrence of it set (a message seen twice is merged)."""
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == 0x12:  # 2 message
            first, pos = _delimited(buf, pos)
            message = buf[first:pos].decode()
        elif tag == 0x18:  # 3 code
            value, pos = _varint(buf, pos)
            code = _signed(value, 32)
        else:
            pos = _skip(buf, pos, tag)
    return code, message


def _key_value_into(buf: bytes, start: int, end: int, out: dict[str, Any]) -> None:
    """A KeyValue into ``out`` (later keys win, as a dict built from the repeated field)."""
    key = ""
    case = _ANY_NONE
    value: Any = None
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == 0x0A:  # 1 key
            first, pos = _delimited(buf, pos)
            key = buf[first:pos].decode()
        elif tag == 0x12:  # 2 value, an AnyValue: occurrences merge
            first, pos = _delimited(buf, pos)
            case, value = _any_value_into(buf, first, pos, case, value)
        else:
            pos = _skip(buf, pos, tag)
    out[key] = _any_final(case, value)


def _any_value_into(buf: bytes, start: int, end: int, case: int, value: Any) -> tuple[int, Any]:
    """An AnyValue read on top of (case, value), an earlier occurrence's: the last case set wins, and an
    array or kvlist met again in the same case grows (its repeated values append)."""
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == _LEN and (field == 1 or field == 5 or field == 6 or field == 7):
            begin, pos = _delimited(buf, pos)
            if field == 1:
                case, value = 1, buf[begin:pos].decode()
            elif field == 7:
                case, value = 7, base64.b64encode(buf[begin:pos]).decode("ascii")
            elif field == _ANY_ARRAY:
                items: list[Any] = value if case == _ANY_ARRAY else []
                for first, last in _ranges(buf, begin, pos, 1):
                    items.append(_any_final(*_any_value_into(buf, first, last, _ANY_NONE, None)))
                case, value = _ANY_ARRAY, items
            else:
                pairs: dict[str, Any] = value if case == _ANY_KVLIST else {}
                for first, last in _ranges(buf, begin, pos, 1):
                    _key_value_into(buf, first, last, pairs)
                case, value = _ANY_KVLIST, pairs
        elif wire == _VARINT and (field == 2 or field == 3):
            number, pos = _varint(buf, pos)
            # Apart, not one conditional tuple: compiled, (2, bool) | (3, int) joins to (int, int), and a bool became 1.
            if field == 2:
                case, value = 2, number != 0
            else:
                case, value = 3, _signed(number, 64)
        elif wire == _FIXED64 and field == 4:
            case, value = 4, _DOUBLE.unpack_from(buf, pos)[0]
            pos += 8
        else:
            pos = _skip(buf, pos, tag)
    return case, value


def _any_final(case: int, value: Any) -> Any:
    return value if case != _ANY_NONE else None


_DOUBLE: Final = struct.Struct("<d")


# --------------------------------------------------------------------------- mapping


class MappedSpan:
    """A span as mapped: the fields of a ``POST /api/v1/traces`` span item (``span_dict`` makes it one),
    but the cost, the Decimal the attributes gave."""

    __slots__ = ("span_id", "parent_span_id", "name", "kind", "start", "end", "model", "input_tokens",
                 "output_tokens", "cost_usd", "attributes")  # fmt: skip

    def __init__(
        self,
        span_id: str,
        parent_span_id: str | None,
        name: str,
        kind: str,
        start: str | None,
        end: str | None,
        model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cost_usd: Decimal | None,
        attributes: dict[str, Any],
    ) -> None:
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.name = name
        self.kind = kind
        self.start = start
        self.end = end
        self.model = model
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cost_usd = cost_usd
        self.attributes = attributes


class _BuiltTrace:
    __slots__ = ("root_start_ns", "trace", "spans")

    def __init__(self, root_start_ns: int, trace: dict[str, Any], spans: list[MappedSpan]) -> None:
        self.root_start_ns = root_start_ns
        self.trace = trace  # without its spans
        self.spans = spans


def _build_trace(otel_trace_id: str, group: list[_Span]) -> _BuiltTrace:
    group.sort(key=lambda s: (s.start_ns, s.span_id))
    root = _pick_root(group)
    # Precedence: root span, then the other spans in start order, then resources.
    ordered = [root, *(s for s in group if s is not root)]
    resources = _unique_resources(ordered)
    sources = [s.attrs for s in ordered] + resources
    top = _Precedence(sources)

    trace: dict[str, Any] = {}
    trace["trace_id"] = _as_str(top.first(("candor.trace_id",))) or otel_trace_id
    # A candor.feature that is no feature key ("Support Copilot") would reject the whole trace, and the SDKs
    # drop the OTLP answer that says so: it is stored under the key it makes (Support-Copilot), and both the
    # trace's metadata (candor_feature_sent) and the answer say what was sent.
    sent_feature = _as_str(top.first(("candor.feature",)))
    feature = _feature_key(sent_feature, "") if sent_feature else ""
    trace["feature"] = feature or _feature_key(_as_str(_first(resources, ("service.name",))))
    if not feature:
        # No span here named one (a child exported apart from its root, or an app that never names one): said, so
        # a stored trace keeps the feature another export named.
        trace[FEATURE_GUESSED] = True
    for name, (primary, fallbacks) in _STRING_FIELDS.items():
        value = _as_str(top.first(primary))
        if value is None and fallbacks:
            value = _as_str(top.first(fallbacks))
        trace[name] = value

    kinds = [_span_kind(s) for s in group]
    llm_spans = [s for s, kind in zip(group, kinds, strict=True) if kind == _LLM]
    if llm_spans:
        first_llm, last_llm = llm_spans[0], llm_spans[-1]
        trace["model"] = _as_str(_first_in(first_llm.attrs, _MODEL_KEYS))
        provider = _as_str(_first_in(first_llm.attrs, _PROVIDER_KEYS))
        trace["provider"] = _PROVIDER_ALIASES.get(provider.lower(), provider.lower()) if provider else None
        llm_attrs = [s.attrs for s in llm_spans]
        trace["input_tokens"] = _sum_ints(llm_attrs, _INPUT_TOKEN_KEYS)
        trace["output_tokens"] = _sum_ints(llm_attrs, _OUTPUT_TOKEN_KEYS)
        trace["cached_tokens"] = _sum_ints(llm_attrs, CACHED_TOKEN_KEYS)
        trace["input"] = _input_text(first_llm.attrs, first_llm.events)
        trace["output"] = _output_text(last_llm.attrs, last_llm.events)
    # Explicit Candor display text wins over what the GenAI attributes say.
    for name in ("input", "output"):
        explicit = _as_str(top.first((f"candor.{name}",)))
        if explicit is not None:
            trace[name] = explicit
    clipped = []
    for name in ("input", "output", "prompt"):
        value = trace.get(name)
        trace[name] = _clip(value, MAX_TEXT_CHARS)
        if value is not None and trace[name] != value:
            clipped.append(name)

    trace["cost_usd"] = _trace_cost(root.attrs, [s.attrs for s in group])
    ttft = _as_number(top.first(("candor.ttft_ms",)))
    trace["ttft_ms"] = ttft if ttft is not None and ttft >= 0 else None
    trace["status"] = _TRACE_ERROR if any(s.status_code == _STATUS_ERROR for s in group) else _TRACE_OK
    trace["fallback"] = _any_bool(sources, "candor.fallback") if "candor.fallback" in top.found else None
    trace["guardrail_blocked"] = (
        _any_bool(sources, "candor.guardrail_blocked") if "candor.guardrail_blocked" in top.found else None
    )

    # Any key starting "candor.metadata", found at C speed (a false hit only costs the exact look).
    metadata = _metadata(sources) if "\ncandor.metadata" in "\n" + "\n".join(top.found) else {}
    # Lets the server join a later export of the same OTel trace (e.g. the root span
    # arriving in a second batch, after its children) even when trace_id came from
    # candor.trace_id on a span that is not in this batch.
    metadata.setdefault("otel_trace_id", otel_trace_id)
    if sent_feature and sent_feature != trace["feature"]:
        metadata["candor_feature_sent"] = sent_feature[: MAX_FEATURE_CHARS * 2]
    if clipped:
        # Never silent: the trace says what was cut, and the OTLP answer reports it too.
        metadata["candor_clipped"] = ",".join(clipped)
    trace["metadata"] = metadata

    trace["started_at"] = _iso(root.start_ns)
    if root.parent_span_id is not None:
        trace[ROOT_MISSING] = True
    if root.start_ns > 0 and root.end_ns >= root.start_ns:
        trace["latency_ms"] = (root.end_ns - root.start_ns) / 1e6
    spans = [_mapped_span(s, kind) for s, kind in zip(group, kinds, strict=True)]
    not_counted = _not_counted(spans)
    if not_counted:
        # Never silent: the trace says which token counts were no count, and the OTLP answer too.
        metadata["candor_not_counted"] = ",".join(not_counted)
    return _BuiltTrace(root.start_ns, {k: v for k, v in trace.items() if v is not None}, spans)


class _Precedence:
    """``_first(sources, keys)`` at dict speed: each key's value in the first source that has it.

    Only a key's absence, or a non-empty value in the first source holding it, is answered from the
    map; anything else (an empty value there, several keys) asks ``_first`` itself, so the answer is
    always exactly ``_first``'s.
    """

    __slots__ = ("found", "sources")

    def __init__(self, sources: list[dict[str, Any]]) -> None:
        self.sources = sources
        self.found: dict[str, Any] = {}
        for attrs in reversed(sources):
            self.found.update(attrs)

    def first(self, keys: tuple[str, ...]) -> Any:
        found = self.found
        if len(keys) == 1:
            value = found.get(keys[0])
            if value is not None and value != "":
                return value
            if keys[0] not in found:
                return None
        elif not any(key in found for key in keys):
            return None
        return _first(self.sources, keys)


def _pick_root(group: list[_Span]) -> _Span:
    ids = {s.span_id for s in group}
    for candidates in (
        [s for s in group if s.parent_span_id is None],
        [s for s in group if s.parent_span_id not in ids],
    ):
        if candidates:
            return candidates[0]  # group is sorted by start time
    return group[0]  # a parent cycle: malformed, but still take the earliest


def _unique_resources(spans: list[_Span]) -> list[dict[str, Any]]:
    seen: set[int] = set()
    out = []
    for s in spans:
        if id(s.resource) not in seen:
            seen.add(id(s.resource))
            out.append(s.resource)
    return out


def _span_kind(span: _Span) -> str:
    attrs = span.attrs
    operation = str(attrs.get("gen_ai.operation.name") or "").lower()
    oi_kind = str(attrs.get("openinference.span.kind") or "").upper()
    has_model = _first_in(attrs, _MODEL_KEYS) is not None
    # Embedding calls carry a model but are part of retrieval; keep them out of the
    # trace's model/tokens so the chat model is not priced at embedding volume.
    if operation in ("embeddings", "embedding", "retrieval") or oi_kind in (
        "RETRIEVER",
        "EMBEDDING",
    ):
        return _RETRIEVAL
    if has_model or oi_kind == "LLM":
        return _LLM
    if operation == "execute_tool" or "gen_ai.tool.name" in attrs or oi_kind == "TOOL":
        return _TOOL
    if (
        "db.system" in attrs
        or "db.system.name" in attrs
        or "retriev" in span.name.lower()
        or any(k.startswith("retrieval.") for k in attrs)
    ):
        return _RETRIEVAL
    return _OTHER


# Attributes that become first-class span fields, so not repeated in `attributes`.
_SPAN_FIELD_KEYS = frozenset((*_INPUT_TOKEN_KEYS, *_OUTPUT_TOKEN_KEYS, *_SPAN_COST_KEYS))


def _mapped_span(span: _Span, kind: str) -> MappedSpan:
    attrs = span.attrs
    model_key = None
    for key in _MODEL_KEYS:
        value = attrs.get(key)
        if value is not None and value != "":
            model_key = key
            break
    attributes: dict[str, Any] = {}
    for key, value in attrs.items():
        if key == model_key or key in _SPAN_FIELD_KEYS or key.startswith("candor."):
            continue
        kind_of = type(value)
        if kind_of is str or kind_of is int or kind_of is bool:
            attributes[key] = value  # what _flatten_into keeps as it is, without the call
        else:
            _flatten_into(attributes, key, value)
    if span.status_code in _STATUS_NAMES:
        attributes["otel.status_code"] = _STATUS_NAMES[span.status_code]
        if span.status_message:
            attributes["otel.status_message"] = span.status_message
    if span.kind in _SPAN_KIND_NAMES:
        attributes["otel.span_kind"] = _SPAN_KIND_NAMES[span.kind]
    if span.scope:
        attributes["otel.scope.name"] = span.scope
    if attrs.keys().isdisjoint(_SPAN_FIELD_KEYS):  # most spans: no tokens, no cost
        input_tokens = output_tokens = cost = None
    else:
        input_tokens = _count_or_kept(attrs, _INPUT_TOKEN_KEYS, attributes)
        output_tokens = _count_or_kept(attrs, _OUTPUT_TOKEN_KEYS, attributes)
        cost = _as_decimal(_first_in(attrs, _SPAN_COST_KEYS))
    return MappedSpan(
        span.span_id,
        span.parent_span_id,
        _clip(span.name, MAX_SPAN_NAME_CHARS) or "",
        kind,
        _iso(span.start_ns),
        _iso(span.end_ns),
        _as_str(attrs[model_key]) if model_key else None,
        input_tokens,
        output_tokens,
        cost,
        attributes,
    )


def _count_or_kept(attrs: dict[str, Any], keys: tuple[str, ...], attributes: dict[str, Any]) -> int | None:
    """The span's token count under the first of ``keys`` it has; a value that is no count (-5, 2.5, "many")
    is not counted, and kept in ``attributes`` as sent (where a counted one never is: it is a span field),
    so the trace can say what it left out (``_not_counted``)."""
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            count = _as_int(value)
            if count is None:
                _flatten_into(attributes, key, value)
            return count
    return None


def _not_counted(spans: list[MappedSpan]) -> list[str]:
    """The token attributes some span sent that were no count (kept in its attributes by _count_or_kept)."""
    return sorted({key for span in spans for key in _TOKEN_KEYS if key in span.attributes})


_TOKEN_KEYS = (*_INPUT_TOKEN_KEYS, *_OUTPUT_TOKEN_KEYS)


def span_dict(span: MappedSpan) -> dict[str, Any]:
    """The span as an item of ``POST /api/v1/traces`` (times in RFC 3339, cost as a float)."""
    return {
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "name": span.name,
        "kind": span.kind,
        "start": span.start,
        "end": span.end,
        "model": span.model,
        "input_tokens": span.input_tokens,
        "output_tokens": span.output_tokens,
        "cost_usd": float(span.cost_usd) if span.cost_usd is not None else None,
        "attributes": span.attributes,
    }


def span_rows_of(
    spans: list[MappedSpan], trace_id: str, times: Iterator[datetime | None], limit: datetime, row: type[Row]
) -> list[Row] | None:
    """The spans as ``row``s (feedback.services.tables.SpanRow) of ``trace_id``, as stored (NOT NULL defaults filled
    in), exactly as the traces API would
    store their ``span_dict``; None when one would not pass its checks (SpanIn, check_trace) as it is. ``times``
    gives each span's start and end, read: consumed for every span, whatever the answer. (The rows of a trace the
    REST checks refuse are not stored: its trace_id is the one it is stored under otherwise.)

    Here, compiled with the mapping, for speed: in Python it was ~2 us a span of an OTLP export's ingestion."""
    rows: list[Row] | None = []
    for span in spans:
        start, end = next(times), next(times)
        if rows is None:
            continue
        cost = span.cost_usd
        if cost is not None:
            as_sent = float(cost)  # what span_dict sends, and the traces API reads back
            if as_sent >= 1e6:  # past schemas.Money
                rows = None
                continue
            cost = Decimal(repr(as_sent))
        model = span.model
        attributes = _JSON_ENCODE(span.attributes).decode()
        if (
            (start is not None and start > limit)
            or (end is not None and (end > limit or (start is not None and end < start)))
            or (model is not None and (len(model) > MAX_ID or "\x00" in model))
            or "\x00" in span.name
            or "\\u0000" in attributes
        ):
            rows = None
            continue
        # As stored (SPANS.with_defaults): a name is never None here, attributes neither.
        values = (span.span_id, span.parent_span_id or "", span.name, span.kind, start, end, model or "",
                  span.input_tokens, span.output_tokens, trace_id, cost, attributes)  # fmt: skip
        rows.append(_NEW_TUPLE(row, values))
    return rows


# The columns span_copy_of writes, in order, and the types it writes them as: feedback.services.tables.SPANS's
# declaration (checked there).
SPAN_COPY_COLUMNS: Final = (
    ("span_id", "text"), ("parent_span_id", "text"), ("name", "text"), ("kind", "text"), ("start", "timestamptz"),
    ("end", "timestamptz"), ("model", "text"), ("input_tokens", "bigint"), ("output_tokens", "bigint"),
    ("trace_id", "text"), ("cost_usd", "numeric"), ("attributes", "jsonb"),
)  # fmt: skip
_POSTGRES_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)


def span_copy_of(spans: list[MappedSpan], trace_id: str, limit_us: int) -> bytes | None:
    """The rows ``span_rows_of`` would make of these spans, already in a binary COPY's format (SPAN_COPY_COLUMNS),
    ordered by span_id; None where the C (feedback/_otlp_wire.c) leaves them to ``span_rows_of``: a span it would
    refuse, a span with a cost, a span_id twice, anything unusual, or no C at all. ``limit_us``: span_rows_of's
    ``limit`` as ``postgres_micros`` gives it.

    Written in C straight from the mapped spans: span_rows_of's rows, their times read and psycopg's formatting
    of them cost ~4 us a span of the web server's CPU, this ~2 (0.85 of it the attributes' JSON)."""
    if _native is None:
        return None
    answer: bytes | None = _native.span_copy(spans, trace_id, limit_us, MAX_ID, _JSON_ENCODE)
    return answer


def postgres_micros(moment: datetime) -> int:
    """Microseconds since 2000-01-01 UTC: how PostgreSQL's binary format writes a timestamptz."""
    return (moment - _POSTGRES_EPOCH) // _MICROSECOND


_MICROSECOND: Final = timedelta(microseconds=1)
_JSON_ENCODE = msgspec.json.Encoder().encode
_NEW_TUPLE: Any = tuple.__new__  # a row from its values, without the NamedTuple's own __new__ (a Python call)


def _flatten_into(out: dict[str, Any], key: str, value: Any) -> None:
    """Keep attribute values to str / int / float / bool / list of those."""
    if value is None:
        return
    if isinstance(value, dict):
        for sub_key, sub_value in value.items():
            _flatten_into(out, f"{key}.{sub_key}", sub_value)
        return
    if isinstance(value, list):
        out[key] = [_simple(v) for v in value if v is not None]
        return
    out[key] = _simple(value)


def _simple(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN / inf are not valid JSON
    if isinstance(value, str | bool | int | float):
        return value
    return json.dumps(value, sort_keys=True, default=str)


# --------------------------------------------------------------------------- text


def _input_text(attrs: dict[str, Any], events: list[tuple[str, dict[str, Any]]]) -> str | None:
    """The user's input a span's attributes or events hold."""
    for key in _INPUT_MESSAGE_KEYS:
        if key in attrs:
            text = _messages_text(attrs[key], want_role="user")
            if text:
                return text
    text = _indexed_messages(attrs, "prompt", want_role="user")
    if text:
        return text
    return _events_text(events, _INPUT_EVENTS, ("gen_ai.input.messages", "gen_ai.prompt"), "user")


def _output_text(attrs: dict[str, Any], events: list[tuple[str, dict[str, Any]]]) -> str | None:
    """The answer a span's attributes or events hold."""
    for key in _OUTPUT_MESSAGE_KEYS:
        if key in attrs:
            text = _messages_text(attrs[key], want_role="assistant")
            if text:
                return text
    text = _indexed_messages(attrs, "completion", want_role="assistant")
    if text:
        return text
    return _events_text(
        events,
        _OUTPUT_EVENTS,
        ("gen_ai.output.messages", "gen_ai.completion"),
        "assistant",
    )


def _events_text(
    events: list[tuple[str, dict[str, Any]]], names: frozenset[str], keys: tuple[str, ...], role: str
) -> str | None:
    parts: list[str] = []
    for name, attrs in events:
        # Newer instrumentations log one "operation details" event holding the lists.
        for key in keys:
            if key in attrs:
                text = _messages_text(attrs[key], want_role=role)
                if text:
                    parts.append(text)
        if name in names:
            for key in ("content", "body", "message", "gen_ai.event.content"):
                if key in attrs:
                    text = _messages_text(attrs[key], want_role=role)
                    if text:
                        parts.append(text)
                        break
    return "\n\n".join(parts) or None


def _indexed_messages(attrs: dict[str, Any], which: str, want_role: str) -> str | None:
    """OpenLLMetry style: gen_ai.prompt.0.role / gen_ai.prompt.0.content, ...; OpenInference's llm.input_messages."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        match = _INDEXED_MESSAGE.match(key) or _OPENINFERENCE_MESSAGE.match(key)
        if match and _OPENINFERENCE_SIDE.get(match.group(1), match.group(1)) == which:
            found.setdefault(int(match.group(2)), {})[match.group(3)] = value
    if not found:
        return None
    return _messages_text([found[i] for i in sorted(found)], want_role=want_role)


def _messages_text(value: Any, want_role: str) -> str | None:
    """Text of a message list / message / JSON string thereof.

    With roles present, keep only ``want_role`` messages (so the system prompt and
    earlier assistant turns are not shown as the user's input); join what is left.
    """
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] not in ("[", "{"):
            return stripped or None
        try:
            value = _json_loads(stripped)
        except ValueError:
            return stripped  # plain text that happens to start with a bracket
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return _as_str(value)
    roles = [_role(m) for m in value]
    if want_role in roles:
        value = [m for m, role in zip(value, roles, strict=True) if role == want_role]
    else:
        value = [m for m, role in zip(value, roles, strict=True) if role not in ("system", "developer")]
    parts = [t for t in (_content_text(m) for m in value) if t]
    return "\n\n".join(parts) or None


def _json_loads(text: str) -> Any:
    """json.loads at msgspec's speed: what msgspec refuses (NaN, 1e400, lone surrogates) json reads as before."""
    try:
        return _decode_json(text)
    except msgspec.DecodeError:  # ValidationError too
        return json.loads(text)


_decode_json = msgspec.json.Decoder().decode


def _role(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    inner = message.get("message")  # gen_ai.choice events nest the message
    role = message.get("role") or (inner.get("role") if isinstance(inner, dict) else None)
    return str(role or "")


_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})


def _content_text(message: Any) -> str | None:
    if message is None:
        return None
    if isinstance(message, str):
        return message.strip() or None
    if isinstance(message, list):
        parts = [t for t in (_content_text(p) for p in message) if t]
        return "\n".join(parts) or None
    if isinstance(message, dict):
        part_type = message.get("type")
        if isinstance(part_type, str) and part_type not in _TEXT_PART_TYPES:
            return None  # tool calls, images, reasoning, ...: not display text
        # semconv 1.37 "parts", OpenAI "content" (str / typed list), "text", "message".
        for key in ("parts", "content", "text", "message"):
            if key in message:
                text = _content_text(message[key])
                if text:
                    return text
        return None
    return _as_str(message)


# --------------------------------------------------------------------------- values


_FEATURE_BAD_CHARS = re.compile(f"[^{FEATURE_KEY_CHARS}]+")
_FEATURE_KEY = re.compile(FEATURE_KEY_PATTERN)


def _feature_key(name: str | None, empty: str = "unknown_service") -> str:
    """A name (service.name, a candor.feature) as a valid feature key, as it is when it is one; else letters,
    digits and _.:/- only, from a letter or digit, at most MAX_FEATURE_CHARS; ``empty`` when nothing is left
    (the OTel SDKs' own default service.name)."""
    name = name or ""
    if len(name) <= MAX_FEATURE_CHARS and _FEATURE_KEY.fullmatch(name):
        return name
    key = _FEATURE_BAD_CHARS.sub("-", name).strip("_.:/-")[:MAX_FEATURE_CHARS]
    return key or empty


def _clip(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "\u2026"


def _first(sources: list[dict[str, Any]], keys: Iterable[str]) -> Any:
    for attrs in sources:
        for key in keys:
            value = attrs.get(key)
            if value is not None and value != "":
                return value
    return None


def _first_in(attrs: dict[str, Any], keys: Iterable[str]) -> Any:
    """``_first([attrs], keys)`` without the list: the first of ``keys`` with a non-empty value."""
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _as_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


# Beyond any real count or price, and small enough that int() stays cheap ("1e3000000" would
# build a three-million-digit integer and hold a worker).
_LARGEST = Decimal(10) ** 12
_LARGEST_INT = 10**12


def _as_int(value: Any) -> int | None:
    """A whole, non-negative count up to 10^12, else None (not a count: left empty, never rounded)."""
    if type(value) is int:  # the usual case, as _as_decimal would judge it (bool is not int here)
        return value if 0 <= value <= _LARGEST_INT else None
    number = _as_decimal(value)
    if number is None or number != number.to_integral_value():
        return None
    return int(number)


def _as_number(value: Any) -> float | None:
    number = _as_decimal(value)
    return float(number) if number is not None else None


def _as_decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() and 0 <= number <= _LARGEST else None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "y", "on"):
            return True
        if lowered in ("false", "0", "no", "n", "off"):
            return False
    return None


def _any_bool(sources: list[dict[str, Any]], key: str) -> bool | None:
    seen = [b for b in (_as_bool(attrs.get(key)) for attrs in sources) if b is not None]
    return any(seen) if seen else None


def _sum_ints(attrs: list[dict[str, Any]], keys: tuple[str, ...]) -> int | None:
    values = [v for v in (_as_int(_first_in(a, keys)) for a in attrs) if v is not None]
    return sum(values) if values else None


def _trace_cost(root: dict[str, Any], spans: list[dict[str, Any]]) -> float | None:
    """The trace's cost from the root's attributes and every span's (the root among them)."""
    # The root's candor.cost_usd is the whole trace's cost; otherwise add up the spans
    # that report one (never both, which would count the same call twice).
    root_cost = _as_decimal(root.get("candor.cost_usd"))
    if root_cost is not None:
        return float(root_cost)
    costs = [c for c in (_as_decimal(_first_in(attrs, _SPAN_COST_KEYS)) for attrs in spans) if c is not None]
    return float(sum(costs, Decimal(0))) if costs else None


def _metadata(sources: list[dict[str, Any]]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for attrs in sources:  # earlier sources win
        nested = attrs.get("candor.metadata")
        if isinstance(nested, dict):
            for key, value in nested.items():
                text = _as_str(value)
                if text is not None:
                    metadata.setdefault(str(key), text)
        for key, value in attrs.items():
            if key.startswith("candor.metadata.") and len(key) > len("candor.metadata."):
                text = _as_str(value)
                if text is not None:
                    metadata.setdefault(key[len("candor.metadata.") :], text)
    return metadata


def _iso(unix_nano: int) -> str | None:
    """RFC 3339 in UTC with microseconds, as datetime.isoformat writes it; None when unset. OTLP times are
    unsigned 64-bit nanoseconds, so they end in 2554, well inside what a datetime holds. Assembled from
    cached pieces: two calls a span, profiled at 17% of the mapping when it asked time.strftime (and an
    lru_cache) for every new second."""
    if unix_nano <= 0:
        return None  # unset: the server uses "received at"
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    days, second_of_day = divmod(seconds, 86_400)
    date = _DATES.get(days)
    if date is None:
        date = _DATES[days] = time.strftime("%Y-%m-%dT", time.gmtime(days * 86_400))
        if len(_DATES) > 4096:  # spans of a day share one entry; a flood of odd dates must not grow it
            _DATES.clear()
    minute, second = divmod(second_of_day, 60)
    return f"{date}{_MINUTES[minute]}{_SECONDS[second]}{str(1_000_000 + nanos // 1000)[1:]}Z"


_DATES: dict[int, str] = {}
_MINUTES: Final = [f"{minute // 60:02d}:{minute % 60:02d}:" for minute in range(1440)]
_SECONDS: Final = [f"{second:02d}." for second in range(60)]


# The same mapping in C (feedback/_otlp_wire.c), built beside the compiled one by bin/build-accel and used only with
# the sources it was built from: protobuf bodies of the shapes it reads are mapped there, ~3x faster; it hands
# whatever else it meets back to the Python above (otlp_map's native=False asks for the Python alone).
_native: Any
_NATIVE_CONFIG: Any = None
try:
    _native = importlib.import_module("feedback._otlp_wire")
except ImportError:
    _native = None
else:
    _NATIVE_CONFIG = _native.configure(
        {
            "MappedSpan": MappedSpan,
            "FEATURE_GUESSED": FEATURE_GUESSED,
            "ROOT_MISSING": ROOT_MISSING,
            "MAX_TEXT_CHARS": MAX_TEXT_CHARS,
            "MAX_SPAN_NAME_CHARS": MAX_SPAN_NAME_CHARS,
            "MAX_FEATURE_CHARS": MAX_FEATURE_CHARS,
            "CACHED_TOKEN_KEYS": CACHED_TOKEN_KEYS,
            "_MODEL_KEYS": _MODEL_KEYS,
            "_PROVIDER_KEYS": _PROVIDER_KEYS,
            "_INPUT_TOKEN_KEYS": _INPUT_TOKEN_KEYS,
            "_OUTPUT_TOKEN_KEYS": _OUTPUT_TOKEN_KEYS,
            "_SPAN_COST_KEYS": _SPAN_COST_KEYS,
            "_TOKEN_KEYS": _TOKEN_KEYS,
            "_SPAN_FIELD_KEYS": _SPAN_FIELD_KEYS,
            "_PROVIDER_ALIASES": _PROVIDER_ALIASES,
            "_STATUS_NAMES": _STATUS_NAMES,
            "_SPAN_KIND_NAMES": _SPAN_KIND_NAMES,
            "_STRING_FIELDS": _STRING_FIELDS,
            "_LLM": _LLM,
            "_RETRIEVAL": _RETRIEVAL,
            "_TOOL": _TOOL,
            "_OTHER": _OTHER,
            "_TRACE_OK": _TRACE_OK,
            "_TRACE_ERROR": _TRACE_ERROR,
            "_as_str": _as_str,
            "_as_number": _as_number,
            "_as_decimal": _as_decimal,
            "_feature_key": _feature_key,
            "_input_text": _input_text,
            "_output_text": _output_text,
            "_trace_cost": _trace_cost,
            "_any_bool": _any_bool,
            "_metadata": _metadata,
            "_flatten_into": _flatten_into,
            "_count_or_kept": _count_or_kept,
            "_sum_ints": _sum_ints,
            "_clip": _clip,
            "_not_counted": _not_counted,
            "_json_loads": _json_loads,
            "_content_text": _content_text,
            "_INPUT_MESSAGE_KEYS": _INPUT_MESSAGE_KEYS,
            "_OUTPUT_MESSAGE_KEYS": _OUTPUT_MESSAGE_KEYS,
            "_TEXT_PART_TYPES": _TEXT_PART_TYPES,
        }
    )
