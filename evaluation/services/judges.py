"""Judges and their versions: create, edit (a new immutable version whenever the content
changes), enable with a sampling rule, disable, and the pause switch billing flips."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max

from evaluation.judges.engine import run_judge
from evaluation.judges.results import JudgeConfigError, JudgeResult
from evaluation.judges.sampling import SamplingRule as SamplingSpec
from evaluation.judges.versions import JudgeVersionSpec
from evaluation.models import Judge, JudgeKind, JudgeVersion, SamplingRule
from evaluation.services.shared import JudgeServiceError, utc_now
from feedback.models import Feature, Trace

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.:-]*$"
MAX_NAME = 100
_NAME = re.compile(NAME_PATTERN)
# Enabling a judge also decides the traces that landed in this window before it, so a PM sees
# scores arrive at once rather than only on the next trace.
ENABLE_LOOKBACK = timedelta(hours=24)


def judge_name_problem(name: str) -> str | None:
    if not name or len(name) > MAX_NAME or not _NAME.match(name):
        return f"1 to {MAX_NAME} letters, digits, spaces and _.:- (starting with a letter or digit)"
    return None


def _validated(spec: JudgeVersionSpec) -> JudgeVersionSpec:
    try:
        spec.validate()
    except JudgeConfigError as exc:
        raise JudgeServiceError("; ".join(exc.problems), field="spec") from None
    return spec


def judge_create(
    *, name: str, spec: JudgeVersionSpec, description: str = "", feature: Feature | None = None, created_by: str = ""
) -> Judge:
    """A new judge with its first version (disabled until a sampling rule enables it)."""
    name = name.strip()
    problem = judge_name_problem(name)
    if problem:
        raise JudgeServiceError(problem, field="name")
    _validated(spec)
    try:
        with transaction.atomic():
            judge = Judge.objects.create(name=name, kind=spec.kind, description=description, feature=feature)
            judge_version_create(judge=judge, spec=spec, created_by=created_by)
    except IntegrityError:
        raise JudgeServiceError(f"a judge named {name!r} exists already", field="name") from None
    judge.refresh_from_db()
    return judge


def judge_version_create(
    *, judge: Judge, spec: JudgeVersionSpec, label: str = "", created_by: str = ""
) -> tuple[JudgeVersion, bool]:
    """The version with this content (created when new) as the judge's current one; (version, created).

    Re-saving unchanged content is not a new version. An enabled judge keeps its sampling rule:
    the new version gets a copy of it, starting where the old one's scan had reached.
    """
    if spec.kind != judge.kind:
        raise JudgeServiceError(f"{judge.name} is a {judge.kind} judge; a version cannot change its kind", field="kind")
    _validated(spec)
    content = spec.content()
    # An external judge's versions differ by the team's label alone: it is hashed with the content.
    digest = _label_hash(content, label) if label else spec.content_hash()
    with transaction.atomic():
        Judge.objects.select_for_update().filter(pk=judge.pk).first()
        existing = JudgeVersion.objects.filter(judge=judge, content_hash=digest).first()
        created = existing is None
        if existing is None:
            number = (JudgeVersion.objects.filter(judge=judge).aggregate(n=Max("number"))["n"] or 0) + 1
            existing = JudgeVersion.objects.create(
                judge=judge, number=number, content=content, content_hash=digest, label=label, created_by=created_by
            )
        previous = judge.current_version_id
        if previous != existing.pk and judge.kind != JudgeKind.EXTERNAL:
            old_rule = SamplingRule.objects.filter(judge_version_id=previous).first()
            kept = SamplingRule.objects.filter(judge_version=existing).first()
            if old_rule is not None and kept is None:
                old_rule.pk = None
                old_rule.id = None
                old_rule.judge_version = existing
                old_rule.created_at = utc_now()
                old_rule.save()
            elif old_rule is not None and kept is not None:
                # Back to an earlier version: it takes today's rule and scan mark, not its old ones
                # (a stale mark would queue, and bill, every trace since it was replaced).
                for field in SamplingRule._meta.concrete_fields:
                    if field.name not in {"id", "judge_version", "created_at"}:
                        setattr(kept, field.attname, getattr(old_rule, field.attname))
                kept.save()
            judge.current_version = existing
            judge.save(update_fields=["current_version"])
        elif judge.current_version_id is None:
            judge.current_version = existing
            judge.save(update_fields=["current_version"])
    return existing, created


def _label_hash(content: Mapping[str, Any], label: str) -> str:
    from evaluation.judges.hashing import content_hash

    return content_hash({"content": dict(content), "label": label})


def judge_enable(
    *,
    judge: Judge,
    base_rate: float,
    all_thumbs_down: bool = False,
    thumbs_down_multiplier: float = 1.0,
    edited_multiplier: float = 1.0,
    guardrail_multiplier: float = 1.0,
    delay_s: float = 0.0,
    prompt_versions: list[str] | None = None,
    customers: list[str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> SamplingRule:
    """Enable the judge's current version with this sampling rule (replacing its previous rule).

    ``all_thumbs_down`` scores every trace with a thumbs-down: its multiplier becomes 1 / base_rate.
    Code checks are not sampled: they run on every trace in scope, whatever the rate.
    """
    if judge.kind == JudgeKind.EXTERNAL:
        raise JudgeServiceError("an external judge's scores are posted by the team; there is nothing to run")
    version = judge.current_version
    if version is None:
        raise JudgeServiceError("the judge has no version yet")
    if judge.kind == JudgeKind.CODE:
        base_rate = 1.0
    if all_thumbs_down and base_rate > 0:
        thumbs_down_multiplier = max(thumbs_down_multiplier, 1.0 / base_rate)
    elif all_thumbs_down:
        raise JudgeServiceError("a rate of 0 with all thumbs-down: give a rate above 0", field="base_rate")
    try:
        SamplingSpec(
            base_rate=base_rate, thumbs_down_multiplier=thumbs_down_multiplier, edited_multiplier=edited_multiplier,
            guardrail_multiplier=guardrail_multiplier, delay_s=delay_s,
        )  # fmt: skip
    except ValueError as exc:
        raise JudgeServiceError(str(exc), field="base_rate") from None
    lookback = utc_now() - ENABLE_LOOKBACK
    scanned = Trace.objects.filter(received_at__lt=lookback).aggregate(m=Max("id"))["m"] or 0
    with transaction.atomic():
        rule, created = SamplingRule.objects.update_or_create(
            judge_version=version,
            defaults=dict(
                base_rate=base_rate, thumbs_down_multiplier=thumbs_down_multiplier,
                edited_multiplier=edited_multiplier, guardrail_multiplier=guardrail_multiplier, delay_s=delay_s,
                prompt_versions=prompt_versions or None, customers=customers or None, metadata=dict(metadata or {}),
            ),
        )  # fmt: skip
        if created:
            rule.scanned_through = scanned
            rule.save(update_fields=["scanned_through"])
        judge.enabled = True
        judge.save(update_fields=["enabled"])
    return rule


def judge_disable(*, judge: Judge) -> None:
    judge.enabled = False
    judge.save(update_fields=["enabled"])


def judge_pause(*, judge: Judge | None = None, reason: str = "spend cap reached") -> int:
    """Billing's switch: pause one judge, or every judge of the organization when None.
    Nothing is sampled or called while paused; queued scores wait."""
    judges = Judge.objects.all() if judge is None else Judge.objects.filter(pk=judge.pk)
    return judges.update(paused=True, paused_reason=reason[:200])


def judge_resume(*, judge: Judge | None = None) -> int:
    judges = Judge.objects.all() if judge is None else Judge.objects.filter(pk=judge.pk)
    return judges.update(paused=False, paused_reason="")


def judge_try(*, spec: JudgeVersionSpec, trace_id: str, judge: Judge | None = None) -> JudgeResult:
    """Run a judge version on one trace now, storing nothing: the portal's "test before enabling".

    LLM providers are called with the organization's key and a short timeout, no retries.
    """
    from evaluation.selectors import judge_inputs
    from evaluation.services.runs import sync_client_for

    inputs = judge_inputs([trace_id])
    if trace_id not in inputs:
        raise JudgeServiceError(f"no trace {trace_id!r}", field="trace_id")
    client = None
    if spec.kind == "llm" and spec.provider not in ("offline", ""):
        client = sync_client_for(judge, spec.provider)
    try:
        return run_judge(spec, inputs[trace_id], client=client)
    finally:
        if client is not None:
            client.close()
