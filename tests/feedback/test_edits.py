"""Edit measures on plain strings, against a plain dynamic-programming reference."""

from __future__ import annotations

import random

import pytest

from feedback.edits import EditMeasures, edit_measures


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _lcs(a: str, b: str) -> int:
    previous = [0] * (len(b) + 1)
    for ca in a:
        current = [0]
        for j, cb in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if ca == cb else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


@pytest.mark.parametrize(
    ("original", "edited", "expected"),
    [
        ("same text", "same text", EditMeasures(0.0, 1.0)),
        ("abc", "abd", EditMeasures(1 / 3, 2 / 3)),
        ("abcd", "", EditMeasures(1.0, 0.0)),
        ("", "", EditMeasures(0.0, 1.0)),
        ("", "new", EditMeasures(1.0, 0.0)),
        ("kitten", "sitting", EditMeasures(3 / 7, 4 / 6)),
    ],
)
def test_known_pairs(original: str, edited: str, expected: EditMeasures) -> None:
    measures = edit_measures(original, edited)
    assert measures.distance == pytest.approx(expected.distance)
    assert measures.kept_ratio == pytest.approx(expected.kept_ratio)


def test_random_pairs_match_the_reference() -> None:
    rng = random.Random(7)
    for _ in range(300):
        original = "".join(rng.choice("abcde ") for _ in range(rng.randint(1, 30)))
        edited = "".join(rng.choice("abcdef ") for _ in range(rng.randint(0, 30)))
        measures = edit_measures(original, edited)
        longest = max(len(original), len(edited))
        assert measures.distance == pytest.approx(_levenshtein(original, edited) / longest)
        assert measures.kept_ratio == pytest.approx(_lcs(original, edited) / len(original))
        assert 0.0 <= measures.distance <= 1.0 and 0.0 <= measures.kept_ratio <= 1.0
