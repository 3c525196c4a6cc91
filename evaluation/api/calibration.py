"""Endpoints of human labels and what they buy (views on tenants.api.base.TenantApi): labels in, a
judge's calibration report and a feature's true success rate out (shared/API.md)."""

from __future__ import annotations

import re
from typing import Any

from django.urls import URLPattern, path
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from evaluation.api import openapi
from evaluation.api.report_params import WHEN_PATTERN
from evaluation.models import Judge, JudgeVersion
from evaluation.reports.selectors import MAX_WINDOW_DAYS, ReportError, Window, feature_get, window_from
from evaluation.selectors import TraceScope, judge_find, rubric_get
from evaluation.services.calibration import CalibrationError, calibration_report, success_estimate
from evaluation.services.calibration_refresh import calibration_nudge
from evaluation.services.judges import MAX_NAME, NAME_PATTERN
from evaluation.services.labels import labels_ingest
from feedback.api.ingest import IngestApi, ingest_responses
from feedback.api.serializers import ErrorSerializer
from feedback.schemas import FEATURE_KEY_PATTERN, MAX_FEATURE_KEY
from feedback.services import IngestResult
from tenants.api.base import TenantApi
from tenants.api.errors import ApiError

LABEL_RESPONSES = ingest_responses(component_name="LabelsRejected", what="label")


class LabelsApi(IngestApi):
    @extend_schema(
        operation_id="labels_create",
        summary="Send human labels (one or a batch of up to 1,000)",
        request={"application/json": openapi.body("LabelInBody")},
        responses=LABEL_RESPONSES,
        tags=["labels"],
    )
    def post(self, request: Request) -> Response:
        return super().post(request)

    def ingest(self, body: bytes) -> IngestResult:
        result = labels_ingest(body=body)
        if result.accepted:
            calibration_nudge()  # the calibration these labels touch is recomputed within seconds
        return result


# --- query parameters, validated exactly as the schema states them ---------------------------------

_WHEN_HELP = "a day (2025-01-31) or an ISO 8601 time (2025-01-31T12:00:00Z)"
_TEXT = {"type": "string", "maxLength": 200, "pattern": r"^[^\x00]*$"}
_VERSION = {"type": "integer", "minimum": 1, "maximum": 1_000_000}
_PARAMS: dict[str, tuple[dict[str, Any], str, str]] = {
    # name: (schema, description, help when refused)
    "rubric": (
        {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": NAME_PATTERN},
        "The rubric's name (required).",
        "a rubric name: letters, digits, space and _.:- (starting with a letter or digit)",
    ),
    "rubric_version": (_VERSION, "The rubric version; default the latest.", "a whole number from 1 to 1000000"),
    "judge": (
        {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": NAME_PATTERN},
        "The judge whose scores correct the estimate (its current version); none: labels alone.",
        "a judge name: letters, digits, space and _.:- (starting with a letter or digit)",
    ),
    "version": (
        _VERSION,
        "The judge version number; default the judge's current version.",
        "a whole number from 1 to 1000000",
    ),
    "feature": (
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_FEATURE_KEY,
            "pattern": FEATURE_KEY_PATTERN,
        },
        "Only traces of this feature (key); default every feature.",
        "a feature key",
    ),
    "prompt_version": (_TEXT, "Only traces of this prompt version (label).", "at most 200 characters, no NUL"),
    "customer_id": (_TEXT, "Only traces of this customer.", "at most 200 characters, no NUL"),
    "since": (
        {"type": "string", "pattern": WHEN_PATTERN},
        "Traces started at or after (a day or ISO 8601; UTC when no zone); before `until`, a window of at most "
        f"{MAX_WINDOW_DAYS} days.",
        _WHEN_HELP,
    ),
    "until": ({"type": "string", "pattern": WHEN_PATTERN}, "Traces started before (exclusive).", _WHEN_HELP),
}
_INTEGER = re.compile(r"^[0-9]{1,7}$")


def _parameters(names: tuple[str, ...], defaults: dict[str, str] | None = None) -> list[OpenApiParameter]:
    out = []
    for name in names:
        schema, description, _ = _PARAMS[name]
        out.append(
            OpenApiParameter(
                name, schema, required=name == "rubric", description=description + (defaults or {}).get(name, "")
            )
        )
    return out


def _query(query: Any, names: tuple[str, ...]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for name in names:
        if name not in query:
            continue
        value = query.get(name)
        schema, _, message = _PARAMS[name]
        if schema["type"] == "integer":
            ok = _INTEGER.fullmatch(value) is not None and schema["minimum"] <= int(value) <= schema["maximum"]
            parsed: Any = int(value) if ok else None
        else:
            ok = (
                "\x00" not in value
                and schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 10_000)
                and re.fullmatch(schema["pattern"], value) is not None
            )
            parsed = value
        if not ok:
            raise ApiError("invalid_parameter", f"{name}: {message}", 400, {"field": name})
        clean[name] = parsed
    if "rubric" in names and "rubric" not in clean:
        raise ApiError("invalid_parameter", "rubric: required (the rubric's name)", 400, {"field": "rubric"})
    return clean


def _not_found(field: str, message: str) -> ApiError:
    return ApiError("not_found", message, 404, {"field": field})


def _window(query: dict[str, Any], required: bool) -> Window | None:
    if not required and "since" not in query and "until" not in query:
        return None
    try:
        return window_from(query.get("since", ""), query.get("until", ""))
    except ReportError as exc:
        raise ApiError("invalid_parameter", exc.message, 400, {"field": exc.field}) from exc


def _judge_version(judge: Judge, number: int | None) -> JudgeVersion:
    versions = judge.versions.all()
    if number is not None:
        found = next((v for v in versions if v.number == number), None)
        if found is None:
            raise _not_found("version", f"Judge '{judge.name}' has no version {number}.")
        return found
    current = judge.current_version or max(versions, key=lambda v: v.number, default=None)
    if current is None:
        raise _not_found("version", f"Judge '{judge.name}' has no versions.")
    return current


# --- responses ----------------------------------------------------------------------------------

_Error = ErrorSerializer
_Interval: dict[str, serializers.Field] = {  # type: ignore[type-arg]
    "value": serializers.FloatField(allow_null=True),
    "low": serializers.FloatField(allow_null=True),
    "high": serializers.FloatField(allow_null=True),
    "note": serializers.CharField(required=False, allow_null=True, help_text="why a bound is null"),
}


def _interval(
    name: str,
    fields: dict[str, serializers.Field] | None = None,  # type: ignore[type-arg]
    **kwargs: Any,
) -> serializers.Serializer:  # type: ignore[type-arg]
    return inline_serializer(name, {**_Interval, **(fields or {})}, allow_null=True, **kwargs)


_Agreement = inline_serializer(
    "CalibrationAgreement",
    {
        "confusion": serializers.ListField(
            child=serializers.ListField(child=serializers.IntegerField()), help_text="[[tn, fp], [fn, tp]]"
        ),
        "weighted_confusion": serializers.ListField(
            child=serializers.ListField(child=serializers.FloatField()),
            required=False,
            help_text="the same, weighted by 1 / inclusion probability (enriched designs only)",
        ),
        "tpr": _interval("AgreementTpr"),
        "tnr": _interval("AgreementTnr"),
        "precision": _interval("AgreementPrecision"),
        "kappa": _interval("AgreementKappa"),
        "weighted_kappa": _interval("AgreementWeightedKappa", help_text="ordinal rubric and judge only"),
        "alpha": _interval("AgreementAlpha"),
        "ac1": _interval("AgreementAc1"),
        "spearman": _interval("AgreementSpearman"),
        "mae": _interval("AgreementMae", required=False),
        "bias": _interval("AgreementBias", {"mcnemar_p": serializers.FloatField(allow_null=True)}),
    },
    allow_null=True,
)
_Calibration = inline_serializer(
    "CalibrationFit",
    {
        "method": serializers.ChoiceField(["platt", "isotonic"]),
        "brier": serializers.FloatField(allow_null=True),
        "ece": serializers.FloatField(allow_null=True),
        "reliability": serializers.ListField(
            child=inline_serializer(
                "ReliabilityBin",
                {
                    "mean_predicted": serializers.FloatField(allow_null=True),
                    "observed": serializers.FloatField(allow_null=True),
                    "n": serializers.IntegerField(),
                },
            )
        ),
        "cv_brier": serializers.DictField(child=serializers.FloatField(allow_null=True)),
        "note": serializers.CharField(allow_null=True),
    },
    allow_null=True,
)
_Threshold = inline_serializer(
    "CalibrationThreshold",
    {
        name: serializers.FloatField(allow_null=True)
        for name in (
            "target_precision",
            "pass_at",
            "guaranteed_precision_low",
            "target_npv",
            "fail_at",
            "guaranteed_npv_low",
        )  # fmt: skip
    },
    allow_null=True,
)
_Report = inline_serializer(
    "CalibrationReport",
    {
        "judge": serializers.CharField(),
        "judge_version": serializers.IntegerField(),
        "rubric": serializers.CharField(),
        "rubric_version": serializers.IntegerField(),
        "rubric_scale": serializers.CharField(),
        "feature": serializers.CharField(allow_null=True),
        "n_labels": serializers.IntegerField(help_text="labelled traces the judge version scored (the pairs)"),
        "n_labels_unscored": serializers.IntegerField(help_text="labelled traces it has not scored"),
        "n_scored": serializers.IntegerField(help_text="traces in scope the judge version scored"),
        "agreement": _Agreement,
        "calibration": _Calibration,
        "threshold": _Threshold,
        "verdict": serializers.ChoiceField(["exploratory", "trends", "gating"], allow_null=True),
        "verdict_reason": serializers.CharField(allow_null=True),
        "note": serializers.CharField(allow_null=True, help_text="why the report is empty"),
        "computed_at": serializers.DateTimeField(),
    },
)
_Success = inline_serializer(
    "SuccessReport",
    {
        "feature": serializers.CharField(),
        "window": serializers.DictField(child=serializers.CharField()),
        "rubric": serializers.CharField(),
        "rubric_version": serializers.IntegerField(),
        "judge": serializers.CharField(allow_null=True),
        "judge_version": serializers.IntegerField(allow_null=True),
        "human": inline_serializer("SuccessHuman", {**_Interval, "n": serializers.IntegerField()}),
        "judge_uncorrected": inline_serializer(
            "SuccessJudgeUncorrected",
            {
                "value": serializers.FloatField(allow_null=True),
                "n": serializers.IntegerField(),
                "note": serializers.CharField(),
            },
        ),
        "estimate": inline_serializer(
            "SuccessEstimate",
            {
                **_Interval,
                "method": serializers.ChoiceField(["ppi++", "stratified", "ipw", "classical"]),
                "lambda": serializers.FloatField(allow_null=True),
                "n_labels": serializers.IntegerField(),
                "n_scored": serializers.IntegerField(),
                "effective_labels": serializers.FloatField(allow_null=True),
                "design": serializers.ChoiceField(["uniform", "stratified", "active", "manual"]),
            },
        ),
    },
)

CALIBRATION_PARAMS = ("rubric", "rubric_version", "feature", "version", "since", "until")
SUCCESS_PARAMS = ("judge", "rubric", "rubric_version", "prompt_version", "customer_id", "since", "until")


class JudgeCalibrationApi(TenantApi):
    query_parameters = CALIBRATION_PARAMS

    @extend_schema(
        operation_id="judges_calibration",
        summary="A judge version's agreement with a rubric's human labels, its calibration, threshold and verdict",
        parameters=_parameters(CALIBRATION_PARAMS, {"since": " Default: no window.", "until": " Default: no window."}),
        responses={200: _Report, 400: _Error, 404: _Error},
        tags=["judges"],
    )
    def get(self, request: Request, name: str) -> Response:
        query = _query(request.query_params, CALIBRATION_PARAMS)
        judge = judge_find(name)
        if judge is None:
            raise _not_found("name", f"No judge '{name}'.")
        version = _judge_version(judge, query.get("version"))
        rubric = rubric_get(query["rubric"], query.get("rubric_version"))
        if rubric is None:
            raise _not_found(
                "rubric", f"No rubric '{query['rubric']}' (version {query.get('rubric_version', 'latest')})."
            )
        feature_id = None
        if "feature" in query:
            try:
                feature_id = feature_get(query["feature"]).id
            except ReportError as exc:
                raise _not_found("feature", f"No feature '{query['feature']}'.") from exc
        window = _window(query, required=False)
        scope = TraceScope(
            feature_id=feature_id, since=window.since if window else None, until=window.until if window else None
        )
        try:
            report = calibration_report(
                judge=judge, judge_version=version, rubric=rubric, scope=scope, feature=query.get("feature")
            )
        except CalibrationError as exc:
            raise ApiError("invalid_parameter", exc.message, 400, {"field": exc.field}) from exc
        return Response(report)


class FeatureSuccessApi(TenantApi):
    query_parameters = SUCCESS_PARAMS

    @extend_schema(
        operation_id="features_success",
        summary="A feature's true success rate: human labels, the judge's uncorrected rate, and the estimate",
        parameters=_parameters(
            SUCCESS_PARAMS,
            {"since": " Default: 30 days before `until`.", "until": " Default: the end of today (UTC)."},
        ),
        responses={200: _Success, 400: _Error, 404: _Error},
        tags=["reports"],
    )
    def get(self, request: Request, key: str) -> Response:
        query = _query(request.query_params, SUCCESS_PARAMS)
        try:
            feature = feature_get(key)
        except ReportError as exc:
            raise _not_found("key", f"No feature '{key}'.") from exc
        rubric = rubric_get(query["rubric"], query.get("rubric_version"))
        if rubric is None:
            raise _not_found(
                "rubric", f"No rubric '{query['rubric']}' (version {query.get('rubric_version', 'latest')})."
            )
        judge, version = None, None
        if "judge" in query:
            judge = judge_find(query["judge"])
            if judge is None:
                raise _not_found("judge", f"No judge '{query['judge']}'.")
            version = _judge_version(judge, None)
        window = _window(query, required=True)
        assert window is not None
        scope = TraceScope(
            feature_id=feature.id, since=window.since, until=window.until,
            prompt_version=query.get("prompt_version"), customer_id=query.get("customer_id"),
        )  # fmt: skip
        try:
            report = success_estimate(
                feature=feature.key, rubric=rubric, judge=judge, judge_version=version, scope=scope, window=window
            )
        except CalibrationError as exc:
            raise ApiError("invalid_parameter", exc.message, 400, {"field": exc.field}) from exc
        return Response(report)


urlpatterns: list[URLPattern] = [
    path("labels", LabelsApi.as_view(), name="api-labels"),
    path("judges/<str:name>/calibration", JudgeCalibrationApi.as_view(), name="api-judge-calibration"),
    path("features/<path:key>/success", FeatureSuccessApi.as_view(), name="feature-success"),
]
