"""The closed vocabularies of ingestion, in one place: feedback kinds, span kinds, trace
statuses and feedback sources.

Pure Python (no Django): the msgspec wire types (feedback.schemas), the model choices
(feedback.models), the rollup SQL (feedback.rollups), the OTLP mapping (feedback.otlp) and
the API's OpenAPI serializers all take their values from here; tests check the widget's
JavaScript against it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class FeedbackKind(StrEnum):
    # Explicit: a person said what they think of the output.
    THUMB = "thumb"
    RATING = "rating"
    COMMENT = "comment"
    EDIT = "edit"
    # Implicit: what a person did with the output.
    COPY = "copy"
    RETRY = "retry"
    REPHRASE = "rephrase"
    ABANDON = "abandon"
    DWELL = "dwell"
    ACCEPT = "accept"
    CUSTOM = "custom"


EXPLICIT_KINDS: frozenset[FeedbackKind] = frozenset(
    {FeedbackKind.THUMB, FeedbackKind.RATING, FeedbackKind.COMMENT, FeedbackKind.EDIT}
)
IMPLICIT_KINDS: frozenset[FeedbackKind] = frozenset(FeedbackKind) - EXPLICIT_KINDS
# Thumbs and ratings are choices a person may change: the last one per person counts.
CHOICE_KINDS: frozenset[FeedbackKind] = frozenset({FeedbackKind.THUMB, FeedbackKind.RATING})
# Who made a choice, in SQL on a feedback event ``f``: the user, else the session, else the event alone (one
# person's changed mind replaces their first choice). The rollups, the signals, widget labels and the trace list
# all count "the last choice per person" by it.
CHOOSER_SQL = "COALESCE(NULLIF(f.user_id, ''), NULLIF(f.session_id, ''), f.event_id::text)"
# In declaration order, as plain strings (for msgspec Literal types and DRF ChoiceFields).
FEEDBACK_KINDS: tuple[str, ...] = tuple(kind.value for kind in FeedbackKind)


class SpanKind(StrEnum):
    LLM = "llm"
    RETRIEVAL = "retrieval"
    TOOL = "tool"
    # What a span is when nothing says otherwise; a resend saying "other" keeps a known kind.
    OTHER = "other"


SPAN_KINDS: tuple[str, ...] = tuple(kind.value for kind in SpanKind)


class TraceStatus(StrEnum):
    OK = "ok"
    ERROR = "error"


TRACE_STATUSES: tuple[str, ...] = tuple(status.value for status in TraceStatus)


class FeedbackSource(StrEnum):
    """Which door a feedback event came in by."""

    API = "api"  # the secret-key REST API
    WIDGET = "widget"  # the browser widget, with a public key


FEEDBACK_SOURCES: tuple[str, ...] = tuple(source.value for source in FeedbackSource)


def sql_list(values: Iterable[str]) -> str:
    """Values as a SQL literal list for ``IN (...)``, e.g. ``'comment', 'edit'`` (sorted, so stable).

    Only for the closed vocabularies above, never for input: it quotes, it does not escape.
    """
    items = sorted(str(v) for v in values)
    if any("'" in item for item in items):
        raise ValueError("sql_list is for enum values, which never hold quotes")
    return ", ".join(f"'{item}'" for item in items)
