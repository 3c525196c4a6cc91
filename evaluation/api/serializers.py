"""Output shapes of the judges API (documentation for drf-spectacular and the read endpoints)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from evaluation.models import Judge, JudgeVersion
from evaluation.selectors import JudgeStats


class SamplingOutSerializer(serializers.Serializer):
    base_rate = serializers.FloatField()
    features = serializers.ListField(child=serializers.CharField(), allow_null=True)
    prompt_versions = serializers.ListField(child=serializers.CharField(), allow_null=True)
    customers = serializers.ListField(child=serializers.CharField(), allow_null=True)
    metadata = serializers.DictField(child=serializers.CharField())
    thumbs_down_multiplier = serializers.FloatField()
    edited_multiplier = serializers.FloatField()
    guardrail_multiplier = serializers.FloatField()
    delay_s = serializers.FloatField()


class JudgeVersionOutSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    label = serializers.CharField(allow_null=True, help_text="External judges: the team's judge_version")  # type: ignore[assignment]
    content_hash = serializers.CharField()
    kind = serializers.ChoiceField(["llm", "code", "external"])
    scale = serializers.ChoiceField(["binary", "ordinal", "continuous"])
    provider = serializers.CharField()
    model = serializers.CharField()
    prompt_template = serializers.CharField()
    parameters = serializers.DictField()
    sampling = SamplingOutSerializer(allow_null=True)
    created_at = serializers.DateTimeField()


class JudgeStatsOutSerializer(serializers.Serializer):
    scored = serializers.IntegerField()
    passed = serializers.IntegerField()
    pass_rate = serializers.FloatField(allow_null=True)
    failures = serializers.IntegerField()
    pending = serializers.IntegerField()
    cost_usd = serializers.FloatField()


class JudgeOutSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.ChoiceField(["llm", "code", "external"])
    description = serializers.CharField()
    feature = serializers.CharField(allow_null=True, help_text="The feature key it is scoped to; null for all")
    enabled = serializers.BooleanField()
    paused = serializers.BooleanField()
    current_version = serializers.IntegerField(allow_null=True)
    versions = JudgeVersionOutSerializer(many=True)
    last_24h = JudgeStatsOutSerializer()
    created_at = serializers.DateTimeField()


class JudgeListSerializer(serializers.Serializer):
    results = JudgeOutSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


def _sampling(version: JudgeVersion) -> dict[str, Any] | None:
    rule = getattr(version, "sampling", None)
    if rule is None:
        return None
    names: list[str] = list(SamplingOutSerializer().fields.keys())
    return {name: getattr(rule, name) for name in names}


def version_out(version: JudgeVersion) -> dict[str, Any]:
    content = version.content
    return {
        "number": version.number,
        "label": version.label or None,
        "content_hash": version.content_hash,
        "kind": content["kind"],
        "scale": content["scale"],
        "provider": content.get("provider", ""),
        "model": content.get("model", ""),
        "prompt_template": content.get("prompt_template", ""),
        "parameters": content.get("parameters", {}),
        "sampling": _sampling(version),
        "created_at": version.created_at,
    }


def judge_out(judge: Judge, stats: JudgeStats | None) -> dict[str, Any]:
    return {
        "name": judge.name,
        "kind": judge.kind,
        "description": judge.description,
        "feature": judge.feature.key if judge.feature else None,
        "enabled": judge.enabled,
        "paused": judge.paused,
        "current_version": judge.current_version.number if judge.current_version else None,
        "versions": [version_out(v) for v in sorted(judge.versions.all(), key=lambda v: -v.number)],
        "last_24h": {
            "scored": stats.scored if stats else 0,
            "passed": stats.passed if stats else 0,
            "pass_rate": stats.pass_rate if stats else None,
            "failures": stats.failures if stats else 0,
            "pending": stats.pending if stats else 0,
            "cost_usd": float(stats.cost_usd) if stats else 0.0,
        },
        "created_at": judge.created_at,
    }
