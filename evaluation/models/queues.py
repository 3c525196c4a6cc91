"""Annotation queues: traces selected for human review under a known sampling design, each item
holding the design, stratum and inclusion probability it was selected with (CALIBRATION.md), and
one reviewer slot per wanted label, reserved for a while so two reviewers never take the same one."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from evaluation.models.judges import JudgeVersion
from evaluation.models.labels import Label, Rubric
from feedback.models import Feature


class QueueDesign(models.TextChoices):
    UNIFORM = "uniform", "Uniform audit (simple random sample)"
    STRATIFIED = "stratified", "Stratified by judge score"
    ACTIVE = "active", "Active (uncertain judge scores first)"
    MANUAL = "manual", "Manual (traces added by hand)"


class AnnotationQueue(models.Model):
    """A labeling job. Its rubric version is pinned at creation: a newer version of the rubric does
    not move the queue (its labels stay comparable); the page says a newer version exists."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    rubric = models.ForeignKey(Rubric, on_delete=models.PROTECT, related_name="+")
    feature = models.ForeignKey(Feature, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # The judge whose scores define the population (and the strata / uncertainty); optional for
    # uniform and manual queues.
    judge_version = models.ForeignKey(JudgeVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    design = models.CharField(max_length=12, choices=QueueDesign.choices)
    since = models.DateTimeField(null=True, blank=True)  # window on the trace's start, inclusive
    until = models.DateTimeField(null=True, blank=True)  # exclusive
    budget = models.PositiveIntegerField()  # items, manual additions included
    reviewers_per_item = models.PositiveSmallIntegerField(default=1)
    reservation_seconds = models.PositiveIntegerField(default=600)
    population = models.IntegerField(null=True)  # eligible traces when the sample was drawn (N)
    seed = models.BigIntegerField(default=0)  # the sampler's seed: a fill can be reproduced
    filled_at = models.DateTimeField(null=True)
    created_by = models.CharField(max_length=254, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(budget__gte=1), name="queue_budget_positive"),
            models.CheckConstraint(
                condition=Q(reviewers_per_item__gte=1, reviewers_per_item__lte=10), name="queue_reviewers_1_10"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class QueueItem(models.Model):
    """One trace in a queue, with how it was selected. ``inclusion_probability`` is None only for
    traces added by hand (design ``manual``): they are not a sample of anything."""

    queue = models.ForeignKey(AnnotationQueue, on_delete=models.CASCADE, related_name="items")
    trace_id = models.CharField(max_length=200)
    position = models.PositiveIntegerField()  # the order reviewers meet items (shuffled at selection)
    design = models.CharField(max_length=12, choices=QueueDesign.choices)
    stratum = models.CharField(max_length=200, blank=True, default="")
    inclusion_probability = models.FloatField(null=True)
    judge_score = models.FloatField(null=True)  # the judge's score in [0, 1] when selected
    added_by = models.CharField(max_length=254, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["queue", "position"]
        constraints = [
            models.UniqueConstraint(fields=["queue", "trace_id"], name="queue_item_trace_once"),
            models.CheckConstraint(
                condition=Q(inclusion_probability__isnull=True)
                | Q(inclusion_probability__gt=0, inclusion_probability__lte=1),
                name="queue_item_probability_0_1",
            ),
        ]
        indexes = [models.Index(fields=["queue", "position"], name="queue_item_position")]


class SlotStatus(models.TextChoices):
    OPEN = "open", "Open"
    DONE = "done", "Labelled"
    SKIPPED = "skipped", "Skipped"


class QueueSlot(models.Model):
    """One wanted label of an item: ``reviewers_per_item`` slots per item. ``reserved_by`` is whoever
    holds the slot (or held it: it stays after the label, so a reviewer never takes two slots of one
    item); a reservation past ``reserved_until`` may be reclaimed by another reviewer."""

    queue = models.ForeignKey(AnnotationQueue, on_delete=models.CASCADE, related_name="slots")
    item = models.ForeignKey(QueueItem, on_delete=models.CASCADE, related_name="slots")
    index = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=8, choices=SlotStatus.choices, default=SlotStatus.OPEN)
    reserved_by = models.CharField(max_length=254, blank=True, default="")
    reserved_until = models.DateTimeField(null=True)
    skip_reason = models.CharField(max_length=500, blank=True, default="")
    label = models.ForeignKey(Label, on_delete=models.SET_NULL, null=True, related_name="+")
    completed_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "index"], name="queue_slot_index"),
            # One slot per reviewer per item: N reviewers means N different people.
            models.UniqueConstraint(
                fields=["item", "reserved_by"], condition=~Q(reserved_by=""), name="queue_slot_reviewer_once"
            ),
        ]
        indexes = [
            models.Index(fields=["queue", "status"], name="queue_slot_status"),
            models.Index(fields=["queue", "reserved_by"], name="queue_slot_reviewer"),
        ]
