"""Counts of a slice of a feature's traces, as the rollups store them: add two slices and get the
counts of their union (sketches merge by adding bucket counts). Plain Python, no Django."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class JudgedSums:
    """What the calibrated-judge success source needs of a slice (evaluation.reports.calibrated).

    Over the traces a gating judge scored: their count, and weighted sums with w = 1 / the score's
    inclusion probability (a judge samples, e.g. 10% of traces plus every thumbs-down, so its
    scored traces are not a uniform sample; weighting makes them stand for every trace): sum w,
    sum w f, and sum w^2, w^2 f, w^2 f^2 for the variance (f = the calibrated probability of
    good). Over those in the uniform audit: the count and the sums of r and r^2 (r = human
    label - f). Also the lowest and highest f among the scored (what a handful of equal scores says
    nothing of: how far apart the judge's scores can lie; infinite while nothing is scored). Not in
    the rollups: read per report when a gating judge exists."""

    scored: int = 0
    w: float = 0.0
    wf: float = 0.0
    w2: float = 0.0
    w2f: float = 0.0
    w2f2: float = 0.0
    audited: int = 0
    r_sum: float = 0.0
    r2_sum: float = 0.0
    f_low: float = math.inf
    f_high: float = -math.inf

    @classmethod
    def of_scores(cls, f: float, *, count: int = 1, inclusion_probability: float = 1.0) -> JudgedSums:
        """``count`` scored traces with calibrated probability ``f``, each selected with that probability."""
        w = 1.0 / inclusion_probability
        return cls(scored=count, w=count * w, wf=count * w * f, w2=count * w * w, w2f=count * w * w * f,
                   w2f2=count * w * w * f * f, f_low=f, f_high=f)  # fmt: skip

    @property
    def mean_f(self) -> float:
        """The Hajek (ratio) estimate of the mean calibrated probability over every trace."""
        return self.wf / self.w

    @property
    def mean_f_variance(self) -> float:
        """Linearised variance of the Hajek mean (Sarndal, Swensson & Wretman 1992, 5.7)."""
        m = self.mean_f
        return max(self.w2f2 - 2.0 * m * self.w2f + m * m * self.w2, 0.0) / (self.w * self.w)

    @property
    def effective_scored(self) -> float:
        """Kish's effective sample size of the weighted scores, (sum w)^2 / sum w^2 (``scored`` when unweighted)."""
        return self.w * self.w / self.w2 if self.w2 > 0 else 0.0

    def add(self, other: JudgedSums) -> JudgedSums:
        for f in fields(self):
            if f.name not in _EXTREMES:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        self.f_low, self.f_high = min(self.f_low, other.f_low), max(self.f_high, other.f_high)
        return self


_EXTREMES = ("f_low", "f_high")


@dataclass
class LabelSums:
    """What the human-labels success source needs of a slice (no gating judge): the traces of the uniform
    audit stream labelled on the feature's most labelled rubric (one label per trace: models.trace_labels_sql), and
    how many of them a person called good. Not in the rollups: read per report when no judge is gating."""

    labelled: int = 0
    good: int = 0

    def add(self, other: LabelSums) -> LabelSums:
        self.labelled += other.labelled
        self.good += other.good
        return self


@dataclass
class Measures:
    # In the order of feedback.rollups.MEASURES (a test checks the two agree), then ``judged`` and ``human``.
    traces: int = 0
    errors: int = 0
    fallbacks: int = 0
    guardrail_blocks: int = 0
    explicit_feedback: int = 0
    implicit_feedback: int = 0
    feedback_by_kind: dict[str, int] = field(default_factory=dict)
    traces_by_kind: dict[str, int] = field(default_factory=dict)
    thumbs_up: int = 0
    thumbs_down: int = 0
    ratings: int = 0
    ratings_sum: float = 0.0
    rated_traces: int = 0
    good_traces: int = 0
    edits: int = 0
    edited_traces: int = 0
    edit_distance_sum: float = 0.0
    cost_usd: float = 0.0
    costed_traces: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_count: int = 0
    latency_sketch: dict[int, int] = field(default_factory=dict)
    ttft_sketch: dict[int, int] = field(default_factory=dict)
    outcomes: int = 0
    outcome_traces: int = 0
    outcome_value_usd: float = 0.0
    cost_sq_usd: float = 0.0
    judged: JudgedSums = field(default_factory=JudgedSums)
    human: LabelSums = field(default_factory=LabelSums)

    def add(self, other: Measures) -> Measures:
        """Adds ``other`` into this one (in place) and returns it."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, JudgedSums | LabelSums):
                mine.add(theirs)
            elif isinstance(mine, dict):
                # Kind counts and sketches alike merge by adding counts per key (in place: a
                # fresh dict per add made summing many rows quadratic in the buckets).
                for key, count in theirs.items():
                    mine[key] = mine.get(key, 0) + count
            else:
                setattr(self, f.name, mine + theirs)
        return self

    def without(self, part: Measures) -> Measures:
        """A new Measures: these counts less ``part``'s (a group's counts without one of its members)."""
        out = Measures()
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(part, f.name)
            if isinstance(mine, JudgedSums | LabelSums):
                # The rest's scores lie within the whole's range: kept, as a difference of extremes is none.
                setattr(out, f.name, type(mine)(**{g.name: getattr(mine, g.name) - getattr(theirs, g.name)
                                                   if g.name not in _EXTREMES else getattr(mine, g.name)
                                                   for g in fields(mine)}))  # fmt: skip
            elif isinstance(mine, dict):
                setattr(
                    out, f.name, {key: mine.get(key, 0) - theirs.get(key, 0) for key in mine.keys() | theirs.keys()}
                )
            else:
                setattr(out, f.name, mine - theirs)
        return out

    @classmethod
    def from_row(cls, values: Sequence[Any]) -> Measures:
        """From the MEASURES columns of a rollup row or of feedback.rollups.measures_query."""
        out = cls()
        for f, value in zip(_ROLLED, values, strict=True):
            if isinstance(value, str):  # jsonb from a raw cursor arrives as text
                value = json.loads(value)
            if f.name.endswith("_sketch"):
                value = {int(k): int(v) for k, v in (value or {}).items()}
            elif isinstance(getattr(out, f.name), dict):
                value = {str(k): int(v) for k, v in (value or {}).items()}
            elif isinstance(getattr(out, f.name), float):
                value = float(value or 0)
            else:
                value = int(value or 0)
            setattr(out, f.name, value)
        return out


# The fields the rollups store (feedback.rollups.MEASURES); ``judged`` and ``human`` are read apart.
_ROLLED = tuple(f for f in fields(Measures) if f.name not in ("judged", "human"))
MEASURE_NAMES: tuple[str, ...] = tuple(f.name for f in _ROLLED)


def total(parts: Mapping[Any, Measures]) -> Measures:
    out = Measures()
    for part in parts.values():
        out.add(part)
    return out
