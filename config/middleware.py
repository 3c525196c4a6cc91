"""Middleware of the whole site (each app's own lives in the app)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers


class HtmxVaryMiddleware:
    """Portal pages answer an htmx request with a fragment and a browser's with the whole page, at one URL
    (filters push their URL into the history). ``Vary: HX-Request`` keeps the browser's cache from serving
    the fragment as the page: Back to the trace explorer after a filter showed a bare table, no page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html"):
            patch_vary_headers(response, ("HX-Request",))
        return response
