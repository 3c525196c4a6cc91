"""The beat's alert sweep on a real Celery worker: it fans out to the organization, the rule fires on
a seeded incident, and the signed webhook reaches a local receiver over real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from datetime import UTC, datetime, timedelta

from evaluation.models import Alert, Delivery
from evaluation.services.alerts import channel_create
from evaluation.tasks import alerts_sweep
from tests.evaluation.experiments_seed import ingest, new_feature, traffic
from tests.evaluation.services.test_alerts import Receiver
from tests.fixtures.organizations import in_tenant
from tests.fixtures.server import wait_for


def test_the_beat_sweep_evaluates_and_delivers_on_a_real_worker(celery_worker: None, committed_db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    receiver = Receiver()
    now = datetime.now(UTC)
    try:
        with in_tenant(org_a):
            key = new_feature()
            rng = random.Random(2)
            normal = traffic(feature=key, start=now - timedelta(days=8), hours=24 * 7, count=700, rng=rng)
            spike = traffic(
                feature=key, start=now - timedelta(hours=20), hours=19, count=300, rng=rng, thumbs_down=lambda t: 0.8
            )
            ingest(*(a + b for a, b in zip(normal, spike, strict=True)))
            channel, secret = channel_create(kind="webhook", name=f"beat-{key}", url=receiver.url)
        alerts_sweep.delay()

        def delivered() -> bool:
            with in_tenant(org_a):
                return Delivery.objects.filter(channel=channel, alert__rule__feature__key=key, status="ok").exists()

        wait_for(delivered, timeout=90)
        with in_tenant(org_a):
            alert = Alert.objects.get(rule__feature__key=key, rule__name="Thumbs-down share up 50% (24 h)", segment="")
        bodies = [(h, b) for h, b in receiver.requests if json.loads(b)["alert"]["id"] == alert.id]
        assert len(bodies) == 1
        headers, body = bodies[0]
        expected = hmac.new(secret.encode(), headers["Candor-Timestamp"].encode() + b"." + body, hashlib.sha256)
        assert headers["Candor-Signature"] == "v1=" + expected.hexdigest()
    finally:
        receiver.server.shutdown()
        with in_tenant(org_a):
            channel.delete()
