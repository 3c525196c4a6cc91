"""LLM judges against the fake provider over real HTTP, both API shapes."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, cast

import pytest

from evaluation.judges.engine import build_call, run_judge, run_judge_async
from evaluation.judges.providers import (
    AsyncProviderClient,
    CircuitBreaker,
    ProviderClient,
    ProviderConfig,
    retry_after_seconds,
    top_level_value_span,
)
from evaluation.judges.rendering import JudgeInput
from evaluation.judges.results import JudgeError
from evaluation.judges.scales import ScaleKind
from evaluation.judges.secrets import SecretStr
from evaluation.judges.templates import builtin_template
from evaluation.judges.versions import JudgeVersionSpec
from tests.fixtures import fake_llm as fake
from tests.fixtures.fake_llm import FakeLLM, expected_probability, expected_verdict

TEMPLATE = """Judge the answer.
<user_input>
{{ input }}
</user_input>
<ai_output>
{{ output }}
</ai_output>
"""
PROVIDERS = ("openai", "anthropic")


def spec(provider: str = "openai", scale: str = "binary", **parameters: object) -> JudgeVersionSpec:
    return JudgeVersionSpec(
        kind="llm",
        scale=cast(ScaleKind, scale),
        provider=provider,
        model="judge-model",
        prompt_template=TEMPLATE,
        parameters=parameters,
    )


def config(fake_llm: FakeLLM, provider: str = "openai", **overrides: object) -> ProviderConfig:
    base = fake_llm.openai_base_url if provider == "openai" else fake_llm.anthropic_base_url
    settings: dict[str, object] = {"base_url": base, "api_key": SecretStr("sk-test-0123456789"), "backoff_base_s": 0.01}
    settings.update(overrides)
    return ProviderConfig(provider=provider, **settings)  # type: ignore[arg-type]


def client(fake_llm: FakeLLM, provider: str = "openai", **overrides: object) -> ProviderClient:
    return ProviderClient(config(fake_llm, provider, **overrides))


def the_input(output: str = "Open Settings > Security and click 'Reset'.") -> JudgeInput:
    return JudgeInput(input="How do I reset 2FA?", output=output)


def prompt_of(judge_input: JudgeInput, version: JudgeVersionSpec | None = None) -> str:
    return build_call(version or spec(), judge_input).user


# ---------------------------------------------------------------------- well-formed verdicts


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("scale", "outputs"), [("binary", 8), ("ordinal", 12), ("continuous", 8)])
def test_structured_verdicts_match_what_the_provider_said(
    fake_llm: FakeLLM, provider: str, scale: str, outputs: int
) -> None:
    version = spec(provider, scale)
    seen = set()
    with client(fake_llm, provider) as c:
        for i in range(outputs):
            judge_input = the_input(f"Answer number {i}: open Settings.")
            result = run_judge(version, judge_input, client=c)
            assert result.error is None, result.error
            expected = expected_verdict(prompt_of(judge_input, version), scale)
            raw = (1.0 if expected == "pass" else 0.0) if scale == "binary" else float(expected)
            assert result.raw_score == raw
            scale_spec = version.scale_spec
            assert result.score == pytest.approx(scale_spec.normalize(raw))
            assert result.passed is scale_spec.passes(raw)
            assert result.rationale == f"Fake rationale for a {scale} verdict."
            assert result.input_tokens and result.output_tokens
            assert result.latency_ms is not None and result.latency_ms > 0
            assert result.raw_response.startswith("{")
            assert result.model == ("judge-model-fake" if provider == "openai" else "judge-model")
            seen.add(result.passed)
    assert seen == {True, False}  # the fake's verdicts vary, so the assertions above discriminate


def test_openai_request_asks_for_strict_json_schema_and_logprobs(fake_llm: FakeLLM) -> None:
    with client(fake_llm) as c:
        run_judge(spec(scale="ordinal", temperature=0, seed=7), the_input(), client=c)
    (request,) = fake_llm.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-0123456789"
    body = request.body
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["rationale", "verdict"] and schema["additionalProperties"] is False
    assert schema["properties"]["verdict"] == {
        "type": "integer",
        "enum": [1, 2, 3, 4, 5],
        "description": "1 (very poor) to 5 (excellent)",
    }
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert body["seed"] == 7 and body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "How do I reset 2FA?" in body["messages"][1]["content"]


def test_anthropic_request_forces_the_verdict_tool(fake_llm: FakeLLM) -> None:
    with client(fake_llm, "anthropic") as c:
        result = run_judge(spec("anthropic"), the_input(), client=c)
    assert result.ok
    (request,) = fake_llm.requests
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == "sk-test-0123456789"
    assert request.headers["anthropic-version"] == "2023-06-01"
    body = request.body
    assert body["tool_choice"] == {"type": "tool", "name": "record_verdict"}
    assert body["tools"][0]["input_schema"]["properties"]["verdict"]["enum"] == ["pass", "fail"]
    assert body["system"].startswith("You are a meticulous evaluator")
    assert result.verdict_probability is None  # Anthropic returns no logprobs


def test_azure_style_endpoint(fake_llm: FakeLLM) -> None:
    azure = ProviderClient(config(fake_llm, base_url=fake_llm.url, azure_api_version="2024-10-21"))
    result = run_judge(spec(), the_input(), client=azure)
    assert result.ok, result.error
    (request,) = fake_llm.requests
    assert request.path == "/openai/deployments/judge-model/chat/completions?api-version=2024-10-21"
    assert request.headers["api-key"] == "sk-test-0123456789"
    assert "authorization" not in request.headers


def test_json_object_mode_for_servers_without_schemas(fake_llm: FakeLLM) -> None:
    with client(fake_llm) as c:
        result = run_judge(spec(response_format="json_object", logprobs=False), the_input(), client=c)
    assert result.ok
    body = fake_llm.requests[0].body
    assert body["response_format"] == {"type": "json_object"}
    assert "logprobs" not in body


# ---------------------------------------------------------------------- logprobs


@pytest.mark.parametrize("scale", ["binary", "ordinal", "continuous"])
def test_verdict_probability_from_logprobs(fake_llm: FakeLLM, scale: str) -> None:
    judge_input = the_input("A reply whose probability the fake fixes. PROB=0.83")
    with client(fake_llm) as c:
        result = run_judge(spec(scale=scale), judge_input, client=c)
    assert result.ok, result.error
    assert result.verdict_probability == pytest.approx(0.83, abs=1e-4)
    values = dict(result.verdict_distribution)
    if scale == "continuous":
        assert values == {}  # a multi-token number has no per-verdict alternatives
    else:
        assert result.raw_score is not None
        assert values[result.raw_score] == pytest.approx(0.83, abs=1e-4)
        assert len(values) == {"binary": 2, "ordinal": 5}[scale]
        assert sum(values.values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(("scale", "verdict", "expected"), [("binary", "fail", 0.1), ("ordinal", "4", 0.9 + 0.025)])
def test_pass_probability_from_the_verdict_distribution(
    fake_llm: FakeLLM, scale: str, verdict: str, expected: float
) -> None:
    with client(fake_llm) as c:
        result = run_judge(spec(scale=scale), the_input(f"VERDICT={verdict} PROB=0.9"), client=c)
    # binary: fail at 0.9 leaves 0.1 for pass; ordinal: 4 at 0.9, and 5 gets a quarter of the 0.1 left.
    assert spec(scale=scale).scale_spec.pass_probability(result) == pytest.approx(expected, abs=1e-4)


def test_verdict_probability_varies_with_the_text(fake_llm: FakeLLM) -> None:
    probabilities = []
    with client(fake_llm) as c:
        for i in range(5):
            judge_input = the_input(f"reply {i}")
            result = run_judge(spec(), judge_input, client=c)
            assert result.verdict_probability == pytest.approx(expected_probability(prompt_of(judge_input)), abs=1e-3)
            probabilities.append(result.verdict_probability)
    assert len(set(probabilities)) > 1


def test_verdict_span_ignores_a_quoted_verdict_inside_the_rationale() -> None:
    content = '{"rationale": "It said \\"verdict\\": \\"fail\\" once", "verdict": "pass"}'
    start, end = top_level_value_span(content, "verdict") or (0, 0)
    assert content[start:end] == "pass"
    assert content.count("fail") == 1 and start > content.index("fail")


# ---------------------------------------------------------------------- bad answers


@pytest.mark.parametrize(
    "behaviour",
    [fake.html(), fake.status(502, body="<html>internal admin: SECRET-PAGE</html>"), fake.status(400, body="SECRET")],
    ids=["html-200", "html-502", "text-400"],
)
def test_a_non_json_body_is_described_never_echoed(fake_llm: FakeLLM, behaviour: fake.Behaviour) -> None:
    # A base URL may reach any page: its content never goes into the error nor raw_response.
    fake_llm.script(behaviour)
    with client(fake_llm, "openai", max_retries=0) as c:
        result = run_judge(spec(), the_input(), client=c)
    assert result.ok is False and result.raw_score is None
    assert "the provider answered non-JSON (" in (result.error or "")
    assert " bytes, content-type " in (result.error or "")
    assert "SECRET" not in (result.error or "") and "<html" not in (result.error or "")
    assert result.raw_response == ""


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("behaviour", "code", "raw_contains"),
    [
        (fake.malformed(), "malformed", ""),
        (fake.wrong_shape(), "malformed", "score"),
        (fake.off_scale(), "malformed", "maybe"),
        (fake.extra_field(), "malformed", "confidence"),
        (fake.refusal(), "", "can't help"),
        (fake.html(), "bad_response", ""),
        (fake.empty(), "bad_response", ""),
        (fake.truncated(), "truncated", ""),
    ],
)
def test_a_bad_answer_is_a_clear_error_that_keeps_the_raw_text(
    fake_llm: FakeLLM, provider: str, behaviour: fake.Behaviour, code: str, raw_contains: str
) -> None:
    fake_llm.script(behaviour)
    with client(fake_llm, provider) as c:
        with pytest.raises(JudgeError) as caught:
            c.judge(build_call(spec(provider), the_input()))
        error = caught.value
        # An Anthropic text answer instead of the forced tool is "malformed"; OpenAI says "refusal".
        expected_code = code or ("refusal" if provider == "openai" else "malformed")
        assert error.code == expected_code, error
        assert not error.retryable
        assert raw_contains in error.raw
        if behaviour.kind in ("malformed",) and provider == "openai":
            assert error.raw == "Sure! The answer looks good to me, I'd say it passes."
        # ...and through the engine, the same failure is an error result, never a verdict.
        fake_llm.script(behaviour)
        result = run_judge(spec(provider), the_input(), client=c)
    assert result.raw_score is None and result.passed is None and result.score is None
    assert result.error_code == expected_code and result.error
    assert len(fake_llm.requests) == 2  # not retried: the same prompt would fail the same way


def test_anthropic_refusal_stop_reason(fake_llm: FakeLLM) -> None:
    fake_llm.script(fake.Behaviour("refusal_stop"))
    with client(fake_llm, "anthropic") as c:
        result = run_judge(spec("anthropic"), the_input(), client=c)
    assert result.error_code == "refusal"


def test_wrong_key_is_a_clear_http_error(fake_llm: FakeLLM) -> None:
    fake_llm.required_key = "sk-the-right-one"
    with client(fake_llm) as c:
        result = run_judge(spec(), the_input(), client=c)
    assert result.error_code == "http"
    assert "HTTP 401" in (result.error or "") and "API key" in (result.error or "")
    assert "sk-test" not in (result.error or "") + result.raw_response
    assert len(fake_llm.requests) == 1


# ---------------------------------------------------------------------- retries and timeouts


@pytest.mark.parametrize("provider", PROVIDERS)
def test_429_with_retry_after_then_success(fake_llm: FakeLLM, provider: str) -> None:
    fake_llm.script(fake.status(429, retry_after="1"), fake.status(429, retry_after="0.2"))
    with client(fake_llm, provider) as c:
        started = time.monotonic()
        result = run_judge(spec(provider), the_input(), client=c)
    assert result.ok, result.error
    assert result.attempts == 3
    times = [r.at for r in fake_llm.requests]
    assert len(times) == 3
    # Retry-After honoured: about 1 s, then about 0.2 s, not the 10 ms backoff of the config.
    assert times[1] - times[0] >= 0.95
    assert times[2] - times[1] >= 0.18
    assert time.monotonic() - started >= 1.15


def test_retry_after_as_an_http_date_and_in_ms() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds({"Retry-After": "Tue, 14 Nov 2023 22:13:25 GMT"}, now=now) == pytest.approx(5.0)
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_a_long_retry_after_is_handed_back_to_the_task_layer(fake_llm: FakeLLM) -> None:
    fake_llm.script(fake.status(429, retry_after="120"))
    with client(fake_llm, max_retry_after_s=30) as c:
        with pytest.raises(JudgeError) as caught:
            c.judge(build_call(spec(), the_input()))
    assert caught.value.retryable and caught.value.retry_after_s == 120
    assert len(fake_llm.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_500_storm_gives_up_with_a_clear_error(fake_llm: FakeLLM, provider: str) -> None:
    fake_llm.default = fake.status(500)
    with client(fake_llm, provider, max_retries=2) as c:
        result = run_judge(spec(provider), the_input(), client=c)
    assert result.error_code == "http"
    assert result.error and "HTTP 500" in result.error and "server error" in result.error
    assert result.attempts == 3 and len(fake_llm.requests) == 3
    assert result.raw_score is None


def test_500_then_success_is_retried(fake_llm: FakeLLM) -> None:
    fake_llm.script(fake.status(503), fake.status(502))
    with client(fake_llm) as c:
        result = run_judge(spec(), the_input(), client=c)
    assert result.ok and result.attempts == 3


def test_400_is_not_retried(fake_llm: FakeLLM) -> None:
    fake_llm.script(fake.status(400, body='{"error": {"message": "model not supported", "type": "x"}}'))
    with client(fake_llm) as c:
        result = run_judge(spec(), the_input(), client=c)
    assert result.error_code == "http" and "model not supported" in (result.error or "")
    assert len(fake_llm.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_timeout(fake_llm: FakeLLM, provider: str) -> None:
    fake_llm.script(fake.hang(2.0), fake.hang(2.0))
    with client(fake_llm, provider, timeout_s=0.3, max_retries=1) as c:
        result = run_judge(spec(provider), the_input(), client=c)
    # The fake answers after 2 s: a timeout error means the client gave up on its own 0.3 s.
    assert result.error_code == "timeout"
    assert result.error == "no answer within 0.3 s"
    assert len(fake_llm.requests) == 2 and result.attempts == 2


def test_timeout_then_success(fake_llm: FakeLLM) -> None:
    fake_llm.script(fake.hang(1.0))
    with client(fake_llm, timeout_s=0.3) as c:
        result = run_judge(spec(), the_input(), client=c)
    assert result.ok and result.attempts == 2


def test_connection_refused_is_a_transport_error() -> None:
    dead = ProviderClient(
        ProviderConfig(provider="openai", base_url="http://127.0.0.1:9/v1", api_key=SecretStr("k"), max_retries=0)
    )
    result = run_judge(spec(), the_input(), client=dead)
    assert result.error_code == "transport"


# ---------------------------------------------------------------------- circuit breaker


def test_breaker_opens_on_a_500_storm_and_recovers_half_open(fake_llm: FakeLLM) -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=10, clock=lambda: now[0])
    fake_llm.default = fake.status(500)
    c = ProviderClient(config(fake_llm, max_retries=0), breaker=breaker)
    for _ in range(3):
        assert run_judge(spec(), the_input(), client=c).error_code == "http"
    assert breaker.state == "open"
    calls = len(fake_llm.requests)
    blocked = run_judge(spec(), the_input(), client=c)
    assert blocked.error_code == "circuit_open" and len(fake_llm.requests) == calls  # provider not called
    now[0] = 10.0
    assert breaker.state == "half_open"
    assert run_judge(spec(), the_input(), client=c).error_code == "http"  # the trial call fails...
    assert breaker.state == "open"  # ...and re-opens at once
    now[0] = 20.0
    fake_llm.default = fake.ok()
    assert run_judge(spec(), the_input(), client=c).ok  # the next trial succeeds
    assert breaker.state == "closed"
    assert run_judge(spec(), the_input(), client=c).ok


def test_malformed_answers_do_not_trip_the_breaker(fake_llm: FakeLLM) -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=60)
    fake_llm.default = fake.malformed()
    c = ProviderClient(config(fake_llm), breaker=breaker)
    for _ in range(4):
        assert run_judge(spec(), the_input(), client=c).error_code == "malformed"
    assert breaker.state == "closed"


@pytest.mark.parametrize("status", [401, 403, 429])
def test_the_key_s_own_refusals_do_not_trip_the_breaker(fake_llm: FakeLLM, status: int) -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=60)
    fake_llm.default = fake.status(status, retry_after="0")
    c = ProviderClient(config(fake_llm, max_retries=0), breaker=breaker)
    for _ in range(4):
        result = run_judge(spec(), the_input(), client=c)
        assert result.error_code == "http" and f"HTTP {status}" in (result.error or "")
    assert breaker.state == "closed"
    fake_llm.default = fake.status(503, retry_after="0")
    for _ in range(2):
        run_judge(spec(), the_input(), client=c)
    assert breaker.state == "open"  # endpoint trouble still does


async def _async_key_refusals(fake_llm: FakeLLM) -> str:
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=60)
    async with AsyncProviderClient(config(fake_llm, max_retries=0), breaker=breaker) as c:
        for _ in range(3):
            assert (await run_judge_async(spec(), the_input(), client=c)).error_code == "http"
    return breaker.state


def test_async_429s_do_not_trip_the_breaker(fake_llm: FakeLLM) -> None:
    fake_llm.default = fake.status(429, retry_after="0")
    assert _run(_async_key_refusals(fake_llm)) == "closed"


# ---------------------------------------------------------------------- async


def test_async_client_keeps_many_calls_in_flight(fake_llm: FakeLLM) -> None:
    fake_llm.latency_s = 0.3
    version = spec(scale="ordinal")
    inputs = [the_input(f"answer {i}") for i in range(40)]

    async def score_all() -> list:
        async with AsyncProviderClient(config(fake_llm)) as c:
            return await asyncio.gather(*(run_judge_async(version, i, client=c) for i in inputs))

    results = _run(score_all())
    assert all(r.ok for r in results)
    assert [r.raw_score for r in results] == [float(expected_verdict(prompt_of(i, version), "ordinal")) for i in inputs]
    assert fake_llm.max_in_flight >= 10  # concurrent, not one after the other


def test_async_retries_on_429(fake_llm: FakeLLM) -> None:
    fake_llm.script(fake.status(429, retry_after="0.2"))

    async def once() -> object:
        async with AsyncProviderClient(config(fake_llm, "anthropic")) as c:
            return await run_judge_async(spec("anthropic"), the_input(), client=c)

    result = _run(once())
    assert result.ok and result.attempts == 2  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- engine wiring


def test_builtin_template_through_a_provider(fake_llm: FakeLLM) -> None:
    version = builtin_template("correctness").spec(provider="openai", model="gpt-4o-mini")
    judge_input = JudgeInput(input="q", output="a", reference="the reference answer")
    with client(fake_llm) as c:
        result = run_judge(version, judge_input, client=c)
    assert result.ok
    sent = fake_llm.requests[0].body["messages"][1]["content"]
    assert "<reference_answer>\nthe reference answer\n</reference_answer>" in sent


def test_missing_reference_is_an_error_without_calling_the_provider(fake_llm: FakeLLM) -> None:
    version = builtin_template("correctness").spec(provider="openai", model="gpt-4o-mini")
    with client(fake_llm) as c:
        result = run_judge(version, JudgeInput(input="q", output="a"), client=c)
    assert result.error_code == "missing_input" and "reference" in (result.error or "")
    assert fake_llm.requests == []


def test_wrong_or_missing_client_is_a_config_error(fake_llm: FakeLLM) -> None:
    assert run_judge(spec("anthropic"), the_input(), client=None).error_code == "config"
    with client(fake_llm, "openai") as c:
        assert run_judge(spec("anthropic"), the_input(), client=c).error_code == "config"
    assert fake_llm.requests == []


def test_probabilities_are_probabilities(fake_llm: FakeLLM) -> None:
    with client(fake_llm) as c:
        for i in range(10):
            result = run_judge(spec(scale="ordinal"), the_input(f"text {i}"), client=c)
            assert result.verdict_probability is not None and 0 < result.verdict_probability <= 1
            assert not math.isnan(result.verdict_probability)


def _run(coroutine: Any) -> Any:
    """asyncio.run in a thread of its own: the browser tests' Playwright keeps a loop on the main thread."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
