"""Run by .ci/run against the machine's own PostgreSQL 15 and a Redis or RabbitMQ broker.

The same code paths as the default suite, on production-shaped parts: a real server
database instead of the embedded one, and the broker named by CELERY_BROKER_URL.
"""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from feedback.models import DailyRollup
from tenants.schema import in_tenant
from tests.fixtures.organizations import unique
from tests.fixtures.server import wait_for

pytestmark = pytest.mark.services


def test_running_on_the_configured_services(committed_db) -> None:  # type: ignore[no-untyped-def]
    assert os.environ.get("DATABASE_URL"), "service tests need DATABASE_URL (see .ci/run)"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        assert cursor.fetchone()[0].startswith("15")
    health = Client().get("/healthz").json()
    assert health["status"] == "ok"
    assert health["checks"]["broker"]["transport"] == settings.CELERY_BROKER_URL.split(":", 1)[0]


def test_ingest_and_worker_rollups_on_services(live, celery_worker, committed_db, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    feature = unique("svc")
    api = live.api(org_a.secret_key)
    traces = [{"trace_id": f"{feature}-{i}", "feature": feature, "latency_ms": 100 + i} for i in range(20)]
    assert api.post("/api/v1/traces", {"batch": traces + traces}).json()["accepted"] == 20
    events = [{"event_id": f"00000000-0000-4000-8000-{i:012d}", "trace_id": f"{feature}-{i}", "kind": "thumb",
               "value": 1} for i in range(5)]  # fmt: skip
    assert api.post("/api/v1/feedback", {"batch": events}).json()["accepted"] == 5

    def rolled_up() -> tuple[int, int]:
        with in_tenant(org_a.organization):
            rows = DailyRollup.objects.filter(feature__key=feature)
            return (sum(r.traces for r in rows), sum(r.thumbs_up for r in rows))

    assert wait_for(lambda: rolled_up() == (20, 5) and rolled_up(), timeout=90) == (20, 5)
    assert live.api(org_b.secret_key).get(f"/api/v1/traces/{feature}-0").status_code == 404
