"""The ingestion and read endpoints of API.md. Thin: parse, call a service or selector, answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_view,
)
from rest_framework.request import Request
from rest_framework.response import Response

from feedback import services
from feedback.api import openapi
from feedback.api import serializers as s
from feedback.api.hot import widget_receive
from feedback.api.ingest import IngestApi, ingest_responses
from feedback.enums import FeedbackSource
from feedback.otlp import OtlpError, OtlpMediaType, OtlpTooLarge, otlp_map, otlp_response
from feedback.otlp_logs import otlp_logs_parse, otlp_logs_response
from feedback.selectors import PAGE_SIZE, FilterError, TraceFilters, trace_detail, trace_extras, trace_page
from feedback.services.otlp_logs import otlp_logs_ingest
from tenants.api.base import PublicKeyApi, TenantApi, parameter_names, read_body
from tenants.api.errors import ApiError
from tenants.services import ResolvedKey, ingestion_admit

INGEST_RESPONSES = ingest_responses(component_name="IngestRejected", what="item")


class TracesApi(IngestApi):
    query_parameters = (*parameter_names(openapi.TRACE_LIST_PARAMETERS), "metadata.")
    repeatable_parameters = frozenset({openapi.EXCLUDE_VARIANT})

    @extend_schema(
        operation_id="traces_create",
        summary="Send traces (one or a batch of up to 1,000)",
        request={"application/json": openapi.body("TraceInBody")},
        responses=INGEST_RESPONSES,
        tags=["traces"],
    )
    def post(self, request: Request) -> Response:
        return super().post(request)

    def ingest(self, body: bytes) -> services.IngestResult:
        return services.traces_ingest(body=body)

    @extend_schema(
        operation_id="traces_list",
        summary="List traces, newest first, filtered and cursor-paginated",
        description="Lists the organization's traces, newest first, a page at a time: pass the answer's "
        "`next_cursor` as `cursor` for the next page (null on the last). Filters combine: every one given "
        "must match.",
        parameters=[*openapi.TRACE_LIST_PARAMETERS],
        responses={200: s.TracePageSerializer, 400: s.ErrorSerializer},
        tags=["traces"],
    )
    def get(self, request: Request) -> Response:
        query = openapi.trace_list_query(request.query_params)
        try:
            filters = TraceFilters.from_query(query)
            page = trace_page(filters, query.get("cursor", ""), int(query.get("limit", PAGE_SIZE)))
        except FilterError as exc:
            raise ApiError("invalid_filter", str(exc), 400, {"field": exc.field}) from exc
        return Response(
            {"results": s.TraceOutSerializer(page.results, many=True).data, "next_cursor": page.next_cursor}
        )


class TraceDetailApi(TenantApi):
    @extend_schema(
        operation_id="traces_retrieve",
        summary="One trace with its spans, feedback, outcomes, scores and labels",
        responses={200: s.TraceDetailSerializer, 404: s.ErrorSerializer},
        tags=["traces"],
    )
    def get(self, request: Request, trace_id: str) -> Response:
        detail = trace_detail(trace_id)
        if detail is None:
            raise ApiError("not_found", f"No trace '{trace_id}'.", 404)
        data = dict(s.TraceOutSerializer(detail.trace).data)
        data["spans"] = s.SpanOutSerializer(detail.spans, many=True).data
        data["feedback"] = s.FeedbackOutSerializer(detail.feedback, many=True).data
        data["outcomes"] = s.OutcomeOutSerializer(detail.outcomes, many=True).data
        data.update({extra.key: value for extra, value in trace_extras(trace_id)})
        return Response(data)


class FeedbackApi(IngestApi):
    @extend_schema(
        operation_id="feedback_create",
        summary="Send feedback events from your backend",
        request={"application/json": openapi.body("FeedbackInBody")},
        responses=INGEST_RESPONSES,
        tags=["feedback"],
    )
    def post(self, request: Request) -> Response:
        return super().post(request)

    def ingest(self, body: bytes) -> services.IngestResult:
        return services.feedback_ingest(body=body, source=FeedbackSource.API)


class OutcomesApi(IngestApi):
    @extend_schema(
        operation_id="outcomes_create",
        summary="Send business outcomes tied to a trace or session",
        request={"application/json": openapi.body("OutcomeInBody")},
        responses=INGEST_RESPONSES,
        tags=["outcomes"],
    )
    def post(self, request: Request) -> Response:
        return super().post(request)

    def ingest(self, body: bytes) -> services.IngestResult:
        return services.outcomes_ingest(body=body)


# What the OTLP mapping changed on a trace rather than refuse it (instrumentation cannot be told the API's
# rules), by the metadata key the trace records it under: the answer says it too, never silent.
_MAPPING_NOTES: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("candor_clipped", lambda t: f"{t['metadata']['candor_clipped']} clipped to 200,000 characters"),
    (
        "candor_feature_sent",
        lambda t: f"candor.feature {t['metadata']['candor_feature_sent']!r} is not a feature key (letters, digits "
        f"and _.:/-): stored under {t['feature']!r}",
    ),
    (
        "candor_not_counted",
        lambda t: f"{t['metadata']['candor_not_counted']} not a token count (a whole number from 0 to 10^12): kept "
        "in the span's attributes, not counted",
    ),
)


class OtlpTracesApi(TenantApi):
    """OTLP/HTTP answers in the request's encoding with HTTP 200; refused traces go in partial_success."""

    @extend_schema(
        operation_id="otlp_traces",
        summary="OTLP/HTTP trace export (protobuf or JSON), GenAI semantic conventions",
        request={"application/x-protobuf": OpenApiTypes.BINARY, "application/json": openapi.body("OtlpTracesRequest")},
        responses={
            (200, "application/x-protobuf"): OpenApiTypes.BINARY,
            (200, "application/json"): openapi.body("OtlpTracesResponse"),
            400: s.ErrorSerializer,
            413: s.ErrorSerializer,
            415: s.ErrorSerializer,
        },
        tags=["opentelemetry"],
    )
    def post(self, request: Request) -> HttpResponse:
        key: Any = request.auth
        ingestion_admit(key=key)  # 429 quota_exceeded past the organization's spend cap
        body = read_body(request._request)
        content_type = request.content_type.split(";")[0].strip().lower()
        refused: list[str] = []  # spans whose IDs cannot be read: refused alone, the rest of the export kept
        try:
            traces = otlp_map(body, content_type, max_bytes=settings.API_MAX_BODY_BYTES, refused=refused)
        except OtlpTooLarge as exc:
            raise ApiError("too_large", str(exc), 413) from exc
        except OtlpMediaType as exc:
            raise ApiError("unsupported_media_type", str(exc), 415) from exc
        except OtlpError as exc:
            raise ApiError("invalid_otlp", str(exc), 400) from exc
        result, errors = services.otlp_ingest(traces=traces)
        rejected_spans = sum(max(1, len(traces[e.index][1])) for e in errors) + len(refused)
        notes = refused[:20] + ([f"{len(refused) - 20} more spans with invalid IDs"] if len(refused) > 20 else [])
        notes += [f"trace {traces[e.index][0].get('trace_id', e.index)}: {e.field} {e.message}".strip() for e in errors]
        notes += [
            f"trace {t['trace_id']}: {say(t)}" for t, _ in traces for key, say in _MAPPING_NOTES if key in t["metadata"]
        ]
        # Stored, but with something left empty (a model with no price): said, as the traces API says it.
        notes += [f"trace {traces[w['index']][0]['trace_id']}: {w['message']}" for w in result.warnings]
        message = "; ".join(notes)
        payload, media_type = otlp_response(content_type, rejected_spans, message[:2000])
        return HttpResponse(payload, content_type=media_type, status=200)


class OtlpLogsApi(TenantApi):
    """OTLP/HTTP logs: the GenAI events (prompt and completion text) attached to their trace, in any order."""

    @extend_schema(
        operation_id="otlp_logs",
        summary="OTLP/HTTP log export (protobuf or JSON): GenAI message events joined to their trace",
        request={"application/x-protobuf": OpenApiTypes.BINARY, "application/json": openapi.body("OtlpLogsRequest")},
        responses={
            (200, "application/x-protobuf"): OpenApiTypes.BINARY,
            (200, "application/json"): openapi.body("OtlpLogsResponse"),
            400: s.ErrorSerializer,
            413: s.ErrorSerializer,
            415: s.ErrorSerializer,
        },
        tags=["opentelemetry"],
    )
    def post(self, request: Request) -> HttpResponse:
        key: Any = request.auth
        ingestion_admit(key=key)  # 429 quota_exceeded past the organization's spend cap
        body = read_body(request._request)
        content_type = request.content_type.split(";")[0].strip().lower()
        try:
            parsed = otlp_logs_parse(body, content_type, max_bytes=settings.API_MAX_BODY_BYTES)
        except OtlpTooLarge as exc:
            raise ApiError("too_large", str(exc), 413) from exc
        except OtlpMediaType as exc:
            raise ApiError("unsupported_media_type", str(exc), 415) from exc
        except OtlpError as exc:
            raise ApiError("invalid_otlp", str(exc), 400) from exc
        result = otlp_logs_ingest(messages=parsed.messages)
        notes = list(parsed.reasons)
        if parsed.rejected > len(parsed.reasons):
            notes.append(f"{parsed.rejected - len(parsed.reasons)} more refused")
        if result.waiting:
            # Not an error: kept, and joined when the trace's spans arrive.
            notes.append(
                f"{result.waiting} GenAI messages wait for their trace's spans "
                f"(kept {settings.GENAI_MESSAGE_RETENTION_DAYS} days)"
            )
        payload, media_type = otlp_logs_response(content_type, parsed.rejected, "; ".join(notes)[:2000])
        return HttpResponse(payload, content_type=media_type, status=200)


# --- Widget ----------------------------------------------------------------------------------


@extend_schema_view(
    post=extend_schema(
        operation_id="widget_events_create",
        summary="Widget events (public key in the body; sent as text/plain)",
        request={"text/plain": openapi.body("WidgetBody")},
        responses=INGEST_RESPONSES,
        tags=["feedback"],
        auth=[],
    ),
    options=extend_schema(exclude=True),
)
class WidgetEventsApi(PublicKeyApi):
    """Feedback from a browser: the widget's public key (pk_...) as `key` in a JSON body sent as
    text/plain (no CORS pre-flight), from an origin the key allows."""

    def receive(self, *, key: ResolvedKey, origin: str, body: bytes) -> HttpResponse:
        # The same code as the hot path (feedback.api.hot), which serves this URL ahead of DRF.
        return widget_receive(key, origin, body)
