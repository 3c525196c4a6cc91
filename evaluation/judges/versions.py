"""A judge version's content, its validation, content hash and the diff between two versions.

A version is immutable (CALIBRATION.md: any change starts a new calibration): the Django layer
stores ``content()`` and ``content_hash()`` and creates a new version whenever the hash changes.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

from evaluation.judges.hashing import canonical_json, content_hash
from evaluation.judges.rendering import parse_template
from evaluation.judges.results import JudgeConfigError
from evaluation.judges.scales import SCALE_KINDS, Scale, ScaleKind, get_scale

JudgeKind = Literal["llm", "code", "external"]
JUDGE_KINDS: tuple[str, ...] = get_args(JudgeKind)
LLM_PROVIDERS: tuple[str, ...] = ("openai", "anthropic", "offline")
# Parameters an LLM judge version may set; anything else is a typo that would silently do
# nothing, so it is refused.
LLM_PARAMETERS: dict[str, type | tuple[type, ...]] = {
    "temperature": (int, float),
    "top_p": (int, float),
    "max_tokens": int,
    "seed": int,
    "logprobs": bool,
    "top_logprobs": int,
    "response_format": str,  # "json_schema" (default) or "json_object" for servers without schemas
    "template": str,  # the built-in template this version started from (provenance only)
}
HASH_VERSION = 1  # bump if content() changes shape, so old and new hashes never collide


@dataclass(frozen=True, slots=True)
class JudgeVersionSpec:
    """What a judge version is: everything that changes a verdict, and nothing else.

    Provider credentials and base URLs are the organization's, not the version's: they are
    passed at run time and are not hashed.
    """

    kind: JudgeKind
    scale: ScaleKind
    provider: str = ""
    model: str = ""
    prompt_template: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Browsers submit textareas with CRLF: re-saving an unchanged prompt is not a new version.
        object.__setattr__(self, "prompt_template", self.prompt_template.replace("\r\n", "\n"))
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))

    @property
    def scale_spec(self) -> Scale:
        return get_scale(self.scale)

    def content(self) -> dict[str, Any]:
        return {
            "hash_version": HASH_VERSION,
            "kind": self.kind,
            "scale": self.scale,
            "provider": self.provider,
            "model": self.model,
            "prompt_template": self.prompt_template,
            "parameters": dict(self.parameters),
        }

    def content_hash(self) -> str:
        """sha256 over the canonical JSON of ``content()``: stable across processes and key order."""
        return content_hash(self.content())

    @classmethod
    def from_content(cls, content: Mapping[str, Any]) -> JudgeVersionSpec:
        return cls(
            kind=content["kind"],
            scale=content["scale"],
            provider=content.get("provider", ""),
            model=content.get("model", ""),
            prompt_template=content.get("prompt_template", ""),
            parameters=content.get("parameters", {}),
        )

    def validate(self) -> None:
        """Raise JudgeConfigError naming every problem (shown on the judge's page on save)."""
        problems: list[str] = []
        if self.kind not in JUDGE_KINDS:
            problems.append(f"unknown kind {self.kind!r}; expected one of {', '.join(JUDGE_KINDS)}")
        if self.scale not in SCALE_KINDS:
            problems.append(f"unknown scale {self.scale!r}; expected one of {', '.join(SCALE_KINDS)}")
        try:
            canonical_json(self.content())
        except (TypeError, ValueError) as exc:
            problems.append(f"parameters must be plain JSON: {exc}")
        if self.kind == "llm":
            problems += self._llm_problems()
        elif self.kind == "code":
            from evaluation.judges.checks import check_problems

            if self.provider or self.model or self.prompt_template:
                problems.append("a code check has no provider, model or prompt")
            problems += check_problems(self.parameters, self.scale)
        elif self.kind == "external":
            if self.provider or self.model or self.prompt_template or self.parameters:
                problems.append("an external judge only has a scale: its scores are posted by the team")
        if problems:
            raise JudgeConfigError(problems)

    def _llm_problems(self) -> list[str]:
        problems: list[str] = []
        if self.provider not in LLM_PROVIDERS:
            problems.append(f"unknown provider {self.provider!r}; expected one of {', '.join(LLM_PROVIDERS)}")
        if self.provider != "offline" and not self.model.strip():
            problems.append("the model is required")
        try:
            placeholders = parse_template(self.prompt_template)
        except JudgeConfigError as exc:
            problems += exc.problems
        else:
            if not any(p.name == "output" for p in placeholders):
                problems.append("the template never shows the output: use {{ output }}")
        for key, value in self.parameters.items():
            expected = LLM_PARAMETERS.get(key)
            if expected is None:
                problems.append(f"unknown parameter {key!r}; known: {', '.join(LLM_PARAMETERS)}")
            elif (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
                problems.append(f"parameter {key!r} has the wrong type ({type(value).__name__})")
        temperature = self.parameters.get("temperature", 0)
        if isinstance(temperature, int | float) and not 0 <= temperature <= 2:
            problems.append("temperature must be between 0 and 2")
        max_tokens = self.parameters.get("max_tokens", 1)
        if isinstance(max_tokens, int) and not 1 <= max_tokens <= 32_000:
            problems.append("max_tokens must be between 1 and 32000")
        top_logprobs = self.parameters.get("top_logprobs", 0)
        if isinstance(top_logprobs, int) and not 0 <= top_logprobs <= 20:
            problems.append("top_logprobs must be between 0 and 20")
        if self.parameters.get("response_format", "json_schema") not in ("json_schema", "json_object"):
            problems.append("response_format must be 'json_schema' or 'json_object'")
        return problems


# ---------------------------------------------------------------------- diff


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str  # "model", "scale", "parameters.temperature", ...
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class VersionDiff:
    changes: tuple[FieldChange, ...]
    template_diff: str  # unified diff of the prompt template, "" when unchanged

    @property
    def unchanged(self) -> bool:
        return not self.changes and not self.template_diff


_MISSING = "(unset)"


def version_diff(
    old: JudgeVersionSpec, new: JudgeVersionSpec, *, old_label: str = "old", new_label: str = "new"
) -> VersionDiff:
    """What changed from ``old`` to ``new``, for the portal's version history."""
    changes: list[FieldChange] = []
    for name in ("kind", "scale", "provider", "model"):
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            changes.append(FieldChange(name, before, after))
    for key in sorted(set(old.parameters) | set(new.parameters)):
        before, after = old.parameters.get(key, _MISSING), new.parameters.get(key, _MISSING)
        if canonical_json(before) != canonical_json(after):
            changes.append(FieldChange(f"parameters.{key}", before, after))
    template_diff = "".join(
        difflib.unified_diff(
            _lines(old.prompt_template),
            _lines(new.prompt_template),
            fromfile=f"{old_label}/prompt",
            tofile=f"{new_label}/prompt",
        )
    )
    return VersionDiff(tuple(changes), template_diff)


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"  # so the last line diffs cleanly instead of gluing to the next hunk line
    return lines
