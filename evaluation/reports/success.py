"""Where a success rate comes from, in order of preference: the first source that has data for
the feature's window answers for every group of the report, so groups stay comparable, and its
name travels with the number (``success.source``).

To add a source (the calibrated judge, once calibration lands), write a class with ``name``,
``available`` and ``estimate`` and put it first in SUCCESS_SOURCES; a source whose counts are
not in the rollups yet adds them to Measures (feedback.models.RollupMeasures) first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from evaluation.reports.measures import Measures
from evaluation.stats import Interval, wilson


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


class NoSource:
    name = "none"
    description = "no outcomes, thumbs or ratings in this window"

    def available(self, total: Measures) -> bool:
        return True

    def estimate(self, measures: Measures) -> SuccessEstimate:
        return SuccessEstimate(Interval.undefined(self.description), 0, self.name)


SUCCESS_SOURCES: tuple[SuccessSource, ...] = (OutcomesSource(), ThumbsSource())


def success_source_for(total: Measures) -> SuccessSource:
    """The first source with data over the feature's whole window."""
    return next((source for source in SUCCESS_SOURCES if source.available(total)), NoSource())
