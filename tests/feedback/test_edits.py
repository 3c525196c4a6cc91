"""Edit measures on plain strings: values worked out by hand, and checks against references
written here (a dynamic-programming Levenshtein, a brute-force Ratcliff-Obershelp word diff)
and against rapidfuzz's character LCS, which bounds what any alignment can keep."""

from __future__ import annotations

import random
import time

import pytest
from rapidfuzz.distance import LCSseq

from feedback.edits import EditMeasures, diff_segments, edit_measures, kept_share

REFUSAL = "Sorry, I can't help with that request. A member of our team will follow up."
ANSWER = (
    "When the mobile app is stuck on the loading screen, the usual cause is a stale cache. Open Workspace "
    "settings > Data and click 'Rebuild', then reload. Large workspaces may need a few minutes before the "
    "change shows up everywhere. Note: if you sign in with SSO, your identity provider admin has to make "
    "this change."
)


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _kind(ch: str) -> str:
    return "word" if ch.isalnum() or ch == "_" else "space" if ch.isspace() else "mark"


def _tokens(text: str) -> list[str]:
    """Runs of word characters, runs of whitespace, and every other character alone."""
    out: list[str] = []
    for ch in text:
        if out and _kind(ch) != "mark" and _kind(out[-1][-1]) == _kind(ch):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _kept_characters(a: list[str], b: list[str]) -> int:
    """Ratcliff-Obershelp by brute force: the longest run of equal tokens (earliest in a, then
    earliest in b), then the same on either side of it; the characters of a inside the runs."""
    best = (0, 0, 0)
    for i in range(len(a)):
        for j in range(len(b)):
            k = 0
            while i + k < len(a) and j + k < len(b) and a[i + k] == b[j + k]:
                k += 1
            if k > best[2]:
                best = (i, j, k)
    i, j, k = best
    if k == 0:
        return 0
    return _kept_characters(a[:i], b[:j]) + len("".join(a[i : i + k])) + _kept_characters(a[i + k :], b[j + k :])


@pytest.mark.parametrize(
    ("original", "edited", "expected"),
    [
        ("same text", "same text", EditMeasures(0.0, 1.0)),
        ("abcd", "", EditMeasures(1.0, 0.0)),
        ("", "", EditMeasures(0.0, 1.0)),
        ("", "new", EditMeasures(1.0, 0.0)),
        # One word each, and a different word: nothing of the original stands (characters in common are not kept).
        ("abc", "abd", EditMeasures(1 / 3, 0.0)),
        ("kitten", "sitting", EditMeasures(3 / 7, 0.0)),
        # " today" (6 characters) struck: "Your refund was approved" and "." stand, 25 of 31.
        ("Your refund was approved today.", "Your refund was approved.", EditMeasures(6 / 31, 25 / 31)),
        # "colour" struck whole, "color" inserted: "The " and " is red." stand, 12 of 18; one character deleted.
        ("The colour is red.", "The color is red.", EditMeasures(1 / 18, 12 / 18)),
        # Appended to: all of the original stands.
        ("Hi!", "Hi! Thanks.", EditMeasures(8 / 11, 1.0)),
        # "Use" -> "Open" (3 edits), "your" -> "the" (4); the space between them and " Okta dashboard." stand, 17 of 24.
        ("Use your Okta dashboard.", "Open the Okta dashboard.", EditMeasures(7 / 24, 17 / 24)),
        # The reviewer's refusal rewritten into an answer: ", " + " " + "'" + " " + " with " + " " + "." stand,
        # 13 of 75 characters (the character LCS, the old kept_ratio, said 48 of 75 = 0.64).
        pytest.param(REFUSAL, ANSWER, EditMeasures(267 / 314, 13 / 75), id="refusal-rewritten"),
    ],
)
def test_known_pairs(original: str, edited: str, expected: EditMeasures) -> None:
    measures = edit_measures(original, edited)
    assert measures.distance == pytest.approx(expected.distance)
    assert measures.kept_ratio == pytest.approx(expected.kept_ratio)


def test_the_refusal_diff_by_hand() -> None:
    segments = diff_segments(REFUSAL, ANSWER)
    assert segments is not None
    assert [text for op, text in segments if op == "equal"] == [", ", " ", "'", " ", " with ", " ", "."]
    assert [text for op, text in segments if op == "delete"] == [
        "Sorry", "I", "can", "t", "help", "that", "request", " A member of our team will follow up.",
    ]  # fmt: skip
    assert kept_share(REFUSAL, segments) == pytest.approx(13 / 75)


def test_random_pairs_match_the_references() -> None:
    rng = random.Random(7)
    words = ["the", "a", "cat", "sat", "on", "mat", "x", "it's", ".", ",", " ", "  ", "\n"]
    for _ in range(300):
        original = "".join(rng.choice(words) + rng.choice(["", " "]) for _ in range(rng.randint(1, 25)))
        edited = "".join(rng.choice(words + ["dog"]) + rng.choice(["", " "]) for _ in range(rng.randint(0, 25)))
        measures = edit_measures(original, edited)
        segments = diff_segments(original, edited)
        assert segments is not None and measures.kept_ratio is not None
        # The segments are the two texts: equal + delete give the original, equal + insert the edit.
        assert "".join(t for op, t in segments if op != "insert") == original
        assert "".join(t for op, t in segments if op != "delete") == edited
        kept = sum(len(t) for op, t in segments if op == "equal")
        assert measures.kept_ratio == pytest.approx(kept / len(original))
        assert kept == _kept_characters(_tokens(original), _tokens(edited))
        # What stands is a common subsequence of characters: never more than the longest one.
        assert kept <= LCSseq.similarity(original, edited)
        longest = max(len(original), len(edited))
        assert measures.distance == pytest.approx(_levenshtein(original, edited) / longest)
        assert 0.0 <= measures.distance <= 1.0 and 0.0 <= measures.kept_ratio <= 1.0


def test_an_edit_too_large_to_align_is_not_measured_for_kept() -> None:
    rng = random.Random(3)
    words = ["the", "of", "to", "and", "a", "in", "is", "it", "you", "that"]
    original = " ".join(rng.choice(words) for _ in range(40_000))
    edited = " ".join(rng.choice(words) for _ in range(40_000))
    started = time.perf_counter()
    assert diff_segments(original, edited) is None
    measures = edit_measures(original, edited)
    assert measures.kept_ratio is None and 0.0 < measures.distance < 1.0
    assert time.perf_counter() - started < 10  # unbounded, this alignment runs for minutes
    # Within the budget the same kind of text is aligned.
    assert diff_segments(original[:2_000], edited[:2_000]) is not None
    assert diff_segments(original[:2_000], edited[:2_000], budget=1_000) is None
