"""Rubrics and the human labels given under them (CALIBRATION.md)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class RubricScale(models.TextChoices):
    BINARY = "binary", "Binary (1 good / 0 bad)"
    ORDINAL = "ordinal", "Ordinal 1-5"
    CONTINUOUS = "continuous", "Continuous 0-1"
    CATEGORICAL = "categorical", "Categorical"
    FREE_TEXT = "free_text", "Free text"  # a label carries text, no value (kept out of agreement)


class Rubric(models.Model):
    """One version of a rubric: what reviewers judge and on which scale. Immutable: a changed rubric
    is a new version (evaluation.services.labels.rubric_version_create), and labels under different
    versions are never pooled."""

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    scale = models.CharField(max_length=12, choices=RubricScale.choices)
    # Categorical rubrics: the allowed categories ([] = any, as a rubric first seen through the API).
    categories = models.JSONField(default=list, blank=True)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="rubric_name_version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class LabelSource(models.TextChoices):
    API = "api", "API"
    WIDGET = "widget", "Widget feedback"  # not a random sample: kept out of calibration
    QUEUE = "queue", "Annotation queue"


class Label(models.Model):
    """A human verdict on a trace under one rubric version. Like a score, it names its trace by the
    organization's ``trace_id`` (the trace may land later; reads join on it). The sampling design,
    stratum and inclusion probability are those at selection time (CALIBRATION.md)."""

    label_id = models.CharField(max_length=200, unique=True)
    trace_id = models.CharField(max_length=200)
    rubric = models.ForeignKey(Rubric, on_delete=models.PROTECT, related_name="labels")
    value = models.FloatField(null=True)
    category = models.CharField(max_length=200, blank=True, default="")
    text = models.TextField(blank=True, default="")  # free-text rubrics: the reviewer's answer
    reviewer = models.CharField(max_length=254, blank=True, default="")
    source = models.CharField(max_length=8, choices=LabelSource.choices, default=LabelSource.API)
    sampling_design = models.CharField(max_length=12, default="manual")  # uniform / stratified / active / manual
    stratum = models.CharField(max_length=200, blank=True, default="")
    inclusion_probability = models.FloatField(null=True)
    comment = models.TextField(blank=True, default="")
    occurred_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["trace_id"], name="label_trace_id"),
            models.Index(fields=["rubric", "source"], name="label_rubric_source"),
        ]


def trace_labels_sql(where: str) -> str:
    """One label per trace, as every estimate reads human labels: each reviewer's latest label on the trace (a
    reviewer may correct their own), then the value most reviewers hold; a tie goes to the value given first.
    Labels without a reviewer (the API's) are one reviewer's. So one person cannot overturn another's blind label
    alone (a relabel made with the judge's verdict in view sided with the judge: one reviewer flipped a judge from
    exploratory to gating in 42 clicks); a third opinion settles it. Rows of evaluation_label aliased ``l``,
    filtered by ``where`` (over ``l``); select from it as ``(...) l``."""
    return f"""SELECT DISTINCT ON (l.trace_id) l.* FROM (
        SELECT r.*, count(*) OVER (PARTITION BY r.trace_id, r.value) AS votes,
               min(r.occurred_at) OVER (PARTITION BY r.trace_id, r.value) AS first_at
        FROM (
            SELECT DISTINCT ON (l.trace_id, l.reviewer) l.* FROM evaluation_label l
            WHERE {where}
            ORDER BY l.trace_id, l.reviewer, l.occurred_at DESC, l.id DESC
        ) r
    ) l
    ORDER BY l.trace_id, l.votes DESC, l.first_at, l.id"""
