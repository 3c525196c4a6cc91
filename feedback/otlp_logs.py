"""OTLP/HTTP log export -> GenAI message rows.

Pure Python (no Django): reads the body of an OTLP/HTTP ``ExportLogsServiceRequest``
(protobuf or OTLP-JSON) and keeps the GenAI log events instrumentations send beside their
spans (``opentelemetry-instrumentation-openai-v2`` by default sends prompt and completion
text only this way): ``gen_ai.system.message``, ``gen_ai.user.message``,
``gen_ai.assistant.message``, ``gen_ai.tool.message``, ``gen_ai.choice`` and the newer
``gen_ai.client.inference.operation.details`` (input and output message lists).

Each kept record becomes one :class:`GenAiMessage` per message it holds, tied to its span by
the OTel trace and span ids; the service joins them to their trace whichever arrives first.
A record that cannot be kept (no trace id, ids of the wrong length, not a GenAI event) is
counted and described, never dropped silently.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from feedback.otlp import (
    JSON_CONTENT_TYPES,
    PROTOBUF_CONTENT_TYPES,
    OtlpError,
    OtlpMediaType,
    inflate,
    require_messages,
)
from feedback.schemas import MAX_TEXT

__all__ = ["GenAiMessage", "LogsParsed", "otlp_logs_parse", "otlp_logs_response"]

# Roles a stored message has; INPUT and OUTPUT are what a trace shows as its input and output.
SYSTEM, INPUT, HISTORY, TOOL, OUTPUT = "system", "user", "assistant", "tool", "choice"
_EVENT_ROLES = {
    "gen_ai.system.message": SYSTEM,
    "gen_ai.user.message": INPUT,
    "gen_ai.assistant.message": HISTORY,
    "gen_ai.tool.message": TOOL,
    "gen_ai.choice": OUTPUT,
    # Older names (semconv < 1.28) of the prompt and completion events.
    "gen_ai.content.prompt": INPUT,
    "gen_ai.content.completion": OUTPUT,
}
# One event holding the whole call's message lists (semconv 1.37+, gen_ai_latest_experimental).
_DETAILS_EVENTS = frozenset({"gen_ai.client.inference.operation.details"})
_MESSAGE_ROLES = {"system": SYSTEM, "developer": SYSTEM, "user": INPUT, "assistant": HISTORY, "tool": TOOL}
_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})
MAX_ERRORS_LISTED = 5


class GenAiMessage(NamedTuple):
    """One message of a GenAI log event, as the logs table stores it (COPY order)."""

    record_key: str  # idempotency: a resent export stores nothing twice
    otel_trace_id: str  # 32 hex
    span_id: str  # 16 hex, or "" for a record tied to its trace only
    event_name: str
    role: str  # SYSTEM, INPUT, HISTORY, TOOL or OUTPUT
    position: int  # choice index, or the message's place in a details event
    text: str
    time_unix_nano: int


@dataclass
class LogsParsed:
    messages: list[GenAiMessage] = field(default_factory=list)
    records: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < MAX_ERRORS_LISTED:
            self.reasons.append(reason)


def otlp_logs_parse(body: bytes, content_type: str, *, max_bytes: int) -> LogsParsed:
    """The GenAI messages of an OTLP/HTTP logs export body, and the records refused with why.

    Raises :class:`OtlpError` (or its ``OtlpTooLarge``) when the body cannot be read at all.
    """
    request = _decode(body, content_type, max_bytes)
    parsed = LogsParsed()
    for record in _iter_records(request):
        parsed.records += 1
        _read_record(record, parsed)
    return parsed


def otlp_logs_response(content_type: str, rejected: int = 0, message: str = "") -> tuple[bytes, str]:
    """Body and Content-Type of the OTLP/HTTP answer (HTTP 200; refusals in partial_success)."""
    response = ExportLogsServiceResponse()
    if rejected or message:
        response.partial_success.CopyFrom(
            ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=message)
        )
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in JSON_CONTENT_TYPES:
        return json.dumps(json_format.MessageToDict(response)).encode(), "application/json"
    return response.SerializeToString(), "application/x-protobuf"


# --------------------------------------------------------------------------- decoding


def _decode(body: bytes, content_type: str, max_bytes: int) -> ExportLogsServiceRequest:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in PROTOBUF_CONTENT_TYPES and media_type not in JSON_CONTENT_TYPES:
        raise OtlpMediaType(
            f"unsupported content type {content_type!r}: send application/x-protobuf or application/json"
        )
    body = inflate(bytes(body), max_bytes)
    request = ExportLogsServiceRequest()
    if media_type in PROTOBUF_CONTENT_TYPES:
        try:
            request.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise OtlpError(f"body is not a valid OTLP protobuf ExportLogsServiceRequest: {exc}") from exc
        return request
    if not body:
        return request  # an empty JSON body is an empty export (whitespace alone is not JSON: a 400)
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OtlpError(f"body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise OtlpError("body nests objects or lists too deeply") from None
    if not isinstance(document, dict):
        raise OtlpError("OTLP JSON body must be an object with a 'resourceLogs' list")
    try:
        require_messages(document, ExportLogsServiceRequest.DESCRIPTOR, "")
    except RecursionError:
        raise OtlpError("body nests objects or lists too deeply") from None
    _hex_ids_to_base64(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise OtlpError(f"body is not a valid OTLP JSON ExportLogsServiceRequest: {exc}") from exc
    return request


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP-JSON writes ids as hex; the protobuf JSON mapping wants base64 for bytes.

    Runs after require_messages: every message is an object and every repeated field a list.
    """
    for resource_logs in document.get("resourceLogs", document.get("resource_logs")) or []:
        for scope_logs in resource_logs.get("scopeLogs", resource_logs.get("scope_logs")) or []:
            for record in scope_logs.get("logRecords", scope_logs.get("log_records")) or []:
                for key, size in (("traceId", 16), ("spanId", 8), ("trace_id", 16), ("span_id", 8)):
                    value = record.get(key)
                    if isinstance(value, str) and len(value) == 2 * size:
                        try:
                            record[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                        except ValueError:
                            pass  # not hex: base64 (or nonsense) for the parser to judge


def _iter_records(request: ExportLogsServiceRequest) -> Iterator[Any]:
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            yield from scope_logs.log_records


# --------------------------------------------------------------------------- one record


def _read_record(record: Any, parsed: LogsParsed) -> None:
    attributes = {kv.key: _any_value(kv.value) for kv in record.attributes}
    event = record.event_name or str(attributes.get("event.name") or "")
    if event not in _EVENT_ROLES and event not in _DETAILS_EVENTS:
        parsed.reject(f"log record {event or '(no event name)'!r} is not a GenAI event: not stored")
        return
    trace_id, span_id = bytes(record.trace_id), bytes(record.span_id)
    if len(trace_id) != 16 or not any(trace_id):
        parsed.reject(f"{event}: trace_id must be 16 non-zero bytes (got {len(trace_id)}): not stored")
        return
    if span_id and (len(span_id) != 8 or not any(span_id)):
        parsed.reject(f"{event}: span_id must be 8 non-zero bytes (got {len(span_id)}): not stored")
        return
    at = int(record.time_unix_nano) or int(record.observed_time_unix_nano)
    body = _any_value(record.body) if record.HasField("body") else None
    if event in _DETAILS_EVENTS:
        messages = [
            *_listed_messages(attributes.get("gen_ai.input.messages"), output=False),
            *_listed_messages(attributes.get("gen_ai.output.messages"), output=True),
        ]
    else:
        role = _EVENT_ROLES[event]
        position = 0
        if role == OUTPUT and isinstance(body, dict) and isinstance(body.get("index"), int):
            position = body["index"]
        messages = [(role, position, _content_text(body) or "")]
    ids = (trace_id.hex(), span_id.hex())
    for role, position, raw in messages:
        text = raw.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL; OTLP strings can
        text = text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "\u2026"
        parsed.messages.append(GenAiMessage(_key(ids, event, at, role, position, text), *ids, event, role, position,
                                            text, at))  # fmt: skip


def _key(ids: tuple[str, str], event: str, at: int, role: str, position: int, text: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for part in (*ids, event, str(at), role, str(position), text):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


def _listed_messages(value: Any, *, output: bool) -> Iterable[tuple[str, int, str]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [(OUTPUT if output else INPUT, 0, value)]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return []
    out = []
    for position, message in enumerate(value):
        role = str(message.get("role") or "") if isinstance(message, dict) else ""
        out.append((OUTPUT if output else _MESSAGE_ROLES.get(role, INPUT), position, _content_text(message) or ""))
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
        return None  # binary content (an image) is not display text
    return getattr(value, which)


def _content_text(message: Any) -> str | None:
    """The display text of an event body or message: str, {content | parts | text | message}, lists of parts."""
    if message is None:
        return None
    if isinstance(message, str):
        return message.strip() or None  # never parsed: a completion may well be JSON text
    if isinstance(message, list):
        parts = [t for t in (_content_text(p) for p in message) if t]
        return "\n".join(parts) or None
    if isinstance(message, dict):
        part_type = message.get("type")
        if isinstance(part_type, str) and part_type not in _TEXT_PART_TYPES:
            return None  # tool calls, images, reasoning: not display text
        for key in ("content", "parts", "text", "message"):
            if key in message:
                text = _content_text(message[key])
                if text:
                    return text
        return None
    if isinstance(message, bool):
        return None
    return str(message)
