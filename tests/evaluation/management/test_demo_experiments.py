"""demo_experiments on a small demo data set: the holdback experiment with a verdict, drift
snapshots, default alert rules, a signed webhook channel parked after the run, and the digest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management import call_command

from evaluation.models import AlertRule, ChannelKind, DriftSnapshot, Experiment, NotificationChannel
from evaluation.services.experiments import experiment_get, experiment_results
from feedback.demo import demo_load
from feedback.models import Trace
from tests.fixtures.organizations import in_tenant


def test_demo_experiments_builds_the_story(db: None, org_a, tmp_path: Path, mailoutbox: list[Any]) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "webhooks.jsonl"
    with in_tenant(org_a):
        demo_load(traces=9000, days=30, log=lambda _: None)
    call_command("demo_experiments", slug=org_a.slug, replay_days=2, webhook_log=str(log))
    with in_tenant(org_a):
        assert set(Experiment.objects.values_list("key", flat=True)) >= {"support-holdback", "checkout-assist"}
        r = experiment_results(experiment_get("support-holdback"))
        arms = {a["name"]: a for a in r["arms"]}
        assert arms["holdback"]["holdback"] and arms["holdback"]["traces"] > 0 and arms["ai"]["traces"] > 0
        assert arms["holdback"]["metric"]["low"] is not None and arms["ai"]["lift"]["value"] is not None
        assert not r["srm"]["mismatch"] and r["verdict"]["reason"]
        held = Trace.objects.filter(experiment="support-holdback", variant="holdback")
        assert held.filter(fallback=True).count() == held.count() == arms["holdback"]["traces"]
        assert DriftSnapshot.objects.filter(feature__key="support-copilot").exists()
        assert AlertRule.objects.filter(feature__key="support-copilot", is_default=True).count() == 6
        receiver = NotificationChannel.objects.get(kind=ChannelKind.WEBHOOK)
        assert not receiver.enabled  # its receiver stopped with the command
        # Run twice: nothing is doubled.
        traces = Trace.objects.count()
    call_command("demo_experiments", slug=org_a.slug, replay_days=2, webhook_log=str(log))
    with in_tenant(org_a):
        assert Trace.objects.count() == traces and Experiment.objects.filter(key="support-holdback").count() == 1
    for line in log.read_text().splitlines() if log.exists() else []:
        assert json.loads(line)["signature_valid"] is True
    # The digest is sent; alert emails may come first (whether a rule fires depends on the hour the demo
    # data ends at: at 14:15 "cost per success up 30%" fired for metadata.plan=enterprise).
    assert any(m.subject.startswith("Candor weekly") for m in mailoutbox), [m.subject for m in mailoutbox]
