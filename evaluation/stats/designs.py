"""Sampling designs for annotation queues: which traces to label, and each one's inclusion
probability, known exactly at selection time so every estimate stays design-unbiased
(CALIBRATION.md). Plain numpy; the queue services feed it population arrays.

- uniform: simple random sample without replacement, pi = n / N for every trace.
- stratified: equal allocation across strata (rare strata, e.g. judge failures, are enriched),
  capped at each stratum's size and the rest given to the strata with room; pi = n_h / N_h.
- active: probability proportional to size (the judge's uncertainty plus a floor, so every trace
  has pi > 0), by systematic sampling from a random order (Madow 1949; Sarndal, Swensson &
  Wretman 1992, 3.6): a fixed sample size (the budget holds exactly) and inclusion probabilities
  exactly pi_i = min(1, c * w_i) with sum pi = n, so the Horvitz-Thompson estimator is unbiased.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# The weight of a trace the judge is certain about, relative to 1 for a coin-flip score: keeps every
# inclusion probability above 0 (IPW needs it) while spending most of the budget where labels teach most.
UNCERTAINTY_FLOOR = 0.1


@dataclass(frozen=True)
class Selection:
    """One selected member of the population: its index, stratum and inclusion probability."""

    index: int
    stratum: str
    inclusion_probability: float


def uniform_sample(population: int, n: int, rng: np.random.Generator) -> list[Selection]:
    """n of ``population`` without replacement (all of them when n >= population)."""
    if population <= 0 or n <= 0:
        return []
    n = min(n, population)
    pi = n / population
    chosen = rng.choice(population, size=n, replace=False)
    return [Selection(int(i), "", pi) for i in chosen]


def uniform_from_first_phase(first_phase: ArrayLike, n: int, rng: np.random.Generator) -> list[Selection]:
    """A uniform sample of the whole population drawn from a first-phase sample taken with known,
    unequal probabilities (a judge's sampling rule: 10% of traces plus every thumbs-down). Each
    member is kept with p_min / p_i, so every unit of the population is kept with probability p_min
    whatever its first-phase stratum; then n of the K kept are drawn at random. Every selected unit
    has pi = p_min * n / K: equal for all, the uniform audit an unbiased success rate needs (Sarndal,
    Swensson & Wretman 1992, ch. 9, two-phase sampling)."""
    p1 = np.asarray(first_phase, dtype=float)
    if p1.size == 0 or n <= 0:
        return []
    if not np.all(np.isfinite(p1)) or p1.min() <= 0 or p1.max() > 1:
        raise ValueError("first-phase probabilities must lie in (0, 1]")
    floor = float(p1.min())
    kept = np.flatnonzero(rng.uniform(size=p1.size) < floor / p1)
    if kept.size == 0:
        return []
    chosen = uniform_sample(int(kept.size), n, rng)
    return [Selection(int(kept[s.index]), "", floor * s.inclusion_probability) for s in chosen]


def equal_allocation(sizes: dict[str, int], n: int) -> dict[str, int]:
    """n split as evenly as the strata allow: each gets an equal share capped at its size, the
    excess goes to strata with room; leftover units go to the smallest strata first."""
    alloc = dict.fromkeys(sizes, 0)
    remaining = min(n, sum(sizes.values()))
    while remaining > 0:
        room = sorted((h for h in sizes if alloc[h] < sizes[h]), key=lambda h: (sizes[h], h))
        share = remaining // len(room)
        if share == 0:
            for h in room[:remaining]:
                alloc[h] += 1
            break
        for h in room:
            add = min(share, sizes[h] - alloc[h])
            alloc[h] += add
            remaining -= add
    return alloc


def stratified_sample(strata: Sequence[str], n: int, rng: np.random.Generator) -> list[Selection]:
    """Equal allocation of n across the strata present in ``strata`` (one entry per member);
    a simple random sample within each, pi = n_h / N_h."""
    labels = np.asarray(strata, dtype=object)
    sizes = dict(Counter(labels.tolist()))
    out: list[Selection] = []
    for stratum, n_h in sorted(equal_allocation(sizes, n).items()):
        if n_h == 0:
            continue
        members = np.flatnonzero(labels == stratum)
        pi = n_h / len(members)
        out += [Selection(int(i), str(stratum), pi) for i in rng.choice(members, size=n_h, replace=False)]
    return out


def uncertainty(pass_probability: ArrayLike) -> np.ndarray:
    """1 at p = 0.5, 0 at p = 0 or 1: how unsure the judge is that a human calls it good."""
    p = np.clip(np.asarray(pass_probability, dtype=float), 0.0, 1.0)
    return 1.0 - np.abs(2.0 * p - 1.0)


def proportional_probabilities(weights: ArrayLike, n: int) -> np.ndarray:
    """pi_i = min(1, c * w_i) with c chosen so that sum pi = n (members whose share would pass 1
    are taken with certainty and the rest rescaled). Weights must be positive."""
    w = np.asarray(weights, dtype=float)
    if w.size == 0:
        return w
    if not np.all(np.isfinite(w)) or w.min() <= 0:
        raise ValueError("weights must be positive and finite")
    n = min(n, w.size)
    certain = np.zeros(w.size, dtype=bool)
    while True:
        rest = n - int(certain.sum())
        pi = np.where(certain, 1.0, w * rest / w[~certain].sum()) if rest > 0 else certain.astype(float)
        newly = (pi >= 1.0) & ~certain
        if not newly.any():
            return np.minimum(pi, 1.0)
        certain |= newly


def systematic_pps_sample(probabilities: ArrayLike, rng: np.random.Generator) -> list[int]:
    """Indices chosen by systematic sampling over a random order: member i is taken with
    probability exactly probabilities[i]; the sample size is round(sum of probabilities)."""
    pi = np.asarray(probabilities, dtype=float)
    n = int(round(float(pi.sum())))
    if n == 0:
        return []
    order = rng.permutation(pi.size)
    cumulative = np.cumsum(pi[order])
    cumulative *= n / cumulative[-1]  # rounding: the last cut is n exactly
    points = rng.uniform(0.0, 1.0) + np.arange(n)
    positions = np.minimum(np.searchsorted(cumulative, points, side="right"), pi.size - 1)
    return [int(i) for i in order[positions]]


def active_sample(
    pass_probability: ArrayLike, n: int, rng: np.random.Generator, *, floor: float = UNCERTAINTY_FLOOR
) -> list[Selection]:
    """n members, each with probability proportional to floor + (1 - floor) * uncertainty; the
    stratum names the judge's pass-probability band (for display only: the estimator is IPW)."""
    p = np.clip(np.asarray(pass_probability, dtype=float), 0.0, 1.0)
    if p.size == 0 or n <= 0:
        return []
    pi = proportional_probabilities(floor + (1.0 - floor) * uncertainty(p), n)
    chosen = systematic_pps_sample(pi, rng)
    return [Selection(i, probability_band(float(p[i])), float(pi[i])) for i in chosen]


def probability_band(p: float) -> str:
    """The fifth of [0, 1] that p falls in, as 'p 0.4-0.6'."""
    low = min(int(p * 5), 4) / 5
    return f"p {low:.1f}-{low + 0.2:.1f}"


def horvitz_thompson_mean(values: ArrayLike, inclusion_probabilities: ArrayLike, population: int) -> float:
    """sum y_i / pi_i / N: the design-unbiased mean (Horvitz & Thompson 1952)."""
    y = np.asarray(values, dtype=float)
    pi = np.asarray(inclusion_probabilities, dtype=float)
    return float(np.sum(y / pi) / population)
