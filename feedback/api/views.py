"""The ingestion and read endpoints of API.md. Thin: parse, call a service or selector, answer."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import ApiError, error_body
from feedback import services
from feedback.api import serializers as s
from feedback.models import WidgetRejection
from feedback.otlp import OtlpError, otlp_parse, otlp_response
from feedback.schemas import BodyError, FeedbackIn, split_widget_body
from feedback.selectors import FilterError, TraceFilters, trace_detail, trace_page
from tenants.models import Organization
from tenants.ratelimit import key_rate_wait
from tenants.schema import activate_tenant
from tenants.services import api_key_resolve
from tenants.tokens import verify_trace_token

logger = logging.getLogger("candor.api")

INGEST_RESPONSES = {
    200: s.IngestResultSerializer,
    207: s.IngestResultSerializer,
    400: OpenApiResponse(
        PolymorphicProxySerializer(
            component_name="IngestRejected",
            serializers=[s.IngestResultSerializer, s.ErrorSerializer],
            resource_type_field_name=None,
        ),
        description="Every item failed (the ingest result, each error with its index and field), "
        "or the body could not be read at all (the error shape).",
    ),
    401: s.ErrorSerializer,
    403: s.ErrorSerializer,
    413: s.ErrorSerializer,
    429: s.ErrorSerializer,
}


def read_body(request: HttpRequest) -> bytes:
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > settings.API_MAX_BODY_BYTES:
        raise ApiError("too_large", f"The body is {int(length)} bytes; the limit is 5 MB. Send smaller batches.", 413)
    body = request.body
    if len(body) > settings.API_MAX_BODY_BYTES:
        raise ApiError("too_large", "The body is larger than 5 MB. Send smaller batches.", 413)
    return body


def ingest_response(result: services.IngestResult) -> Response:
    return Response(result.as_dict(), status=result.status_code)


def body_error(exc: BodyError) -> ApiError:
    return ApiError(exc.code, exc.message, exc.status)


class IngestApi(APIView):
    """Base for write endpoints: a secret key, the per-key rate limit, msgspec parsing."""

    def ingest(self, body: bytes) -> services.IngestResult:
        raise NotImplementedError

    def post(self, request: Request) -> Response:
        body = read_body(request._request)
        try:
            return ingest_response(self.ingest(body))
        except BodyError as exc:
            raise body_error(exc) from exc


class TracesApi(IngestApi):
    @extend_schema(
        operation_id="traces_create",
        summary="Send traces (one or a batch of up to 1,000)",
        request={"application/json": s.TraceInSerializer},
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
        parameters=[
            OpenApiParameter(name, OpenApiTypes.STR, required=False)
            for name in ("feature", "prompt_version", "customer_id", "variant", "since", "until", "cursor")
        ]
        + [
            OpenApiParameter("limit", OpenApiTypes.INT, required=False),
            OpenApiParameter("has_thumbs_down", OpenApiTypes.BOOL, required=False),
            OpenApiParameter("has_edit", OpenApiTypes.BOOL, required=False),
            OpenApiParameter("metadata.<key>", OpenApiTypes.STR, required=False, description="e.g. metadata.auth=sso"),
        ],
        responses={200: s.TracePageSerializer, 400: s.ErrorSerializer},
        tags=["traces"],
    )
    def get(self, request: Request) -> Response:
        try:
            filters = TraceFilters.from_query(request.query_params)
            limit = int(request.query_params.get("limit", 50))
            if not 1 <= limit <= 500:
                raise FilterError("limit", "from 1 to 500")
            page = trace_page(filters, request.query_params.get("cursor", ""), limit)
        except ValueError as exc:
            field = getattr(exc, "field", "limit")
            raise ApiError("invalid_filter", str(exc), 400, {"field": field}) from exc
        return Response(
            {"results": s.TraceOutSerializer(page.results, many=True).data, "next_cursor": page.next_cursor}
        )


class TraceDetailApi(APIView):
    @extend_schema(
        operation_id="traces_retrieve",
        summary="One trace with its spans, feedback and outcomes",
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
        return Response(data)


class FeedbackApi(IngestApi):
    @extend_schema(
        operation_id="feedback_create",
        summary="Send feedback events from your backend",
        request={"application/json": s.FeedbackInSerializer},
        responses=INGEST_RESPONSES,
        tags=["feedback"],
    )
    def post(self, request: Request) -> Response:
        return super().post(request)

    def ingest(self, body: bytes) -> services.IngestResult:
        return services.feedback_ingest(body=body, source="api")


class OutcomesApi(IngestApi):
    @extend_schema(
        operation_id="outcomes_create",
        summary="Send business outcomes tied to a trace or session",
        request={"application/json": s.OutcomeInSerializer},
        responses=INGEST_RESPONSES,
        tags=["outcomes"],
    )
    def post(self, request: Request) -> Response:
        return super().post(request)

    def ingest(self, body: bytes) -> services.IngestResult:
        return services.outcomes_ingest(body=body)


class OtlpTracesApi(APIView):
    """OTLP/HTTP answers in the request's encoding with HTTP 200; refused traces go in partial_success."""

    @extend_schema(
        operation_id="otlp_traces",
        summary="OTLP/HTTP trace export (protobuf or JSON), GenAI semantic conventions",
        request={"application/x-protobuf": OpenApiTypes.BINARY, "application/json": OpenApiTypes.OBJECT},
        responses={200: OpenApiTypes.BINARY, 400: s.ErrorSerializer, 401: s.ErrorSerializer},
        tags=["opentelemetry"],
    )
    def post(self, request: Request) -> HttpResponse:
        body = read_body(request._request)
        content_type = request.content_type.split(";")[0].strip().lower()
        try:
            traces = otlp_parse(body, content_type)
        except OtlpError as exc:
            raise ApiError("invalid_otlp", str(exc), 400) from exc
        _, errors = services.otlp_ingest(traces=traces)
        rejected_spans = sum(max(1, len(traces[e.index].get("spans", []))) for e in errors)
        notes = [f"trace {traces[e.index].get('trace_id', e.index)}: {e.field} {e.message}".strip() for e in errors]
        notes += [
            f"trace {t['trace_id']}: {t['metadata']['candor_clipped']} clipped to 200,000 characters"
            for t in traces
            if "candor_clipped" in t.get("metadata", {})
        ]
        message = "; ".join(notes)
        payload, media_type = otlp_response(content_type, rejected_spans, message[:2000])
        return HttpResponse(payload, content_type=media_type, status=200)


# --- Widget ----------------------------------------------------------------------------------


def _cors(response: Response, origin: str | None) -> Response:
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        # Lets the widget honour Retry-After on a 429 from another origin.
        response["Access-Control-Expose-Headers"] = "Retry-After"
        response["Vary"] = "Origin"
    return response


def _count_rejection(reason: str, origin: str, count: int) -> None:
    day = timezone.now().date()
    row, _ = WidgetRejection.objects.get_or_create(day=day, reason=reason, origin=origin[:255])
    # F(): concurrent rejections add up instead of overwriting each other.
    WidgetRejection.objects.filter(pk=row.pk).update(count=F("count") + count, last_at=timezone.now())


class WidgetEventsApi(APIView):
    """The browser's door: a public key in a text/plain body (no CORS pre-flight)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    @extend_schema(
        operation_id="widget_events_create",
        summary="Widget events (public key in the body; sent as text/plain)",
        request={"text/plain": s.WidgetBodySerializer},
        responses=INGEST_RESPONSES,
        tags=["feedback"],
        auth=[],
    )
    def post(self, request: Request) -> Response:
        origin = request.META.get("HTTP_ORIGIN")
        try:
            return _cors(self._post(request), origin)
        except ApiError as exc:
            response = Response(error_body(exc.error_code, str(exc.detail), exc.details), status=exc.status_code)
            if exc.status_code == 429:
                response["Retry-After"] = str(exc.details["retry_after"])
            return _cors(response, origin)
        except Exception:
            # Even our own failure must be readable cross-origin: the widget decides by the status.
            logger.exception("widget events failed")
            body = error_body("internal_error", "Something went wrong on our side; retrying is safe.")
            return _cors(Response(body, status=500), origin)

    def _post(self, request: Request) -> Response:
        body = read_body(request._request)
        try:
            key, items = split_widget_body(body)
        except BodyError as exc:
            raise body_error(exc) from exc
        resolved = api_key_resolve(key) if key else None
        if resolved is None:
            raise ApiError("invalid_key", "Unknown or revoked public key.", 401)
        if resolved.kind != "public":
            raise ApiError("secret_key_in_browser", "Never put a secret key in a page: use a public key (pk_).", 403)
        wait = key_rate_wait(resolved.key_id)
        if wait:
            raise ApiError("rate_limited", "Too many requests for this key.", 429, {"retry_after": max(1, round(wait))})
        origin = request.META.get("HTTP_ORIGIN", "")
        organization = Organization.objects.only("id", "schema_name", "require_signed_tokens",
                                                 "widget_signing_secret").get(id=resolved.organization_id)  # fmt: skip
        activate_tenant(organization)
        if not resolved.origin_allowed(origin):
            _count_rejection("origin_not_allowed", origin, len(items))
            raise ApiError(
                "origin_not_allowed",
                f"Origin '{origin or '(none)'}' is not allowed for this key; add it under Settings > API keys.",
                403,
            )
        extra_check = None
        if organization.require_signed_tokens:
            rejected: dict[str, int] = {}

            def extra_check(item: FeedbackIn) -> None:
                reason = verify_trace_token(
                    organization.widget_signing_secret, item.token, item.trace_id, item.user_id or ""
                )
                if reason is not None:
                    rejected[reason] = rejected.get(reason, 0) + 1
                    raise ValueError(f"token: {reason.replace('_', ' ')} (this organization requires signed tokens)")

        result = services.feedback_ingest(raw_items=items, source="widget", extra_check=extra_check)
        if extra_check is not None:
            for reason, count in rejected.items():
                _count_rejection(f"token_{reason}", origin, count)
        return ingest_response(result)

    def options(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        response = Response(status=204)
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Content-Type"
        response["Access-Control-Max-Age"] = "86400"
        return _cors(response, request.META.get("HTTP_ORIGIN"))
