"""Calibration snapshots: each (judge version x rubric version x feature) a judge is compared on,
and the history of its calibration reports, recomputed by Celery when labels or scores arrive."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from evaluation.models.judges import JudgeVersion
from evaluation.models.labels import Rubric
from feedback.models import Feature


class CalibrationTarget(models.Model):
    """What one calibration covers. ``due_at`` is set when new labels or scores touch it (a
    debounce: many arrivals, one recompute); a sweep's claim moves it to the end of its lease, and
    clears it once the snapshot is written."""

    judge_version = models.ForeignKey(JudgeVersion, on_delete=models.CASCADE, related_name="calibration_targets")
    rubric = models.ForeignKey(Rubric, on_delete=models.CASCADE, related_name="calibration_targets")
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, null=True, related_name="calibration_targets")
    due_at = models.DateTimeField(null=True)
    refreshed_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["judge_version", "rubric", "feature"], name="calibration_target_once", nulls_distinct=False
            )
        ]
        indexes = [models.Index(fields=["due_at"], name="calibration_target_due")]


class CalibrationSnapshot(models.Model):
    """One computed calibration report (API.md's shape, in ``report``) and the feature's success
    estimate beside it (``success``), kept so the verdict's history is visible."""

    target = models.ForeignKey(CalibrationTarget, on_delete=models.CASCADE, related_name="snapshots")
    computed_at = models.DateTimeField(default=timezone.now)
    n_labels = models.PositiveIntegerField(default=0)
    n_scored = models.PositiveIntegerField(default=0)
    verdict = models.CharField(max_length=12, blank=True, default="")  # exploratory / trends / gating / ""
    verdict_low = models.FloatField(null=True)  # the agreement interval's lower bound the verdict reads
    report = models.JSONField(default=dict)
    success = models.JSONField(null=True)
    # The fitted calibrator (evaluation.stats.calibrator_from_dict), to turn raw scores into P(good).
    calibrator = models.JSONField(null=True)
    millis = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-computed_at", "-id"]
        indexes = [models.Index(fields=["target", "-computed_at"], name="calibration_snapshot_recent")]


class CalibrationCursor(models.Model):
    """Singleton: how far the calibration sweep has read labels (by id) and finished scores (by
    scored_at), so each sweep looks only at what arrived since."""

    label_id = models.BigIntegerField(default=0)
    scored_at = models.DateTimeField(null=True)


class WidgetLabelMap(models.Model):
    """Widget thumbs and ratings of a feature (or of every feature) copied onto a rubric version as
    labels of source ``widget``: useful for volume and trends, never for calibration or success
    estimates (people who answer are not a random sample). Thumb up 1 / down 0 on a binary rubric;
    a rating keeps its value on an ordinal rubric and is good at 4 or more on a binary one."""

    rubric = models.ForeignKey(Rubric, on_delete=models.CASCADE, related_name="widget_maps")
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, null=True, related_name="+")
    thumbs = models.BooleanField(default=True)
    ratings = models.BooleanField(default=True)
    # How far the copy has read feedback events (by id).
    event_id_mark = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rubric", "feature"], name="widget_label_map_once", nulls_distinct=False)
        ]
