"""GET /api/v1/experiments and /api/v1/experiments/{key}: each experiment's arms, metric with
interval, lift from an always-valid sequential test, guardrails, sample-ratio check and verdict."""

from __future__ import annotations

from django.urls import URLPattern, path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from evaluation.api import paging
from evaluation.services.experiments import ExperimentError, experiment_get, experiment_results, experiments_list
from tenants.api.base import TenantApi, parameter_names
from tenants.api.errors import ApiError

_Error = inline_serializer("ExperimentError", {"error": serializers.DictField()})


def _interval_fields() -> dict[str, serializers.Field]:  # type: ignore[type-arg]
    return {
        "value": serializers.FloatField(allow_null=True),
        "low": serializers.FloatField(allow_null=True),
        "high": serializers.FloatField(allow_null=True),
        "note": serializers.CharField(required=False, help_text="why a bound is null"),
    }


_Verdict = inline_serializer(
    "ExperimentVerdict",
    {
        "decision": serializers.ChoiceField(["ship", "keep_running", "stop"]),
        "arm": serializers.CharField(allow_null=True, help_text="the arm to ship or the one that failed"),
        "reason": serializers.CharField(help_text="the reason, in plain language"),
        "metric_source": serializers.CharField(help_text="the metric and where it came from (e.g. outcomes)"),
    },
)
_PrimaryMetric = inline_serializer(
    "ExperimentPrimaryMetric",
    {
        "name": serializers.ChoiceField(["success", "thumbs_up_share", "edit_distance", "conversion", "value"]),
        "label": serializers.CharField(),
        "higher_is_better": serializers.BooleanField(),
        "source": serializers.CharField(help_text="for success: the reports' success source (outcomes, thumbs, ...)"),
        "source_description": serializers.CharField(allow_null=True),
    },
)
_Guardrail = inline_serializer(
    "ExperimentGuardrail",
    {
        "metric": serializers.ChoiceField(["cost_per_success_usd", "p95_latency_ms", "fallback_rate"]),
        "max_increase": serializers.FloatField(help_text="relative to control (0.2 = +20%)"),
        "value": serializers.FloatField(allow_null=True),
        "control": serializers.FloatField(allow_null=True),
        "status": serializers.ChoiceField(["ok", "breached", "waiting", "not_applicable"]),
        "note": serializers.CharField(required=False),
        "increase": serializers.FloatField(required=False),
    },
)
_Arm = inline_serializer(
    "ExperimentArm",
    {
        "name": serializers.CharField(help_text="the traces' variant"),
        "holdback": serializers.BooleanField(help_text="the non-AI path"),
        "allocation": serializers.FloatField(),
        "traces": serializers.IntegerField(),
        "metric": inline_serializer("ExperimentArmMetric", {**_interval_fields(), "n": serializers.IntegerField()}),
        "lift": inline_serializer("ExperimentLift", _interval_fields(), allow_null=True),
        "relative_lift": serializers.FloatField(allow_null=True),
        "p_value": serializers.FloatField(allow_null=True, help_text="always-valid p-value"),
        "significant": serializers.BooleanField(),
        "guardrails": serializers.ListField(child=_Guardrail),
        "yardstick": serializers.BooleanField(
            help_text="a holdback arm beside an AI control: its lift is shown, but it is no candidate for the verdict "
            "and is held to no guardrail"
        ),
        "figures": serializers.DictField(child=serializers.FloatField(allow_null=True)),
    },
)
_Summary = inline_serializer(
    "ExperimentSummary",
    {
        "key": serializers.CharField(),
        "name": serializers.CharField(),
        "feature": serializers.CharField(),
        "status": serializers.ChoiceField(["running", "stopped"]),
        "started_at": serializers.DateTimeField(),
        "ended_at": serializers.DateTimeField(allow_null=True),
        "control": serializers.CharField(),
        "primary_metric": _PrimaryMetric,
        "verdict": _Verdict,
        "arms": serializers.ListField(child=serializers.DictField()),
    },
)
_Detail = inline_serializer(
    "ExperimentDetail",
    {
        "key": serializers.CharField(),
        "name": serializers.CharField(),
        "feature": serializers.CharField(),
        "hypothesis": serializers.CharField(),
        "status": serializers.ChoiceField(["running", "stopped"]),
        "started_at": serializers.DateTimeField(),
        "ended_at": serializers.DateTimeField(allow_null=True),
        "window": serializers.DictField(child=serializers.CharField()),
        "primary_metric": _PrimaryMetric,
        "control": serializers.CharField(),
        "mde": serializers.FloatField(help_text="minimum detectable effect, absolute"),
        "alpha": serializers.FloatField(),
        "power": serializers.FloatField(),
        "max_days": serializers.IntegerField(allow_null=True),
        "arms": serializers.ListField(child=_Arm),
        "srm": inline_serializer(
            "ExperimentSrm",
            {
                "chi2": serializers.FloatField(),
                "p_value": serializers.FloatField(),
                "mismatch": serializers.BooleanField(help_text="p < 0.001: assignment or logging is broken"),
                "observed": serializers.DictField(child=serializers.IntegerField()),
                "expected": serializers.DictField(child=serializers.FloatField()),
            },
        ),
        "sequential_test": serializers.DictField(help_text="method, reference, tau, alpha, looks"),
        "plan": serializers.DictField(allow_null=True, help_text="units per arm the planner asks for"),
        "verdict": _Verdict,
        "segments": inline_serializer(
            "ExperimentSegments",
            {
                "keys": serializers.ListField(child=serializers.CharField(), help_text="the feature's segment keys"),
                "rows": serializers.ListField(
                    child=inline_serializer(
                        "ExperimentSegment",
                        {
                            "segment": serializers.CharField(help_text="metadata.<key>=<value>"),
                            "arms": serializers.ListField(
                                child=inline_serializer(
                                    "ExperimentSegmentArm",
                                    {
                                        "arm": serializers.CharField(),
                                        "traces": serializers.IntegerField(),
                                        "metric": inline_serializer("ExperimentSegmentMetric", _interval_fields()),
                                        "lift": inline_serializer(
                                            "ExperimentSegmentLift",
                                            {
                                                "value": serializers.FloatField(),
                                                "low": serializers.FloatField(),
                                                "high": serializers.FloatField(),
                                                "clear": serializers.BooleanField(help_text="the interval excludes 0"),
                                                "rest": serializers.FloatField(
                                                    allow_null=True,
                                                    help_text="the same arm's lift over the key's other values",
                                                ),
                                                "differs": serializers.BooleanField(
                                                    help_text="this lift is clearly unlike `rest`"
                                                ),
                                            },
                                            allow_null=True,
                                            help_text="null for the control, or under the minimum traces per arm",
                                        ),
                                    },
                                )
                            ),
                        },
                    )
                ),
                "differs": serializers.ListField(
                    child=inline_serializer(
                        "ExperimentSegmentDiffers",
                        {
                            "segment": serializers.CharField(),
                            "arm": serializers.CharField(),
                            "lift": serializers.FloatField(),
                            "rest": serializers.FloatField(),
                        },
                    ),
                    help_text="the segments whose lift clearly differs from the rest of their key",
                ),
                "note": serializers.CharField(),
                "comparisons": serializers.IntegerField(
                    required=False, help_text="lifts computed (their Bonferroni divisor)"
                ),
                "tests": serializers.IntegerField(
                    required=False, help_text="'differs' tests made (their Bonferroni divisor)"
                ),
            },
            help_text="Exploratory: each arm's primary metric within each value of a declared segment key, "
            "and each treatment's fixed-horizon difference from the control there (not the decision).",
        ),
    },
)


class ExperimentListApi(TenantApi):
    query_parameters = parameter_names(paging.PARAMETERS)

    @extend_schema(
        operation_id="experiments_list",
        summary="The organization's experiments with their current verdict, by key",
        parameters=paging.PARAMETERS,
        responses={
            200: paging.paged_list("ExperimentList", _Summary),
            400: _Error,
        },
        tags=["experiments"],
    )
    def get(self, request: Request) -> Response:
        after, limit = paging.page_query(request.query_params)
        # Keys order the list (unique, and the cursor is one); the verdicts are still computed for every experiment.
        rows = sorted((row for row in experiments_list() if row["key"] > after), key=lambda row: row["key"])
        rows = rows[: limit + 1]
        results, next_cursor = paging.page_of(rows, [row["key"] for row in rows], limit)
        return Response({"results": results, "next_cursor": next_cursor})


class ExperimentDetailApi(TenantApi):
    @extend_schema(
        operation_id="experiments_retrieve",
        summary="An experiment's results: per arm metric, lift (always-valid), guardrails, SRM, verdict",
        responses={200: _Detail, 404: _Error},
        tags=["experiments"],
    )
    def get(self, request: Request, key: str) -> Response:
        try:
            experiment = experiment_get(key)
        except ExperimentError as exc:
            raise ApiError("not_found", exc.message, 404, {"field": "key"}) from exc
        return Response(experiment_results(experiment))


urlpatterns: list[URLPattern] = [
    path("experiments", ExperimentListApi.as_view(), name="experiment-list"),
    path("experiments/<str:key>", ExperimentDetailApi.as_view(), name="experiment-detail"),
]
