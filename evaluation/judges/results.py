"""What every judge returns (LLM, offline, code check, external) and how it fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ErrorCode = Literal[
    "config",  # the judge version itself is invalid (unknown variable, bad schema, bad regex)
    "missing_input",  # this trace lacks what the judge needs (no output, no reference, no context)
    "malformed",  # the provider answered, but not in the structured shape asked for
    "refusal",  # the model refused to judge
    "truncated",  # the answer was cut off by max tokens
    "http",  # the provider answered with an HTTP error status
    "timeout",  # no answer within the timeout
    "transport",  # connection refused, reset, DNS
    "bad_response",  # the body was not the provider's JSON at all (an HTML proxy page, nothing)
    "circuit_open",  # the provider failed too often lately; not called
    "refused",  # the provider's host resolved to an internal address at the call (evaluation.judges.network)
]


class JudgeError(Exception):
    """A judge could not produce a verdict. Never replaced by a default verdict.

    ``raw`` keeps what the provider sent (the malformed text, the HTML page), clipped, so the
    portal can show why; ``retryable`` tells the task layer whether a later attempt may succeed.
    """

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode,
        raw: str = "",
        status_code: int | None = None,
        retryable: bool = False,
        attempts: int = 1,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code: ErrorCode = code
        self.raw = raw[:RAW_LIMIT]
        self.status_code = status_code
        self.retryable = retryable
        self.attempts = attempts
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class JudgeConfigError(ValueError):
    """A judge version (or its check parameters) is invalid: shown on the judge's page on save."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


# Raw provider bodies are kept for diagnosis, not archived: clip so one bad proxy page
# cannot bloat a score row.
RAW_LIMIT = 20_000


@dataclass(frozen=True, slots=True)
class JudgeResult:
    """One verdict on one trace (or the reason there is none).

    ``raw_score`` is on the judge's own scale (binary 0/1, ordinal 1-5, continuous 0-1);
    ``score`` is that value mapped to [0, 1] (the ``f`` of CALIBRATION.md's PPI++);
    ``passed`` applies the scale's pass threshold (binary 1, ordinal >= 4, continuous >= 0.5).
    On error all three are None: a failed call is never a verdict.
    """

    raw_score: float | None
    score: float | None
    passed: bool | None
    rationale: str = ""
    verdict_probability: float | None = None
    # (verdict value, probability) for the alternatives the provider reported at the verdict
    # token (top_logprobs), highest first; empty when the provider gives no logprobs.
    verdict_distribution: tuple[tuple[float, float], ...] = ()
    raw_response: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    model: str = ""
    attempts: int = 1
    error: str | None = None
    error_code: ErrorCode | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(cls, error: JudgeError, *, latency_ms: float | None = None, model: str = "") -> JudgeResult:
        return cls(
            raw_score=None,
            score=None,
            passed=None,
            raw_response=error.raw,
            latency_ms=latency_ms,
            model=model,
            attempts=error.attempts,
            error=error.message,
            error_code=error.code,
        )
