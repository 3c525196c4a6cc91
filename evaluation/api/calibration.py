"""Endpoints of human labels and what they buy (views on tenants.api.base.TenantApi): labels in, a
judge's calibration report and a feature's true success rate out (shared/API.md)."""

from __future__ import annotations

from django.urls import URLPattern, path
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from evaluation.api import openapi
from evaluation.services.labels import labels_ingest
from feedback.api.serializers import ErrorSerializer, IngestResultSerializer
from feedback.schemas import BodyError
from tenants.api.base import TenantApi, read_body
from tenants.api.errors import ApiError

LABEL_RESPONSES = {
    200: IngestResultSerializer,
    207: IngestResultSerializer,
    400: OpenApiResponse(
        PolymorphicProxySerializer(
            component_name="LabelsRejected",
            serializers=[IngestResultSerializer, ErrorSerializer],
            resource_type_field_name=None,
        ),
        description="Every label failed (each error with its index and field), or the body could not be read.",
    ),
}


class LabelsApi(TenantApi):
    @extend_schema(
        operation_id="labels_create",
        summary="Send human labels (one or a batch of up to 1,000)",
        request={"application/json": openapi.body("LabelInBody")},
        responses=LABEL_RESPONSES,
        tags=["labels"],
    )
    def post(self, request: Request) -> Response:
        try:
            result = labels_ingest(body=read_body(request._request))
        except BodyError as exc:
            raise ApiError(exc.code, exc.message, exc.status) from exc
        return Response(result.as_dict(), status=result.status_code)


urlpatterns: list[URLPattern] = [
    path("labels", LabelsApi.as_view(), name="api-labels"),
]
