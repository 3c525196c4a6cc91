"""Wire formats of the write API, validated with msgspec (fast enough for the hot path).

A body is one item or {"batch": [...]}. Each item decodes on its own so one bad item
yields an error with its index and field while the rest of the batch is stored.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import msgspec

from feedback.enums import FEEDBACK_KINDS, SPAN_KINDS, TRACE_STATUSES, FeedbackKind, SpanKind

MAX_BATCH = 1000
MAX_ID = 200
MAX_TEXT = 200_000
MAX_COMMENT = 20_000
MAX_METADATA_BYTES = 16 * 1024
MAX_SPAN_NAME = 300
MAX_FEATURE_KEY = 100
# A feature key: letters, digits and _.:/- (starting with a letter or digit).
FEATURE_KEY_CHARS = "A-Za-z0-9_.:/-"
# A feature key as traces send it (what a budget or a report names it by).
FEATURE_KEY_PATTERN = f"^[A-Za-z0-9][{FEATURE_KEY_CHARS}]*$"
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
Short = Annotated[str, msgspec.Meta(max_length=MAX_ID)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
Comment = Annotated[str, msgspec.Meta(max_length=MAX_COMMENT)]
# JSON Schema counts 3.0 as an integer, so a token count may come as one; check_trace makes it an int.
Tokens = Annotated[int, msgspec.Meta(ge=0, le=10**12)] | Annotated[float, msgspec.Meta(ge=0, le=1e12)]
# Below the columns' precision (numeric(16, 8)): one trace or span costs less than a million dollars.
Money = Annotated[float, msgspec.Meta(ge=0, lt=10**6)]
Millis = Annotated[float, msgspec.Meta(ge=0, le=10**10)]

# The accepted values come from feedback.enums (msgspec reads the runtime Literal; mypy sees str).
if TYPE_CHECKING:
    FeedbackKindName = str
    SpanKindName = str
    TraceStatusName = str
else:
    FeedbackKindName = Literal[FEEDBACK_KINDS]
    SpanKindName = Literal[SPAN_KINDS]
    TraceStatusName = Literal[TRACE_STATUSES]


class SpanIn(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    span_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    parent_span_id: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    name: Annotated[str, msgspec.Meta(max_length=MAX_SPAN_NAME)] | None = None
    kind: SpanKindName = SpanKind.OTHER.value
    start: datetime | None = None
    end: datetime | None = None
    model: Short | None = None
    input_tokens: Tokens | None = None
    output_tokens: Tokens | None = None
    cost_usd: Money | None = None
    attributes: dict[str, Any] | None = None


class TraceIn(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    trace_id: Id
    feature: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_FEATURE_KEY, pattern=FEATURE_KEY_PATTERN)]
    prompt_version: Short | None = None
    prompt_hash: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    prompt: Text | None = None
    model: Short | None = None
    provider: Annotated[str, msgspec.Meta(max_length=50)] | None = None
    input: Text | None = None
    output: Text | None = None
    input_tokens: Tokens | None = None
    output_tokens: Tokens | None = None
    cached_tokens: Tokens | None = None
    cost_usd: Money | None = None
    latency_ms: Millis | None = None
    ttft_ms: Millis | None = None
    status: TraceStatusName | None = None
    fallback: bool | None = None
    guardrail_blocked: bool | None = None
    customer_id: Short | None = None
    user_id: Short | None = None
    session_id: Short | None = None
    experiment: Short | None = None
    variant: Short | None = None
    metadata: dict[str, Any] | None = None
    spans: Annotated[list[SpanIn], msgspec.Meta(max_length=1000)] | None = None
    started_at: datetime | None = None
    params: dict[str, Any] | None = None


class FeedbackIn(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    trace_id: Id
    kind: FeedbackKindName
    value: Annotated[float, msgspec.Meta(ge=-1e12, le=1e12)] | None = None
    comment: Comment | None = None
    original_text: Text | None = None
    edited_text: Text | None = None
    name: Short | None = None
    user_id: Short | None = None
    session_id: Short | None = None
    prompt_version: Short | None = None
    feature: Short | None = None
    occurred_at: datetime | None = None
    # Signed per-trace token from the widget (see tenants.tokens); ignored on the secret-key API.
    token: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class OutcomeIn(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    outcome_id: Id
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    trace_id: Short | None = None
    session_id: Short | None = None
    customer_id: Short | None = None
    variant: Short | None = None
    # numeric(16, 6) holds less than 10^10 either way; an outcome is worth less than a billion.
    value_usd: Annotated[float, msgspec.Meta(gt=-1e9, lt=1e9)] | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class ItemError:
    index: int
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": _printable(self.field), "message": _printable(self.message)}


def _printable_name(name: str) -> str:
    return name if len(name) <= 100 else name[:100] + "…"


def _printable(text: str) -> str:
    # An error may quote the bad input itself (a lone surrogate in a key): keep it sendable.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class BodyError(Exception):
    """The body as a whole cannot be read (400) or is too large (413)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


T = TypeVar("T", bound=msgspec.Struct)
_AT = re.compile(r" - at `\$\.?([^`]*)`$")


_MISSING = re.compile(r"^Object missing required field `([^`]*)`")


# Unknown fields are refused, not ignored: a misspelt `promt_version` must not silently lose the tie.
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)`")


def _field_of(message: str) -> tuple[str, str]:
    unknown = _UNKNOWN.match(message)
    if unknown:
        prefix, _ = _field_of(message[unknown.end() :]) if " - at `" in message else ("", "")
        name = _printable_name(unknown.group(1))
        return (f"{prefix}.{name}" if prefix else name), "unknown field: not part of the API (check its spelling)"
    missing = _MISSING.match(message)
    if missing:
        prefix, _ = _field_of(message[missing.end() :]) if " - at `" in message else ("", "")
        return (f"{prefix}.{missing.group(1)}" if prefix else missing.group(1)), "required"
    match = _AT.search(message)
    if not match:
        return "", message
    field = match.group(1).replace("[", ".").replace("]", "")
    return field, message[: match.start()]


class _NonFinite(str):
    """Marks NaN / Infinity found by the lenient parser."""


def _lenient_items(body: bytes) -> list[Any]:
    """Slow path for bodies msgspec refuses: find which items carry NaN, bad UTF-8 or lone surrogates."""
    try:
        text = body.decode("utf-8", errors="surrogateescape")
        document = json.loads(text, parse_constant=_NonFinite)
    except RecursionError:
        raise BodyError("too_deep", "The body nests objects or lists too deeply.") from None
    except ValueError as exc:
        raise BodyError("invalid_json", f"The body is not valid JSON: {exc}") from exc
    return _split_document(document)


def _split_document(document: Any) -> list[Any]:
    if isinstance(document, dict) and "batch" in document:
        batch = document["batch"]
        if not isinstance(batch, list):
            raise BodyError("invalid_body", "'batch' must be a list of items.")
        return batch
    if isinstance(document, dict):
        return [document]
    raise BodyError("invalid_body", 'Send one JSON object or {"batch": [...]}.')


def _find_bad_value(value: Any, path: str = "") -> tuple[str, str] | None:
    if isinstance(value, _NonFinite):
        return path, f"{value} is not a number (JSON has no NaN or Infinity)"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, "text is not valid UTF-8 (invalid bytes or a lone surrogate)"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            found = _find_bad_value(key, where) or _find_bad_value(item, where)
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _find_bad_value(item, f"{path}.{i}" if path else str(i))
            if found:
                return found
    return None


_envelope = msgspec.json.Decoder(dict[str, msgspec.Raw])
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


def split_body(body: bytes, max_items: int = MAX_BATCH) -> list[bytes | ItemError]:
    """The raw JSON of each item (or an ItemError for an item that cannot even be read)."""
    if not body.strip():
        raise BodyError("empty_body", 'The body is empty: send one JSON object or {"batch": [...]}.')
    items: list[bytes | ItemError]
    try:
        envelope = _envelope.decode(body)
        if "batch" in envelope:
            beside = sorted(key for key in envelope if key != "batch")
            if beside:  # an item's fields beside a batch: neither reading keeps all that was sent
                named = ", ".join(repr(key[:40]) for key in beside[:5]) + (" …" if len(beside) > 5 else "")
                raise BodyError("invalid_body", f'Send one JSON object or {{"batch": [...]}}, not both: {named} '
                                "beside 'batch'.")  # fmt: skip
            try:
                items = [bytes(raw) for raw in _raw_list.decode(envelope["batch"])]
            except msgspec.ValidationError as exc:
                raise BodyError("invalid_body", "'batch' must be a list of items.") from exc
        else:
            items = [body]
    except msgspec.ValidationError as exc:
        raise BodyError("invalid_body", 'Send one JSON object or {"batch": [...]}.') from exc
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        items = _screen(_lenient_items(body))
    if len(items) > max_items:
        raise BodyError("too_many_items", f"A batch holds at most {max_items} items; this one has {len(items)}.", 413)
    return items


def _screen(documents: list[Any]) -> list[bytes | ItemError]:
    """Items parsed leniently: an ItemError for each one that holds what JSON or UTF-8 forbid."""
    items: list[bytes | ItemError] = []
    for index, item in enumerate(documents):
        try:
            bad = _find_bad_value(item)
            items.append(ItemError(index, *bad) if bad else msgspec.json.encode(item))
        except (RecursionError, UnicodeEncodeError):
            items.append(ItemError(index, "", "nests too deeply or holds text that is not valid UTF-8"))
    return items


def split_widget_body(body: bytes) -> tuple[str, list[bytes | ItemError]]:
    """The widget's {"key": "pk_...", "events": [...]}: the key, and each event as in split_body."""
    try:
        envelope = _envelope.decode(body)
        key = msgspec.json.decode(envelope.get("key", b'""'), type=str)
        events = envelope.get("events")
        if events is not None and bytes(events).lstrip().startswith(b"["):
            return key, split_body(b'{"batch":' + bytes(events) + b"}")
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        pass
    try:
        document = json.loads(body.decode("utf-8", errors="surrogateescape"), parse_constant=_NonFinite)
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("key", ""), str):
        raise BodyError("invalid_body", 'Send {"key": "pk_...", "events": [...]} as JSON.')
    events = document.get("events")
    if events is None:
        raise BodyError("invalid_body", 'The body has no events: send {"key": "pk_...", "events": [...]}.')
    if not isinstance(events, list):
        raise BodyError("invalid_body", "'events' must be a list.")
    if len(events) > MAX_BATCH:
        raise BodyError("too_many_items", f"A batch holds at most {MAX_BATCH} items; this one has {len(events)}.", 413)
    return document.get("key", ""), _screen(events)


def check_time(value: datetime | None, field: str, now: datetime) -> datetime | None:
    """The time in UTC, or a ValueError naming the field. Kept in UTC: PostgreSQL refuses offsets past ±15:59
    (ISO 8601 and the decoder allow ±23:59), and a time sent with one was a 500 when stored as sent."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"{field}: give a time zone, e.g. 2025-01-31T12:00:00Z")
    if value < EARLIEST:
        raise ValueError(f"{field}: {value.isoformat()} is before 1970")
    if value > now + FUTURE_SLACK:
        raise ValueError(f"{field}: {value.isoformat()} is in the future")
    return value.astimezone(UTC)


# --- Per-item rules beyond what the types say (a ValueError reads "<field>: <message>") -------

_metadata_size = msgspec.json.Encoder()


def _whole(holder: Any, names: tuple[str, ...], prefix: str = "") -> None:
    for name in names:
        value = getattr(holder, name)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{prefix}{name}: a whole number of tokens")
            setattr(holder, name, int(value))


def check_trace(item: TraceIn, now: datetime) -> None:
    item.started_at = check_time(item.started_at, "started_at", now)
    _whole(item, ("input_tokens", "output_tokens", "cached_tokens"))
    for i, span in enumerate(item.spans or ()):
        _whole(span, ("input_tokens", "output_tokens"), f"spans.{i}.")
    if item.metadata is not None and len(_metadata_size.encode(item.metadata)) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata: larger than {MAX_METADATA_BYTES // 1024} KB once encoded")
    for i, span in enumerate(item.spans or ()):
        span.start = check_time(span.start, f"spans.{i}.start", now)
        span.end = check_time(span.end, f"spans.{i}.end", now)
        if span.start and span.end and span.end < span.start:
            raise ValueError(f"spans.{i}.end: ends before it starts")


def check_feedback(item: FeedbackIn, now: datetime) -> None:
    try:
        uuid.UUID(item.event_id)
    except ValueError:
        raise ValueError("event_id: must be a UUID, e.g. 0b5c6c4e-2f1d-4d7a-9a51-3f0f8f1f7a10") from None
    item.occurred_at = check_time(item.occurred_at, "occurred_at", now)
    kind, value = item.kind, item.value
    if kind == FeedbackKind.THUMB and value not in (1, -1):
        raise ValueError("value: a thumb is 1 (up) or -1 (down)")
    if kind == FeedbackKind.RATING and (value is None or not 1 <= value <= 5):
        raise ValueError("value: a rating is a number from 1 to 5")
    if kind == FeedbackKind.DWELL and (value is None or value < 0):
        raise ValueError("value: dwell is the time visible in milliseconds (>= 0)")
    if kind == FeedbackKind.EDIT and (item.original_text is None or item.edited_text is None):
        raise ValueError("edited_text: an edit needs original_text and edited_text" if item.original_text is not None
                         else "original_text: an edit needs original_text and edited_text")  # fmt: skip
    if kind == FeedbackKind.COMMENT and not (item.comment or "").strip():
        raise ValueError("comment: a comment event needs the comment text")
    if kind == FeedbackKind.CUSTOM and not item.name:
        raise ValueError("name: a custom event needs a name")


def check_outcome(item: OutcomeIn, now: datetime) -> None:
    item.occurred_at = check_time(item.occurred_at, "occurred_at", now)
    if not item.trace_id and not item.session_id:
        raise ValueError("trace_id: an outcome needs a trace_id or a session_id")


def prompt_hash_of(prompt: str) -> str:
    """The content hash a prompt version gets when the client sends ``prompt`` but no ``prompt_hash``."""
    return hashlib.sha256(prompt.encode()).hexdigest()[:16]


def decode_items(
    raw_items: list[bytes | ItemError],
    struct: type[T],
    check: Callable[[T, datetime], None],
    now: datetime,
) -> tuple[list[tuple[int, T]], list[ItemError]]:
    """Decode and check each item; returns (index, item) pairs and per-item errors."""
    decoder = msgspec.json.Decoder(struct)
    good: list[tuple[int, T]] = []
    errors: list[ItemError] = []
    for index, raw in enumerate(raw_items):
        if isinstance(raw, ItemError):
            errors.append(raw)
            continue
        try:
            item = decoder.decode(raw)
        except msgspec.ValidationError as exc:
            field, message = _field_of(str(exc))
            errors.append(ItemError(index, field, _friendly(message, field)))
            continue
        except (msgspec.DecodeError, RecursionError) as exc:
            errors.append(ItemError(index, "", f"not valid JSON: {exc}"))
            continue
        except UnicodeDecodeError:  # invalid bytes inside a string: the envelope split passed them along
            errors.append(ItemError(index, *_utf8_problem(raw)))
            continue
        # The escape of a NUL, or only a backslash written before "u0000": the decoded text tells.
        if b"\\u0000" in raw and (where := _nul_field(raw)) is not None:
            errors.append(ItemError(index, where, "text must not contain NUL (\\u0000) characters"))
            continue
        try:
            check(item, now)
        except ValueError as exc:
            field, _, message = str(exc).partition(": ")
            errors.append(ItemError(index, field, message))
            continue
        good.append((index, item))
    return good, errors


def _utf8_problem(raw: bytes) -> tuple[str, str]:
    """(field, message) of an item holding bytes that are not UTF-8, read leniently to name the field."""
    try:
        found = _find_bad_value(json.loads(raw.decode("utf-8", errors="surrogateescape"), parse_constant=_NonFinite))
    except (ValueError, RecursionError):
        found = None
    return found or ("", "text is not valid UTF-8 (invalid bytes or a lone surrogate)")


def _nul_field(raw: bytes) -> str | None:
    """Where the item holds a NUL character (a key's: the object holding it), or None."""
    return _find_bad_nul(json.loads(raw))


def _find_bad_nul(value: Any, path: str = "") -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict) and any("\x00" in key for key in value):
        return path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in children:
        found = _find_bad_nul(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _friendly(message: str, field: str) -> str:
    if message.startswith("Object missing required field"):
        return "required"
    if "of length <=" in message:
        return f"too long: {message.removeprefix('Expected ')}"
    return message


_batch_decoders: dict[type, msgspec.json.Decoder[Any]] = {}
_single_decoders: dict[type, msgspec.json.Decoder[Any]] = {}


def _fast_decode(body: bytes, struct: type[T]) -> list[T] | None:
    """Decode a whole well-formed body in one call; None sends it down the per-item path.

    A bad item anywhere fails the whole decode, so errors are then found item by item.
    """
    if b"\\u0000" in body:  # NUL bytes: let the slow path name the field
        return None
    if struct not in _batch_decoders:
        _batch_decoders[struct] = msgspec.json.Decoder(dict[str, list[struct]])  # type: ignore[valid-type]
        _single_decoders[struct] = msgspec.json.Decoder(struct)
    try:
        if b'"batch"' in body[:100]:
            envelope = _batch_decoders[struct].decode(body)
            return envelope["batch"] if list(envelope) == ["batch"] else None
        if b'"batch"' in body:  # a "batch" key further in: the per-item path reads the envelope
            return None
        return [_single_decoders[struct].decode(body)]
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


def decode_body(
    body: bytes,
    struct: type[T],
    check: Callable[[T, datetime], None],
    now: datetime,
    max_items: int = MAX_BATCH,
) -> tuple[list[tuple[int, T]], list[ItemError]]:
    """Decode and check every item of a body: one fast decode when all is well, else item by item."""
    items = _fast_decode(body, struct)
    if items is None:
        return decode_items(split_body(body, max_items), struct, check, now)
    if len(items) > max_items:
        raise BodyError("too_many_items", f"A batch holds at most {max_items} items; this one has {len(items)}.", 413)
    good: list[tuple[int, T]] = []
    errors: list[ItemError] = []
    for index, item in enumerate(items):
        try:
            check(item, now)
        except ValueError as exc:
            field, _, message = str(exc).partition(": ")
            errors.append(ItemError(index, field, message))
        else:
            good.append((index, item))
    return good, errors
