"""Sampling maths: realized rates match declared inclusion probabilities; decisions are stable."""

from __future__ import annotations

import math

import pytest

from evaluation.judges.sampling import (
    SamplingRule,
    TraceFacts,
    inclusion_draw,
    inclusion_probability,
    sample_decision,
)

JUDGE = "3f1c0ffee"  # a judge version hash
N = 100_000


def binomial_tolerance(n: int, p: float, z: float = 4.5) -> float:
    """|realized - p| allowed: 4.5 standard errors (a false alarm about once in 150,000 runs)."""
    return z * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5])
def test_realized_rate_matches_the_base_rate(rate: float) -> None:
    rule = SamplingRule(base_rate=rate)
    sampled = sum(sample_decision(rule, TraceFacts(f"tr_{i}"), judge_version_hash=JUDGE).sampled for i in range(N))
    assert abs(sampled / N - rate) < binomial_tolerance(N, rate)


def test_realized_rate_per_stratum_matches_its_inclusion_probability() -> None:
    rule = SamplingRule(base_rate=0.05, thumbs_down_multiplier=10, edited_multiplier=4, guardrail_multiplier=40)
    counts: dict[str, list[int]] = {}
    probabilities: dict[str, float] = {}
    for i in range(N):
        trace = TraceFacts(f"tr_{i}", thumbs_down=i % 7 == 0, edited=i % 5 == 0, guardrail_blocked=i % 11 == 0)
        decision = sample_decision(rule, trace, judge_version_hash=JUDGE)
        seen = counts.setdefault(decision.stratum, [0, 0])
        seen[0] += 1
        seen[1] += decision.sampled
        probabilities[decision.stratum] = decision.inclusion_probability
    assert probabilities["base"] == 0.05
    assert probabilities["thumbs_down"] == pytest.approx(0.5)
    assert probabilities["edited"] == pytest.approx(0.2)
    assert probabilities["edited+thumbs_down"] == pytest.approx(0.5)  # the larger multiplier, not the product
    assert probabilities["guardrail"] == 1.0  # 0.05 x 40 capped at 1
    for stratum, (n, hits) in counts.items():
        p = probabilities[stratum]
        assert abs(hits / n - p) <= binomial_tolerance(n, p) + 1e-12, stratum


def test_horvitz_thompson_recovers_the_population_count() -> None:
    rule = SamplingRule(base_rate=0.02, thumbs_down_multiplier=25)
    total = 0.0
    for i in range(N):
        decision = sample_decision(rule, TraceFacts(f"t{i}", thumbs_down=i % 20 == 0), judge_version_hash=JUDGE)
        if decision.sampled:
            total += 1 / decision.inclusion_probability
    # Var of the HT total = sum (1-p)/p over traces.
    sd = math.sqrt(0.95 * N * (1 - 0.02) / 0.02)
    assert abs(total - N) < 4.5 * sd


def test_decisions_are_deterministic_and_only_grow_with_more_feedback() -> None:
    rule = SamplingRule(base_rate=0.1, thumbs_down_multiplier=5)
    first = [sample_decision(rule, TraceFacts(f"tr_{i}"), judge_version_hash=JUDGE) for i in range(5000)]
    again = [sample_decision(rule, TraceFacts(f"tr_{i}"), judge_version_hash=JUDGE) for i in range(5000)]
    assert first == again
    later = [
        sample_decision(rule, TraceFacts(f"tr_{i}", thumbs_down=True), judge_version_hash=JUDGE) for i in range(5000)
    ]
    assert all(b.sampled for a, b in zip(first, later, strict=True) if a.sampled)  # nobody drops out
    assert sum(b.sampled for b in later) > sum(a.sampled for a in first)


def test_another_judge_version_or_salt_draws_independently() -> None:
    rule = SamplingRule(base_rate=0.5)
    ids = [f"tr_{i}" for i in range(20_000)]
    a = [sample_decision(rule, TraceFacts(t), judge_version_hash="v1").sampled for t in ids]
    b = [sample_decision(rule, TraceFacts(t), judge_version_hash="v2").sampled for t in ids]
    c = [sample_decision(rule, TraceFacts(t), judge_version_hash="v1", salt="audit").sampled for t in ids]
    for other in (b, c):
        both = sum(x and y for x, y in zip(a, other, strict=True)) / len(ids)
        assert abs(both - 0.25) < binomial_tolerance(len(ids), 0.25)  # independent: P(both) = 0.5 x 0.5


def test_draw_is_uniform_in_zero_one() -> None:
    draws = [inclusion_draw(f"x{i}", "k") for i in range(N)]
    assert 0.0 <= min(draws) and max(draws) < 1.0
    deciles = [0] * 10
    for d in draws:
        deciles[int(d * 10)] += 1
    assert all(abs(c / N - 0.1) < binomial_tolerance(N, 0.1) for c in deciles)


def test_filters() -> None:
    rule = SamplingRule(
        base_rate=1.0,
        features=frozenset({"support-copilot"}),
        prompt_versions=frozenset({"support-v2.3"}),
        customers=frozenset({"acme"}),
        metadata={"auth": "sso", "beta": "true"},
    )
    match = TraceFacts(
        "t",
        feature="support-copilot",
        prompt_version="support-v2.3",
        customer_id="acme",
        metadata={"auth": "sso", "beta": True},
    )
    assert sample_decision(rule, match, judge_version_hash=JUDGE).sampled
    for miss in (
        {"feature": "summarize"},
        {"prompt_version": "support-v2.2"},
        {"customer_id": "globex"},
        {"metadata": {"auth": "password", "beta": True}},
        {"metadata": {"auth": "sso"}},
    ):
        fields = {
            "feature": "support-copilot",
            "prompt_version": "support-v2.3",
            "customer_id": "acme",
            "metadata": {"auth": "sso", "beta": True},
        } | miss
        decision = sample_decision(rule, TraceFacts("t", **fields), judge_version_hash=JUDGE)  # type: ignore[arg-type]
        assert (decision.in_scope, decision.sampled, decision.inclusion_probability, decision.stratum) == (
            False,
            False,
            0.0,
            "out_of_scope",
        ), miss


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="base_rate"):
        SamplingRule(base_rate=1.5)
    with pytest.raises(ValueError, match="never undersampling"):
        SamplingRule(base_rate=0.1, edited_multiplier=0.5)
    assert inclusion_probability(
        SamplingRule(base_rate=0.0, thumbs_down_multiplier=50), TraceFacts("t", thumbs_down=True)
    ) == (
        0.0,
        "thumbs_down",
    )
