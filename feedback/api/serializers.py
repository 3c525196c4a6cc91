"""Serializers that shape the read endpoints' output and the ingest answer.

Write bodies are not here: they are validated with msgspec (feedback.schemas) and their
OpenAPI schemas are generated from those same types (feedback.api.openapi).
"""

from __future__ import annotations

from typing import Any, Literal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class ItemErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    field = serializers.CharField()
    message = serializers.CharField()


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    errors = ItemErrorSerializer(many=True)  # type: ignore[assignment]
    warnings = ItemErrorSerializer(many=True, required=False)


class ErrorSerializer(serializers.Serializer):
    error = serializers.DictField(help_text='{"code": "...", "message": "...", "details": ...}')


class SpanOutSerializer(serializers.Serializer):
    span_id = serializers.CharField()
    parent_span_id = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()
    start = serializers.DateTimeField(allow_null=True)
    end = serializers.DateTimeField(allow_null=True)
    model = serializers.CharField()
    input_tokens = serializers.IntegerField(allow_null=True)
    output_tokens = serializers.IntegerField(allow_null=True)
    cost_usd = serializers.DecimalField(max_digits=16, decimal_places=8, allow_null=True, coerce_to_string=False)
    attributes = serializers.DictField()


class FeedbackOutSerializer(serializers.Serializer):
    event_id = serializers.UUIDField()
    kind = serializers.CharField()
    # The trace's own prompt version once the event joined its trace (API.md: the trace's own wins); until
    # then, the label the event was sent with.
    prompt_version = serializers.SerializerMethodField()
    value = serializers.FloatField(allow_null=True)
    comment = serializers.CharField()
    original_text = serializers.CharField()
    edited_text = serializers.CharField()
    edit_distance = serializers.FloatField(allow_null=True)
    kept_ratio = serializers.FloatField(allow_null=True)
    name = serializers.CharField()
    user_id = serializers.CharField()
    session_id = serializers.CharField()
    source = serializers.CharField()  # type: ignore[assignment]
    occurred_at = serializers.DateTimeField()

    @extend_schema_field(serializers.CharField())
    def get_prompt_version(self, event: Any) -> str:
        joined = event.prompt_version
        return str(joined.label) if joined is not None else str(event.prompt_version_label)


class OutcomeOutSerializer(serializers.Serializer):
    outcome_id = serializers.CharField()
    name = serializers.CharField()
    session_id = serializers.CharField()
    customer_id = serializers.CharField()
    variant = serializers.CharField()
    value_usd = serializers.DecimalField(max_digits=16, decimal_places=6, allow_null=True, coerce_to_string=False)
    occurred_at = serializers.DateTimeField()
    tied_by = serializers.SerializerMethodField(
        help_text="trace: sent with this trace_id; session: sent with a session_id only, attributed to the "
        "session's last trace started before it"
    )

    def get_tied_by(self, outcome: Any) -> Literal["trace", "session"]:
        return "trace" if outcome.trace_id else "session"


class TraceOutSerializer(serializers.Serializer):
    """A stored trace. A version sent without a hash stores '' (no hash): null here, as for a trace of no version."""

    trace_id = serializers.CharField()
    feature = serializers.CharField(source="feature.key")
    prompt_version = serializers.CharField(source="prompt_version.label", allow_null=True, default=None)
    prompt_hash = serializers.SerializerMethodField(help_text="the prompt's content hash; null when none was sent")
    model = serializers.CharField()
    provider = serializers.CharField()
    input = serializers.CharField()
    output = serializers.CharField()
    input_tokens = serializers.IntegerField(allow_null=True)
    output_tokens = serializers.IntegerField(allow_null=True)
    cached_tokens = serializers.IntegerField(allow_null=True)
    cost_usd = serializers.DecimalField(max_digits=16, decimal_places=8, allow_null=True, coerce_to_string=False)
    cost_source = serializers.CharField()
    latency_ms = serializers.FloatField(allow_null=True)
    ttft_ms = serializers.FloatField(allow_null=True)
    status = serializers.CharField()
    fallback = serializers.BooleanField(allow_null=True)
    guardrail_blocked = serializers.BooleanField(allow_null=True)
    customer_id = serializers.CharField()
    user_id = serializers.CharField()
    session_id = serializers.CharField()
    experiment = serializers.CharField()
    variant = serializers.CharField()
    metadata = serializers.DictField()
    started_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_prompt_hash(self, trace: Any) -> str | None:
        version = trace.prompt_version
        return (version.content_hash or None) if version is not None else None


class ScoreErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ScoreSamplingSerializer(serializers.Serializer):
    design = serializers.CharField(help_text="sampled, all, backfill, manual or external")
    stratum = serializers.CharField()
    inclusion_probability = serializers.FloatField(allow_null=True)


class TraceScoreSerializer(serializers.Serializer):
    """A judge's score on the trace (the evaluation app fills this section)."""

    score_id = serializers.CharField()
    judge = serializers.CharField()
    judge_kind = serializers.CharField(help_text="llm, code or external")
    judge_version = serializers.IntegerField()
    judge_version_label = serializers.CharField(allow_null=True)
    scale = serializers.ChoiceField(["binary", "ordinal", "continuous"])
    run_index = serializers.IntegerField()
    status = serializers.ChoiceField(["pending", "running", "ok", "error"])
    raw_score = serializers.FloatField(allow_null=True)
    score = serializers.FloatField(allow_null=True, help_text="raw_score mapped onto [0, 1]")
    passed = serializers.BooleanField(allow_null=True)
    rationale = serializers.CharField()
    verdict_probability = serializers.FloatField(allow_null=True)
    error = ScoreErrorSerializer(allow_null=True)
    sampling = ScoreSamplingSerializer()
    cost_usd = serializers.FloatField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()
    scored_at = serializers.DateTimeField(allow_null=True)


class LabelSamplingSerializer(serializers.Serializer):
    design = serializers.ChoiceField(["uniform", "stratified", "active", "manual"])
    stratum = serializers.CharField()
    inclusion_probability = serializers.FloatField(allow_null=True)


class TraceLabelSerializer(serializers.Serializer):
    """A human label on the trace, from an annotation queue, the API or the widget (the evaluation app fills
    this section)."""

    label_id = serializers.CharField()
    rubric = serializers.CharField()
    rubric_version = serializers.IntegerField()
    scale = serializers.ChoiceField(["binary", "ordinal", "continuous", "categorical", "free_text"])
    value = serializers.FloatField(allow_null=True)
    category = serializers.CharField(allow_null=True)
    text = serializers.CharField(allow_null=True, help_text="a free-text rubric's answer")
    reviewer = serializers.CharField()
    source = serializers.CharField(help_text="queue, api or widget")  # type: ignore[assignment]
    sampling = LabelSamplingSerializer()
    comment = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()


class TraceDetailSerializer(TraceOutSerializer):
    spans = SpanOutSerializer(many=True)
    feedback = FeedbackOutSerializer(many=True)
    outcomes = OutcomeOutSerializer(many=True)
    scores = TraceScoreSerializer(many=True)
    labels = TraceLabelSerializer(many=True)


class TracePageSerializer(serializers.Serializer):
    results = TraceOutSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)
