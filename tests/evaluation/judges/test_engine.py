"""run_judge over every kind of judge version: a result always, a verdict only when there is one."""

from __future__ import annotations

from evaluation.judges.engine import external_result, run_judge
from evaluation.judges.rendering import JudgeInput
from evaluation.judges.versions import JudgeVersionSpec


def test_code_check_version() -> None:
    version = JudgeVersionSpec(
        kind="code", scale="binary", parameters={"check": "regex", "must_not_match": [r"(?i)forgot password"]}
    )
    good = run_judge(version, JudgeInput(output="Open Admin console > Security > Single sign-on."))
    bad = run_judge(version, JudgeInput(output="Click 'Forgot password'."))
    assert (good.passed, bad.passed) == (True, False)
    assert good.latency_ms is not None and good.latency_ms >= 0


def test_invalid_version_is_an_error_result_not_an_exception() -> None:
    broken = JudgeVersionSpec(kind="code", scale="binary", parameters={"check": "regex", "must_match": ["("]})
    result = run_judge(broken, JudgeInput(output="x"))
    assert result.error_code == "config" and result.passed is None
    offline_broken = JudgeVersionSpec(kind="llm", scale="binary", provider="offline", prompt_template="{{ nope }}")
    result = run_judge(offline_broken, JudgeInput(output="x"))
    assert result.error_code == "config" and "unknown variable" in (result.error or "")


def test_external_judges_are_not_run_but_their_scores_are_parsed() -> None:
    version = JudgeVersionSpec(kind="external", scale="ordinal")
    assert run_judge(version, JudgeInput(output="x")).error_code == "config"
    score = external_result(4, "ordinal", comment="from our eval")
    assert (score.raw_score, score.score, score.passed, score.rationale) == (4.0, 0.75, True, "from our eval")
    off = external_result(7, "ordinal")
    assert off.error_code == "malformed" and off.raw_score is None
