"""make demo, after demo_setup: an enabled offline helpfulness judge (binary, a uniform 15% of
traces) with its scores already on thousands of demo traces (idempotent).

Its heuristics catch the demo's bad answers well, so against the queue's human labels it earns a
gating verdict; demo_calibration adds a lenient judge the calibration pages expose. The sample is
uniform (no every-thumbs-down enrichment) so the success estimate can use PPI++ over its scores.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from evaluation.judges.templates import builtin_template
from evaluation.models import Judge, Score
from evaluation.services.judges import judge_create, judge_enable
from evaluation.services.runs import scores_run
from evaluation.services.sampling import sampling_sweep
from evaluation.services.shared import utc_now
from tenants.schema import activate_public, activate_tenant
from tenants.selectors import organization_find

NAME = "helpfulness"
# Each of the judge's scores dated a minute after its trace started (never later than now).
_AS_IF_LIVE = """
UPDATE evaluation_score s
   SET created_at = LEAST(t.started_at + interval '1 minute', now()),
       due_at = LEAST(t.started_at + interval '1 minute', now()),
       scored_at = LEAST(t.started_at + interval '1 minute', now())
  FROM feedback_trace t
 WHERE s.judge_id = %s AND s.trace_id = t.trace_id AND s.status IN ('ok', 'error')
"""


class Command(BaseCommand):
    help = "Add the demo organization's offline helpfulness judge and score the sampled demo traces."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", default="acme")
        parser.add_argument("--rate", type=float, default=0.15)

    def handle(self, *args: Any, **options: Any) -> None:
        organization = organization_find(options["slug"])
        if organization is None:
            self.stderr.write(f"No organization {options['slug']!r}: run demo_setup first.")
            return
        activate_tenant(organization)
        try:
            started = time.perf_counter()
            judge = Judge.objects.filter(name=NAME).first()
            if judge is None:
                template = builtin_template("helpfulness")
                # Binary (pass / fail) rather than the template's 1-5: the calibration pages compare
                # it with the demo's good / bad ground truth.
                spec = replace(template.spec(), scale="binary")
                judge = judge_create(name=NAME, spec=spec, description=template.description + " (offline heuristics)")
                judge_enable(judge=judge, base_rate=options["rate"])
            if not Score.objects.filter(judge_id=judge.id).exists():
                # The demo's traces landed moments ago: decide them now rather than after the settle time.
                queued = sampling_sweep(now=utc_now() + timedelta(minutes=1), max_batches=1000)
                stats = scores_run(max_seconds=600)
                # As if the judge had run as each trace arrived over the month (it ran now, on a month of traffic
                # loaded at once): "scored in the last 24 h", judge cost per day and the bill's judge runs read
                # like a live organization's.
                with connection.cursor() as cursor:
                    cursor.execute(_AS_IF_LIVE, [judge.id])
                self.stdout.write(
                    f"  Judge {NAME}: {queued:,} demo traces sampled, {stats.ok:,} scored "
                    f"({stats.errors:,} errors) in {time.perf_counter() - started:.1f}s"
                )
        finally:
            activate_public()
