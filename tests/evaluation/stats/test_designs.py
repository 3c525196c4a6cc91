"""Queue sampling designs on plain arrays: each design's inclusion probabilities are the true
selection frequencies, the sample size is the budget, and the Horvitz-Thompson mean of a known
population is unbiased under the active design (seeded simulations)."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.stats.designs import (
    active_sample,
    equal_allocation,
    horvitz_thompson_mean,
    proportional_probabilities,
    stratified_sample,
    systematic_pps_sample,
    uncertainty,
    uniform_from_first_phase,
    uniform_sample,
)


def _population(size: int = 600, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """A lenient judge's pass probabilities and the human verdicts they predict (good ~ p)."""
    rng = np.random.default_rng(seed)
    p = rng.beta(5, 1.2, size=size)
    y = (rng.uniform(size=size) < p * 0.85).astype(float)
    return p, y


def test_proportional_probabilities_sum_to_n_and_cap_at_one() -> None:
    w = np.array([100.0, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    pi = proportional_probabilities(w, 4)
    assert pi[0] == 1.0 and pi.sum() == pytest.approx(4) and np.allclose(pi[1:], 3 / 9)
    with pytest.raises(ValueError):
        proportional_probabilities([1.0, 0.0], 1)


def test_active_inclusion_frequencies_equal_the_recorded_probabilities() -> None:
    p, _ = _population(200)
    rng = np.random.default_rng(5)
    reps, n = 4000, 30
    counts = np.zeros(p.size)
    recorded: dict[int, float] = {}
    for _ in range(reps):
        chosen = active_sample(p, n, rng)
        assert len(chosen) == n and len({s.index for s in chosen}) == n  # the budget, no trace twice
        for s in chosen:
            counts[s.index] += 1
            recorded[s.index] = s.inclusion_probability
    pi = np.array([recorded.get(i, np.nan) for i in range(p.size)])
    assert np.all(pi[~np.isnan(pi)] > 0)
    freq = counts / reps
    seen = ~np.isnan(pi)
    se = np.sqrt(pi[seen] * (1 - pi[seen]) / reps)
    assert np.all(np.abs(freq[seen] - pi[seen]) < 5 * se + 1e-9)
    assert uncertainty([0.5, 0.0, 1.0, 0.25]).tolist() == [1.0, 0.0, 0.0, 0.5]


def test_active_horvitz_thompson_mean_is_unbiased() -> None:
    p, y = _population()
    truth = float(y.mean())
    rng = np.random.default_rng(2026)
    estimates = []
    naive = []
    for _ in range(3000):
        chosen = active_sample(p, 60, rng)
        idx = np.array([s.index for s in chosen])
        pis = np.array([s.inclusion_probability for s in chosen])
        estimates.append(horvitz_thompson_mean(y[idx], pis, p.size))
        naive.append(float(y[idx].mean()))
    mean, se = float(np.mean(estimates)), float(np.std(estimates, ddof=1) / np.sqrt(len(estimates)))
    assert abs(mean - truth) < 3 * se
    # The unweighted mean of the enriched sample is biased (uncertain traces fail more): the
    # weights are what repair it, so this test could fail if they were wrong.
    assert abs(float(np.mean(naive)) - truth) > 10 * se


def test_uniform_probability_is_n_over_big_n() -> None:
    rng = np.random.default_rng(1)
    chosen = uniform_sample(250, 40, rng)
    assert len({s.index for s in chosen}) == 40 and {s.inclusion_probability for s in chosen} == {40 / 250}
    assert {s.inclusion_probability for s in uniform_sample(10, 40, rng)} == {1.0}
    assert uniform_sample(0, 5, rng) == []


def test_stratified_probabilities_and_unbiased_estimate() -> None:
    assert equal_allocation({"a": 5, "b": 100, "c": 1000}, 60) == {"a": 5, "b": 28, "c": 27}
    assert equal_allocation({"a": 5, "b": 100}, 500) == {"a": 5, "b": 100}
    strata = ["fail"] * 50 + ["pass"] * 450
    y = np.array([0.2] * 50 + [0.9] * 450) > np.random.default_rng(3).uniform(size=500)
    rng = np.random.default_rng(9)
    estimates = []
    for _ in range(2000):
        chosen = stratified_sample(strata, 40, rng)
        assert {(s.stratum, s.inclusion_probability) for s in chosen} == {("fail", 20 / 50), ("pass", 20 / 450)}
        idx = np.array([s.index for s in chosen])
        estimates.append(horvitz_thompson_mean(y[idx], [s.inclusion_probability for s in chosen], 500))
    se = float(np.std(estimates, ddof=1) / np.sqrt(len(estimates)))
    assert abs(float(np.mean(estimates)) - float(y.mean())) < 3 * se


def test_systematic_sampling_takes_exactly_the_expected_count() -> None:
    rng = np.random.default_rng(4)
    pi = proportional_probabilities(rng.uniform(0.1, 1.0, size=97), 13)
    for _ in range(200):
        chosen = systematic_pps_sample(pi, rng)
        assert len(chosen) == 13 == len(set(chosen))


def test_uniform_from_an_enriched_first_phase_is_uniform_over_everything() -> None:
    """A judge scored 10% of traces plus every thumbs-down (mostly bad answers). The audit drawn from
    its scores must still give every trace the same chance, and the HT mean must be the population's."""
    rng = np.random.default_rng(17)
    size = 600
    thumbs_down = np.arange(size) < 60
    p1 = np.where(thumbs_down, 1.0, 0.1)
    y = np.where(thumbs_down, rng.uniform(size=size) < 0.2, rng.uniform(size=size) < 0.8).astype(float)
    counts = np.zeros(size)
    estimates, naive = [], []
    reps = 4000
    for _ in range(reps):
        scored = np.flatnonzero(rng.uniform(size=size) < p1)  # the judge's own sampling
        chosen = uniform_from_first_phase(p1[scored], 8, rng)
        assert len({s.inclusion_probability for s in chosen}) == 1  # equal probabilities: a uniform design
        idx = scored[[s.index for s in chosen]]
        counts[idx] += 1
        estimates.append(horvitz_thompson_mean(y[idx], [s.inclusion_probability for s in chosen], size))
        naive.append(float(y[scored].mean()))
    share_down = counts[thumbs_down].sum() / counts.sum()
    assert abs(share_down - 0.1) < 0.02  # thumbs-down traces are 10% of all traces, ~50% of the scored ones
    se = float(np.std(estimates, ddof=1) / np.sqrt(reps))
    assert abs(float(np.mean(estimates)) - float(y.mean())) < 3 * se
    assert float(np.mean(naive)) < float(y.mean()) - 0.1  # the scored set alone is biased low
    with pytest.raises(ValueError):
        uniform_from_first_phase([0.5, 0.0], 1, rng)
