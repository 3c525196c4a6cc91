"""Where a success rate comes from, in order of preference: the first source that has data for
the feature's window answers for every group of the report, so groups stay comparable, and its
name travels with the number (``success.source``).

The calibrated judge comes first, where a gating judge exists (its sums are read apart from the
rollups, into Measures.judged); then, with no judge gating, the uniform audit's human labels alone
(Measures.human); then outcomes, then thumbs (shared/API.md's order). To add a source, write a class with
``name``, ``available`` and ``estimate`` and put it in SUCCESS_SOURCES.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from evaluation.reports.measures import JudgedSums, Measures
from evaluation.stats import Interval, wilson
from evaluation.stats.estimators import Heterogeneity, between_groups_variance
from evaluation.stats.intervals import DEFAULT_CONFIDENCE, t_value, z_value


@dataclass(frozen=True)
class SuccessEstimate:
    interval: Interval
    n: int  # the traces the rate is a share of
    source: str
    note: str | None = None  # how it was made, when that needs saying (a pooled correction)
    # The judge's correction is borrowed from the whole report and nothing measured how far it varies
    # between groups: the rate holds only if the judge errs here as it does overall.
    assumes_alike: bool = False
    # The judge's correction is borrowed from the whole report (too few audit labels here), whether or not its
    # spread between groups was measured.
    pooled: bool = False


class SuccessSource(Protocol):
    name: str
    description: str

    def available(self, total: Measures) -> bool: ...

    def estimate(self, measures: Measures, confidence: float = DEFAULT_CONFIDENCE) -> SuccessEstimate: ...


class OutcomesSource:
    """Share of traces with at least one outcome (tied by trace, or by session: the session's last
    trace before the outcome)."""

    name = "outcomes"
    description = "share of traces with a business outcome (e.g. ticket resolved, purchase)"

    def available(self, total: Measures) -> bool:
        return total.outcomes > 0

    def estimate(self, measures: Measures, confidence: float = DEFAULT_CONFIDENCE) -> SuccessEstimate:
        if measures.traces == 0:
            return SuccessEstimate(Interval.undefined("no traces"), 0, self.name)
        interval = wilson(measures.outcome_traces, measures.traces, confidence)
        return SuccessEstimate(interval, measures.traces, self.name)


class ThumbsSource:
    """Share of good traces among traces with a thumb or rating: a trace is good when its good
    choices (thumb up, rating >= 4) outnumber its bad ones (the last choice per person counts)."""

    name = "thumbs"
    description = "share of rated traces rated good (thumb up or rating >= 4); raters are self-selected"

    def available(self, total: Measures) -> bool:
        return total.rated_traces > 0

    def estimate(self, measures: Measures, confidence: float = DEFAULT_CONFIDENCE) -> SuccessEstimate:
        if measures.rated_traces == 0:
            return SuccessEstimate(Interval.undefined("no thumbs or ratings"), 0, self.name)
        interval = wilson(measures.good_traces, measures.rated_traces, confidence)
        return SuccessEstimate(interval, measures.rated_traces, self.name)


class CalibratedJudgeSource:
    """A gating judge (its calibration's lower bound cleared 0.7, with a TNR floor) on every trace
    it scored, each score mapped to P(good) by the calibrator fitted on human labels, corrected by
    the uniform audit: prediction-powered inference with lambda = 1 (Angelopoulos et al. 2023,
    "Prediction-powered inference"): the mean of f over every trace (the scored ones weighted by
    1 / their inclusion probability, a Hajek estimate, since a judge's sample may be enriched)
    plus the mean of (label - f) over the group's audited ones; variance the Hajek mean's plus
    Var(label - f)/n. With equal probabilities this is mean f + mean r, Var(f)/N + Var(r)/n.

    A group with fewer than MIN_AUDITED audit labels of its own (a day on a chart, a small
    segment) takes the correction of the whole report (``pooled``: the audit over every group),
    with that correction's variance, and says so in ``note``. The judge's bias in that group is
    unknown, though: when at least MIN_GROUPS (5) of the report's groups have labels of their own
    (``spread``: how much their corrections vary beyond sampling noise, DerSimonian-Laird's tau^2,
    at most Var(r), which bounds the variance of group means), the interval also carries that spread,
    as a random-effects prediction for a new group does (Higgins, Thompson & Spiegelhalter 2009: t
    with k - 2 degrees of freedom on the spread). With fewer such groups the spread cannot be
    measured and the note says the interval assumes the judge errs alike in the group and overall.
    Alerts and experiments compare a group with itself over time, where a stable bias cancels: they
    take no spread. Alerts read both windows with one correction (``over_time``)."""

    name = "calibrated_judge"
    description = "a gating judge's calibrated scores, corrected by the uniform audit of human labels"
    MIN_AUDITED = 10
    MIN_SCORED = 10
    # From 5 groups (t with 3 df, 3.18): with 3, t's 12.7 made the interval all or nothing.
    MIN_GROUPS = 5

    def __init__(
        self,
        pooled: JudgedSums | None = None,
        spread: Heterogeneity | None = None,
        common: JudgedSums | None = None,
        common_of: str = "",
    ) -> None:
        self.pooled = pooled
        self.spread = spread
        self.common = common
        self.common_of = common_of  # whose labels ``common`` holds, in words ("this segment")

    def over_time(self, audit: JudgedSums, of: str = "") -> CalibratedJudgeSource:
        """This source for comparing a group with itself over time (an alert's window against its baseline):
        every window corrected by one audit, ``audit`` (the group's labels over both windows), and its
        interval the judge's scores' alone. A judge's steady bias cancels in the two windows' difference, so
        the correction's noise is no part of it; corrected each by its own few labels (a segment's week holds
        a dozen), the two windows' intervals carried that noise twice and hid a 20-point fall."""
        return CalibratedJudgeSource(pooled=self.pooled, common=audit, common_of=of)

    def available(self, total: Measures) -> bool:
        return total.judged.scored > 0 and total.judged.audited >= self.MIN_AUDITED

    def for_report(self, total: Measures, groups: Iterable[Measures] = ()) -> CalibratedJudgeSource:
        """This source with the report's whole audit as the fallback correction, and the spread of the
        correction between ``groups`` (the report's rows) that have labels of their own."""
        return CalibratedJudgeSource(pooled=total.judged, spread=self._spread(total.judged, groups))

    def _spread(self, whole: JudgedSums, groups: Iterable[Measures]) -> Heterogeneity | None:
        own = [g.judged for g in groups if g.judged.audited >= self.MIN_AUDITED]
        if len(own) < self.MIN_GROUPS:
            return None
        # Each group's mean correction, with the within-group variance pooled over the groups (one per
        # group would give a group whose labels all agree an infinite weight).
        means = [j.r_sum / j.audited for j in own]
        labels = sum(j.audited for j in own)
        squares = sum(max(j.r2_sum - j.audited * m * m, 0.0) for j, m in zip(own, means, strict=True))
        within = squares / (labels - len(own))
        _, ceiling = _correction(whole)  # whole holds these groups' labels: at least 50
        if within <= 1e-12:
            # No noise within groups (each group's labels differ from its scores by one amount): the
            # spread is simply that of the group means.
            return Heterogeneity(min(float(np.var(means, ddof=1)), ceiling), len(own))
        found = between_groups_variance(means, [within / j.audited for j in own])
        return Heterogeneity(min(found.tau2, ceiling), found.groups)

    def estimate(self, measures: Measures, confidence: float = DEFAULT_CONFIDENCE) -> SuccessEstimate:
        j = measures.judged
        if j.scored == 0:
            return SuccessEstimate(Interval.undefined("no traces scored by the gating judge"), 0, self.name)
        if j.scored < self.MIN_SCORED:
            # The scores' spread, read from a handful, can be nil: a 4-trace group read 96.6% (93.7-99.4%).
            why = f"{j.scored} traces scored by the gating judge: at least {self.MIN_SCORED} are needed for a rate"
            return SuccessEstimate(Interval.undefined(why), j.scored, self.name)
        audit, note, assumes_alike = j, None, False
        if self.common is not None:
            if self.common.audited < self.MIN_AUDITED:
                why = f"{self.common.audited} audit labels: at least {self.MIN_AUDITED} are needed"
                return SuccessEstimate(Interval.undefined(why), j.scored, self.name)
            mean_r, _ = _correction(self.common)
            z = z_value(confidence)
            value, half = j.mean_f + mean_r, z * math.sqrt(_scores_variance(j, self.pooled or j, z))
            note = (f"one bias correction for every window compared ({self.common.audited} audit labels): "
                    "the interval is the judge's scores' alone, as a steady bias cancels in a change")  # fmt: skip
            low, high = max(0.0, value - half), min(1.0, value + half)
            return SuccessEstimate(Interval(min(max(value, 0.0), 1.0), low, high), j.scored, self.name, note)
        if j.audited < self.MIN_AUDITED:
            if self.pooled is None or self.pooled.audited < self.MIN_AUDITED:
                return SuccessEstimate(
                    Interval.undefined(f"{_labels(j.audited)} here: at least {self.MIN_AUDITED} are needed"),
                    j.scored,
                    self.name,
                )
            audit = self.pooled
            note = f"{_labels(j.audited)} here: the judge's bias correction is pooled over the whole report"
            if self.spread is None:
                note += ", assuming the judge errs alike here (too few groups with labels of their own to tell)"
                assumes_alike = True
            elif self.spread.tau2 == 0:
                note += f"; no spread of it measurable beyond noise among the {self.spread.groups} groups with labels"
        mean_r, var_r = _correction(audit)
        value = j.mean_f + mean_r
        z = z_value(confidence)
        se = math.sqrt(_scores_variance(j, self.pooled or j, z) + var_r / audit.audited)
        half = z * se
        if audit is not j and self.spread is not None and self.spread.tau2 > 0:
            t = t_value(confidence, self.spread.groups - 2)
            half = math.sqrt(half * half + t * t * self.spread.tau2)
            note = (f"{note}, widened by ±{t * math.sqrt(self.spread.tau2) * 100:.1f} points for how much it varies "
                    f"between the {self.spread.groups} groups with labels of their own")  # fmt: skip
        low, high = max(0.0, value - half), min(1.0, value + half)
        return SuccessEstimate(Interval(min(max(value, 0.0), 1.0), low, high), j.scored, self.name, note, assumes_alike,
                               pooled=audit is not j)  # fmt: skip


def _scores_variance(j: JudgedSums, reference: JudgedSums, z: float) -> float:
    """The variance of a group's mean calibrated score: the Hajek plug-in, but never below an Agresti-Coull
    bound for a score that lies between the lowest and highest calibrated scores of ``reference`` (the whole
    report's, where the group is part of one).

    The plug-in reads the scores' spread from the group alone: ten traces a binary judge all passed spread by
    nothing, and a customer with ten scored traces read 97.3% (95.0-99.5%) when ten passes leave a pass share
    of 72% as plausible as 100% (seeded simulation: such intervals covered the group's rate in 55-61% of draws).
    The bound treats the group's mean score m, put on the scores' range [a, b], as a share p = (m - a) / (b - a)
    over n* = n_eff / psi trials (n_eff Kish's effective count; psi the reference's variance over the
    Bhatia-Davis maximum (m - a)(b - m) for its mean: 1 for a two-valued binary judge, below 1 for a graded
    one), and adds z^2 / 2 pseudo-traces at each end, as Agresti & Coull (1998) do for a proportion:
    (b - a)^2 p~(1 - p~) / (n* + z^2), p~ = (p n* + z^2 / 2) / (n* + z^2). For a binary judge it is the
    Agresti-Coull interval of the pass share, carried to the rate; in a large group, whose scores vary as the
    report's do, the two all but agree. A reference whose scores never differed tells no range:
    [0, 1] then, with psi = 1."""
    plug_in = j.mean_f_variance
    n = j.effective_scored
    if n <= 0:
        return plug_in
    if reference.w <= 0:  # a pooled audit with no scores of its own: the group is all there is
        reference = j
    low, high = reference.f_low, reference.f_high
    if not high - low > 1e-12:  # one score throughout, or no range known
        low, high = 0.0, 1.0
    m_ref = min(max(reference.mean_f, low), high)
    most = (m_ref - low) * (high - m_ref)  # Bhatia & Davis (2000): no variance of a score in [a, b] exceeds it
    per_score = reference.mean_f_variance * reference.effective_scored
    psi = min(per_score / most, 1.0) if most > 0 and per_score > 0 else 1.0
    p = min(max((j.mean_f - low) / (high - low), 0.0), 1.0)
    trials = n / psi + z * z
    p_tilde = (p * n / psi + z * z / 2.0) / trials
    return max(plug_in, (high - low) ** 2 * p_tilde * (1.0 - p_tilde) / trials)


def _labels(n: int) -> str:
    return f"{n} audit label{'' if n == 1 else 's'}"


def _correction(audit: JudgedSums) -> tuple[float, float]:
    """The audit's mean correction (label - calibrated score) and its sample variance."""
    mean_r = audit.r_sum / audit.audited
    return mean_r, max(audit.r2_sum / audit.audited - mean_r * mean_r, 0.0) * audit.audited / (audit.audited - 1)


class HumanLabelsSource:
    """No judge gates yet, but people label a uniform sample: the share of its labelled traces called good,
    with Wilson's interval (CALIBRATION.md: below ~50-100 labels, the classical interval from labels alone;
    without a judge it is the only estimate). The uniform audit is a random sample of the feature's traces, so
    unlike thumbs no one chose what to answer. A report needs MIN_LABELS of them over its window to read
    success from them; a group with none has no rate."""

    name = "human_labels"
    description = "share of the uniform audit's human-labelled traces labelled good (no judge gating yet)"
    MIN_LABELS = 30

    def available(self, total: Measures) -> bool:
        return total.human.labelled >= self.MIN_LABELS

    def estimate(self, measures: Measures, confidence: float = DEFAULT_CONFIDENCE) -> SuccessEstimate:
        h = measures.human
        if h.labelled == 0:
            return SuccessEstimate(Interval.undefined("no uniform-audit labels in this group"), 0, self.name)
        return SuccessEstimate(wilson(h.good, h.labelled, confidence), h.labelled, self.name)


class NoSource:
    name = "none"
    description = "no gating judge, uniform-audit labels, outcomes, thumbs or ratings in this window"

    def available(self, total: Measures) -> bool:
        return True

    def estimate(self, measures: Measures, confidence: float = DEFAULT_CONFIDENCE) -> SuccessEstimate:
        return SuccessEstimate(Interval.undefined(self.description), 0, self.name)


SUCCESS_SOURCES: tuple[SuccessSource, ...] = (
    CalibratedJudgeSource(),
    HumanLabelsSource(),
    OutcomesSource(),
    ThumbsSource(),
)


def success_source_for(total: Measures, groups: Iterable[Measures] = ()) -> SuccessSource:
    """The first source with data over the feature's whole window (the calibrated judge carries
    that window's audit, for groups too small to correct on their own, and the spread of its
    correction between ``groups``, the rows a report shows side by side)."""
    source = next((source for source in SUCCESS_SOURCES if source.available(total)), NoSource())
    if isinstance(source, CalibratedJudgeSource):
        return source.for_report(total, groups)
    return source
