"""How much a person changed an AI output: the measures stored with each edit event.

Pure maths on two strings (rapidfuzz, no Django), so it is tested on plain text.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz.distance import LCSseq, Levenshtein


@dataclass(frozen=True, slots=True)
class EditMeasures:
    # Normalized Levenshtein distance: 0 the same text, 1 nothing in common.
    distance: float
    # Share of the original's characters that survived the edit (0..1).
    kept_ratio: float


def edit_measures(original: str, edited: str) -> EditMeasures:
    """Normalized Levenshtein distance and the share of the original kept."""
    distance = Levenshtein.normalized_distance(original, edited)
    # Longest common subsequence over the original's length: which characters survived the edit.
    kept_ratio = LCSseq.similarity(original, edited) / len(original) if original else (1.0 if not edited else 0.0)
    return EditMeasures(float(distance), float(min(max(kept_ratio, 0.0), 1.0)))
