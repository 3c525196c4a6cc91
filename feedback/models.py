"""Ingested data: features, prompt versions, prices, traces, spans, feedback, outcomes, rollups.

Child rows (spans, feedback, outcomes) refer to a trace by the organization's own
``trace_id`` string rather than a foreign key: feedback may arrive before its trace, and
bulk COPY ingestion must not look up a primary key per row. Report columns (feature,
prompt version, day) are copied onto feedback when the trace is known.
"""

from __future__ import annotations

from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.utils import timezone

from feedback.enums import FeedbackKind, FeedbackSource, SpanKind, TraceStatus


class Feature(models.Model):
    key = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    value_per_success_usd = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    owner_email = models.EmailField(blank=True, default="")
    # Metadata keys (e.g. ["auth", "plan"]) the rollups count per value, so reports grouped by
    # metadata.<key> read rollups; any other key is answered from the raw rows.
    segment_keys = models.JSONField(default=list, db_default=[], blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.name or self.key


class PromptVersion(models.Model):
    """Label plus content hash; registered the first time a trace names it."""

    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="prompt_versions", null=True)
    label = models.CharField(max_length=200)
    content_hash = models.CharField(max_length=64, blank=True, default="")
    prompt_text = models.TextField(blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["label"]
        constraints = [models.UniqueConstraint(fields=["label", "content_hash"], name="prompt_version_label_hash")]

    def __str__(self) -> str:
        return self.label if not self.content_hash else f"{self.label} ({self.content_hash[:8]})"


class ModelPrice(models.Model):
    """An organization's own price for a model; overrides the built-in table in feedback.prices."""

    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    cached_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["provider", "model", "-effective_from"]


class Trace(models.Model):
    # Every index and constraint here is paid for on each ingested row: no LIKE twins, no FK
    # indexes a composite index already covers, and no FK triggers (ingestion takes these IDs
    # from upserts in the same transaction; Django still applies on_delete when deleting).
    trace_id = models.CharField(max_length=200)
    feature = models.ForeignKey(
        Feature, on_delete=models.PROTECT, related_name="traces", db_index=False, db_constraint=False
    )
    prompt_version = models.ForeignKey(
        PromptVersion, on_delete=models.SET_NULL, null=True, related_name="traces", db_index=False,
        db_constraint=False,
    )  # fmt: skip
    model = models.CharField(max_length=200, blank=True, default="")
    provider = models.CharField(max_length=50, blank=True, default="")
    input = models.TextField(blank=True, default="")
    output = models.TextField(blank=True, default="")
    input_tokens = models.BigIntegerField(null=True)
    output_tokens = models.BigIntegerField(null=True)
    cached_tokens = models.BigIntegerField(null=True)
    cost_usd = models.DecimalField(max_digits=16, decimal_places=8, null=True)
    # Where cost_usd came from: "client", "default:<provider>/<model>@<date>", "org:<price id>" or "spans".
    cost_source = models.CharField(max_length=120, blank=True, default="")
    # A trace priced span by span (cost_source "spans") whose LLM calls went to several models: its cost per model
    # ({model: "0.00012"}, the trace's own model among them), as the spend counters count it. Null otherwise.
    cost_by_model = models.JSONField(null=True, blank=True)
    # The feature came from the OTLP resource's service.name: no span of the export that stored the trace named
    # candor.feature (a child exported apart from its root). A later export naming it moves the trace there;
    # one guessing again never moves it out of a named feature.
    feature_guessed = models.BooleanField(default=False, db_default=False)
    # Every OTLP export that wrote the trace held only spans with a parent: its root span is yet to come. The root's
    # export sets the start, day and latency; until then they are the earliest seen, and any span's error sticks.
    root_missing = models.BooleanField(default=False, db_default=False)
    latency_ms = models.FloatField(null=True)
    ttft_ms = models.FloatField(null=True)
    status = models.CharField(max_length=8, default=TraceStatus.OK.value)
    # Null: not reported (a resent trace that omits them keeps the earlier answer).
    fallback = models.BooleanField(null=True)
    guardrail_blocked = models.BooleanField(null=True)
    customer_id = models.CharField(max_length=200, blank=True, default="")
    user_id = models.CharField(max_length=200, blank=True, default="")
    session_id = models.CharField(max_length=200, blank=True, default="")
    experiment = models.CharField(max_length=200, blank=True, default="")
    variant = models.CharField(max_length=200, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField()
    day = models.DateField()
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["trace_id"], name="trace_id_unique")]
        indexes = [
            models.Index(fields=["feature", "day"]),
            models.Index(fields=["-started_at", "-id"], name="trace_recent"),
            models.Index(fields=["prompt_version", "day"]),
            # A customer's traces newest first (the explorer's customer filter, TraceScope's customer and time
            # range): read in order, a customer with few traces is a few index pages, not a walk of every trace.
            models.Index(fields=["customer_id", "-started_at", "-id"], name="trace_customer_recent"),
            # A session's traces newest first: an outcome tied by session goes to the last trace started before
            # it (rollups.outcomes_attribute), a lookup here. On session_id alone the planner walked trace_recent
            # backward, filtering every trace by session, for each outcome (10 s a sweep in the test suite).
            models.Index(fields=["session_id", "-started_at", "-id"], name="trace_session_recent"),
            # jsonb_path_ops serves containment (metadata @> {"auth": "sso"}) and is compact.
            GinIndex(fields=["metadata"], name="trace_metadata_gin", opclasses=["jsonb_path_ops"]),
        ]


class Span(models.Model):
    # Keyed by (trace_id, span_id), as a span is merged and looked up: no serial id beside it, whose index and
    # sequence were a fifth of the PostgreSQL work of storing a span (COPY of 60,000 OTLP spans: 5.6 us a span
    # with it, 4.3 without).
    pk = models.CompositePrimaryKey("trace_id", "span_id")
    # Compared byte by byte (COLLATE "C"): the key is probed and extended for every span stored, and under the
    # database's locale collation (C.UTF-8 too) each comparison went through strcoll: 1-4% of an OTLP span's CPU.
    # Opaque IDs lose nothing by it, and PostgreSQL's order of them is then Python's (the span COPY's rows are
    # sorted in Python, as the database sorts the key).
    trace_id = models.CharField(max_length=200, db_collation="C")
    span_id = models.CharField(max_length=100, db_collation="C")
    parent_span_id = models.CharField(max_length=100, blank=True, default="")
    name = models.CharField(max_length=300, blank=True, default="")
    kind = models.CharField(max_length=16, default=SpanKind.OTHER.value)
    start = models.DateTimeField(null=True)
    end = models.DateTimeField(null=True)
    model = models.CharField(max_length=200, blank=True, default="")
    input_tokens = models.BigIntegerField(null=True)
    output_tokens = models.BigIntegerField(null=True)
    cost_usd = models.DecimalField(max_digits=16, decimal_places=8, null=True)
    attributes = models.JSONField(default=dict, blank=True)


class OtelTraceLink(models.Model):
    """Which Candor trace an OpenTelemetry trace ID belongs to (spans of one trace arrive in several exports)."""

    otel_trace_id = models.CharField(max_length=32)
    trace_id = models.CharField(max_length=200)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["otel_trace_id"], name="otel_trace_id_unique")]


class FeedbackEvent(models.Model):
    event_id = models.UUIDField(unique=True)
    trace_id = models.CharField(max_length=200)
    # Values from feedback.enums; labels as TextChoices would derive them ("Thumb").
    kind = models.CharField(max_length=16, choices=[(kind.value, kind.name.title()) for kind in FeedbackKind])
    value = models.FloatField(null=True)
    comment = models.TextField(blank=True, default="")
    original_text = models.TextField(blank=True, default="")
    edited_text = models.TextField(blank=True, default="")
    # Normalized Levenshtein distance (0 same .. 1 all different) and share of the original kept.
    edit_distance = models.FloatField(null=True)
    kept_ratio = models.FloatField(null=True)
    name = models.CharField(max_length=200, blank=True, default="")
    user_id = models.CharField(max_length=200, blank=True, default="")
    session_id = models.CharField(max_length=200, blank=True, default="")
    prompt_version_label = models.CharField(max_length=200, blank=True, default="")
    source = models.CharField(max_length=8, default=FeedbackSource.API.value)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    # Copied from the trace once it is known (at insert, or when the trace arrives later).
    feature = models.ForeignKey(
        Feature, on_delete=models.SET_NULL, null=True, related_name="+", db_index=False, db_constraint=False
    )
    prompt_version = models.ForeignKey(
        PromptVersion, on_delete=models.SET_NULL, null=True, related_name="+", db_index=False, db_constraint=False
    )
    trace_day = models.DateField(null=True)

    class Meta:
        indexes = [
            models.Index(fields=["trace_id"], name="feedback_trace_id"),
            models.Index(fields=["feature", "trace_day"]),
            # Feedback still waiting for its trace: small, and what feedback_rejoin scans.
            models.Index(fields=["trace_id"], name="feedback_unjoined", condition=models.Q(feature__isnull=True)),
        ]


class Outcome(models.Model):
    outcome_id = models.CharField(max_length=200)
    name = models.CharField(max_length=100)
    trace_id = models.CharField(max_length=200, blank=True, default="")
    session_id = models.CharField(max_length=200, blank=True, default="")
    customer_id = models.CharField(max_length=200, blank=True, default="")
    variant = models.CharField(max_length=200, blank=True, default="")
    value_usd = models.DecimalField(max_digits=16, decimal_places=6, null=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    # For an outcome tied only by session_id: the session's last trace started at or before the
    # outcome (feedback.rollups.outcomes_attribute keeps it current as traces arrive). Not set by
    # ingestion, which never looks it up.
    attributed_trace_id = models.CharField(max_length=200, null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["outcome_id"], name="outcome_id_unique")]
        indexes = [
            models.Index(fields=["trace_id"], name="outcome_trace_id"),
            models.Index(fields=["session_id"], name="outcome_session_id"),
            models.Index(
                fields=["attributed_trace_id"],
                name="outcome_attributed",
                condition=models.Q(attributed_trace_id__isnull=False),
            ),
        ]


class WidgetRejection(models.Model):
    """Widget events refused (bad origin, bad token...), counted per day so they are never silent."""

    day = models.DateField()
    reason = models.CharField(max_length=40)
    origin = models.CharField(max_length=255, blank=True, default="")
    count = models.BigIntegerField(default=0)
    last_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "reason", "origin"], name="widget_rejection_key")]


class RollupDirty(models.Model):
    """A (day, feature) partition whose rollup must be recomputed."""

    day = models.DateField()
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="+")
    marked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "feature"], name="rollup_dirty_key")]


class RollupMeasures(models.Model):
    """What a rollup row counts; feedback.rollups.MEASURES lists these columns in the SQL's order."""

    traces = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    fallbacks = models.BigIntegerField(default=0)
    guardrail_blocks = models.BigIntegerField(default=0)
    # Traces with any explicit (thumb, rating, comment, edit) / implicit feedback; raw event
    # counts per kind are in feedback_by_kind, traces with at least one of a kind in traces_by_kind.
    explicit_feedback = models.BigIntegerField(default=0)
    implicit_feedback = models.BigIntegerField(default=0)
    # Feedback counts by kind, e.g. {"thumb": 3, "copy": 10}.
    feedback_by_kind = models.JSONField(default=dict)
    traces_by_kind = models.JSONField(default=dict)
    thumbs_up = models.BigIntegerField(default=0)
    thumbs_down = models.BigIntegerField(default=0)
    ratings = models.BigIntegerField(default=0)
    ratings_sum = models.FloatField(default=0)
    # Traces with a counted thumb or rating, and those whose good choices (thumb up, rating >= 4)
    # outnumber the bad ones: the thumbs success source.
    rated_traces = models.BigIntegerField(default=0)
    good_traces = models.BigIntegerField(default=0)
    edits = models.BigIntegerField(default=0)
    edited_traces = models.BigIntegerField(default=0)
    edit_distance_sum = models.FloatField(default=0)
    # Sums over any number of traces (each under $10^8): 38 digits, never an overflow that stops a refresh.
    cost_usd = models.DecimalField(max_digits=38, decimal_places=8, default=0)
    costed_traces = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    latency_count = models.BigIntegerField(default=0)
    # Mergeable log-bucket sketches {bucket index: count}; see feedback.sketch.
    latency_sketch = models.JSONField(default=dict)
    ttft_sketch = models.JSONField(default=dict)
    # Outcomes tied to these traces (by trace_id, or by session: see Outcome.attributed_trace_id),
    # and how many traces have at least one: the outcomes success source.
    outcomes = models.BigIntegerField(default=0)
    outcome_traces = models.BigIntegerField(default=0)
    outcome_value_usd = models.DecimalField(max_digits=38, decimal_places=6, default=0)
    # The sum of each costed trace's cost squared: with cost_usd and costed_traces, the variance of a
    # trace's cost (how noisy a window's cost per success is; evaluation.services.alerts).
    cost_sq_usd = models.FloatField(default=0)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


class DailyRollup(RollupMeasures):
    """Per day x feature x prompt version x variant x customer. Recomputed whole per (day, feature)."""

    day = models.DateField()
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="rollups")
    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.CASCADE, null=True, related_name="rollups")
    variant = models.CharField(max_length=200, blank=True, default="")
    customer_id = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["feature", "day"])]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "feature", "prompt_version", "variant", "customer_id"],
                name="rollup_key",
                nulls_distinct=False,
            )
        ]


class VersionRollup(RollupMeasures):
    """Per day x feature x prompt version x variant: the partition's DailyRollup rows summed over
    customers, rebuilt with them. Reports that do not group by customer (by prompt version, variant
    or day) read one row per day and version here, not one per customer (10x fewer at 40 customers).
    """

    day = models.DateField()
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="+")
    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.CASCADE, null=True, related_name="+")
    variant = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["feature", "day"])]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "feature", "prompt_version", "variant"],
                name="version_rollup_key",
                nulls_distinct=False,
            )
        ]


class ModelRollup(RollupMeasures):
    """Per day x feature x prompt version x variant x the trace's model: reports grouped by model read here (a
    model's share of the traces, its success and cost per success), rebuilt with the partition's other rows."""

    day = models.DateField()
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="+")
    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.CASCADE, null=True, related_name="+")
    variant = models.CharField(max_length=200, blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["feature", "day"])]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "feature", "prompt_version", "variant", "model"],
                name="model_rollup_key",
                nulls_distinct=False,
            )
        ]


class SegmentRollup(RollupMeasures):
    """Per day x feature x prompt version x experiment arm (variant) x declared metadata key x its value
    (null: key absent). The variant lets an experiment break its arms down by segment from here.

    Recomputed with the DailyRollup partition of the same (day, feature).
    """

    day = models.DateField()
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="segment_rollups")
    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.CASCADE, null=True, related_name="+")
    variant = models.CharField(max_length=200, blank=True, default="")
    key = models.CharField(max_length=200)
    value = models.TextField(null=True)

    class Meta:
        indexes = [models.Index(fields=["feature", "key", "day"])]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "feature", "prompt_version", "variant", "key", "value"],
                name="segment_rollup_key",
                nulls_distinct=False,
            )
        ]


class SpendCounter(models.Model):
    """LLM spend per customer x day x feature x model, kept current by trace ingestion in the
    same transaction as the traces (a merged trace moves its cost). Read by billing's budget check."""

    customer_id = models.CharField(max_length=200)  # "" for traces with no customer
    day = models.DateField()
    feature_id = models.BigIntegerField()
    model = models.CharField(max_length=200)
    cost_usd = models.DecimalField(max_digits=38, decimal_places=8, default=0)  # a sum: see RollupMeasures
    traces = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer_id", "day", "feature_id", "model"], name="spend_counter_key")
        ]


class UsageCounter(models.Model):
    """Items ingested, appended once per batch (no row is shared, so no batch waits on another);
    billing sums them into its usage ledger and may fold old rows together."""

    day = models.DateField()  # the UTC day the batch was received
    kind = models.CharField(max_length=16)  # "traces" or "feedback"
    quantity = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["day", "kind"])]


class GenAiMessage(models.Model):
    """A message of a GenAI log event (OTLP logs: prompt, completion, ...), tied to its span by OTel ids.

    Kept whether or not its trace has arrived; the trace's input and output are filled from these
    when the trace is known (feedback.services.otlp_logs), in either arrival order. A join buffer, not
    a record: kept settings.GENAI_MESSAGE_RETENTION_DAYS after arrival, then deleted by a daily sweep.
    """

    record_key = models.CharField(max_length=32)  # hash of the record: a resent export is stored once
    otel_trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16, blank=True, default="")
    event_name = models.CharField(max_length=100)
    role = models.CharField(max_length=16)  # feedback.otlp_logs: system, user, assistant, tool, choice
    position = models.IntegerField(default=0)
    text = models.TextField(blank=True, default="")
    time_unix_nano = models.BigIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["record_key"], name="genai_message_once")]
        indexes = [
            models.Index(fields=["otel_trace_id"], name="genai_message_trace"),
            # The retention sweep deletes the oldest first (feedback.services.otlp_logs.genai_messages_prune).
            models.Index(fields=["received_at"], name="genai_message_received"),
        ]
