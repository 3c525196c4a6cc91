"""demo_calibration on a small demo: the lenient vendor-quality judge is exposed by the queue's
labels (exploratory, its pass rate above the interval of the true success rate), widget feedback
is mapped onto the rubric, and every calibration is computed; running it again changes nothing."""

from __future__ import annotations

from django.core.management import call_command

from evaluation.management.commands.demo_calibration import LENIENT
from evaluation.models import CalibrationSnapshot, Label, Score, WidgetLabelMap
from feedback.demo import demo_load
from tests.fixtures.organizations import Org, in_tenant


def test_the_lenient_judge_is_exposed(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        demo_load(traces=3000, log=lambda _: None)
    call_command("demo_evaluation", slug=org_a.slug, stdout=None)
    call_command("demo_queues", slug=org_a.slug, budget=150, prelabel=120)
    call_command("demo_calibration", slug=org_a.slug)
    with in_tenant(org_a):
        scores = Score.objects.filter(judge__name=LENIENT).count()
        assert scores > 0
        lenient = CalibrationSnapshot.objects.filter(target__judge_version__judge__name=LENIENT).first()
        assert lenient is not None and lenient.success is not None
        assert lenient.verdict == "exploratory", lenient.report.get("verdict_reason")
        assert lenient.success["judge_uncorrected"]["value"] > lenient.success["estimate"]["high"]
        assert CalibrationSnapshot.objects.filter(target__judge_version__judge__name="helpfulness").exists()
        assert WidgetLabelMap.objects.filter(rubric__name="helpfulness", feature__key="support-copilot").exists()
        assert Label.objects.filter(source="widget").exists()
        snapshots = CalibrationSnapshot.objects.count()
    call_command("demo_calibration", slug=org_a.slug)
    with in_tenant(org_a):
        assert Score.objects.filter(judge__name=LENIENT).count() == scores
        assert CalibrationSnapshot.objects.count() == snapshots
