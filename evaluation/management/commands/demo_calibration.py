"""make demo, after demo_queues: a second judge the PM should not trust, and the calibrations.

``vendor-quality`` is an external score, the kind a team imports from a third-party evaluation
tool (POST /api/v1/scores): it scores the same traces as the helpfulness judge but passes almost
everything, bad answers included. Against the queue's human labels the calibration page exposes
it (an exploratory verdict, its 90%+ pass rate beside a true success rate near 75%), while the
offline helpfulness judge earns a gating verdict and so drives the feature reports' success.
Also maps support-copilot's widget thumbs and ratings onto the helpfulness rubric (kept apart as
widget labels), then computes every calibration so the pages open on a report. Idempotent.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from evaluation.management.commands.demo_queues import FEATURE, JUDGE, RUBRIC, good_answer
from evaluation.models import Judge, Rubric, Score, WidgetLabelMap
from evaluation.services.calibration_refresh import calibration_sweep
from evaluation.services.scores import scores_ingest
from feedback.models import Feature, Trace
from tenants.schema import activate_public, activate_tenant
from tenants.selectors import organization_find

LENIENT = "vendor-quality"
PASS_GOOD, PASS_BAD = 0.98, 0.85  # how often the lenient judge passes a good / a bad answer


class Command(BaseCommand):
    help = "Add the demo's lenient external judge, map widget feedback onto the rubric, compute calibrations."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", default="acme")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = organization_find(options["slug"])
        if organization is None:
            self.stderr.write(f"No organization {options['slug']!r}: run demo_setup first.")
            return
        activate_tenant(organization)
        try:
            self._lenient_scores()
            rubric = Rubric.objects.filter(name=RUBRIC).order_by("-version").first()
            feature = Feature.objects.filter(key=FEATURE).first()
            if rubric is not None and feature is not None:
                WidgetLabelMap.objects.get_or_create(rubric=rubric, feature=feature)
            refreshed = 0
            while True:
                stats = calibration_sweep()
                refreshed += stats.refreshed
                if not stats.refreshed:
                    break
            self.stdout.write(f"  Calibrations: {refreshed} computed (helpfulness and {LENIENT} against {RUBRIC})")
        finally:
            activate_public()

    def _lenient_scores(self) -> None:
        judge = Judge.objects.filter(name=JUDGE).first()
        if judge is None or Judge.objects.filter(name=LENIENT).exists():
            return
        trace_ids = list(
            Score.objects.filter(judge_id=judge.id, status="ok").values_list("trace_id", flat=True).distinct()
        )
        rows = Trace.objects.filter(trace_id__in=trace_ids).values_list("trace_id", "output", "started_at")
        traces = {trace_id: (output, started) for trace_id, output, started in rows}
        rng = random.Random("candor-demo-vendor-quality")
        items = []
        for trace_id in sorted(traces):
            output, started = traces[trace_id]
            passed = rng.random() < (PASS_GOOD if good_answer(output) else PASS_BAD)
            # Scored a minute after its trace, as a vendor's pipeline would (not all at demo time: the
            # judges page counts scores by when they were made).
            scored = (started + timedelta(minutes=1)).isoformat()
            items.append({"score_id": f"vq-{trace_id}", "trace_id": trace_id, "name": LENIENT,
                          "value": 1 if passed else 0, "scale": "binary", "occurred_at": scored})  # fmt: skip
        for start in range(0, len(items), 1000):
            result = scores_ingest(body=json.dumps({"batch": items[start : start + 1000]}).encode())
            if result.errors:
                raise RuntimeError(f"demo {LENIENT} scores rejected: {result.errors[:3]}")
        self.stdout.write(f"  Judge {LENIENT}: {len(items):,} external scores (lenient: passes most bad answers)")
