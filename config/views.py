"""Health check: is the database reachable, is the broker reachable."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.html import escape


def _check_database() -> dict[str, object]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
    except Exception as exc:
        return {"ok": False, "error": str(exc)[:200]}


def _check_broker() -> dict[str, object]:
    from kombu import Connection

    started = time.perf_counter()
    try:
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        transport = settings.CELERY_BROKER_URL.split(":", 1)[0]
        return {"ok": True, "transport": transport, "ms": round((time.perf_counter() - started) * 1000, 1)}
    except Exception as exc:
        return {"ok": False, "error": str(exc)[:200]}


def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database(), "broker": _check_broker()}
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ok" if healthy else "degraded", "checks": checks}, status=200 if healthy else 503)


def demo_host_page(request: HttpRequest) -> HttpResponse:
    """A sample customer app page that loads the widget with the demo organization's public key.

    Served under a strict Content-Security-Policy (no inline script or style) to show the
    widget needs no exemptions. ?key=pk_... overrides the key.
    """
    import json

    if not settings.CANDOR_DEMO_HOST_PAGE:
        raise Http404("The demo host page is off (CANDOR_DEMO_HOST_PAGE=0).")
    state_file = settings.BASE_DIR / ".var" / "demo.json"
    key = request.GET.get("key") or (
        json.loads(state_file.read_text()).get("public_key", "") if state_file.exists() else ""
    )
    html = (settings.BASE_DIR / "static" / "widget" / "demo.html").read_text()
    origin = f"{request.scheme}://{request.get_host()}"
    for placeholder, value in {
        "{{WIDGET_SRC}}": f"{origin}/static/widget/candor.js",
        "{{PUBLIC_KEY}}": escape(key),
        "{{API_BASE}}": origin,
    }.items():
        html = html.replace(placeholder, value)
    response = HttpResponse(html)
    response["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    return response
