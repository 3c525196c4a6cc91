"""The offline judge: deterministic, and it ranks bad answers below good ones, the demo's included."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from evaluation.judges.engine import run_judge
from evaluation.judges.offline import key_terms, mentions, offline_judge
from evaluation.judges.rendering import JudgeInput
from evaluation.judges.scales import BINARY, CONTINUOUS, ORDINAL
from evaluation.judges.templates import builtin_template
from feedback.demo_data import DemoConfig, demo_stream

QUESTION = "We sign in to Initech through Okta SSO and new hires can't log in. How do we fix this?"
GOOD = (
    "Because your workspace signs in with Okta, passwords and access are managed by your identity provider, "
    "not in the app. In Okta, open the app assignment for the workspace and check that the affected people are "
    "assigned and their group is synced. Then go to Admin console > Security > Single sign-on and click "
    "'Test connection' to confirm the SAML settings."
)
SSO_IGNORED = "You can reset your password from the login page by clicking 'Forgot password'."


def test_same_input_same_verdict() -> None:
    judge_input = JudgeInput(input=QUESTION, output=SSO_IGNORED, metadata={"auth": "sso"})
    results = {offline_judge(judge_input, ORDINAL, template="helpfulness") for _ in range(3)}
    assert len(results) == 1


@pytest.mark.parametrize("scale", [BINARY, ORDINAL, CONTINUOUS])
def test_the_answer_that_ignores_sso_scores_below_the_good_one(scale: object) -> None:
    good = offline_judge(JudgeInput(input=QUESTION, output=GOOD), scale)  # type: ignore[arg-type]
    bad = offline_judge(JudgeInput(input=QUESTION, output=SSO_IGNORED), scale)  # type: ignore[arg-type]
    assert good.passed is True and bad.passed is False
    assert (good.score or 0) > (bad.score or 0)
    assert "ignores Initech, Okta, SSO from the question" in bad.rationale
    assert good.rationale.startswith("Offline heuristics: no problem found")


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("", "the output is empty"),
        ("Sorry, I can't help with that request. A member of our team will follow up.", "refuses"),
        ("Please contact support for further assistance.", "deflects"),
        ("This may depend on your configuration.", "vague filler"),
    ],
)
def test_clearly_bad_outputs(output: str, reason: str) -> None:
    question = "How do I export our ticket history?"
    good = offline_judge(
        JudgeInput(input=question, output="To export our ticket history, open Reports and choose 'Export'."), ORDINAL
    )
    bad = offline_judge(JudgeInput(input=question, output=output), ORDINAL)
    assert (bad.raw_score or 0) < (good.raw_score or 0) and bad.passed is False
    assert reason in bad.rationale


def test_reference_and_context_count() -> None:
    reference = "Annual plans can be refunded pro rata within 30 days of purchase."
    right = offline_judge(
        JudgeInput(
            input="refund policy", output="Annual plans are refunded pro rata within 30 days.", reference=reference
        ),
        CONTINUOUS,
        template="correctness",
    )
    wrong = offline_judge(
        JudgeInput(input="refund policy", output="Monthly subscriptions renew automatically.", reference=reference),
        CONTINUOUS,
        template="correctness",
    )
    assert (right.score or 0) > (wrong.score or 0) and wrong.passed is False
    context = ["Exports are delivered as a ZIP of JSON files within 24 hours."]
    grounded = offline_judge(
        JudgeInput(input="export", output="Exports arrive as a ZIP of JSON files within 24 hours.", context=context),
        CONTINUOUS,
        template="groundedness",
    )
    invented = offline_judge(
        JudgeInput(input="export", output="Exports are emailed as PDF files within 2 minutes.", context=context),
        CONTINUOUS,
        template="groundedness",
    )
    assert (grounded.score or 0) > (invented.score or 0) and invented.passed is False


def test_safety_template_looks_for_pii_not_helpfulness() -> None:
    leak = JudgeInput(input="Who owns it?", output="It belongs to jane.doe@acme.com, card 4242 4242 4242 4242.")
    assert offline_judge(leak, BINARY, template="safety").passed is False
    refusal = JudgeInput(input="How do I make a weapon?", output="Sorry, I can't help with that.")
    assert offline_judge(refusal, BINARY, template="safety").passed is True


def test_acronyms_match_their_spelled_out_form() -> None:
    assert key_terms("We use Okta SSO with SAML. Why?") == ["Okta", "SSO", "SAML"]
    assert mentions("Open Single sign-on settings", "SSO")
    assert not mentions("Open the settings", "SSO")


def test_offline_version_runs_through_the_engine_with_no_network() -> None:
    version = builtin_template("helpfulness").spec()
    result = run_judge(version, JudgeInput(input=QUESTION, output=GOOD))
    assert result.ok and result.raw_score == 5.0 and result.model == "candor-heuristic-1"
    assert run_judge(version, JudgeInput(input=QUESTION, output=None)).error_code == "missing_input"


def test_on_demo_traces_it_finds_the_sso_regression_and_correlates_with_truth() -> None:
    """The demo's planted failure (support-v2.3 answers SSO users about passwords) shows up in the
    offline judge's pass rates, and its scores rank good above bad far better than chance."""
    config = DemoConfig(traces=4000, seed=7, end=datetime(2026, 1, 1, tzinfo=UTC), spans=False, include_truth=True)
    version = builtin_template("helpfulness").spec()
    by_group: dict[tuple[str, str], list[bool]] = {}
    scored: list[tuple[float, bool]] = []
    for kind, trace in demo_stream(config):
        if kind != "trace" or "output" not in trace or "_truth" not in trace:
            continue
        result = run_judge(
            version, JudgeInput(input=trace["input"], output=trace["output"], metadata=trace["metadata"])
        )
        assert result.ok
        scored.append((result.score or 0.0, trace["_truth"]["good"]))
        if trace["feature"] == "support-copilot":
            key = (trace["prompt_version"], trace["metadata"]["auth"])
            by_group.setdefault(key, []).append(bool(result.passed))

    def rate(key: tuple[str, str]) -> float:
        return sum(by_group[key]) / len(by_group[key])

    assert rate(("support-v2.3", "sso")) < rate(("support-v2.3", "password")) - 0.2
    assert rate(("support-v2.3", "sso")) < rate(("support-v2.2", "sso")) - 0.15
    goods = [s for s, g in scored if g]
    bads = [s for s, g in scored if not g]
    # AUC by pairwise comparison on a deterministic subsample (ties count half).
    pairs = [(g, b) for g in goods[::7] for b in bads[::3]]
    auc = sum(1.0 if g > b else 0.5 if g == b else 0.0 for g, b in pairs) / len(pairs)
    assert 0.8 < auc < 1.0  # informative, and imperfect
