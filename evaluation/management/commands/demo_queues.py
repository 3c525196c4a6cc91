"""make demo, after demo_evaluation: a uniform audit of support-copilot for the helpfulness rubric,
two reviewers per item, with the first items already labelled the way the demo's reviewers would
(idempotent).

The reviewers read each answer as a person would: an answer made of generic filler, a refusal, a
missing output, or a password reset offered to an SSO user is bad (this is exactly the demo
generator's ground truth for support-copilot); each reviewer also slips now and then, so their
agreement is high but not perfect. The rest of the queue waits for the PM's keyboard.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from evaluation.models import AnnotationQueue, Judge, Rubric, RubricScale
from evaluation.services.labels import rubric_version_create
from evaluation.services.queues import QueueError, queue_create, reserve_next, slot_label, slot_skip
from evaluation.services.shared import utc_now
from feedback.demo_data import _BAD_FILLERS, _REFUSAL  # the generator's own wording of a bad answer
from feedback.models import Feature, Trace
from tenants.access import Role
from tenants.schema import activate_public, activate_tenant
from tenants.selectors import organization_find
from tenants.services import member_ensure

QUEUE = "support-copilot uniform audit"
FEATURE = "support-copilot"
JUDGE = "helpfulness"
RUBRIC = "helpfulness"
RUBRIC_QUESTION = "Does the answer solve the user's problem correctly? 1 good, 0 bad."
# The SSO answers support-v2.3 gets wrong: it offers a password reset to people who sign in with SSO.
WRONG_SSO = ("Please make sure your login details are correct.", "You can reset your password from the login page")
# (email, how often they slip, password): three reviewers, one a little less careful.
REVIEWERS = (
    ("maya.reviewer@acme.test", 0.03, "candor-demo-maya"),
    ("jon.reviewer@acme.test", 0.07, "candor-demo-jon"),
    ("priya.reviewer@acme.test", 0.04, "candor-demo-priya"),
)
SKIP_REASONS = ("No output: the request failed", "Cannot tell without the customer's SSO settings")
BAD_COMMENTS = (
    "Generic filler; does not answer the question.",
    "Suggests a password reset although they sign in with SSO.",
    "Refused a normal support question.",
    "",
    "",
)


def good_answer(output: str | None) -> bool:
    """What a careful reviewer decides: no filler, no refusal, no password reset for SSO users."""
    if not output or output == _REFUSAL:
        return False
    return not any(sentence in output for sentence in (*_BAD_FILLERS, *WRONG_SSO))


class Command(BaseCommand):
    help = "Create the demo's uniform audit queue on support-copilot and pre-label part of it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", default="acme")
        parser.add_argument("--budget", type=int, default=300)
        parser.add_argument("--prelabel", type=int, default=200, help="items labelled by the demo's reviewers")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = organization_find(options["slug"])
        if organization is None:
            self.stderr.write(f"No organization {options['slug']!r}: run demo_setup first.")
            return
        for email, _, password in REVIEWERS:
            member_ensure(organization=organization, email=email, password=password, role=Role.REVIEWER)
        activate_tenant(organization)
        try:
            self._queue(options["budget"], options["prelabel"])
        finally:
            activate_public()

    def _queue(self, budget: int, prelabel: int) -> None:
        if AnnotationQueue.objects.filter(name=QUEUE).exists():
            return
        judge = Judge.objects.select_related("current_version").filter(name=JUDGE).first()
        feature = Feature.objects.filter(key=FEATURE).first()
        if judge is None or judge.current_version is None or feature is None:
            self.stderr.write(f"No judge {JUDGE!r} or feature {FEATURE!r}: run demo_evaluation first.")
            return
        rubric = Rubric.objects.filter(name=RUBRIC, scale=RubricScale.BINARY).order_by("-version").first()
        if rubric is None:
            rubric, _ = rubric_version_create(name=RUBRIC, scale=RubricScale.BINARY, description=RUBRIC_QUESTION)
        try:
            queue = queue_create(
                name=QUEUE, rubric=rubric, design="uniform", budget=budget, reviewers_per_item=2, feature=feature,
                judge_version=judge.current_version, created_by="pm@acme.test", seed=2026,
                description="Weekly audit: a simple random sample of support-copilot traces, drawn through the "
                "helpfulness judge's scores so each has a verdict to compare. Keep it uniform: it is the sample "
                "the true success rate is estimated from.",
            )  # fmt: skip
        except QueueError as exc:
            self.stderr.write(f"Queue not created: {exc.message}")
            return
        labels, skips = self._prelabel(queue, prelabel)
        self.stdout.write(
            f"  Queue {QUEUE!r}: {queue.items.count():,} of {queue.population or 0:,} scored traces, "
            f"{labels:,} labels and {skips} skips by {len(REVIEWERS)} reviewers on the first {prelabel} items"
        )

    def _prelabel(self, queue: AnnotationQueue, items: int) -> tuple[int, int]:
        """Reviewers take turns (two per item, never the same one twice), over the last five days."""
        rng = random.Random(2026)
        outputs = dict(
            Trace.objects.filter(trace_id__in=queue.items.filter(position__lte=items).values("trace_id")).values_list(
                "trace_id", "output"
            )
        )
        answers = items * queue.reviewers_per_item
        start = utc_now() - timedelta(days=5)
        step = timedelta(days=4) / max(answers, 1)
        labels = skips = 0
        for turn in range(answers):
            email, slip, _ = REVIEWERS[turn % len(REVIEWERS)]
            now = start + step * turn + timedelta(seconds=rng.uniform(0, 30))
            slot = reserve_next(queue=queue, reviewer=email, now=now)
            if slot is None or slot.item.position > items:
                break
            output = outputs.get(slot.item.trace_id)
            if (not output and rng.random() < 0.5) or rng.random() < 0.012:
                slot_skip(slot=slot, reviewer=email, reason=SKIP_REASONS[0 if not output else 1], now=now)
                skips += 1
                continue
            good = good_answer(output)
            if rng.random() < slip:
                good = not good
            comment = "" if good else rng.choice(BAD_COMMENTS)
            slot_label(slot=slot, reviewer=email, value=1.0 if good else 0.0, comment=comment, now=now)
            labels += 1
        return labels, skips
