"""Code checks: cheap, deterministic judges that run on every trace of their scope.

Each check returns a ``JudgeResult`` whose rationale names what failed, or raises
``JudgeError`` when it cannot give a verdict (a regex that runs away, no context to ground
against). A code judge version stores ``{"check": <name>, ...its parameters}``;
``check_problems`` validates those on save and ``run_check`` runs them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
import referencing
import referencing.exceptions
import regex
from jsonschema.exceptions import ValidationError
from rapidfuzz import fuzz

from evaluation.judges.rendering import JudgeInput
from evaluation.judges.results import JudgeError, JudgeResult
from evaluation.judges.scales import BINARY, CONTINUOUS, Scale, ScaleKind, get_scale
from evaluation.judges.text import clip, content_terms, is_number, sentences, words

# ---------------------------------------------------------------------- JSON


def check_json(text: str, *, scale: Scale = BINARY) -> JudgeResult:
    """Passes when the whole text is one JSON document."""
    try:
        json.loads(text)
    except ValueError as exc:
        return scale.result(scale.low, f"not valid JSON: {exc}")
    return scale.result(scale.high, "valid JSON")


def _schema_refs(node: object) -> Iterable[str]:
    """Every ``$ref`` / ``$dynamicRef`` value anywhere in a schema."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef", "$recursiveRef") and isinstance(value, str):
                yield value
            else:
                yield from _schema_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _schema_refs(item)


def _never_retrieve(uri: str) -> referencing.Resource[Any]:
    # A stored schema is tenant input: resolving a remote $ref would make the worker fetch any
    # URL (SSRF) and echo what it got into the rationale. Only the schema's own "#..." refs resolve.
    raise LookupError(f"not retrieving {uri}: remote $ref are never fetched")


_NO_REMOTE_REFS: referencing.Registry[Any] = referencing.Registry(retrieve=_never_retrieve)  # type: ignore[call-arg]


def _schema_patterns(node: object) -> tuple[list[str], list[str]]:
    """The ``pattern`` values and the ``patternProperties`` keys anywhere in a schema."""
    values: list[str] = []
    keys: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern" and isinstance(value, str):
                    values.append(value)
                elif key == "patternProperties" and isinstance(value, dict):
                    keys.extend(k for k in value if isinstance(k, str))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(node)
    return values, keys


def schema_problems(schema: object) -> list[str]:
    if not isinstance(schema, dict):
        return ["the JSON Schema must be an object"]
    remote = sorted({ref for ref in _schema_refs(schema) if not ref.startswith("#")})
    if remote:
        shown = ", ".join(repr(clip(ref, 80)) for ref in remote[:3])
        return [f"only local $ref (starting with '#') are allowed; remote references are never fetched: {shown}"]
    try:
        validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        return [f"invalid JSON Schema at {where}: {exc.message}"]
    values, keys = _schema_patterns(schema)
    return _unsafe_keywords(schema) + regex_problems(dict.fromkeys([*values, *keys]))


# JSON Schema's pattern keywords run on Python's re in jsonschema, with no time bound: a
# tenant's schema could pin a worker on one trace. Ours run on ``regex`` with REGEX_TIMEOUT_S.


def _schema_search(pattern: str, text: str) -> bool:
    try:
        return regex.search(pattern, text, timeout=REGEX_TIMEOUT_S) is not None
    except TimeoutError:
        raise JudgeError(
            f"the schema pattern {clip(pattern, 60)!r} took longer than {REGEX_TIMEOUT_S * 1000:.0f} ms "
            f"on {clip(text, 40)!r}",
            code="config",
        ) from None
    except regex.error as exc:
        raise JudgeError(f"the schema pattern {clip(pattern, 60)!r} does not compile: {exc}", code="config") from None


def _kw_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _schema_search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _kw_pattern_properties(
    validator: Any, pattern_properties: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        for key, value in instance.items():
            if _schema_search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _kw_additional_properties(validator: Any, additional: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [k for k in instance if k not in properties and not any(_schema_search(p, k) for p in patterns)]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        joined = ", ".join(repr(e) for e in sorted(extras))
        if patterns:
            verb = "does" if len(extras) == 1 else "do"
            yield ValidationError(
                f"{joined} {verb} not match any of the regexes: {', '.join(map(repr, sorted(patterns)))}"
            )
        else:
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(f"Additional properties are not allowed ({joined} {verb} unexpected)")


_SAFE_VALIDATORS: dict[type, type] = {}


def _safe_validator(cls: type) -> Any:
    if cls not in _SAFE_VALIDATORS:
        _SAFE_VALIDATORS[cls] = jsonschema.validators.extend(
            cls,
            validators={
                "pattern": _kw_pattern,
                "patternProperties": _kw_pattern_properties,
                "additionalProperties": _kw_additional_properties,
            },
        )
    return _SAFE_VALIDATORS[cls]


def _has_keyword(node: object, keyword: str) -> bool:
    if isinstance(node, dict):
        return keyword in node or any(_has_keyword(v, keyword) for v in node.values())
    if isinstance(node, list):
        return any(_has_keyword(v, keyword) for v in node)
    return False


# jsonschema matches patternProperties again, on re and with no time bound, to find the keys an
# ``unevaluatedProperties`` has not seen: that pair is refused (on save, and at run time for a
# schema stored before the rule).
_UNEVALUATED_WITH_PATTERNS = (
    "unevaluatedProperties cannot be combined with patternProperties here; use additionalProperties"
)


def _unsafe_keywords(schema: object) -> list[str]:
    if _has_keyword(schema, "unevaluatedProperties") and _schema_patterns(schema)[1]:
        return [_UNEVALUATED_WITH_PATTERNS]
    return []


def check_json_schema(text: str, schema: Mapping[str, Any], *, scale: Scale = BINARY) -> JudgeResult:
    """Passes when the text is JSON that satisfies ``schema`` (its own $schema draft, else 2020-12).

    A ``$ref`` is resolved only inside the schema itself: nothing is ever retrieved."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        return scale.result(scale.low, f"not valid JSON: {exc}")
    unsafe = _unsafe_keywords(schema)
    if unsafe:
        raise JudgeError(unsafe[0], code="config")
    cls = _safe_validator(jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator))
    try:
        errors = sorted(
            cls(schema, registry=_NO_REMOTE_REFS).iter_errors(document), key=lambda e: list(e.absolute_path)
        )
    except referencing.exceptions.Unresolvable as exc:
        ref = getattr(exc, "ref", "")
        raise JudgeError(
            f"the schema's $ref {clip(str(ref), 80)!r} does not resolve inside the schema "
            "(remote references are never fetched)",
            code="config",
        ) from None
    if not errors:
        return scale.result(scale.high, "valid JSON matching the schema")
    shown = [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {clip(e.message, 120)}" for e in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return scale.result(scale.low, f"{len(errors)} schema violation(s): " + "; ".join(shown) + more)


# ---------------------------------------------------------------------- regex

REGEX_TIMEOUT_S = 0.1
REGEX_MAX_TEXT = 200_000


def _backtrack_probes(pattern: str) -> list[str]:
    """Inputs on which a pattern with nested quantifiers backtracks exponentially: a long run of
    one character the pattern mentions (or of a common class), then characters that fail the
    match. A pattern that cannot finish on these within the timeout is refused on save."""
    chars = [c for c in dict.fromkeys(pattern) if c.isalnum()][:16] + ["a", "0", " ", "."]
    # Short runs catch exponential blow-ups, long ones polynomial (cubic) ones.
    return [c * n + tail for c in dict.fromkeys(chars) for n in (48, 2000) for tail in ("!", "\n\x00")]


def _compile(pattern: str, ignore_case: bool) -> regex.Pattern[str]:
    return regex.compile(pattern, regex.IGNORECASE if ignore_case else 0)


def regex_problems(patterns: Iterable[object], *, ignore_case: bool = False) -> list[str]:
    problems = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            problems.append(f"a pattern must be a non-empty string, got {pattern!r}")
            continue
        try:
            compiled = _compile(pattern, ignore_case)
        except regex.error as exc:
            problems.append(f"pattern {pattern!r} does not compile: {exc}")
            continue
        try:
            for probe in _backtrack_probes(pattern):
                compiled.search(probe, timeout=REGEX_TIMEOUT_S)
        except TimeoutError:
            problems.append(f"pattern {pattern!r} backtracks catastrophically (nested quantifiers?)")
    return problems


def check_regex(
    text: str,
    *,
    must_match: Sequence[str] = (),
    must_not_match: Sequence[str] = (),
    ignore_case: bool = False,
    timeout_s: float = REGEX_TIMEOUT_S,
    scale: Scale = BINARY,
) -> JudgeResult:
    """Passes when every ``must_match`` pattern is found and no ``must_not_match`` pattern is.

    Matching time is bounded per pattern; a pattern that runs out of time is an error, not a verdict.
    """
    text = text[:REGEX_MAX_TEXT]
    failures = []
    try:
        for pattern in must_match:
            if _compile(pattern, ignore_case).search(text, timeout=timeout_s) is None:
                failures.append(f"required pattern {pattern!r} not found")
        for pattern in must_not_match:
            found = _compile(pattern, ignore_case).search(text, timeout=timeout_s)
            if found is not None:
                failures.append(f"forbidden pattern {pattern!r} found: {clip(found.group(), 40)!r}")
    except TimeoutError:
        raise JudgeError(f"a pattern took longer than {timeout_s * 1000:.0f} ms on this text", code="config")
    if failures:
        return scale.result(scale.low, "; ".join(failures))
    return scale.result(scale.high, f"all {len(must_match) + len(must_not_match)} pattern rule(s) hold")


# ---------------------------------------------------------------------- length


def check_length(
    text: str,
    *,
    min_chars: int | None = None,
    max_chars: int | None = None,
    min_words: int | None = None,
    max_words: int | None = None,
    scale: Scale = BINARY,
) -> JudgeResult:
    """Passes when the text's length in characters and words is within the bounds given."""
    n_chars, n_words = len(text.strip()), len(words(text))
    failures = []
    if min_chars is not None and n_chars < min_chars:
        failures.append(f"{n_chars} characters, fewer than the minimum {min_chars}")
    if max_chars is not None and n_chars > max_chars:
        failures.append(f"{n_chars} characters, more than the maximum {max_chars}")
    if min_words is not None and n_words < min_words:
        failures.append(f"{n_words} words, fewer than the minimum {min_words}")
    if max_words is not None and n_words > max_words:
        failures.append(f"{n_words} words, more than the maximum {max_words}")
    if failures:
        return scale.result(scale.low, "; ".join(failures))
    return scale.result(scale.high, f"{n_chars} characters, {n_words} words: within bounds")


# ---------------------------------------------------------------------- PII

PII_KINDS: tuple[str, ...] = ("email", "phone", "card", "iban")

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{8,15}|(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,5}(?:[\s.-]\d{2,8}){1,4})(?![\w-])"
)
_DATE_OR_TIME = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")


@dataclass(frozen=True, slots=True)
class PiiMatch:
    kind: str
    start: int
    end: int
    masked: str  # safe to show: never the whole value


def luhn_valid(number: str) -> bool:
    """The Luhn checksum used by payment card numbers (spaces and dashes ignored)."""
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 2 or any(not (c.isdigit() or c in " -") for c in number):
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    compact = iban.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def find_pii(text: str, kinds: Iterable[str] = PII_KINDS) -> list[PiiMatch]:
    """Emails, phone numbers, Luhn-valid card numbers and checksum-valid IBANs, in text order."""
    wanted = set(kinds)
    found: list[PiiMatch] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in taken)

    def add(kind: str, match: re.Match[str], masked: str) -> None:
        found.append(PiiMatch(kind, match.start(), match.end(), masked))
        taken.append(match.span())

    # Most specific first, so a card number is not also reported as a phone number.
    for match in _IBAN.finditer(text):
        if iban_valid(match.group()):
            value = match.group().replace(" ", "")
            if "iban" in wanted:
                add("iban", match, f"IBAN {value[:2]}…{value[-4:]}")
            else:
                taken.append(match.span())
    for match in _CARD.finditer(text):
        if free(*match.span()) and luhn_valid(match.group()):
            digits = re.sub(r"\D", "", match.group())
            if "card" in wanted:
                add("card", match, f"card number ending {digits[-4:]}")
            else:
                taken.append(match.span())
    if "email" in wanted:
        for match in _EMAIL.finditer(text):
            local, _, domain = match.group().partition("@")
            add("email", match, f"email {local[0]}***@{domain}")
    if "phone" in wanted:
        for match in _PHONE.finditer(text):
            value = match.group()
            digits = re.sub(r"\D", "", value)
            if not 9 <= len(digits) <= 15 or not free(*match.span()) or _DATE_OR_TIME.match(value):
                continue
            if not value.startswith("+") and not re.search(r"[\s.()-]", value):
                continue  # a bare run of digits is an ID or an amount more often than a phone
            add("phone", match, f"phone number ending {digits[-2:]}")
    return sorted(found, key=lambda m: m.start)


def check_pii(text: str, *, kinds: Sequence[str] = PII_KINDS, scale: Scale = BINARY) -> JudgeResult:
    """Passes when the text contains none of the PII kinds asked for; the rationale masks values."""
    matches = find_pii(text, kinds)
    if not matches:
        return scale.result(scale.high, f"no PII found ({', '.join(kinds)})")
    shown = ", ".join(m.masked for m in matches[:5])
    more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
    return scale.result(scale.low, f"{len(matches)} PII item(s) found: {shown}{more}")


# ---------------------------------------------------------------------- groundedness


@dataclass(frozen=True, slots=True)
class SentenceSupport:
    sentence: str
    support: float  # share of the sentence's content terms found in the context
    supported: bool
    reason: str


_FUZZ_MAX_CONTEXT = 50_000


def sentence_support(answer: str, context: str, *, threshold: float = 0.6) -> list[SentenceSupport]:
    """Per answer sentence with at least three content terms: is it supported by the context?

    Supported when at least ``threshold`` of its content terms occur in the context (or it is a
    near-verbatim quote of it, by rapidfuzz), and every number it states occurs there too: an
    invented figure is the classic hallucination. Shorter sentences (greetings, "Thanks!")
    make no claim and are skipped.
    """
    context_terms = set(content_terms(context))
    lowered_context = context.lower()[:_FUZZ_MAX_CONTEXT]
    result = []
    for sentence in sentences(answer):
        terms = content_terms(sentence)
        if len(terms) < 3:
            continue
        share = sum(t in context_terms for t in terms) / len(terms)
        missing_numbers = [t for t in terms if is_number(t) and t not in context_terms]
        quoted = fuzz.partial_ratio(sentence.lower(), lowered_context) >= 90 if len(sentence) >= 20 else False
        if missing_numbers:
            reason = f"numbers not in context: {', '.join(missing_numbers)}"
            result.append(SentenceSupport(sentence, share, False, reason))
        elif share >= threshold or quoted:
            result.append(SentenceSupport(sentence, share, True, f"{share:.0%} of its terms in context"))
        else:
            result.append(SentenceSupport(sentence, share, False, f"only {share:.0%} of its terms in context"))
    return result


def check_groundedness(
    text: str,
    context: str,
    *,
    threshold: float = 0.6,
    min_share: float = 0.8,
    scale: Scale = CONTINUOUS,
) -> JudgeResult:
    """Share of the answer's sentences supported by the context (continuous), or whether that
    share reaches ``min_share`` (binary). A proxy for the LLM groundedness rubric, cheap enough
    to run on every trace."""
    if not context.strip():
        raise JudgeError("this trace has no context to check the answer against", code="missing_input")
    support = sentence_support(text, context, threshold=threshold)
    if not support:
        return scale.result(scale.high, "no factual sentences to check")
    share = sum(s.supported for s in support) / len(support)
    unsupported = [s for s in support if not s.supported]
    summary = f"{len(support) - len(unsupported)} of {len(support)} sentences supported by the context"
    if unsupported:
        summary += "; unsupported: " + "; ".join(f"{clip(s.sentence, 60)!r} ({s.reason})" for s in unsupported[:3])
    if scale.kind == "binary":
        return scale.result(1.0 if share >= min_share else 0.0, summary)
    return scale.result(round(share, 4), summary)


# ---------------------------------------------------------------------- registry

_TARGETS = ("output", "input")


@dataclass(frozen=True, slots=True)
class _Check:
    scales: tuple[ScaleKind, ...]
    parameters: Mapping[str, type | tuple[type, ...]]
    problems: Callable[[Mapping[str, Any]], list[str]]


def _no_problems(params: Mapping[str, Any]) -> list[str]:
    return []


def _length_problems(params: Mapping[str, Any]) -> list[str]:
    bounds = {k: params.get(k) for k in ("min_chars", "max_chars", "min_words", "max_words")}
    problems = [f"{k} must be a non-negative integer" for k, v in bounds.items() if v is not None and v < 0]
    if all(v is None for v in bounds.values()):
        problems.append("give at least one of min_chars, max_chars, min_words, max_words")
    for unit in ("chars", "words"):
        low, high = bounds[f"min_{unit}"], bounds[f"max_{unit}"]
        if low is not None and high is not None and low > high:
            problems.append(f"min_{unit} is above max_{unit}")
    return problems


def _regex_problems(params: Mapping[str, Any]) -> list[str]:
    must, must_not = params.get("must_match", []), params.get("must_not_match", [])
    if not must and not must_not:
        return ["give at least one pattern in must_match or must_not_match"]
    return regex_problems([*must, *must_not], ignore_case=bool(params.get("ignore_case", False)))


def _pii_problems(params: Mapping[str, Any]) -> list[str]:
    kinds = params.get("kinds", list(PII_KINDS))
    unknown = [k for k in kinds if k not in PII_KINDS]
    problems = [f"unknown PII kind {k!r}; known: {', '.join(PII_KINDS)}" for k in unknown]
    return problems + ([] if kinds else ["give at least one PII kind"])


def _groundedness_problems(params: Mapping[str, Any]) -> list[str]:
    return [f"{k} must be between 0 and 1" for k in ("threshold", "min_share") if not 0 <= params.get(k, 0.5) <= 1]


_NUMBER = (int, float)
_CHECKS: dict[str, _Check] = {
    "json": _Check(("binary",), {}, _no_problems),
    "json_schema": _Check(("binary",), {"schema": dict}, lambda p: schema_problems(p.get("schema"))),
    "regex": _Check(("binary",), {"must_match": list, "must_not_match": list, "ignore_case": bool}, _regex_problems),
    "length": _Check(
        ("binary",), {"min_chars": int, "max_chars": int, "min_words": int, "max_words": int}, _length_problems
    ),
    "pii": _Check(("binary",), {"kinds": list}, _pii_problems),
    "groundedness": _Check(
        ("continuous", "binary"), {"threshold": _NUMBER, "min_share": _NUMBER}, _groundedness_problems
    ),
}
CHECK_NAMES: tuple[str, ...] = tuple(_CHECKS)


def check_problems(parameters: Mapping[str, Any], scale: str) -> list[str]:
    """Everything wrong with a code judge's parameters ({"check": name, ...}), for its page."""
    name = parameters.get("check")
    check = _CHECKS.get(name) if isinstance(name, str) else None
    if check is None:
        return [f"unknown check {name!r}; known: {', '.join(CHECK_NAMES)}"]
    problems = []
    if scale not in check.scales:
        problems.append(f"the {name} check gives a {' or '.join(check.scales)} verdict, not {scale}")
    for key, value in parameters.items():
        if key in ("check", "target"):
            continue
        expected = check.parameters.get(key)
        if expected is None:
            known = ", ".join(["target", *check.parameters]) or "target"
            problems.append(f"unknown parameter {key!r} for the {name} check; known: {known}")
        elif (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
            problems.append(f"parameter {key!r} has the wrong type ({type(value).__name__})")
    if parameters.get("target", "output") not in _TARGETS:
        problems.append(f"target must be one of {', '.join(_TARGETS)}")
    if problems:
        return problems  # type errors first: the check's own validation assumes the types
    return check.problems(parameters)


def run_check(parameters: Mapping[str, Any], judge_input: JudgeInput, scale: Scale | str) -> JudgeResult:
    """Run a code judge version on one trace. Never raises: a failure is an error result."""
    scale = get_scale(scale) if isinstance(scale, str) else scale
    try:
        problems = check_problems(parameters, scale.kind)
        if problems:
            raise JudgeError("; ".join(problems), code="config")
        target = parameters.get("target", "output")
        text = getattr(judge_input, target)
        if text is None:
            raise JudgeError(f"this trace has no {target} to check", code="missing_input")
        params = {k: v for k, v in parameters.items() if k not in ("check", "target")}
        name = parameters["check"]
        if name == "json":
            return check_json(text, scale=scale)
        if name == "json_schema":
            return check_json_schema(text, params["schema"], scale=scale)
        if name == "regex":
            return check_regex(text, **params, scale=scale)
        if name == "length":
            return check_length(text, **params, scale=scale)
        if name == "pii":
            return check_pii(text, **params, scale=scale)
        return check_groundedness(text, judge_input.context_text(), **params, scale=scale)
    except JudgeError as exc:
        return JudgeResult.failure(exc)
