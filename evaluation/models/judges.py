"""Judges, their immutable versions and sampling rules, the scores they give, provider keys and backfills.

A score refers to its trace by the organization's own ``trace_id`` string, as feedback does: an
external score may name a trace that has not landed yet, and bulk writes must not look up a
primary key per row. The trace's report columns (feature, day) are copied on when it is known.
What CALIBRATION.md needs from a sampled score (design, stratum, inclusion probability, raw
score, judge version) is written when the trace is selected and never changed afterwards.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from evaluation.judges.versions import JudgeVersionSpec
from feedback.models import Feature


class JudgeKind(models.TextChoices):
    LLM = "llm", "LLM rubric"
    CODE = "code", "Code check"
    EXTERNAL = "external", "External (posted scores)"


class Judge(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=8, choices=JudgeKind.choices)
    # Null: every feature. Scope is a property of the judge, its versions share it.
    feature = models.ForeignKey(Feature, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    description = models.TextField(blank=True, default="")
    enabled = models.BooleanField(default=False)
    # Flipped by billing when the organization reaches its judge spend cap: nothing is sampled or run.
    paused = models.BooleanField(default=False)
    paused_reason = models.CharField(max_length=200, blank=True, default="")
    # The version that sampling and the portal's "run" use; editing makes a new one current.
    current_version = models.ForeignKey(
        "JudgeVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The organization's connection for LLM judges; None uses its newest key for the provider.
    provider_key = models.ForeignKey(
        "ProviderKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="judges"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class JudgeVersion(models.Model):
    """Immutable: everything that changes a verdict (JudgeVersionSpec.content()) and its hash."""

    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    content = models.JSONField()
    content_hash = models.CharField(max_length=64)
    # External judges: the team's own version label (POST /api/v1/scores judge_version).
    label = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=254, blank=True, default="")

    class Meta:
        ordering = ["judge", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["judge", "number"], name="judge_version_number"),
            models.UniqueConstraint(fields=["judge", "content_hash"], name="judge_version_hash"),
        ]

    def __str__(self) -> str:
        return f"{self.judge.name} v{self.number}"

    @property
    def spec(self) -> JudgeVersionSpec:
        return JudgeVersionSpec.from_content(self.content)


class SamplingRule(models.Model):
    """A judge version's sampling rule (evaluation.judges.sampling.SamplingRule), plus where its
    scan of newly landed traces has reached."""

    judge_version = models.OneToOneField(JudgeVersion, on_delete=models.CASCADE, related_name="sampling")
    base_rate = models.FloatField()
    # Null: no filter. Lists of feature keys, prompt version labels, customer IDs.
    features = models.JSONField(null=True, blank=True)
    prompt_versions = models.JSONField(null=True, blank=True)
    customers = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    thumbs_down_multiplier = models.FloatField(default=1.0)
    edited_multiplier = models.FloatField(default=1.0)
    guardrail_multiplier = models.FloatField(default=1.0)
    delay_s = models.FloatField(default=0.0)
    # Traces with an id above this have not been decided yet (feedback_trace.id).
    scanned_through = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    @property
    def delay_minutes(self) -> float:
        return self.delay_s / 60


class ScoreStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    OK = "ok", "OK"
    ERROR = "error", "Error"


class Score(models.Model):
    # Hot table (one row per sampled trace and judge): no FK triggers, as on feedback's tables.
    score_id = models.CharField(max_length=200, unique=True)
    trace_id = models.CharField(max_length=200)
    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False)
    judge_version = models.ForeignKey(
        JudgeVersion, on_delete=models.CASCADE, related_name="scores", db_constraint=False, db_index=False
    )
    run_index = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=8, choices=ScoreStatus.choices, default=ScoreStatus.PENDING)
    raw_score = models.FloatField(null=True)
    score = models.FloatField(null=True)  # raw_score mapped onto [0, 1]
    passed = models.BooleanField(null=True)
    rationale = models.TextField(blank=True, default="")
    verdict_probability = models.FloatField(null=True)
    pass_probability = models.FloatField(null=True)
    raw_response = models.TextField(blank=True, default="")
    error_code = models.CharField(max_length=20, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    # Sampling at selection time (CALIBRATION.md): design is sampled / all / backfill / manual / external.
    sampling_design = models.CharField(max_length=12, default="sampled")
    stratum = models.CharField(max_length=60, blank=True, default="")
    inclusion_probability = models.FloatField(null=True)
    model = models.CharField(max_length=200, blank=True, default="")
    cost_usd = models.DecimalField(max_digits=16, decimal_places=8, null=True)
    latency_ms = models.FloatField(null=True)
    input_tokens = models.IntegerField(null=True)
    output_tokens = models.IntegerField(null=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    comment = models.TextField(blank=True, default="")
    backfill = models.ForeignKey(
        "BackfillRun", on_delete=models.SET_NULL, null=True, related_name="+", db_constraint=False, db_index=False
    )
    # Copied from the trace once it is known (at insert, or by the sampling sweep later).
    feature = models.ForeignKey(
        Feature, on_delete=models.SET_NULL, null=True, related_name="+", db_index=False, db_constraint=False
    )
    trace_day = models.DateField(null=True)
    due_at = models.DateTimeField(default=timezone.now)  # a deferred run (circuit open) waits until then
    created_at = models.DateTimeField(default=timezone.now)
    scored_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["trace_id", "judge_version", "run_index"], name="score_once_per_run")
        ]
        indexes = [
            models.Index(fields=["trace_id"], name="score_trace_id"),
            # Newest first with the id as tie-break, as the judge page lists runs: a sampling sweep or a posted
            # batch gives all its scores one created_at, and ordering ties by id through the index alone
            # needs the id in it (else a sort of every score sharing the newest timestamp).
            models.Index(fields=["judge", "-created_at", "-id"], name="score_judge_recent_id"),
            models.Index(fields=["judge_version", "feature", "trace_day"], name="score_version_feature_day"),
            # The run queue: small, what the runner claims from.
            models.Index(
                fields=["due_at", "id"], name="score_queue", condition=models.Q(status__in=["pending", "running"])
            ),
            models.Index(fields=["trace_id"], name="score_unjoined", condition=models.Q(feature__isnull=True)),
            # What finished lately: the calibration sweep reads it every 15 s, the billing sweep every minute
            # (each a scan of every score without it: 142 and 107 ms an organization at 1M scores).
            models.Index(fields=["scored_at"], name="score_finished", condition=models.Q(status__in=["ok", "error"])),
            # Reruns (run_index > 0) are rare: calibration's one-score-per-trace summary finds them
            # here instead of scanning a million first runs twice (evaluation.selectors).
            models.Index(
                fields=["judge_version", "trace_id"], name="score_reruns", condition=models.Q(run_index__gt=0)
            ),
        ]


class OutputWait(models.Model):
    """A trace a judge of the output drew into its sample before the trace had an output: an SDK exports a
    long model call, or the root span carrying the answer, after the rest of the trace. Its score is queued
    when the output lands (each sampling sweep looks), or the wait is dropped after OUTPUT_WAIT
    (evaluation.services.sampling). The draw, its stratum and probability are the ones made at parking."""

    judge_version = models.ForeignKey(
        JudgeVersion, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    judge_id = models.BigIntegerField()
    trace_id = models.CharField(max_length=200)
    sampling_design = models.CharField(max_length=12)
    stratum = models.CharField(max_length=60, blank=True, default="")
    inclusion_probability = models.FloatField()
    parked_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["judge_version", "trace_id"], name="output_wait_once"),
        ]
        indexes = [models.Index(fields=["parked_at"], name="output_wait_parked")]


class ProviderKey(models.Model):
    """An organization's credentials for one provider, encrypted with settings.JUDGE_KEYRING."""

    provider = models.CharField(max_length=20)  # openai | anthropic
    name = models.CharField(max_length=100)
    base_url = models.URLField(max_length=500)
    azure_api_version = models.CharField(max_length=40, blank=True, default="")
    secret_encrypted = models.TextField()
    hint = models.CharField(max_length=20, blank=True, default="")  # "…abcd": tells keys apart, shows nothing more
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=254, blank=True, default="")

    class Meta:
        ordering = ["provider", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["provider", "name"], name="provider_key_name")]

    def __str__(self) -> str:
        return f"{self.provider}: {self.name} ({self.hint})"


class BackfillStatus(models.TextChoices):
    ESTIMATED = "estimated", "Estimated"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"


class BackfillRun(models.Model):
    """A judge version run over a historical window of traces (every trace in scope, p = 1)."""

    judge_version = models.ForeignKey(JudgeVersion, on_delete=models.CASCADE, related_name="backfills")
    since = models.DateTimeField()
    until = models.DateTimeField()
    status = models.CharField(max_length=10, choices=BackfillStatus.choices, default=BackfillStatus.ESTIMATED)
    traces = models.IntegerField(default=0)  # in the window and in scope, at estimate time
    estimated_cost_usd = models.DecimalField(max_digits=16, decimal_places=6, null=True)
    queued = models.IntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=254, blank=True, default="")
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-created_at"]
