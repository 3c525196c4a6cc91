"""demo_queues on a small demo: a uniform audit of support-copilot over the helpfulness judge's
scored traces, two reviewers per item on the first items, labels that follow the demo's ground
truth with a few slips; running it again changes nothing."""

from __future__ import annotations

from collections import Counter

from django.core.management import call_command

from evaluation.management.commands.demo_queues import QUEUE, REVIEWERS, good_answer
from evaluation.models import AnnotationQueue, Label, QueueSlot, Score
from feedback.demo import demo_load
from feedback.models import Trace
from tests.fixtures.organizations import Org, in_tenant


def test_demo_queue_is_a_uniform_audit_half_labelled_by_reviewers(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        demo_load(traces=1500, log=lambda _: None)
    call_command("demo_evaluation", slug=org_a.slug, stdout=None)
    call_command("demo_queues", slug=org_a.slug, budget=60, prelabel=40)
    with in_tenant(org_a):
        queue = AnnotationQueue.objects.select_related("rubric", "feature").get(name=QUEUE)
        scored = Score.objects.filter(
            judge_version_id=queue.judge_version_id, status="ok", feature__key="support-copilot"
        )
        population = scored.values("trace_id").distinct().count()
        assert (queue.design, queue.feature.key, queue.rubric.name, queue.population) == (  # type: ignore[union-attr]
            "uniform",
            "support-copilot",
            "helpfulness",
            population,
        )
        # One probability for every item (a uniform design over all traces: the judge's thumbs-down
        # enrichment thinned away), below 60 / N scored.
        (pi,) = set(queue.items.values_list("inclusion_probability", flat=True))
        assert queue.items.count() == 60 and pi is not None and 0 < pi < 60 / population
        labels = list(Label.objects.filter(rubric=queue.rubric, source="queue"))
        skipped = QueueSlot.objects.filter(queue=queue, status="skipped").count()
        assert len(labels) + skipped == 80  # the first 40 items, two reviewers each
        assert {lb.reviewer for lb in labels} == {email for email, _, _ in REVIEWERS}
        per_item = Counter(lb.trace_id for lb in labels)
        assert max(per_item.values()) == 2 and sum(1 for n in per_item.values() if n == 2) >= 30  # overlap
        outputs = dict(Trace.objects.filter(trace_id__in=per_item).values_list("trace_id", "output"))
        truth = sum(lb.value == float(good_answer(outputs[lb.trace_id])) for lb in labels)
        assert truth >= 0.85 * len(labels)
        assert {(lb.sampling_design, lb.inclusion_probability) for lb in labels} == {("uniform", pi)}
        assert not QueueSlot.objects.filter(queue=queue, item__position__gt=40).exclude(status="open").exists()
    call_command("demo_queues", slug=org_a.slug, budget=60, prelabel=40)
    with in_tenant(org_a):
        assert AnnotationQueue.objects.filter(name=QUEUE).count() == 1
        assert Label.objects.filter(rubric=queue.rubric, source="queue").count() == len(labels)
