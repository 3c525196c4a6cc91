"""feedback.enums is the one source of each closed vocabulary: every other place that names
feedback kinds, span kinds, trace statuses or sources must agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from feedback import rollups
from feedback.enums import (
    CHOICE_KINDS,
    EXPLICIT_KINDS,
    FEEDBACK_KINDS,
    FEEDBACK_SOURCES,
    IMPLICIT_KINDS,
    SPAN_KINDS,
    TRACE_STATUSES,
    FeedbackKind,
    FeedbackSource,
    SpanKind,
    TraceStatus,
    sql_list,
)
from feedback.models import FeedbackEvent, Span, Trace
from feedback.schemas import FeedbackIn, SpanIn, TraceIn

WIDGET_SOURCE = Path(__file__).resolve().parents[2] / "static" / "widget" / "src" / "candor.js"
# Kinds only a backend sends (the widget's candor.signal() can send them too, but nothing in it does).
NOT_SENT_BY_WIDGET = {"custom"}


def _literal_values(struct: type[msgspec.Struct], field: str) -> set[str]:
    """The values msgspec itself accepts for a Literal field (None of an optional field left out)."""
    (info,) = [f for f in msgspec.inspect.type_info(struct).fields if f.name == field]  # type: ignore[attr-defined]
    kind = info.type
    if isinstance(kind, msgspec.inspect.UnionType):
        (kind,) = [t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)]
    assert isinstance(kind, msgspec.inspect.LiteralType), f"{struct.__name__}.{field} is not a Literal"
    return {str(value) for value in kind.values}


def test_kind_groups_partition_the_kinds() -> None:
    assert EXPLICIT_KINDS | IMPLICIT_KINDS == set(FeedbackKind)
    assert not EXPLICIT_KINDS & IMPLICIT_KINDS
    assert {k.value for k in EXPLICIT_KINDS} == {"thumb", "rating", "comment", "edit"}
    assert CHOICE_KINDS <= EXPLICIT_KINDS
    assert FEEDBACK_KINDS == tuple(k.value for k in FeedbackKind) and all(type(k) is str for k in FEEDBACK_KINDS)


def test_msgspec_types_accept_exactly_the_enum_values() -> None:
    assert _literal_values(FeedbackIn, "kind") == set(FEEDBACK_KINDS)
    assert _literal_values(SpanIn, "kind") == set(SPAN_KINDS)
    assert _literal_values(TraceIn, "status") == set(TRACE_STATUSES)
    event = {"event_id": "0b5c6c4e-2f1d-4d7a-9a51-3f0f8f1f7a10", "trace_id": "t"}
    for kind in FeedbackKind:
        assert msgspec.json.decode(msgspec.json.encode({**event, "kind": kind}), type=FeedbackIn).kind == kind
    with pytest.raises(msgspec.ValidationError, match="Invalid enum value 'thumbs'"):
        msgspec.json.decode(msgspec.json.encode({**event, "kind": "thumbs"}), type=FeedbackIn)
    assert SpanIn(span_id="s").kind == SpanKind.OTHER


def test_model_choices_and_defaults_come_from_the_enum() -> None:
    kind = FeedbackEvent._meta.get_field("kind")
    assert [value for value, _ in kind.choices] == list(FEEDBACK_KINDS)  # type: ignore[union-attr]
    # The stored labels are what migration 0001 recorded ("Thumb"): no migration for the move.
    assert dict(kind.choices)["thumb"] == "Thumb"  # type: ignore[arg-type]
    assert max(map(len, FEEDBACK_KINDS)) <= kind.max_length  # type: ignore[operator]
    assert Trace._meta.get_field("status").default == TraceStatus.OK
    assert max(map(len, TRACE_STATUSES)) <= Trace._meta.get_field("status").max_length  # type: ignore[operator]
    assert Span._meta.get_field("kind").default == SpanKind.OTHER
    assert max(map(len, SPAN_KINDS)) <= Span._meta.get_field("kind").max_length  # type: ignore[operator]
    source = FeedbackEvent._meta.get_field("source")
    assert source.default == FeedbackSource.API
    assert max(map(len, FEEDBACK_SOURCES)) <= source.max_length  # type: ignore[operator]


def test_rollup_sql_counts_the_enum_groups() -> None:
    sql = rollups._RECOMPUTE
    explicit = re.search(r"FILTER \(WHERE kind IN \(([^)]*)\)\) > 0\)::int AS explicit_n", sql)
    implicit = re.search(r"FILTER \(WHERE kind NOT IN \(([^)]*)\)\) > 0\)::int AS implicit_n", sql)
    choices = re.search(r"FROM fe WHERE kind IN \(([^)]*)\)", sql)
    assert explicit and implicit and choices
    words = lambda match: set(re.findall(r"'(\w+)'", match.group(1)))  # noqa: E731
    assert words(explicit) == words(implicit) == {k.value for k in EXPLICIT_KINDS}
    assert words(choices) == {k.value for k in CHOICE_KINDS}
    # Every kind or status the SQL names is a value of its enum.
    assert set(re.findall(r"kind = '(\w+)'", sql)) <= set(FEEDBACK_KINDS)
    assert set(re.findall(r"status = '(\w+)'", sql)) <= set(TRACE_STATUSES)


def test_sql_list_quotes_enum_values_only() -> None:
    assert sql_list([FeedbackKind.EDIT, FeedbackKind.COMMENT]) == "'comment', 'edit'"
    with pytest.raises(ValueError):
        sql_list(["it's"])


def test_openapi_schema_offers_the_enum_values() -> None:
    """The write bodies' OpenAPI schemas (generated from the msgspec types) name exactly the enum values."""
    from feedback.api.openapi import COMPONENTS

    feedback_kinds = [k for variant in COMPONENTS["FeedbackIn"]["oneOf"] for k in variant["properties"]["kind"]["enum"]]
    assert sorted(feedback_kinds) == sorted(FEEDBACK_KINDS) and len(feedback_kinds) == len(set(feedback_kinds))
    assert set(COMPONENTS["SpanIn"]["properties"]["kind"]["enum"]) == set(SPAN_KINDS)
    status = COMPONENTS["TraceIn"]["properties"]["status"]["anyOf"]
    assert {v for option in status for v in option.get("enum", [])} == set(TRACE_STATUSES)


def _widget_kinds(source: str) -> set[str]:
    """Every feedback kind the widget's source can put in an event."""
    kinds = set(re.findall(r"\bkind: '(\w+)'", source))  # track(t, { kind: 'copy', ... })
    for first, second in re.findall(r"\bkind = \w+ \? '(\w+)' : '(\w+)'", source):  # stars ? 'rating' : 'thumb'
        kinds |= {first, second}
    acts = re.search(r"\bACTS = \[([^\]]*)\]", source)  # data-candor-retry / -rephrase / -accept
    assert acts, "the widget's ACTS list moved: update this test's parser"
    kinds |= set(re.findall(r"'(\w+)'", acts.group(1)))
    return kinds


def test_widget_sends_only_kinds_the_server_accepts() -> None:
    source = WIDGET_SOURCE.read_text()
    sent = _widget_kinds(source)
    assert sent <= set(FEEDBACK_KINDS), f"the widget sends kinds the server rejects: {sent - set(FEEDBACK_KINDS)}"
    # ...and the widget covers every kind but the backend-only ones, so a new kind is a decision.
    assert set(FEEDBACK_KINDS) - sent == NOT_SENT_BY_WIDGET
    # Its "did the person engage" test names implicit kinds, and only kinds.
    passive = re.search(r"if \(!/([\w|]+)/\.test\(e\.kind\)\)", source)
    assert passive, "the widget's passive-kind test moved: update this test's parser"
    assert set(passive.group(1).split("|")) <= {k.value for k in IMPLICIT_KINDS}


def test_widget_parser_sees_a_kind_the_server_rejects() -> None:
    # The check above can fail: a widget source that sends an unknown kind is caught.
    assert "thumbs" in _widget_kinds("ACTS = ['retry'];\ntrack(t, { kind: 'thumbs' }, o);")
