"""Root cause of a moved rate: which segments explain the change, split into mix and rate effects.

A rate R = sum_s w_s r_s over the segments s of one partition (w_s the segment's share of the
denominator, r_s its own rate). Between a baseline (0) and a current window (1) the change splits
exactly, per segment, into (Kitagawa, "Components of a Difference Between Two Rates", JASA 1955,
the symmetric form)

    mix_s  = (w1_s - w0_s) * ((r0_s + r1_s) / 2 - R_bar)     the segment's share of traffic moved
    rate_s = (r1_s - r0_s) * (w0_s + w1_s) / 2               the segment's own rate moved

with sum_s (mix_s + rate_s) = R1 - R0. Centering the mix term on R_bar = (R0 + R1) / 2 changes no
total (the w's sum to 1 in both windows) but keeps a segment that merely replaces a similar one
from claiming the whole change. A segment present in one window only takes its rate from that one.

Segments are ranked by how much they push the rate in one direction (the way it moved, or the
metric's bad way: a regression in one segment can hide under an improvement in another). Single
segments (prompt version, model, customer, each metadata key=value) rank by their push; each is
drilled down once: the narrowest pair holding it (least traffic over the two windows) that still
carries at least REFINE_SHARE of its push is shown just above it, e.g. auth=sso x
prompt_version=v2.3 above auth=sso: the narrower cause is the more useful one. Pairs no single
segment leads to (interactions) follow. Plain Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Segment = tuple[tuple[str, str], ...]  # ((dimension, value), ...), sorted by dimension

REFINE_SHARE = 0.75


@dataclass(frozen=True)
class Counts:
    num0: float
    den0: float
    num1: float
    den1: float


@dataclass(frozen=True)
class Contribution:
    segment: Segment
    mix: float
    rate: float
    weight0: float
    weight1: float
    rate0: float | None
    rate1: float | None
    share_of_change: float | None  # (mix + rate) / (R1 - R0)
    refines: Segment | None = None  # the broader segment this one is ranked above

    @property
    def total(self) -> float:
        return self.mix + self.rate

    @property
    def label(self) -> str:
        return " × ".join(f"{d}={v}" for d, v in self.segment)


@dataclass(frozen=True)
class Decomposition:
    rate0: float | None
    rate1: float | None
    change: float | None
    ranked: tuple[Contribution, ...]
    note: str | None = None


def _rate(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def decompose_partition(cells: Mapping[Segment, Counts]) -> tuple[float | None, float | None, list[Contribution]]:
    """Mix and rate effect of each cell of one partition (the cells cover all traffic)."""
    d0 = sum(c.den0 for c in cells.values())
    d1 = sum(c.den1 for c in cells.values())
    r0_all = _rate(sum(c.num0 for c in cells.values()), d0)
    r1_all = _rate(sum(c.num1 for c in cells.values()), d1)
    if r0_all is None or r1_all is None:
        return r0_all, r1_all, []
    change = r1_all - r0_all
    r_bar = (r0_all + r1_all) / 2
    out = []
    for segment, c in cells.items():
        r0, r1 = _rate(c.num0, c.den0), _rate(c.num1, c.den1)
        if r0 is None and r1 is None:
            continue
        a = r0 if r0 is not None else r1
        b = r1 if r1 is not None else r0
        assert a is not None and b is not None
        w0, w1 = c.den0 / d0, c.den1 / d1
        mix = (w1 - w0) * ((a + b) / 2 - r_bar)
        rate = (b - a) * (w0 + w1) / 2
        share = (mix + rate) / change if change else None
        out.append(Contribution(segment, mix, rate, w0, w1, r0, r1, share))
    return r0_all, r1_all, out


def root_causes(
    partitions: Iterable[Mapping[Segment, Counts]], *, direction: float | None = None, top: int = 20
) -> Decomposition:
    """Every partition's cells decomposed, then ranked together (see the module's docstring) by
    their push in ``direction`` (+1: up, -1: down; default: the way the rate moved). Pass the
    metric's bad direction to find what got worse even when the total moved the other way (a
    segment's regression hidden by another's improvement)."""
    r0: float | None = None
    r1: float | None = None
    everything: dict[Segment, Contribution] = {}
    for cells in partitions:
        p0, p1, contributions = decompose_partition(cells)
        if p0 is not None and p1 is not None:
            r0, r1 = p0, p1
        for c in contributions:
            everything.setdefault(c.segment, c)
    if r0 is None or r1 is None:
        return Decomposition(r0, r1, None, (), "no data in one of the two windows")
    change = r1 - r0
    if change == 0 and direction is None:
        return Decomposition(r0, r1, 0.0, (), "the rate did not move")
    sign = (1.0 if change > 0 else -1.0) if direction is None else (1.0 if direction > 0 else -1.0)
    score = {s: c.total * sign for s, c in everything.items() if c.total * sign > 0}
    singles = sorted((s for s in score if len(s) == 1), key=lambda s: -score[s])
    order: list[tuple[Segment, Segment | None]] = []
    used: set[Segment] = set()
    for single in singles:
        # Drill down: the narrowest pair holding this segment that still carries most of it.
        sufficient = [
            c
            for c in score
            if len(c) > 1 and single[0] in c and c not in used and score[c] >= REFINE_SHARE * score[single]
        ]
        if sufficient:
            best = min(sufficient, key=lambda c: (everything[c].weight0 + everything[c].weight1, -score[c]))
            order.append((best, single))
            used.add(best)
        order.append((single, None))
    # Interactions no single segment shows (pairs whose parents move little or cancel out) come after.
    order += [(c, None) for c in sorted(score, key=lambda c: -score[c]) if len(c) > 1 and c not in used]
    ranked = []
    for segment, refines in order[:top]:
        c = everything[segment]
        ranked.append(
            Contribution(c.segment, c.mix, c.rate, c.weight0, c.weight1, c.rate0, c.rate1, c.share_of_change, refines)
        )
    return Decomposition(r0, r1, change, tuple(ranked))


def partitions_from_cells(
    finest: Mapping[tuple[Any, ...], Counts], dims: tuple[str, ...], *, pairs: bool = True
) -> list[dict[Segment, Counts]]:
    """Singles (and pairs) of ``dims`` from counts at the finest grain (one key per combination of
    every dim's value; None reads as "(none)")."""
    out: list[dict[Segment, Counts]] = []
    # A dimension with one value over both windows (every trace on one model) splits nothing: its
    # single segment would "explain" the whole change, and its pairs repeat the other dimension.
    varied = [i for i in range(len(dims)) if len({key[i] for key in finest}) > 1]
    combos: list[tuple[int, ...]] = [(i,) for i in varied]
    if pairs:
        combos += [(i, j) for i in varied for j in varied if j > i]
    for combo in combos:
        cells: dict[Segment, list[float]] = {}
        for key, c in finest.items():
            segment = tuple(sorted((dims[i], "(none)" if key[i] is None else str(key[i])) for i in combo))
            acc = cells.setdefault(segment, [0.0, 0.0, 0.0, 0.0])
            acc[0] += c.num0
            acc[1] += c.den0
            acc[2] += c.num1
            acc[3] += c.den1
        out.append({s: Counts(*v) for s, v in cells.items()})
    return out
