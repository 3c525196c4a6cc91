"""Portal pages over ingested data: the trace explorer. Thin: selectors do the reads."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch

from feedback.edits import diff_segments  # the alignment kept_ratio is measured on, bounded
from feedback.models import Feature, Trace
from feedback.schemas import MAX_FEATURE_KEY
from feedback.selectors import (
    FilterError,
    TraceFeedback,
    TraceFilters,
    feedback_by_trace,
    filter_choices,
    prompt_labels,
    trace_count,
    trace_detail,
    trace_extras,
    trace_page,
)
from tenants.access import org_url

# The explorer's fields as its form names them.
FILTER_LABELS = {
    "since": "From",
    "until": "Until",
    "customer_id": "Customer",
    "metadata": "Metadata",
    "q": "Search",
    "text": "Words",
    "exclude_variant": "Leaving out variants",
}


def trace_list(request: HttpRequest) -> HttpResponse:
    cursor = request.GET.get("cursor", "")
    query = request.GET.copy()
    query.pop("cursor", None)
    refused: list[str] = []
    # Each refusal takes something away (the cursor, the refused filter, or every filter): this ends.
    for _ in range(len(query) + 2):
        try:
            # The form's Until is a date picker: the day picked is included (the API's until stays exclusive).
            filters = TraceFilters.from_query(query, until_day_inclusive=True)
            if filters.since and filters.until and filters.since >= filters.until:
                # The API answers an empty page (its schema cannot say since < until); a person is told why.
                raise FilterError("until", "the window must end after it starts (until after since)")
            page = trace_page(filters, cursor)
            break
        except FilterError as exc:
            # Only the refused filter is left out, and said so; the others still apply (one mistyped date
            # had every filter dropped). The pager pages through what is shown, from its first page.
            label = FILTER_LABELS.get(exc.field, exc.field.replace("_", " ").capitalize())
            refused.append(f"{label} not applied: {exc.message}.")
            if exc.field == "cursor" and cursor:
                cursor = ""  # a cursor no page gave out: the first page of the same filters
            elif exc.field in query:
                query.pop(exc.field)
                cursor = ""
            else:  # a name that cannot be told apart (a NUL in it, "cursor\x00"): nothing of the query stands
                query.clear()
                cursor = ""
    else:
        filters, page = TraceFilters(), trace_page(TraceFilters())
    error = " ".join(refused) or None
    metadata_filter = next(iter(filters.metadata.items()), ("", ""))
    context: dict[str, Any] = {
        "nav": "traces",
        "filters": filters,
        "page": page,
        "rows": _with_feedback(page.results),
        "count": trace_count(filters),
        "error": error,
        "choices": filter_choices(),
        "query": query.urlencode(),
        "paged": bool(cursor),
        # The last day the window includes, as the date picker shows it (until itself is exclusive).
        "until_day": filters.until - timedelta(microseconds=1) if filters.until else None,
        # The explorer without its left-out variants (a report row's link leaves the holdback arm out).
        "with_every_variant": _without(query, "exclude_variant") if filters.exclude_variants else "",
        "metadata_key": metadata_filter[0],
        "metadata_value": metadata_filter[1],
    }
    template = "feedback/trace_list.html#results" if request.htmx else "feedback/trace_list.html"  # type: ignore[attr-defined]
    return TemplateResponse(request, template, context)


def _without(query: Any, name: str) -> str:
    rest = query.copy()
    rest.pop(name, None)
    return str(rest.urlencode())


def _with_feedback(traces: list[Trace]) -> list[tuple[Trace, TraceFeedback]]:
    """Each listed trace beside what people said of it (a PM scanning for the thumbs-down ones saw none)."""
    said = feedback_by_trace([trace.trace_id for trace in traces])
    return [(trace, said.get(trace.trace_id, _NO_FEEDBACK)) for trace in traces]


_NO_FEEDBACK = TraceFeedback()


def _trace_links(request: HttpRequest, trace: Trace) -> dict[str, Any]:
    """Where a trace's fields lead: its feature's page, and the explorer filtered to the traces of its feature that
    share its prompt version, its variant or one of its metadata values; its experiment's page. The feature and
    experiment pages are evaluation's, named by URL (feedback imports nothing of evaluation, so it cannot tell an
    experiment value nobody registered: its link answers the experiment page's 404); a value no URL can carry
    (a "/") gets no link."""
    explorer = org_url(request, "feedback:trace-list")
    feature = {"feature": trace.feature.key}

    def filtered(**query: str) -> str:
        return f"{explorer}?{urlencode({**feature, **query})}"

    experiment = ""
    if trace.experiment:
        try:
            experiment = org_url(request, "evaluation:experiment-detail", trace.experiment)
        except NoReverseMatch:
            pass
    return {
        "feature": org_url(request, "evaluation:feature", trace.feature.key),
        "prompt_version": filtered(prompt_version=trace.prompt_version.label) if trace.prompt_version else "",
        "variant": filtered(variant=trace.variant) if trace.variant else "",
        "experiment": experiment,
        "metadata": [
            (k, v, "" if (text := _metadata_text(v)) is None else filtered(**{f"metadata.{k}": text}))
            for k, v in (trace.metadata or {}).items()
        ],
    }


def _metadata_text(value: Any) -> str | None:
    """A metadata value as the explorer's filter takes it: a number or a boolean spelt as JSON (``true``, which
    it matches as sent; Python's ``True`` it would not); None for null, an object or a list (it cannot filter
    those)."""
    if value is None or isinstance(value, dict | list):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def trace_view(request: HttpRequest, trace_id: str) -> HttpResponse:
    detail = trace_detail(trace_id)
    if detail is None:
        # Every other page's address ends in a slash, so a trace's is typed with one: the trace without it.
        if trace_id.endswith("/") and trace_detail(trace_id.rstrip("/")) is not None:
            query = f"?{request.GET.urlencode()}" if request.GET else ""
            return HttpResponseRedirect(org_url(request, "feedback:trace-detail", trace_id.rstrip("/")) + query)
        raise Http404("No such trace.")
    # Start and end are optional in the API: a span without both is listed, with no bar on the timeline.
    timed = [s for s in detail.spans if s.start and s.end]
    begin = min((s.start for s in timed if s.start), default=None)
    finish = max((s.end for s in timed if s.end), default=None)
    total = max((finish - begin).total_seconds(), 1e-6) if begin and finish else 1.0
    spans = []
    for span in detail.spans:
        row: dict[str, Any] = {"span": span, "timed": False, "offset": 0.0, "width": 0.0, "duration_ms": None}
        if span.start and span.end and begin:
            row.update(
                timed=True,
                offset=(span.start - begin).total_seconds() / total * 100,
                width=max((span.end - span.start).total_seconds() / total * 100, 0.5),
                duration_ms=(span.end - span.start).total_seconds() * 1000,
            )
        spans.append(row)
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
            "links": _trace_links(request, detail.trace),
            "spans": spans,
            "untimed_spans": sum(1 for row in spans if not row["timed"]),
            "feedback": feedback,
            "outcomes": detail.outcomes,
            "extras": [(extra.template, value) for extra, value in trace_extras(trace_id) if extra.template],
            "back": _back_query(request.GET.get("back", "")),
        },  # fmt: skip
    )


# What the explorer's link back may carry: its own filters, nothing else (the query is the list's, re-encoded).
_BACK_KEYS = frozenset(("feature", "prompt_version", "customer_id", "variant", "model", "since", "until",
                        "has_thumbs_down", "has_edit", "q", "text"))  # fmt: skip


def _back_query(raw: str) -> str:
    """The trace list's filters the detail page was opened from (``back``), so its link back keeps them."""
    pairs = [(k, v) for k, v in QueryDict(raw[:4000]).items() if k in _BACK_KEYS or k.startswith("metadata.")]
    return urlencode(pairs)


def prompt_list(request: HttpRequest) -> HttpResponse:
    """Every prompt version label with the prompts sent under it (?feature= for one feature's): the text, model and
    parameters no other page showed, and a warning where one label holds several prompts (read as one version)."""
    key = request.GET.get("feature", "")
    if "\x00" in key or len(key) > MAX_FEATURE_KEY:  # no feature has it (PostgreSQL text cannot hold NUL)
        raise Http404("No such feature.")
    feature = Feature.objects.filter(key=key).first() if key else None
    if key and feature is None:
        raise Http404("No such feature.")
    features = prompt_labels(feature)
    return TemplateResponse(request, "feedback/prompt_list.html", {"nav": "traces", "feature": feature,
                            "features": features})  # fmt: skip
