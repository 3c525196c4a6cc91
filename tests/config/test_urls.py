"""What config/urls.py serves besides the apps: the health check, the OpenAPI schema and its docs."""

from __future__ import annotations

from django.core.management import call_command
from django.test import Client


def test_health_and_docs(db: None) -> None:
    client = Client()
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["checks"]["database"]["ok"] and health["checks"]["broker"]["ok"]
    schema = client.get("/api/v1/schema/?format=json").json()
    for path in ["/api/v1/traces", "/api/v1/traces/{trace_id}", "/api/v1/feedback", "/api/v1/widget/events",
                 "/api/v1/outcomes", "/api/v1/otlp/v1/traces"]:  # fmt: skip
        assert path in schema["paths"], path
    assert b"swagger-ui" in client.get("/api/v1/docs/").content


def test_openapi_schema_is_valid_and_complete() -> None:
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")
