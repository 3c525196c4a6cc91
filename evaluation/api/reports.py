"""Endpoints of evaluation's reports: the features and each feature's report (shared/API.md)."""

from __future__ import annotations

from django.urls import URLPattern, path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from evaluation.api import paging
from evaluation.api.report_params import REPORT_PARAMETERS, report_query
from evaluation.reports.selectors import (
    Grouping,
    ReportError,
    feature_get,
    feature_report,
    features_list,
    window_from,
)
from evaluation.reports.success import SUCCESS_SOURCES, NoSource
from tenants.api.base import TenantApi, parameter_names
from tenants.api.errors import ApiError

_Error = inline_serializer("ReportError", {"error": serializers.DictField()})
_Interval: dict[str, serializers.Field] = {  # type: ignore[type-arg]
    "value": serializers.FloatField(allow_null=True),
    "low": serializers.FloatField(allow_null=True),
    "high": serializers.FloatField(allow_null=True),
    "note": serializers.CharField(required=False, help_text="why a bound is null"),
}
_Group = inline_serializer(
    "FeatureReportGroup",
    {
        "group": serializers.CharField(allow_null=True, help_text="the group's value; null: none (no version, ...)"),
        "traces": serializers.IntegerField(),
        "explicit_feedback_rate": serializers.FloatField(allow_null=True),
        "thumbs_up_share": serializers.FloatField(allow_null=True, help_text="share of thumbs that are up"),
        "thumbs_down_share": serializers.FloatField(allow_null=True),
        "thumbs": serializers.IntegerField(),
        "mean_rating": serializers.FloatField(allow_null=True),
        "edit_rate": serializers.FloatField(allow_null=True),
        "mean_edit_distance": serializers.FloatField(allow_null=True),
        "implicit_rates": serializers.DictField(child=serializers.FloatField(allow_null=True)),
        "fallback_rate": serializers.FloatField(allow_null=True),
        "guardrail_block_rate": serializers.FloatField(allow_null=True),
        "error_rate": serializers.FloatField(allow_null=True),
        "success": inline_serializer(
            "ReportSuccess",
            {
                **_Interval,
                "source": serializers.ChoiceField(
                    [source.name for source in SUCCESS_SOURCES] + [NoSource.name],
                    help_text="calibrated_judge: a gating judge's calibrated scores corrected by the human audit; "
                    "human_labels: the uniform audit's labels alone (no judge gating; from 30 labels in the window); "
                    "outcomes: traces with a business outcome; thumbs: rated traces rated good; none: no source",
                ),
                "n": serializers.IntegerField(
                    help_text="the sample the rate rests on: traces (outcomes), rated traces (thumbs), labelled "
                    "traces (human_labels), or traces the judge scored (calibrated_judge)"
                ),
            },
        ),
        "successes": serializers.FloatField(allow_null=True, help_text="success rate x traces"),
        "cost_usd": serializers.FloatField(),
        "cost_per_success_usd": serializers.FloatField(allow_null=True),
        "value_usd": serializers.FloatField(allow_null=True),
        "roi": serializers.FloatField(allow_null=True, help_text="(value - cost) / cost"),
        "cost_per_success": inline_serializer(
            "ReportCostPerSuccess",
            _Interval,
            help_text="cost_per_success_usd with its interval: mean cost of a trace over the success rate, each "
            "bound at half the error (their traces are the same, and failing ones may cost more)",
        ),
        "roi_interval": inline_serializer(
            "ReportRoi",
            _Interval,
            help_text="roi with its interval: value per success x success rate / mean cost of a trace - 1, each at "
            "half the error as for cost per success; with no success its low is -1",
        ),
        "latency_ms": serializers.DictField(child=serializers.FloatField(allow_null=True)),
        "ttft_ms": serializers.DictField(child=serializers.FloatField(allow_null=True)),
        "notes": serializers.DictField(child=serializers.CharField(), help_text="why a figure is null"),
    },
)
_Report = inline_serializer(
    "FeatureReport",
    {
        "feature": serializers.CharField(),
        "window": serializers.DictField(child=serializers.CharField()),
        "group_by": serializers.CharField(),
        "value_per_success_usd": serializers.FloatField(allow_null=True),
        "success_source": serializers.DictField(child=serializers.CharField()),
        "source": serializers.ChoiceField(["rollups", "raw"]),
        "note": serializers.CharField(allow_null=True),
        "holdback_traces": serializers.IntegerField(
            help_text="traces of the feature's holdback arms (the non-AI path), left out of every figure"
        ),
        "holdback_note": serializers.CharField(allow_null=True),
        "total": _Group,
        "groups": serializers.ListField(child=_Group),
    },
)
_Feature = inline_serializer(
    "FeatureOut",
    {
        "key": serializers.CharField(),
        "name": serializers.CharField(),
        "value_per_success_usd": serializers.FloatField(allow_null=True),
        "segment_keys": serializers.ListField(child=serializers.CharField()),
        "first_seen": serializers.DateField(allow_null=True),
        "last_seen": serializers.DateField(allow_null=True),
    },
)


class FeatureListApi(TenantApi):
    query_parameters = parameter_names(paging.PARAMETERS)

    @extend_schema(
        operation_id="features_list",
        summary="The organization's AI features",
        parameters=paging.PARAMETERS,
        responses={
            200: paging.paged_list("FeatureList", _Feature),
            400: _Error,
        },
        tags=["reports"],
    )
    def get(self, request: Request) -> Response:
        after, limit = paging.page_query(request.query_params)
        rows = features_list(after=after, limit=limit + 1)
        results, next_cursor = paging.page_of(rows, [row["key"] for row in rows], limit)
        return Response({"results": results, "next_cursor": next_cursor})


class FeatureReportApi(TenantApi):
    query_parameters = parameter_names(REPORT_PARAMETERS)

    @extend_schema(
        operation_id="features_report",
        summary="A feature's report for a window, grouped by prompt version, variant, customer, day or metadata",
        parameters=REPORT_PARAMETERS,
        responses={200: _Report, 400: _Error, 404: _Error},
        tags=["reports"],
    )
    def get(self, request: Request, key: str) -> Response:
        query = report_query(request.query_params)
        try:
            feature = feature_get(key)
            window = window_from(query.get("since", ""), query.get("until", ""))
            grouping = Grouping.parse(query.get("group_by", ""))
        except ReportError as exc:
            code = "not_found" if exc.status == 404 else "invalid_parameter"
            raise ApiError(code, exc.message, exc.status, {"field": exc.field}) from exc
        return Response(feature_report(feature=feature, window=window, grouping=grouping))


urlpatterns: list[URLPattern] = [
    path("features", FeatureListApi.as_view(), name="feature-list"),
    path("features/<path:key>/report", FeatureReportApi.as_view(), name="feature-report"),
]
