"""Experiments (arms of one feature, one of them perhaps a non-AI holdback), daily drift snapshots,
alert rules with their alerts, notification channels and deliveries, and sent digests."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from feedback.models import Feature


class PrimaryMetric(models.TextChoices):
    SUCCESS = "success", "Success rate (the reports' success source)"
    THUMBS_UP = "thumbs_up_share", "Thumbs-up share"
    EDIT_DISTANCE = "edit_distance", "Mean edit distance (lower is better)"
    CONVERSION = "conversion", "Outcome conversion (share of traces with an outcome)"
    VALUE = "value", "Outcome value per trace (USD)"


class ExperimentStatus(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class Experiment(models.Model):
    """An experiment on one feature. ``key`` is what its traces carry in ``experiment``; each arm is a
    ``variant`` value. ``arms``: [{"name", "allocation" (share of units), "holdback" (the non-AI
    path)}]; ``control`` names the arm others are compared with. ``mde`` is absolute (0.02 = two
    points of a rate). ``guardrails``: [{"metric", "max_increase"}] relative to control."""

    key = models.CharField(max_length=200, unique=True)
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200, blank=True, default="")
    hypothesis = models.TextField(blank=True, default="")
    arms = models.JSONField(default=list)
    control = models.CharField(max_length=200)
    primary_metric = models.CharField(max_length=20, choices=PrimaryMetric.choices, default=PrimaryMetric.SUCCESS)
    guardrails = models.JSONField(default=list, blank=True)
    mde = models.FloatField()
    alpha = models.FloatField(default=0.05)
    power = models.FloatField(default=0.8)
    max_days = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=ExperimentStatus.choices, default=ExperimentStatus.RUNNING)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return self.key


class DriftSnapshot(models.Model):
    """The daily drift of one feature (evaluation.services.drift.feature_drift), kept for the digest
    and history."""

    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    result = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["feature", "day"], name="drift_snapshot_feature_day")]


class AlertMetric(models.TextChoices):
    THUMBS_DOWN = "thumbs_down_share", "Thumbs-down share"
    COST_PER_SUCCESS = "cost_per_success_usd", "Cost per success"
    P95_LATENCY = "p95_latency_ms", "p95 latency"
    SUCCESS_HIGH = "success_high", "Success"
    ERROR_RATE = "error_rate", "Error rate"


class AlertRule(models.Model):
    """Fires when the last ``window_hours`` move against the trailing ``baseline_days`` level, clearly
    (by an interval counting both windows' noise; evaluation.services.alerts.rule_verdict): for a
    "rise" metric when current >= baseline x (1 + threshold), for success_high (success) when current
    < baseline x (1 - threshold). Below ``min_count`` (thumbs,
    traces or successes, by metric) in the window the rule waits. Evaluated on the whole feature
    and, when ``per_segment``, on each value of the feature's declared segment keys."""

    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    metric = models.CharField(max_length=24, choices=AlertMetric.choices)
    threshold = models.FloatField()
    window_hours = models.PositiveIntegerField(default=24)
    baseline_days = models.PositiveIntegerField(default=7)
    min_count = models.PositiveIntegerField(default=20)
    per_segment = models.BooleanField(default=True)
    enabled = models.BooleanField(default=True)
    is_default = models.BooleanField(default=False)
    # Last evaluation: "ok", "firing" or why it could not judge ("too little data: ...").
    last_state = models.CharField(max_length=300, blank=True, default="")
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["feature_id", "name"]
        constraints = [models.UniqueConstraint(fields=["feature", "name"], name="alert_rule_feature_name")]

    def __str__(self) -> str:
        return self.name


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"


class Alert(models.Model):
    """One firing of a rule on a segment ("" = the whole feature). At most one open alert per (rule,
    segment): a rule still firing updates it. It stays open while the metric is still clearly worse
    than the baseline it opened against (``opened_baseline``, read with ``opened_source``), even once
    the trailing baseline has taken a lasting regression in; it resolves when the metric recovers, or
    when a person resolves it (``resolved_by``)."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    segment = models.CharField(max_length=400, blank=True, default="")
    state = models.CharField(max_length=8, choices=AlertState.choices, default=AlertState.OPEN)
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_fired_at = models.DateTimeField()
    evaluations_firing = models.PositiveIntegerField(default=1)
    value = models.FloatField(null=True)
    baseline = models.FloatField(null=True)
    count = models.PositiveIntegerField(default=0)
    message = models.TextField()
    # The baseline when it opened, and the success source it was read with ("" for a metric that
    # does not read success): what "recovered" is measured against.
    opened_baseline = models.FloatField(null=True)
    opened_bound = models.FloatField(null=True)  # the far end of its 95% interval, when the metric has one
    opened_source = models.CharField(max_length=40, blank=True, default="")
    opened_message = models.TextField(blank=True, default="")  # ``message`` is the latest reading
    # Who resolved it ("" = an evaluation found it recovered) and why, in a sentence.
    resolved_by = models.CharField(max_length=254, blank=True, default="")
    resolution = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "segment"], condition=Q(state="open"), name="alert_one_open_per_rule_segment"
            )
        ]


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook", "Signed webhook"
    EMAIL = "email", "Email"


class NotificationChannel(models.Model):
    """Where alerts go. A webhook is signed with its own secret (encrypted at rest with the judges'
    keyring); after a delivery exhausts its retries the channel reads "failing" until one succeeds."""

    kind = models.CharField(max_length=8, choices=ChannelKind.choices)
    name = models.CharField(max_length=200)
    url = models.URLField(max_length=2000, blank=True, default="")
    email = models.EmailField(blank=True, default="")
    secret_encrypted = models.TextField(blank=True, default="")
    enabled = models.BooleanField(default=True)
    failing = models.BooleanField(default=False)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    OK = "ok", "Delivered"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """One notification of one alert event on one channel; retried with backoff until delivered or
    out of attempts. Unique per (alert, channel, event): evaluating twice never notifies twice."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=12)  # opened / resolved
    status = models.CharField(max_length=8, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel", "event"], name="delivery_alert_channel_event")
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]


class DigestDelivery(models.Model):
    """The weekly digest to one recipient: claimed before the email goes out, so a retried or repeated
    send (a redelivered task, a second beat) mails nobody twice. A claim not marked sent within the
    lease (a worker killed mid-send) may be taken again (evaluation.services.digest)."""

    week = models.DateField()  # the Monday (UTC) of the week it was sent in
    email = models.CharField(max_length=254)
    claimed_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["week", "email"], name="digest_once_per_week")]
