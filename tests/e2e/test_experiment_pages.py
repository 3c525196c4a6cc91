"""Real Chromium: a PM opens a running holdback experiment and reads its verdict with intervals,
the drift view with the planted segment first, an alert with its webhook delivery, and the digest."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from evaluation.services.alerts import alerts_evaluate, channel_create, deliveries_send
from feedback.models import Feature
from tests.evaluation.experiments_seed import holdback_experiment, ingest, new_feature, traffic
from tests.fixtures.browser import log_in
from tests.fixtures.organizations import in_tenant, unique


def test_experiment_drift_alert_and_digest_pages(
    committed_db: None, live: Any, context: Any, org_a: Any, settings: Any
) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    key = unique("exp")
    settings.ALERT_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    with in_tenant(org_a):
        feature = new_feature(segment_keys=["auth"])
        rng = random.Random(12)

        def fields(i: int) -> dict[str, Any]:
            arm = "holdback" if i % 10 == 0 else "ai"
            return {
                "experiment": key,
                "variant": arm,
                "fallback": arm == "holdback",
                "metadata": {"auth": "sso" if i % 4 == 0 else "password"},
            }

        # Up to 13 days ago: the weekly rule's 14-day baseline ends with the day the current week starts, and holds
        # at least 7 of the seed's days at any hour (ended 14 days ago, the first hour after midnight UTC held 6,
        # "too little history", and no alert opened).
        before = traffic(
            feature=feature,
            start=now - timedelta(days=27),
            hours=24 * 14,
            count=1600,
            rng=rng,
            fields=lambda i: {"metadata": {"auth": "sso" if i % 4 == 0 else "password"}},
        )
        during = traffic(
            feature=feature,
            start=now - timedelta(days=6),
            hours=24 * 6,
            count=3000,
            rng=rng,
            fields=fields,
            thumbs_down=lambda t: 0.8 if t["metadata"]["auth"] == "sso" else 0.2,
            success=lambda t: 0.3 if t["variant"] == "holdback" else 0.55,
        )
        for t in during[0]:
            if t["variant"] == "ai":
                t["prompt_version"] = "v2"
        ingest(*(a + b for a, b in zip(before, during, strict=True)))
        holdback_experiment(key, feature, started_at=now - timedelta(days=6))
        alerts_evaluate(now=now, features=[Feature.objects.get(key=feature)])
        deliveries_send(now=now)  # no channel yet: nothing to send
        channel_create(kind="email", name=unique("mail"), email="pm@example.com")
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None,
    )
    log_in(page, live.url, org_a.owner.email)
    page.goto(f"{live.url}{org_a.url('experiments/')}")
    page.click(f"a[href$='/experiments/{key}/']")
    verdict = page.locator("[data-testid=verdict]").inner_text()
    assert "SHIP" in verdict and "always-valid 95% interval" in verdict
    assert page.locator("#arms-table tbody tr").count() == 2
    page.goto(f"{live.url}{org_a.url(f'drift/{feature}/')}")
    page.locator("[data-testid=rate-thumbs_down_share] summary").click()  # one click to the root cause
    first = page.locator("[data-testid=rate-thumbs_down_share] [data-testid=segment]").first.inner_text()
    assert "metadata.auth=sso × prompt_version=v2" in first
    page.goto(f"{live.url}{org_a.url('alerts/')}")
    assert page.locator("[data-testid=alert-row]", has_text=feature).count() >= 1
    page.locator("[data-testid=alert-row]", has_text=feature).first.locator("a").click()
    assert "Thumbs-down share" in page.locator("h1").inner_text()
    page.goto(f"{live.url}{org_a.url('digest/')}")
    assert "Candor weekly" in page.locator("[data-testid=digest-subject]").inner_text()
    assert problems == []
