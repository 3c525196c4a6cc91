"""Portal pages over ingested data: the trace explorer. Thin: selectors do the reads."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from feedback.edits import diff_segments  # the alignment kept_ratio is measured on, bounded
from feedback.selectors import (
    FilterError,
    TraceFilters,
    filter_choices,
    trace_detail,
    trace_extras,
    trace_page,
)

# The explorer's fields as its form names them.
FILTER_LABELS = {"since": "From", "until": "Until", "customer_id": "Customer", "metadata": "Metadata"}


def trace_list(request: HttpRequest) -> HttpResponse:
    error = None
    try:
        filters = TraceFilters.from_query(request.GET)
        if filters.since and filters.until and filters.since >= filters.until:
            # The API answers an empty page (its schema cannot say since < until); a person is told why.
            raise FilterError("until", "the window must end after it starts (until after since)")
        page = trace_page(filters, request.GET.get("cursor", ""))
    except FilterError as exc:
        label = FILTER_LABELS.get(exc.field, exc.field.replace("_", " ").capitalize())
        filters, page = TraceFilters(), trace_page(TraceFilters())
        error = f"Filters not applied (showing every trace). {label}: {exc.message}."
    query = request.GET.copy()
    query.pop("cursor", None)
    metadata_filter = next(iter(filters.metadata.items()), ("", ""))
    context: dict[str, Any] = {
        "nav": "traces",
        "filters": filters,
        "page": page,
        "error": error,
        "choices": filter_choices(),
        "query": query.urlencode(),
        "metadata_key": metadata_filter[0],
        "metadata_value": metadata_filter[1],
    }
    template = "feedback/trace_list.html#results" if request.htmx else "feedback/trace_list.html"  # type: ignore[attr-defined]
    return TemplateResponse(request, template, context)


def trace_view(request: HttpRequest, trace_id: str) -> HttpResponse:
    detail = trace_detail(trace_id)
    if detail is None:
        raise Http404("No such trace.")
    spans = []
    starts = [s.start for s in detail.spans if s.start]
    ends = [s.end for s in detail.spans if s.end]
    if starts and ends:
        begin, finish = min(starts), max(ends)
        total = max((finish - begin).total_seconds(), 1e-6)
        for span in detail.spans:
            if span.start and span.end:
                offset = (span.start - begin).total_seconds() / total * 100
                width = max((span.end - span.start).total_seconds() / total * 100, 0.5)
                duration_ms = (span.end - span.start).total_seconds() * 1000
            else:
                offset, width, duration_ms = 0.0, 0.5, None
            spans.append({"span": span, "offset": offset, "width": width, "duration_ms": duration_ms})
    feedback = [
        {"event": e, "diff": diff_segments(e.original_text, e.edited_text) if e.kind == "edit" else None}
        for e in detail.feedback
    ]
    return TemplateResponse(
        request,
        "feedback/trace_detail.html",
        {
            "nav": "traces",
            "trace": detail.trace,
            "spans": spans,
            "feedback": feedback,
            "outcomes": detail.outcomes,
            "extras": [(extra.template, value) for extra, value in trace_extras(trace_id) if extra.template],
        },  # fmt: skip
    )
