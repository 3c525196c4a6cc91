"""Output scales of a judge: binary pass/fail, ordinal 1-5, continuous 0-1.

One place for the verdict's JSON Schema, its strict parsing, its map onto [0, 1] and the
pass thresholds that calibration agrees on (shared/API.md: binary 1, ordinal >= 4,
continuous >= 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from evaluation.judges.results import JudgeResult

ScaleKind = Literal["binary", "ordinal", "continuous"]
SCALE_KINDS: tuple[str, ...] = get_args(ScaleKind)


class VerdictError(ValueError):
    """A verdict value that is not on the scale (wrong type, out of range, unknown word)."""


@dataclass(frozen=True, slots=True)
class Scale:
    kind: ScaleKind
    low: float
    high: float
    pass_at: float

    # ------------------------------------------------------------------ numbers

    def normalize(self, raw: float) -> float:
        """The raw verdict mapped onto [0, 1] (ordinal 1..5 -> 0, .25, .5, .75, 1)."""
        return (raw - self.low) / (self.high - self.low)

    def passes(self, raw: float) -> bool:
        return raw >= self.pass_at

    def from_quality(self, quality: float) -> float:
        """A quality in [0, 1] expressed on this scale (for heuristic judges and checks)."""
        q = min(1.0, max(0.0, quality))
        if self.kind == "binary":
            return 1.0 if q >= 0.5 else 0.0
        if self.kind == "ordinal":
            return float(1 + round(q * 4))
        return round(q, 4)

    def result(self, raw: float, rationale: str, **extra: Any) -> JudgeResult:
        """A successful verdict on this scale."""
        return JudgeResult(
            raw_score=raw,
            score=self.normalize(raw),
            passed=self.passes(raw),
            rationale=rationale,
            **extra,
        )

    def pass_probability(self, result: JudgeResult) -> float | None:
        """P(the verdict passes) from the provider's logprobs: the mass of the passing values in
        ``verdict_distribution``, else (binary) the verdict's own probability or its complement.
        A finer score than the verdict itself for calibration; None without logprobs."""
        if result.passed is None:
            return None
        if result.verdict_distribution:
            total = sum(p for _, p in result.verdict_distribution)
            passing = sum(p for value, p in result.verdict_distribution if self.passes(value))
            return passing / total if total > 0 else None
        if self.kind == "binary" and result.verdict_probability is not None:
            return result.verdict_probability if result.passed else 1.0 - result.verdict_probability
        return None

    # ------------------------------------------------------------------ verdicts

    def parse_verdict(self, value: object) -> float:
        """The verdict a provider (or a team's external score) sent, as a raw score.

        Strict: anything not clearly on the scale raises VerdictError, never a guess.
        Binary accepts "pass"/"fail" (any case), booleans and 0/1; ordinal the integers 1-5
        (4.0 and "4" too, never 4.5); continuous a finite number in [0, 1].
        """
        if self.kind == "binary":
            if isinstance(value, bool):
                return 1.0 if value else 0.0
            if isinstance(value, str):
                word = value.strip().lower()
                if word in ("pass", "fail"):
                    return 1.0 if word == "pass" else 0.0
                raise VerdictError(f"binary verdict must be 'pass' or 'fail', got {value!r}")
            number = _number(value)
            if number in (0.0, 1.0):
                return number
            raise VerdictError(f"binary verdict must be 'pass'/'fail' or 0/1, got {value!r}")
        number = _number(value)
        if self.kind == "ordinal":
            if number != int(number) or not 1 <= number <= 5:
                raise VerdictError(f"ordinal verdict must be an integer from 1 to 5, got {value!r}")
            return float(int(number))
        if not 0.0 <= number <= 1.0:
            raise VerdictError(f"continuous verdict must be between 0 and 1, got {value!r}")
        return number

    def verdict_schema(self) -> dict[str, Any]:
        """JSON Schema of the ``verdict`` property (valid under OpenAI strict mode)."""
        if self.kind == "binary":
            return {"type": "string", "enum": ["pass", "fail"], "description": "pass if the output meets the rubric"}
        if self.kind == "ordinal":
            return {"type": "integer", "enum": [1, 2, 3, 4, 5], "description": "1 (very poor) to 5 (excellent)"}
        # Strict mode ignores numeric bounds on some providers: parse_verdict enforces them.
        return {"type": "number", "description": "from 0.0 (fails completely) to 1.0 (fully meets the rubric)"}

    def output_schema(self) -> dict[str, Any]:
        """The whole structured answer. Rationale first: the model reasons, then decides."""
        return {
            "type": "object",
            "properties": {
                "rationale": {"type": "string", "description": "two to four sentences citing the text"},
                "verdict": self.verdict_schema(),
            },
            "required": ["rationale", "verdict"],
            "additionalProperties": False,
        }

    def instructions(self) -> str:
        """How to answer, for the system prompt."""
        if self.kind == "binary":
            verdict = '"pass" or "fail"'
        elif self.kind == "ordinal":
            verdict = "an integer from 1 (very poor) to 5 (excellent); 4 or 5 means it is acceptable"
        else:
            verdict = "a number from 0.0 to 1.0; 0.5 or more means it is acceptable"
        return (
            'Answer only with a JSON object {"rationale": string, "verdict": ...}: first a short '
            f"rationale citing the text, then the verdict, which is {verdict}."
        )

    def verdict_text(self, raw: float) -> str:
        """How a raw score looks as the verdict value in the model's JSON answer."""
        if self.kind == "binary":
            return "pass" if raw >= 1 else "fail"
        if self.kind == "ordinal":
            return str(int(raw))
        return repr(raw)


def _number(value: object) -> float:
    if isinstance(value, bool):
        raise VerdictError(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise VerdictError(f"expected a number, got {value!r}")
    else:
        raise VerdictError(f"expected a number, got {type(value).__name__}")
    if not math.isfinite(number):
        raise VerdictError(f"expected a finite number, got {value!r}")
    return number


BINARY = Scale("binary", 0.0, 1.0, 1.0)
ORDINAL = Scale("ordinal", 1.0, 5.0, 4.0)
CONTINUOUS = Scale("continuous", 0.0, 1.0, 0.5)
_SCALES: dict[str, Scale] = {s.kind: s for s in (BINARY, ORDINAL, CONTINUOUS)}


def get_scale(kind: str) -> Scale:
    try:
        return _SCALES[kind]
    except KeyError:
        raise ValueError(f"unknown scale {kind!r}; expected one of {', '.join(SCALE_KINDS)}")


def infer_scale(value: float) -> ScaleKind:
    """The scale fixed by the first external score of a name (shared/API.md, scores):
    0/1 binary, integers 1-5 ordinal, anything else continuous."""
    if value in (0, 1):
        return "binary"
    if value == int(value) and 1 <= value <= 5:
        return "ordinal"
    return "continuous"
