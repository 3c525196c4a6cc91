"""URL converters for IDs an organization chooses (trace_id, customer_id): any text, line breaks included."""

from __future__ import annotations

from django.urls.converters import PathConverter


class AnyTextConverter(PathConverter):
    """``<text:trace_id>``: Django's ``path`` converter (``.+``) stops at a line break, so a trace or customer ID
    holding one (the APIs take any text without NUL) could not be linked: reversing its URL raised, and the trace
    explorer and the spend page answered 500 for the whole organization."""

    regex = r"[\s\S]+"
