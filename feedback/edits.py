"""How much a person changed an AI output: the measures stored with each edit event, and the
word diff that shows the edit.

Pure maths on two strings (rapidfuzz and difflib, no Django), so it is tested on plain text.

One alignment serves both the picture and the number: :func:`diff_segments` is the word diff
the trace page draws, and ``kept_ratio`` is the share of the original's characters left
standing in it (its ``equal`` segments), so "how much was kept" cannot read differently from
what the page strikes out.
"""

from __future__ import annotations

import difflib
import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

# Words, runs of whitespace, and single punctuation marks: joined back they are the text.
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")

# The most work one alignment may do, in (token of the original, position in the edit) pairs
# difflib's longest-match search visits: 30-300 ns each (measured), so well under a second. Its
# Ratcliff-Obershelp search is quadratic in the common case and cubic at worst, and edits arrive
# from public widgets with up to 200,000 characters a side (a 50,000-character rewrite took 24 s);
# an alignment that would cost more is not attempted. Plain prose of about 5,000 characters a
# side fits.
ALIGN_BUDGET = 2_000_000


class _OverBudget(Exception):
    pass


class _BudgetedMatcher(difflib.SequenceMatcher[str]):
    """difflib's matcher (no junk, no autojunk) that counts the pairs its search visits.

    For each token of a[alo:ahi] difflib walks that token's positions in b up to bhi (in order,
    stopping at bhi), so that is what is counted, before each search runs.
    """

    def __init__(self, a: Sequence[str], b: Sequence[str], budget: int) -> None:
        self._a, self._b_len = a, len(b)
        self._where: dict[str, list[int]] = {}
        for j, token in enumerate(b):
            self._where.setdefault(token, []).append(j)
        self._left = budget
        super().__init__(None, a, b, autojunk=False)

    def find_longest_match(
        self, alo: int = 0, ahi: int | None = None, blo: int = 0, bhi: int | None = None
    ) -> difflib.Match:
        ahi = len(self._a) if ahi is None else ahi
        bhi = self._b_len if bhi is None else bhi
        where, nothing = self._where, list[int]()
        visits: int = sum(bisect_left(where.get(token, nothing), bhi) + 1 for token in self._a[alo:ahi])
        self._left -= visits
        if self._left < 0:
            raise _OverBudget
        return super().find_longest_match(alo, ahi, blo, bhi)


def diff_segments(original: str, edited: str, *, budget: int = ALIGN_BUDGET) -> list[tuple[str, str]] | None:
    """Word-level diff for display: [("equal"|"delete"|"insert", text), ...], None past the budget.

    The ``equal`` and ``delete`` texts, in order, join back to ``original``; ``equal`` and
    ``insert`` to ``edited``.
    """
    a, b = _TOKEN.findall(original), _TOKEN.findall(edited)
    try:
        opcodes = _BudgetedMatcher(a, b, budget).get_opcodes()
    except _OverBudget:
        return None
    segments: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in opcodes:
        if op == "equal":
            segments.append(("equal", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            segments.append(("delete", "".join(a[i1:i2])))
        if j2 > j1:
            segments.append(("insert", "".join(b[j1:j2])))
    return segments


def kept_share(original: str, segments: Sequence[tuple[str, str]]) -> float:
    """Characters of the original inside the diff's ``equal`` segments, over the original's length."""
    if not original:  # nothing to keep: kept whole if the edit is empty too
        return 0.0 if any(op == "insert" for op, _ in segments) else 1.0
    return sum(len(text) for op, text in segments if op == "equal") / len(original)


@dataclass(frozen=True, slots=True)
class EditMeasures:
    # Normalized Levenshtein distance over characters: 0 the same text, 1 nothing in common.
    distance: float
    # Share of the original's characters left standing in the word diff (0..1); None when the
    # edit is too large to align within ALIGN_BUDGET.
    kept_ratio: float | None


def edit_measures(original: str, edited: str) -> EditMeasures:
    """Normalized Levenshtein distance and the share of the original the word diff keeps."""
    distance = Levenshtein.normalized_distance(original, edited)
    segments = diff_segments(original, edited)
    kept = None if segments is None else kept_share(original, segments)
    return EditMeasures(float(distance), kept)
