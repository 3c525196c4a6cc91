"""GET /api/v1/alerts, GET /api/v1/alerts/{id} and POST /api/v1/alerts/{id}/resolve: the alerts the portal
shows, for on-call tools and scripts. Resolving through the API is what the portal's Resolve does (notified
like a recovery; the level of the moment accepted for the rule's baseline period), signed by the key."""

from __future__ import annotations

import json
import re
from typing import Any

from django.urls import URLPattern, path
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from evaluation.api import paging
from evaluation.models import Alert, AlertState
from evaluation.services.alerts import alert_dict, alert_resolve
from tenants.api.base import TenantApi, parameter_names
from tenants.api.errors import ApiError
from tenants.selectors import api_key_label

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
CURSOR_PATTERN = r"^[0-9]{1,18}$"
_Error = inline_serializer("AlertError", {"error": serializers.DictField()})
_Alert = inline_serializer(
    "Alert",
    {
        "id": serializers.IntegerField(),
        "feature": serializers.CharField(),
        "rule": serializers.CharField(),
        "metric": serializers.CharField(),
        "segment": serializers.CharField(allow_null=True, help_text="metadata.<key>=<value>; null: the whole feature"),
        "state": serializers.ChoiceField(["open", "resolved"]),
        "value": serializers.FloatField(allow_null=True, help_text="the metric at the latest reading"),
        "baseline": serializers.FloatField(allow_null=True, help_text="the trailing baseline at the latest reading"),
        "opened_baseline": serializers.FloatField(allow_null=True, help_text="the baseline it opened against"),
        "count": serializers.IntegerField(),
        "message": serializers.CharField(help_text="the latest reading, in a sentence"),
        "opened_message": serializers.CharField(allow_null=True, help_text="null: opened before it was kept"),
        "opened_at": serializers.DateTimeField(),
        "last_fired_at": serializers.DateTimeField(),
        "resolved_at": serializers.DateTimeField(allow_null=True),
        "resolved_by": serializers.CharField(allow_null=True, help_text="null: an evaluation found it recovered"),
        "resolution": serializers.CharField(allow_null=True),
    },
)


def _query_error(field: str, message: str) -> ApiError:
    return ApiError("invalid_filter", f"{field}: {message}", 400, {"field": field})


ALERT_LIST_PARAMETERS = [
    OpenApiParameter("state", {"type": "string", "enum": ["open", "resolved"]}, required=False),
    OpenApiParameter("feature", {"type": "string", "maxLength": 200, "pattern": r"^[^\x00]*$"}, required=False),
    OpenApiParameter(
        "cursor",
        {"type": "string", "pattern": r"^([0-9]{1,18})?$"},
        required=False,
        description="`next_cursor` of the previous page.",
    ),
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}, required=False),
]


class AlertListApi(TenantApi):
    query_parameters = parameter_names(ALERT_LIST_PARAMETERS)

    @extend_schema(
        operation_id="alerts_list",
        summary="Alerts, newest first, cursor-paginated; filter by state and feature",
        parameters=ALERT_LIST_PARAMETERS,
        responses={
            200: paging.paged_list("AlertList", _Alert),
            400: _Error,
        },
        tags=["alerts"],
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        alerts = Alert.objects.select_related("rule__feature").order_by("-id")
        state = params.get("state", "")
        if state:
            if state not in AlertState.values:
                raise _query_error("state", "open or resolved")
            alerts = alerts.filter(state=state)
        feature = params.get("feature", "")
        if feature:
            if len(feature) > 200 or "\x00" in feature:
                raise _query_error("feature", "a feature key of at most 200 characters, no NUL")
            alerts = alerts.filter(rule__feature__key=feature)
        cursor = params.get("cursor", "")
        if cursor:
            if not re.fullmatch(CURSOR_PATTERN, cursor):
                raise _query_error("cursor", "not a cursor this API gave out")
            alerts = alerts.filter(id__lt=int(cursor))
        size = paging.page_size(params.get("limit", ""), default=PAGE_SIZE, most=MAX_PAGE_SIZE)
        rows = list(alerts[: size + 1])
        next_cursor = str(rows[size - 1].id) if len(rows) > size else None
        return Response({"results": [alert_dict(a) for a in rows[:size]], "next_cursor": next_cursor})


class AlertDetailApi(TenantApi):
    @extend_schema(
        operation_id="alerts_retrieve",
        summary="One alert",
        responses={200: _Alert, 404: _Error},
        tags=["alerts"],
    )
    def get(self, request: Request, alert_id: int) -> Response:
        alert = Alert.objects.select_related("rule__feature").filter(id=alert_id).first()
        if alert is None:
            raise ApiError("not_found", f"No alert {alert_id}.", 404)
        return Response(alert_dict(alert))


class AlertResolveApi(TenantApi):
    @extend_schema(
        operation_id="alerts_resolve",
        summary="Resolve an open alert by hand, with a note (accepts today's level for the rule's baseline period)",
        request={
            "application/json": {
                "type": "object",
                "properties": {"note": {"type": "string", "maxLength": 500, "pattern": r"^[^\x00]*$"}},
                "additionalProperties": False,
            }
        },
        responses={
            200: inline_serializer(
                "AlertResolved",
                {
                    "alert": _Alert,
                    "resolved": serializers.BooleanField(
                        help_text="false: it was resolved already, and is left as it was"
                    ),
                },
            ),
            400: _Error,
            404: _Error,
        },  # fmt: skip
        tags=["alerts"],
    )
    def post(self, request: Request, alert_id: int) -> Response:
        if not Alert.objects.filter(id=alert_id).exists():
            raise ApiError("not_found", f"No alert {alert_id}.", 404)
        note = _note(request)
        key: Any = request.auth  # the ResolvedKey TenantApi authenticated
        alert, resolved = alert_resolve(alert_id=alert_id, by=api_key_label(key.key_id), note=note)
        if alert is None:
            raise ApiError("not_found", f"No alert {alert_id}.", 404)
        alert = Alert.objects.select_related("rule__feature").get(id=alert.id)
        return Response({"alert": alert_dict(alert), "resolved": resolved})


def _note(request: Request) -> str:
    """The optional note: a JSON body {"note": "..."} (or a form field), nothing else."""
    if request.content_type.split(";")[0].strip() == "application/json":
        try:
            document = json.loads(request.body or b"{}")
        except (UnicodeDecodeError, ValueError):
            raise ApiError("invalid_json", 'The body is not JSON: send {} or {"note": "..."}.', 400) from None
        if not isinstance(document, dict) or set(document) - {"note"}:
            raise ApiError("invalid_body", "Send an object with at most a 'note' (text).", 400, {"field": "note"})
        note = document.get("note", "")
    else:
        note = request.data.get("note", "") if request.body else ""
    if not isinstance(note, str) or len(note) > 500 or "\x00" in note:
        raise ApiError("invalid_body", "note: text of at most 500 characters, no NUL", 400, {"field": "note"})
    return note


urlpatterns: list[URLPattern] = [
    path("alerts", AlertListApi.as_view(), name="alert-list"),
    path("alerts/<int:alert_id>", AlertDetailApi.as_view(), name="alert-detail"),
    path("alerts/<int:alert_id>/resolve", AlertResolveApi.as_view(), name="alert-resolve"),
]
