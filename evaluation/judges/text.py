"""Small, deterministic text helpers shared by the code checks and the offline judge."""

from __future__ import annotations

import re

STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just let me more
    most my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves also get got may might must shall us via per etc yes
    """.split()
)

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_NUMBER = re.compile(r"^\d+(?:[.,]\d+)?$")
# A sentence ends at . ! ? followed by space, or at a line break (bullets, numbered steps).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n+")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits; apostrophes kept inside words)."""
    return [w.lower() for w in _WORD.findall(text)]


def stem(word: str) -> str:
    """A light suffix strip so 'resets', 'reset' and 'resetting' meet; not a linguistic stemmer."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    if len(word) > 4 and word[-1] == word[-2]:
        word = word[:-1]  # "resett(ing)" -> "reset"
    return word


def content_terms(text: str) -> list[str]:
    """Stemmed words that carry meaning (stopwords dropped, numbers kept as written)."""
    return [w if _NUMBER.match(w) else stem(w) for w in words(text) if w not in STOPWORDS]


def is_number(term: str) -> bool:
    return bool(_NUMBER.match(term))


def sentences(text: str) -> list[str]:
    """Sentences and list items, stripped of bullet markers; empty pieces dropped."""
    pieces = []
    for piece in _SENTENCE_END.split(text):
        piece = _BULLET.sub("", piece).strip()
        if piece:
            pieces.append(piece)
    return pieces


def clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
