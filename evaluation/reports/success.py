"""Where a success rate comes from, in order of preference: the first source that has data for
the feature's window answers for every group of the report, so groups stay comparable, and its
name travels with the number (``success.source``).

The calibrated judge comes first, where a gating judge exists (its sums are read apart from the
rollups, into Measures.judged); then outcomes, then thumbs. To add a source, write a class with
``name``, ``available`` and ``estimate`` and put it in SUCCESS_SOURCES.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from evaluation.reports.measures import Measures
from evaluation.stats import Interval, wilson
from evaluation.stats.intervals import z_value


@dataclass(frozen=True)
class SuccessEstimate:
    interval: Interval
    n: int  # the traces the rate is a share of
    source: str


class SuccessSource(Protocol):
    name: str
    description: str

    def available(self, total: Measures) -> bool: ...

    def estimate(self, measures: Measures) -> SuccessEstimate: ...


class OutcomesSource:
    """Share of traces with at least one outcome (tied by trace, or by session: the session's last
    trace before the outcome)."""

    name = "outcomes"
    description = "share of traces with a business outcome (e.g. ticket resolved, purchase)"

    def available(self, total: Measures) -> bool:
        return total.outcomes > 0

    def estimate(self, measures: Measures) -> SuccessEstimate:
        if measures.traces == 0:
            return SuccessEstimate(Interval.undefined("no traces"), 0, self.name)
        return SuccessEstimate(wilson(measures.outcome_traces, measures.traces), measures.traces, self.name)


class ThumbsSource:
    """Share of good traces among traces with a thumb or rating: a trace is good when its good
    choices (thumb up, rating >= 4) outnumber its bad ones (the last choice per person counts)."""

    name = "thumbs"
    description = "share of rated traces rated good (thumb up or rating >= 4); raters are self-selected"

    def available(self, total: Measures) -> bool:
        return total.rated_traces > 0

    def estimate(self, measures: Measures) -> SuccessEstimate:
        if measures.rated_traces == 0:
            return SuccessEstimate(Interval.undefined("no thumbs or ratings"), 0, self.name)
        return SuccessEstimate(wilson(measures.good_traces, measures.rated_traces), measures.rated_traces, self.name)


class CalibratedJudgeSource:
    """A gating judge (its calibration's lower bound cleared 0.7, with a TNR floor) on every trace
    it scored, each score mapped to P(good) by the calibrator fitted on human labels, corrected by
    the uniform audit: prediction-powered inference with lambda = 1 (Angelopoulos et al. 2023,
    "Prediction-powered inference"): mean f over the group's scored traces plus the mean of
    (label - f) over its audited ones, variance Var(f)/N + Var(label - f)/n. A group with fewer
    than MIN_AUDITED audit labels has no estimate (its judge's bias there is unmeasured)."""

    name = "calibrated_judge"
    description = "a gating judge's calibrated scores, corrected by the uniform audit of human labels"
    MIN_AUDITED = 10

    def available(self, total: Measures) -> bool:
        return total.judged.scored > 0 and total.judged.audited >= self.MIN_AUDITED

    def estimate(self, measures: Measures) -> SuccessEstimate:
        j = measures.judged
        if j.scored == 0:
            return SuccessEstimate(Interval.undefined("no traces scored by the gating judge"), 0, self.name)
        if j.audited < self.MIN_AUDITED:
            return SuccessEstimate(
                Interval.undefined(f"{j.audited} audit labels here: at least {self.MIN_AUDITED} are needed"),
                j.scored,
                self.name,
            )
        mean_f = j.f_sum / j.scored
        var_f = max(j.f2_sum / j.scored - mean_f * mean_f, 0.0)
        mean_r = j.r_sum / j.audited
        var_r = max(j.r2_sum / j.audited - mean_r * mean_r, 0.0) * j.audited / (j.audited - 1)
        value = mean_f + mean_r
        se = math.sqrt(var_f / j.scored + var_r / j.audited)
        z = z_value()
        low, high = max(0.0, value - z * se), min(1.0, value + z * se)
        return SuccessEstimate(Interval(min(max(value, 0.0), 1.0), low, high), j.scored, self.name)


class NoSource:
    name = "none"
    description = "no outcomes, thumbs or ratings in this window"

    def available(self, total: Measures) -> bool:
        return True

    def estimate(self, measures: Measures) -> SuccessEstimate:
        return SuccessEstimate(Interval.undefined(self.description), 0, self.name)


SUCCESS_SOURCES: tuple[SuccessSource, ...] = (CalibratedJudgeSource(), OutcomesSource(), ThumbsSource())


def success_source_for(total: Measures) -> SuccessSource:
    """The first source with data over the feature's whole window."""
    return next((source for source in SUCCESS_SOURCES if source.available(total)), NoSource())
