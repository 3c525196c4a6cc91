"""The texts a judge sees (``JudgeInput``) and the prompt templating over them.

Templates use ``{{ name }}`` placeholders (double braces, so a rubric may show JSON with
single braces): ``input``, ``output``, ``context``, ``reference``, ``metadata``,
``metadata.<key>`` and ``feedback`` (the user's own feedback on the output). Substitution
is one pass over the template only, so a trace whose text contains ``{{ reference }}``
cannot pull other values into the prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evaluation.judges.results import JudgeConfigError

VARIABLES: tuple[str, ...] = ("input", "output", "context", "reference", "metadata", "feedback")
# A judge cannot say anything useful about a missing output, or check correctness without
# the reference it names: those are errors. Metadata and feedback are often absent: "(none)".
REQUIRED_WHEN_USED: frozenset[str] = frozenset({"input", "output", "context", "reference"})
_NONE = "(none)"

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]\w*)(?:\.([A-Za-z0-9_\-]+))?\s*\}\}")
_BRACES = re.compile(r"\{\{|\}\}")


@dataclass(frozen=True, slots=True)
class JudgeInput:
    """One trace's texts, as the Django layer extracts them from the trace and its feedback."""

    input: str | None = None
    output: str | None = None
    # Retrieved passages or any grounding text; a sequence is rendered as numbered passages.
    context: str | Sequence[str] | None = None
    reference: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # The user's feedback events, e.g. {"kind": "thumb", "value": 0, "comment": "...",
    # "edited_text": "..."}, or plain strings.
    feedback: Sequence[Mapping[str, Any] | str] = ()

    def context_text(self) -> str:
        if self.context is None:
            return ""
        if isinstance(self.context, str):
            return self.context
        return "\n\n".join(self.context)


class MissingVariableError(ValueError):
    """A template uses a variable that this trace does not have (e.g. no reference answer)."""


@dataclass(frozen=True, slots=True)
class Placeholder:
    name: str
    key: str | None  # metadata.<key>

    @property
    def label(self) -> str:
        return f"{self.name}.{self.key}" if self.key else self.name


def parse_template(template: str) -> tuple[Placeholder, ...]:
    """The placeholders of a template, in order; JudgeConfigError naming every problem."""
    problems: list[str] = []
    placeholders: list[Placeholder] = []
    covered: list[tuple[int, int]] = []
    for match in _PLACEHOLDER.finditer(template):
        name, key = match.group(1), match.group(2)
        covered.append(match.span())
        if name not in VARIABLES:
            problems.append(f"unknown variable {{{{ {name} }}}}; known: {', '.join(VARIABLES)}")
        elif key is not None and name != "metadata":
            problems.append(f"{{{{ {name}.{key} }}}}: only metadata has keys")
        else:
            placeholders.append(Placeholder(name, key))
    for brace in _BRACES.finditer(template):
        if not any(start <= brace.start() < end for start, end in covered):
            line = template.count("\n", 0, brace.start()) + 1
            problems.append(f"stray {brace.group()!r} on line {line} (placeholders look like {{{{ output }}}})")
    if not template.strip():
        problems.append("the template is empty")
    if problems:
        raise JudgeConfigError(problems)
    return tuple(placeholders)


def template_variables(template: str) -> frozenset[str]:
    """Names used by a template (``metadata.plan`` counts as ``metadata``)."""
    return frozenset(p.name for p in parse_template(template))


def render(template: str, judge_input: JudgeInput) -> str:
    """The prompt for one trace. MissingVariableError when a required value is absent."""
    parse_template(template)  # config problems first, with every problem named

    def substitute(match: re.Match[str]) -> str:
        return _value(Placeholder(match.group(1), match.group(2)), judge_input)

    return _PLACEHOLDER.sub(substitute, template)


def _value(placeholder: Placeholder, judge_input: JudgeInput) -> str:
    name = placeholder.name
    if name == "metadata":
        if placeholder.key is not None:
            value = judge_input.metadata.get(placeholder.key)
            return _NONE if value is None else _plain(value)
        if not judge_input.metadata:
            return _NONE
        return json.dumps(dict(judge_input.metadata), ensure_ascii=False, sort_keys=True, default=str)
    if name == "feedback":
        return render_feedback(judge_input.feedback)
    if name == "context":
        if judge_input.context is None or isinstance(judge_input.context, str):
            text = judge_input.context or ""
        else:
            text = "\n\n".join(f"[{i}] {passage}" for i, passage in enumerate(judge_input.context, 1))
    else:
        text = getattr(judge_input, name) or ""
    if not text.strip():
        raise MissingVariableError(f"the template uses {{{{ {name} }}}} but this trace has no {name}")
    return text


def render_feedback(feedback: Sequence[Mapping[str, Any] | str]) -> str:
    """The user's feedback as short lines, e.g. ``- thumb: 0; comment: "Too vague."``."""
    if not feedback:
        return _NONE
    lines = []
    for event in feedback:
        if isinstance(event, str):
            lines.append(f"- {event}")
            continue
        kind = event.get("kind", "feedback")
        parts = [f"{key}: {_plain(value)}" for key, value in event.items() if key != "kind" and value is not None]
        lines.append(f"- {kind}" + (f": {'; '.join(parts)}" if parts else ""))
    return "\n".join(lines)


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if "\n" in value or len(value) > 80 else value
    return json.dumps(value, ensure_ascii=False, default=str)
