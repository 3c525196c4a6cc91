"""The shape every write endpoint shares (traces, feedback, outcomes, and other apps' scores and labels):
read the body, hand it to an ingest service, answer its per-item result (200 / 207 / 400)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer
from rest_framework.request import Request
from rest_framework.response import Response

from feedback.api.serializers import ErrorSerializer, IngestResultSerializer
from feedback.schemas import BodyError
from feedback.services import IngestResult
from tenants.api.base import TenantApi, read_body
from tenants.api.errors import ApiError
from tenants.services import ingestion_admit


def ingest_responses(*, component_name: str, what: str) -> dict[Any, Any]:
    """The documented answers of a write endpoint whose items are `what` (e.g. "score")."""
    return {
        200: IngestResultSerializer,
        207: IngestResultSerializer,
        400: OpenApiResponse(
            PolymorphicProxySerializer(
                component_name=component_name,
                serializers=[IngestResultSerializer, ErrorSerializer],
                resource_type_field_name=None,
            ),
            description=f"Every {what} failed (the ingest result, each error with its index and field), "
            "or the body could not be read at all (the error shape).",
        ),
    }


def ingest_response(result: IngestResult) -> Response:
    return Response(result.as_dict(), status=result.status_code)


class IngestApi(TenantApi):
    """Base for write endpoints: a secret key, the per-key rate limit, the body to an ingest service."""

    def ingest(self, body: bytes) -> IngestResult:
        raise NotImplementedError

    def post(self, request: Request) -> Response:
        key: Any = request.auth
        ingestion_admit(key=key)  # 429 quota_exceeded past the organization's spend cap
        body = read_body(request._request)
        try:
            return ingest_response(self.ingest(body))
        except BodyError as exc:
            raise ApiError(exc.code, exc.message, exc.status) from exc
