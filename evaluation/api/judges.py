"""Endpoints of evaluation's judges (views on tenants.api.base.TenantApi): external scores in,
judges and their versions out."""

from __future__ import annotations

from datetime import timedelta

from django.urls import URLPattern, path
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from evaluation.api import openapi, paging
from evaluation.api import serializers as s
from evaluation.selectors import judge_find, judge_stats, judges_with_versions
from evaluation.services.scores import scores_ingest
from evaluation.services.shared import utc_now
from feedback.api.ingest import IngestApi, ingest_responses
from feedback.api.serializers import ErrorSerializer
from feedback.services import IngestResult
from tenants.api.base import TenantApi, parameter_names
from tenants.api.errors import ApiError

SCORE_RESPONSES = ingest_responses(component_name="ScoresRejected", what="score")


class ScoresApi(IngestApi):
    @extend_schema(
        operation_id="scores_create",
        summary="Send external scores (one or a batch of up to 1,000)",
        request={"application/json": openapi.body("ScoreInBody")},
        responses=SCORE_RESPONSES,
        tags=["judges"],
    )
    def post(self, request: Request) -> Response:
        return super().post(request)

    def ingest(self, body: bytes) -> IngestResult:
        return scores_ingest(body=body)


class JudgesApi(TenantApi):
    query_parameters = parameter_names(paging.PARAMETERS)

    @extend_schema(
        operation_id="judges_list",
        summary="Judges with their versions (an external score name is a judge of kind external)",
        parameters=paging.PARAMETERS,
        responses={200: s.JudgeListSerializer, 400: ErrorSerializer},
        tags=["judges"],
    )
    def get(self, request: Request) -> Response:
        after, limit = paging.page_query(request.query_params)
        judges = list(judges_with_versions().filter(name__gt=after).order_by("name")[: limit + 1])
        judges, next_cursor = paging.page_of(judges, [judge.name for judge in judges], limit)
        stats = judge_stats(since=utc_now() - timedelta(hours=24), judge_ids=[judge.id for judge in judges])
        return Response(
            {"results": [s.judge_out(judge, stats.get(judge.id)) for judge in judges], "next_cursor": next_cursor}
        )


class JudgeDetailApi(TenantApi):
    @extend_schema(
        operation_id="judges_retrieve",
        summary="One judge with its versions, sampling rules and last-24h numbers",
        responses={200: s.JudgeOutSerializer, 404: ErrorSerializer},
        tags=["judges"],
    )
    def get(self, request: Request, name: str) -> Response:
        judge = judge_find(name)
        if judge is None:
            raise ApiError("not_found", f"No judge '{name}'.", 404)
        stats = judge_stats(since=utc_now() - timedelta(hours=24), judge_ids=[judge.id])
        return Response(s.judge_out(judge, stats.get(judge.id)))


urlpatterns: list[URLPattern] = [
    path("scores", ScoresApi.as_view(), name="api-scores"),
    path("judges", JudgesApi.as_view(), name="api-judges"),
    path("judges/<str:name>", JudgeDetailApi.as_view(), name="api-judge-detail"),
]
