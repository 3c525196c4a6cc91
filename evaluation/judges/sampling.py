"""Which traces a judge version scores: a known inclusion probability per trace, and a
deterministic draw so that deciding again never samples differently.

A trace is in the sample when ``u(trace_id, key) < p`` where ``u`` is a uniform number from
a hash and ``p`` is the rule's base rate times the largest oversampling multiplier that
applies (thumbs-down, edits, guardrail blocks), capped at 1. Because ``u`` is fixed per
trace and judge version, a later decision with more feedback (higher ``p``) keeps every
trace sampled before and only adds traces. The Django layer stores ``inclusion_probability``
and ``stratum`` with the score: inverse-probability weighting (CALIBRATION.md) needs them
and they cannot be recovered later.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Beyond these a rule says nothing more: the inclusion probability is capped at 1 long before a
# 1,000x oversampling, and a judge that waits over a week has stopped watching.
MAX_MULTIPLIER = 1000.0
MAX_DELAY_S = 7 * 86_400.0


@dataclass(frozen=True, slots=True)
class SamplingRule:
    """One judge version's sampling rule. Filters left None match every trace."""

    base_rate: float
    features: frozenset[str] | None = None
    prompt_versions: frozenset[str] | None = None
    customers: frozenset[str] | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)  # every key=value must match
    thumbs_down_multiplier: float = 1.0
    edited_multiplier: float = 1.0
    guardrail_multiplier: float = 1.0
    # Seconds to wait after a trace lands before deciding, so late feedback is seen first;
    # applied by the scheduler, recorded here so it is part of the rule.
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        for name in ("features", "prompt_versions", "customers"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, frozenset):
                object.__setattr__(self, name, frozenset(value))
        object.__setattr__(self, "metadata", {str(k): str(v) for k, v in self.metadata.items()})

    def problems(self) -> list[str]:
        problems = []
        if not 0.0 <= self.base_rate <= 1.0:
            problems.append("base_rate must be between 0 and 1")
        # The thumbs-down multiplier is 1 / base_rate for "every thumbs-down": any finite size is meant.
        if not 1.0 <= self.thumbs_down_multiplier < math.inf:
            problems.append("thumbs_down_multiplier must be at least 1 and finite (oversampling, never undersampling)")
        for name in ("edited_multiplier", "guardrail_multiplier"):
            if not 1.0 <= getattr(self, name) <= MAX_MULTIPLIER:
                problems.append(f"{name} must be from 1 to {MAX_MULTIPLIER:g} (oversampling, never undersampling)")
        if not 0 <= self.delay_s <= MAX_DELAY_S:
            problems.append(f"delay_s must be from 0 to {MAX_DELAY_S:g} (a week)")
        return problems


@dataclass(frozen=True, slots=True)
class TraceFacts:
    """What sampling needs to know about a trace at decision time."""

    trace_id: str
    feature: str | None = None
    prompt_version: str | None = None
    customer_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    thumbs_down: bool = False
    edited: bool = False
    guardrail_blocked: bool = False


@dataclass(frozen=True, slots=True)
class SamplingDecision:
    in_scope: bool  # the trace passes the rule's filters
    sampled: bool
    inclusion_probability: float  # 0 when out of scope
    stratum: str  # "out_of_scope", "base", or the signals that raised p, e.g. "edited+thumbs_down"
    draw: float  # the trace's uniform number in [0, 1)


def inclusion_draw(trace_id: str, key: str) -> float:
    """A uniform number in [0, 1) fixed by (key, trace_id): sha256, first 8 bytes."""
    digest = hashlib.sha256(f"{key}\x1f{trace_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_scope(rule: SamplingRule, trace: TraceFacts) -> bool:
    if rule.features is not None and trace.feature not in rule.features:
        return False
    if rule.prompt_versions is not None and trace.prompt_version not in rule.prompt_versions:
        return False
    if rule.customers is not None and trace.customer_id not in rule.customers:
        return False
    for key, wanted in rule.metadata.items():
        value = trace.metadata.get(key)
        if value is None or _text(value) != wanted:
            return False
    return True


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as JSON writes it, and as a PM types it
    return str(value)


def inclusion_probability(rule: SamplingRule, trace: TraceFacts) -> tuple[float, str]:
    """(p, stratum) for an in-scope trace: the base rate times the largest multiplier among
    the signals the trace has, capped at 1. The largest, not the product: a trace with both
    a thumbs-down and an edit is one unhappy user, not two."""
    signals = {
        "edited": rule.edited_multiplier if trace.edited else 1.0,
        "guardrail": rule.guardrail_multiplier if trace.guardrail_blocked else 1.0,
        "thumbs_down": rule.thumbs_down_multiplier if trace.thumbs_down else 1.0,
    }
    raising = sorted(name for name, multiplier in signals.items() if multiplier > 1.0)
    multiplier = max(signals.values())
    return min(1.0, rule.base_rate * multiplier), "+".join(raising) or "base"


def sample_decision(
    rule: SamplingRule, trace: TraceFacts, *, judge_version_hash: str, salt: str = ""
) -> SamplingDecision:
    """Whether the judge version scores this trace. Deterministic in (judge version, trace):
    rerunning the decision never flips a trace out of the sample. ``salt`` separates two
    independent streams over the same judge version (e.g. a uniform audit stream)."""
    draw = inclusion_draw(trace.trace_id, f"{judge_version_hash}{salt and ':' + salt}")
    if not in_scope(rule, trace):
        return SamplingDecision(False, False, 0.0, "out_of_scope", draw)
    p, stratum = inclusion_probability(rule, trace)
    return SamplingDecision(True, draw < p, p, stratum, draw)
