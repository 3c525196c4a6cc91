"""Judge versions: content hash, validation, diff; prompt templating; built-in templates; scales."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.judges.hashing import canonical_json, content_hash
from evaluation.judges.rendering import JudgeInput, MissingVariableError, render, template_variables
from evaluation.judges.results import JudgeConfigError
from evaluation.judges.scales import BINARY, CONTINUOUS, ORDINAL, VerdictError, infer_scale
from evaluation.judges.templates import BUILTIN_TEMPLATES, builtin_template
from evaluation.judges.versions import JudgeVersionSpec, version_diff


def llm(**changes: object) -> JudgeVersionSpec:
    fields: dict[str, object] = {
        "kind": "llm",
        "scale": "binary",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "prompt_template": "Is this good?\n<ai_output>\n{{ output }}\n</ai_output>\n",
        "parameters": {"temperature": 0, "max_tokens": 300},
    }
    fields.update(changes)
    return JudgeVersionSpec(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- hash


def test_hash_is_sha256_of_canonical_json() -> None:
    version = llm()
    expected = hashlib.sha256(
        json.dumps(version.content(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert version.content_hash() == expected


def test_hash_is_stable_across_key_order_crlf_and_processes() -> None:
    a = llm(parameters={"temperature": 0, "max_tokens": 300})
    b = llm(parameters={"max_tokens": 300, "temperature": 0.0}, prompt_template=a.prompt_template.replace("\n", "\r\n"))
    assert a.content_hash() == b.content_hash()
    code = (
        "from evaluation.judges.versions import JudgeVersionSpec as J;"
        "print(J(kind='llm', scale='binary', provider='openai', model='gpt-4o-mini',"
        "prompt_template='Is this good?\\n<ai_output>\\n{{ output }}\\n</ai_output>\\n',"
        "parameters={'temperature': 0, 'max_tokens': 300}).content_hash())"
    )
    other_process = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
        cwd=Path(__file__).resolve().parents[3],
    )
    assert other_process.stdout.strip() == a.content_hash()


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"provider": "anthropic"},
        {"scale": "ordinal"},
        {"prompt_template": "Is this good?\n<ai_output>\n{{ output }}\n</ai_output>"},  # one newline less
        {"parameters": {"temperature": 0.2, "max_tokens": 300}},
        {"parameters": {"temperature": 0, "max_tokens": 300, "seed": 1}},
    ],
)
def test_any_edit_changes_the_hash(change: dict[str, object]) -> None:
    assert llm(**change).content_hash() != llm().content_hash()


def test_canonical_json_refuses_what_json_cannot_hold() -> None:
    assert canonical_json({"b": 1.0, "a": [1, 2.5]}) == '{"a":[1,2.5],"b":1}'
    with pytest.raises(ValueError):
        content_hash({"x": float("nan")})
    with pytest.raises(TypeError):
        content_hash({"x": object()})


def test_versions_round_trip_through_content() -> None:
    version = llm()
    assert JudgeVersionSpec.from_content(json.loads(json.dumps(version.content()))) == version


# ---------------------------------------------------------------------- validation


def test_validation_names_every_problem() -> None:
    with pytest.raises(JudgeConfigError) as caught:
        llm(
            provider="gemini",
            model="",
            prompt_template="{{ answer }} and }} stray",
            parameters={"temperature": 5, "tempurature": 1, "max_tokens": "many"},
        ).validate()
    problems = caught.value.problems
    assert "unknown provider 'gemini'; expected one of openai, anthropic, offline" in problems
    assert "the model is required" in problems
    assert any(p.startswith("unknown variable {{ answer }}") for p in problems)
    assert "stray '}}' on line 1 (placeholders look like {{ output }})" in problems
    assert any(p.startswith("unknown parameter 'tempurature'") for p in problems)
    assert "parameter 'max_tokens' has the wrong type (str)" in problems
    assert "temperature must be between 0 and 2" in problems


def test_template_must_show_the_output() -> None:
    with pytest.raises(JudgeConfigError, match="never shows the output"):
        llm(prompt_template="Rate {{ input }}").validate()


def test_code_and_external_versions() -> None:
    JudgeVersionSpec(kind="code", scale="binary", parameters={"check": "pii"}).validate()
    JudgeVersionSpec(kind="external", scale="continuous").validate()
    with pytest.raises(JudgeConfigError, match="unknown check"):
        JudgeVersionSpec(kind="code", scale="binary", parameters={"check": "nope"}).validate()
    with pytest.raises(JudgeConfigError, match="an external judge only has a scale"):
        JudgeVersionSpec(kind="external", scale="binary", model="x").validate()
    with pytest.raises(JudgeConfigError, match="unknown kind"):
        JudgeVersionSpec(kind="human", scale="binary").validate()  # type: ignore[arg-type]


# ---------------------------------------------------------------------- diff


def test_diff_shows_template_lines_and_changed_fields() -> None:
    old = llm()
    new = llm(
        model="gpt-4o",
        prompt_template="Is this good and specific?\n<ai_output>\n{{ output }}\n</ai_output>\n",
        parameters={"temperature": 0, "top_logprobs": 3},
    )
    diff = version_diff(old, new, old_label="v1", new_label="v2")
    assert [(c.field, c.old, c.new) for c in diff.changes] == [
        ("model", "gpt-4o-mini", "gpt-4o"),
        ("parameters.max_tokens", 300, "(unset)"),
        ("parameters.top_logprobs", "(unset)", 3),
    ]
    assert diff.template_diff.splitlines()[:5] == [
        "--- v1/prompt",
        "+++ v2/prompt",
        "@@ -1,4 +1,4 @@",
        "-Is this good?",
        "+Is this good and specific?",
    ]
    assert not diff.unchanged
    assert version_diff(old, llm()).unchanged


# ---------------------------------------------------------------------- rendering


def test_render_fills_every_variable() -> None:
    template = (
        "Q: {{ input }}\nA: {{output}}\nC:\n{{ context }}\nR: {{ reference }}\n"
        "M: {{ metadata }} plan={{ metadata.plan }} missing={{ metadata.nope }}\nF:\n{{ feedback }}"
    )
    judge_input = JudgeInput(
        input="How?",
        output="Like so.",
        context=["Passage one.", "Passage two."],
        reference="Exactly so.",
        metadata={"plan": "pro", "auth": "sso"},
        feedback=[{"kind": "thumb", "value": 0, "comment": "Too vague."}, {"kind": "copy"}],
    )
    assert render(template, judge_input) == (
        "Q: How?\nA: Like so.\nC:\n[1] Passage one.\n\n[2] Passage two.\nR: Exactly so.\n"
        'M: {"auth": "sso", "plan": "pro"} plan=pro missing=(none)\nF:\n'
        "- thumb: value: 0; comment: Too vague.\n- copy"
    )
    assert template_variables(template) == {"input", "output", "context", "reference", "metadata", "feedback"}


def test_render_is_one_pass_so_trace_text_cannot_inject_variables() -> None:
    judge_input = JudgeInput(input="{{ reference }}", output="ok", reference="SECRET REFERENCE")
    assert render("{{ input }} / {{ output }}", judge_input) == "{{ reference }} / ok"


def test_missing_required_variable_is_an_error_but_optional_ones_are_none() -> None:
    with pytest.raises(MissingVariableError, match="no reference"):
        render("{{ output }} vs {{ reference }}", JudgeInput(output="x"))
    assert render("{{ output }} {{ feedback }} {{ metadata }}", JudgeInput(output="x")) == "x (none) (none)"


def test_single_braces_are_fine_double_stray_ones_are_not() -> None:
    assert render('Answer {"verdict": ...} for {{ output }}', JudgeInput(output="x")) == 'Answer {"verdict": ...} for x'
    with pytest.raises(JudgeConfigError, match="stray"):
        template_variables("{{ output }} {{ oops")
    with pytest.raises(JudgeConfigError, match="only metadata has keys"):
        template_variables("{{ output.length }}")


# ---------------------------------------------------------------------- built-in templates


def test_builtin_templates_are_valid_versions() -> None:
    assert set(BUILTIN_TEMPLATES) == {
        "helpfulness",
        "correctness",
        "groundedness",
        "safety",
        "conciseness",
        "accept_unchanged",
    }
    for template in BUILTIN_TEMPLATES.values():
        version = template.spec(provider="anthropic", model="claude-3-5-haiku")
        version.validate()
        variables = template_variables(version.prompt_template)
        assert {"input", "output"} <= variables
        assert len(version.prompt_template.split()) > 80  # a real rubric, not a one-liner
    assert "reference" in template_variables(builtin_template("correctness").prompt_template)
    assert "context" in template_variables(builtin_template("groundedness").prompt_template)
    assert "feedback" in template_variables(builtin_template("accept_unchanged").prompt_template)
    assert builtin_template("groundedness").scale == "continuous"
    with pytest.raises(KeyError):
        builtin_template("vibes")


# ---------------------------------------------------------------------- scales


def test_scale_thresholds_match_the_api_contract() -> None:
    assert (BINARY.passes(1), BINARY.passes(0)) == (True, False)
    assert [ORDINAL.passes(v) for v in (1, 2, 3, 4, 5)] == [False, False, False, True, True]
    assert (CONTINUOUS.passes(0.5), CONTINUOUS.passes(0.49)) == (True, False)
    assert [ORDINAL.normalize(v) for v in (1, 3, 5)] == [0.0, 0.5, 1.0]


@pytest.mark.parametrize(
    ("scale", "value", "raw"),
    [
        (BINARY, "pass", 1.0),
        (BINARY, " FAIL ", 0.0),
        (BINARY, True, 1.0),
        (BINARY, 0, 0.0),
        (ORDINAL, 4, 4.0),
        (ORDINAL, "5", 5.0),
        (ORDINAL, 3.0, 3.0),
        (CONTINUOUS, 0.25, 0.25),
        (CONTINUOUS, "1", 1.0),
    ],
)
def test_verdicts_on_the_scale(scale: object, value: object, raw: float) -> None:
    assert scale.parse_verdict(value) == raw  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("scale", "value"),
    [
        (BINARY, "maybe"),
        (BINARY, "yes"),
        (BINARY, 0.5),
        (ORDINAL, 4.5),
        (ORDINAL, 0),
        (ORDINAL, 6),
        (ORDINAL, True),
        (CONTINUOUS, 1.01),
        (CONTINUOUS, float("nan")),
        (CONTINUOUS, None),
    ],
)
def test_verdicts_off_the_scale_are_refused(scale: object, value: object) -> None:
    with pytest.raises(VerdictError):
        scale.parse_verdict(value)  # type: ignore[attr-defined]


def test_infer_scale_for_external_scores() -> None:
    assert [infer_scale(v) for v in (0, 1, 1.0, 3, 5, 0.7, 6, 2.5)] == [
        "binary",
        "binary",
        "binary",
        "ordinal",
        "ordinal",
        "continuous",
        "continuous",
        "continuous",
    ]
