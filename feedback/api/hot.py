"""The widget's hot path (tenants.hotpath): a browser's request served without the middleware
stack and DRF, admitted at the same door as WidgetEventsApi (tenants.api.base.public_key_door)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from feedback.services.widget import widget_events_ingest
from tenants.api.base import public_key_door
from tenants.hotpath import hot_path, json_response
from tenants.services import ResolvedKey

WIDGET_EVENTS_PATH = "/api/v1/widget/events"


def widget_receive(key: ResolvedKey, origin: str, body: bytes) -> HttpResponse:
    result = widget_events_ingest(key=key, origin=origin, body=body)
    return json_response(result.as_dict(), result.status_code)


@hot_path("POST", WIDGET_EVENTS_PATH)
def widget_events(request: HttpRequest) -> HttpResponse:
    return public_key_door(request, widget_receive)
