"""Decision thresholds with a guarantee: the loosest judge score whose passes are good with at
least a target precision, and symmetrically the loosest score whose fails are bad with at least
a target NPV. Scores between the two go to a human.

Fixed-sequence testing (Maurer, Hothorn & Lehmacher 1995; used for thresholds in Bates et al.
2021 and Angelopoulos et al. 2021 "Learn then Test"): candidate thresholds are ordered from
strictest to loosest before looking at labels; each is tested at the full level with a one-sided
Clopper-Pearson bound, and the scan stops at the first failure. The family-wise error is then at
most 1 - confidence, so the bound reported at the chosen threshold holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

from evaluation.stats.intervals import DEFAULT_CONFIDENCE


@dataclass(frozen=True)
class ThresholdStep:
    threshold: float
    n_selected: int
    n_correct: int
    lower_bound: float

    @property
    def observed(self) -> float:
        return self.n_correct / self.n_selected


@dataclass(frozen=True)
class ThresholdSearch:
    """One side of the search. `threshold` is None when even the first tested threshold fails.
    `steps` are the thresholds tested, strictest first, ending with the one that failed."""

    target: float
    threshold: float | None
    guaranteed_low: float | None
    n_selected: int
    steps: tuple[ThresholdStep, ...]
    note: str | None = None


def min_selected_for(target: float, confidence: float = DEFAULT_CONFIDENCE, failures: int = 1) -> int:
    """Fewest items at which a record with `failures` misses could still clear `target`: the
    smallest n whose one-sided Clopper-Pearson lower bound for n - failures out of n reaches it.

    The scan starts there. With failures=0 (a flawless record) it would start at so few items
    that a single early miss ends the whole sequence; allowing one keeps the search from failing
    by bad luck at the very top while the start still depends on the target alone, not on labels.
    """
    if not 0.0 < target < 1.0:
        raise ValueError("target must be in (0, 1)")
    if failures < 0:
        raise ValueError("failures must be >= 0")
    n = max(1, math.ceil(math.log(1.0 - confidence) / math.log(target) - 1e-12)) + failures
    while sps.beta.ppf(1.0 - confidence, n - failures, failures + 1) < target:
        n += 1
    return n


def _scan(
    scores: NDArray[np.float64],
    correct: NDArray[np.int64],
    target: float,
    confidence: float,
    min_selected: int | None,
) -> ThresholdSearch:
    """Thresholds t over the distinct scores, descending; selected = scores >= t."""
    if not 0.0 < target < 1.0:
        raise ValueError("target must be in (0, 1)")
    start = min_selected_for(target, confidence) if min_selected is None else max(1, min_selected)
    distinct, inverse = np.unique(-scores, return_inverse=True)
    n_sel = np.cumsum(np.bincount(inverse, minlength=distinct.size))
    n_ok = np.cumsum(np.bincount(inverse, weights=correct, minlength=distinct.size)).astype(np.int64)
    tested = np.flatnonzero(n_sel >= start)
    if tested.size == 0:
        return ThresholdSearch(target, None, None, 0, (), note=f"fewer than {start} items: no threshold can be tested")
    # One-sided Clopper-Pearson lower bounds, in chunks: the sequence ends at its first failure,
    # so the (slow) beta quantiles past it are never needed.
    lows_parts: list[NDArray[np.float64]] = []
    accepted = tested.size
    for begin in range(0, tested.size, 256):
        chunk = tested[begin : begin + 256]
        ok, sel = n_ok[chunk], n_sel[chunk]
        lows_chunk = np.where(ok > 0, sps.beta.ppf(1.0 - confidence, np.maximum(ok, 1), sel - ok + 1), 0.0)
        failed = np.flatnonzero(lows_chunk < target)
        if failed.size:
            lows_parts.append(lows_chunk[: failed[0] + 1])
            accepted = begin + int(failed[0])
            break
        lows_parts.append(lows_chunk)
    lows = np.concatenate(lows_parts)
    steps = tuple(
        ThresholdStep(float(-distinct[i]), int(n_sel[i]), int(n_ok[i]), float(lo))
        for i, lo in zip(tested[: lows.size], lows, strict=True)
    )
    if accepted == 0:
        return ThresholdSearch(
            target,
            None,
            None,
            0,
            steps,
            note=f"the strictest tested threshold ({steps[0].n_selected} items) does not reach the target",
        )
    best = steps[accepted - 1]
    return ThresholdSearch(target, best.threshold, best.lower_bound, best.n_selected, steps)


def precision_threshold(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    target: float,
    confidence: float = DEFAULT_CONFIDENCE,
    min_selected: int | None = None,
) -> ThresholdSearch:
    """The loosest pass threshold (pass = score >= threshold) whose precision is at least `target`
    with `confidence`, by fixed-sequence testing from the strictest threshold down.

    Testing starts at the strictest threshold that selects `min_selected` items (default: the
    fewest at which a record with one miss could clear the target, see `min_selected_for`), a
    choice made from the target and the scores alone, so the sequence is fixed before the labels
    are seen.
    """
    s, y = _inputs(scores, labels)
    return _scan(s, y, target, confidence, min_selected)


def npv_threshold(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    target: float,
    confidence: float = DEFAULT_CONFIDENCE,
    min_selected: int | None = None,
) -> ThresholdSearch:
    """The mirror image: the loosest fail threshold (fail = score <= threshold) whose negative
    predictive value, the share of fails that humans call bad, is at least `target`."""
    s, y = _inputs(scores, labels)
    result = _scan(-s, 1 - y, target, confidence, min_selected)
    flip = tuple(ThresholdStep(-st.threshold, st.n_selected, st.n_correct, st.lower_bound) for st in result.steps)
    return ThresholdSearch(
        target,
        None if result.threshold is None else -result.threshold,
        result.guaranteed_low,
        result.n_selected,
        flip,
        result.note,
    )


def _inputs(scores: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    s, y = np.asarray(scores, dtype=float), np.asarray(labels)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError("scores and labels must be one-dimensional and the same length")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (bad) or 1 (good)")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    return s, y.astype(np.int64)


@dataclass(frozen=True)
class ThresholdGuarantee:
    """Pass at or above `pass_at`, fail at or below `fail_at`, a human in between."""

    passing: ThresholdSearch
    failing: ThresholdSearch
    confidence: float

    @property
    def human_band(self) -> tuple[float | None, float | None]:
        """(fail_at, pass_at): scores strictly between are sent to a human."""
        return (self.failing.threshold, self.passing.threshold)

    def as_dict(self) -> dict[str, float | None]:
        """API.md's "threshold" object plus the fail side of the human band."""
        return {
            "target_precision": self.passing.target,
            "pass_at": self.passing.threshold,
            "guaranteed_precision_low": self.passing.guaranteed_low,
            "target_npv": self.failing.target,
            "fail_at": self.failing.threshold,
            "guaranteed_npv_low": self.failing.guaranteed_low,
        }


def threshold_guarantee(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    target_precision: float,
    target_npv: float | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> ThresholdGuarantee:
    """Both thresholds; `target_npv` defaults to `target_precision`. Each side is its own
    fixed-sequence family at `confidence`.

    The two must not overlap (a score both passed and failed): when the loosest thresholds do, the pass
    side takes the loosest of its certified thresholds above the fail threshold, else the fail side the
    loosest of its own below the pass threshold, else the pass side alone stands. Every threshold the
    scan accepted before its first failure holds its bound, so a stricter one keeps the guarantee."""
    passing = precision_threshold(scores, labels, target=target_precision, confidence=confidence)
    failing = npv_threshold(
        scores, labels, target=target_precision if target_npv is None else target_npv, confidence=confidence
    )
    if passing.threshold is not None and failing.threshold is not None and failing.threshold >= passing.threshold:
        fail_at, pass_at = failing.threshold, passing.threshold
        above = [st for st in _certified(passing) if st.threshold > fail_at]
        below = [st for st in _certified(failing) if st.threshold < pass_at]
        if above:
            passing = _at(passing, above[-1])  # steps run strictest first: the last is the loosest
        elif below:
            failing = _at(failing, below[-1])
        else:
            failing = ThresholdSearch(
                failing.target,
                None,
                None,
                0,
                failing.steps,
                note="every certified fail threshold overlaps the pass one",
            )
    return ThresholdGuarantee(passing=passing, failing=failing, confidence=confidence)


def _certified(search: ThresholdSearch) -> list[ThresholdStep]:
    """The thresholds the scan accepted, strictest first (it stops at the first that misses the target)."""
    return [st for st in search.steps if st.lower_bound >= search.target]


def _at(search: ThresholdSearch, step: ThresholdStep) -> ThresholdSearch:
    return ThresholdSearch(search.target, step.threshold, step.lower_bound, step.n_selected, search.steps, search.note)
