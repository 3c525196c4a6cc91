"""Running queued scores against the fake provider over real HTTP (both API shapes): verdicts,
malformed answers, refusals, 429 then success, timeouts, a 500 storm opening the breaker and a
half-open recovery; reruns never double a score; errors are never verdicts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection

from evaluation.models import Judge, Score
from evaluation.services.judges import judge_enable
from evaluation.services.runs import breakers_reset, scores_run
from evaluation.services.sampling import sampling_sweep
from evaluation.services.shared import utc_now
from tests.evaluation.helpers import llm_judge, make_traces, offline_judge
from tests.fixtures import fake_llm as fake
from tests.fixtures.fake_llm import FakeLLM, expected_verdict
from tests.fixtures.organizations import in_tenant

LATER = timedelta(seconds=10)


@pytest.fixture(autouse=True)
def fresh_breakers(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    settings.JUDGE_PROVIDER_MAX_RETRIES = 2
    settings.JUDGE_PROVIDER_TIMEOUT_S = 5.0
    breakers_reset()
    yield
    breakers_reset()


def _queue_all(judge: Judge, n: int) -> list[str]:
    ids = make_traces(n)
    judge_enable(judge=judge, base_rate=1.0)
    sampling_sweep(now=utc_now() + LATER)
    return ids


def _base(fake_llm: FakeLLM, provider: str) -> str:
    return fake_llm.openai_base_url if provider == "openai" else fake_llm.anthropic_base_url


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_well_formed_verdicts_are_stored_with_cost_and_latency(db: None, org_a, fake_llm: FakeLLM, provider) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        judge = llm_judge(provider, _base(fake_llm, provider))
        ids = _queue_all(judge, 12)
        stats = scores_run(max_seconds=30)
        assert (stats.ok, stats.errors) == (12, 0)
        for score in Score.objects.filter(judge_id=judge.id):
            request_text = f"Question: How do I reset my password for account {score.trace_id.rsplit('-', 1)[1]}?"
            assert score.status == "ok" and score.error_code == ""
            prompt = f"{request_text}\nAnswer: {_output(ids, score.trace_id)}\nIs the answer helpful?"
            expected = expected_verdict(prompt, "binary")
            assert score.passed is (expected == "pass")
            assert score.raw_score == (1.0 if expected == "pass" else 0.0)
            assert score.rationale and score.latency_ms is not None and score.latency_ms > 0
            assert score.input_tokens and score.output_tokens
            assert score.cost_usd is not None and score.cost_usd > 0  # from the built-in price table
            assert (score.verdict_probability is not None) is (provider == "openai")  # logprobs: OpenAI only
        assert len(fake_llm.requests) == 12


def _output(ids: list[str], trace_id: str) -> str:
    i = trace_id.rsplit("-", 1)[1]
    return f"Open Settings, choose Security, then Reset password; a link goes to your email ({i})."


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("behaviour", "code"),
    [(fake.malformed(), "malformed"), (fake.refusal(), "refusal"), (fake.html(), "bad_response"),
     (fake.empty(), "bad_response")],
    ids=["malformed", "refusal", "html", "empty"],
)  # fmt: skip
def test_bad_answers_are_errors_with_the_reason_never_verdicts(
    db: None, org_a, fake_llm, provider, behaviour, code
) -> None:  # type: ignore[no-untyped-def]
    if provider == "anthropic" and code == "refusal":
        behaviour = fake.Behaviour("refusal_stop")  # Anthropic says so in stop_reason
    fake_llm.default = behaviour
    with in_tenant(org_a):
        judge = llm_judge(provider, _base(fake_llm, provider))
        _queue_all(judge, 3)
        stats = scores_run(max_seconds=30)
        assert stats.errors == 3
        for score in Score.objects.filter(judge_id=judge.id):
            assert score.status == "error" and score.error_code == code and score.error_message
            assert (score.raw_score, score.score, score.passed) == (None, None, None)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_429_then_success_honours_retry_after(db: None, org_a, fake_llm, provider) -> None:  # type: ignore[no-untyped-def]
    fake_llm.script(fake.status(429, retry_after="0"), fake.status(429, retry_after="0"))
    with in_tenant(org_a):
        judge = llm_judge(provider, _base(fake_llm, provider))
        _queue_all(judge, 1)
        stats = scores_run(max_seconds=30)
        assert (stats.ok, stats.errors) == (1, 0)
        assert len(fake_llm.requests) == 3
        assert Score.objects.get(judge_id=judge.id).status == "ok"


def test_timeouts_become_errors_after_the_retries(db: None, org_a, fake_llm, settings) -> None:  # type: ignore[no-untyped-def]
    settings.JUDGE_PROVIDER_TIMEOUT_S = 0.3
    settings.JUDGE_PROVIDER_MAX_RETRIES = 1
    fake_llm.default = fake.hang(2.0)
    with in_tenant(org_a):
        judge = llm_judge("openai", fake_llm.openai_base_url)
        _queue_all(judge, 2)
        scores_run(max_seconds=30)
        scores = list(Score.objects.filter(judge_id=judge.id))
        assert {(s.status, s.error_code) for s in scores} == {("error", "timeout")}
        assert all(s.passed is None for s in scores)


class StoppedClock:
    """The breakers' clock: it moves only when the test says so, so a slow machine cannot half-open
    a breaker in the middle of a run."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_500_storm_opens_the_breaker_and_a_half_open_trial_recovers(db: None, org_a, fake_llm, settings) -> None:  # type: ignore[no-untyped-def]
    settings.JUDGE_PROVIDER_MAX_RETRIES = 0
    settings.JUDGE_BREAKER_FAILURES = 3
    settings.JUDGE_BREAKER_RESET_S = 0.5  # also how long a deferred score waits in the database
    clock = StoppedClock()
    breakers_reset(clock=clock)
    fake_llm.default = fake.status(500)
    with in_tenant(org_a):
        judge = llm_judge("openai", fake_llm.openai_base_url)
        _queue_all(judge, 10)
        first = scores_run(max_seconds=30, concurrency=1)
        assert (first.errors, first.deferred) == (3, 7), first  # max_in_flight > 1: a claim took more than 1
        assert len(fake_llm.requests) == 3  # the breaker stopped the calls
        scores = Score.objects.filter(judge_id=judge.id)
        assert scores.filter(status="error", error_code="http").count() == 3
        assert scores.filter(status="pending").count() == 7  # deferred, not failed
        # Still open on the breaker's clock: the deferred scores come due and are deferred again, uncalled.
        time.sleep(0.6)
        again = scores_run(max_seconds=30, concurrency=1)
        assert (again.finished, again.deferred, len(fake_llm.requests)) == (0, 7, 3)
        fake_llm.default = fake.ok()
        clock.now += 0.5  # the reset time has passed: one half-open trial, which succeeds and closes it
        deadline = time.monotonic() + 30
        while scores.filter(status="pending").exists() and time.monotonic() < deadline:
            time.sleep(0.3)
            scores_run(max_seconds=30, concurrency=1)
        assert scores.filter(status="ok").count() == 7
        assert len(fake_llm.requests) == 10


def test_a_claim_takes_at_most_its_batch_when_the_planner_thinks_the_queue_is_empty(  # type: ignore[no-untyped-def]
    db: None, org_a, fake_llm
) -> None:
    # An organization whose scores were deleted (or rolled back) and then analyzed, as autovacuum
    # does: no live rows over non-empty pages. The planner then puts the claim's
    # "LIMIT n FOR UPDATE SKIP LOCKED" subquery on the inner side of a nested loop and runs it
    # again for every row, so one claim took every pending score: ten calls in flight at
    # concurrency 1 (the 500-storm test's full-run failure: the breaker let all ten through).
    with in_tenant(org_a):
        ids = make_traces(30)
        earlier = offline_judge()
        judge_enable(judge=earlier, base_rate=1.0)
        sampling_sweep(now=utc_now() + LATER)
        assert Score.objects.count() == 30
        Score.objects.all().delete()
        Judge.objects.filter(id=earlier.id).update(enabled=False)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE evaluation_score")  # in the test's transaction: rolled back with it
        judge = llm_judge("openai", fake_llm.openai_base_url)
        judge_enable(judge=judge, base_rate=1.0)
        sampling_sweep(now=utc_now() + LATER)
        assert Score.objects.filter(judge_id=judge.id, status="pending").count() == len(ids)
        stats = scores_run(max_seconds=30, concurrency=1)
        assert (stats.ok, stats.errors, stats.deferred) == (30, 0, 0)
        assert stats.max_in_flight == 1 and len(fake_llm.requests) == 30


@pytest.mark.parametrize("trouble", [429, 500])
def test_one_organization_s_trouble_never_defers_another_s_scores(  # type: ignore[no-untyped-def]
    db: None, org_a, org_b, fake_llm, settings, trouble
) -> None:
    # Both organizations use the same endpoint, each with its own key.
    settings.JUDGE_PROVIDER_MAX_RETRIES = 0
    settings.JUDGE_BREAKER_FAILURES = 3
    settings.JUDGE_BREAKER_RESET_S = 60
    fake_llm.default = fake.status(trouble, retry_after="0")
    with in_tenant(org_a):
        judge_a = llm_judge("openai", fake_llm.openai_base_url)
        _queue_all(judge_a, 6)
        first = scores_run(max_seconds=30, concurrency=1)
        if trouble == 429:  # A's exhausted quota is A's errors, not a broken endpoint
            assert (first.errors, first.deferred) == (6, 0), first.error_codes
        else:  # A's own breaker opens after 3 failures: A's other scores wait
            assert (first.errors, first.deferred) == (3, 3), first
    fake_llm.default = fake.ok()
    with in_tenant(org_b):
        judge_b = llm_judge("openai", fake_llm.openai_base_url)
        _queue_all(judge_b, 5)
        second = scores_run(max_seconds=30, concurrency=1)
        assert (second.ok, second.errors, second.deferred) == (5, 0, 0)
        assert Score.objects.filter(judge_id=judge_b.id, status="ok").count() == 5


def test_reruns_never_double_a_score(db: None, org_a, fake_llm) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        judge = llm_judge("openai", fake_llm.openai_base_url)
        ids = _queue_all(judge, 20)
        scores_run(max_seconds=30)
        finished = {s.trace_id: (s.raw_score, s.scored_at) for s in Score.objects.filter(judge_id=judge.id)}
        # The same task again, and the sweep again: nothing new is called or written.
        sampling_sweep(now=utc_now() + LATER)
        again = scores_run(max_seconds=30)
        assert again.finished == 0
        assert len(fake_llm.requests) == 20
        rows = Score.objects.filter(judge_id=judge.id)
        assert rows.count() == 20 and set(rows.values_list("trace_id", flat=True)) == set(ids)
        assert {s.trace_id: (s.raw_score, s.scored_at) for s in rows} == finished


def test_a_crashed_runner_s_claims_are_run_once_after_the_lease(db: None, org_a, fake_llm) -> None:  # type: ignore[no-untyped-def]
    from evaluation.services.runs import _claim

    with in_tenant(org_a):
        judge = llm_judge("openai", fake_llm.openai_base_url)
        _queue_all(judge, 5)
        claimed = _claim(5)  # a runner took them, then its worker died
        assert len(claimed) == 5
        assert scores_run(max_seconds=30).finished == 0  # still leased to the dead runner
        Score.objects.filter(judge_id=judge.id).update(due_at=utc_now() - timedelta(seconds=1))  # lease over
        assert scores_run(max_seconds=30).ok == 5
        assert Score.objects.filter(judge_id=judge.id, status="ok").count() == 5


def test_missing_key_and_paused_judges(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from evaluation.judges.versions import JudgeVersionSpec
    from evaluation.services.judges import judge_create, judge_disable, judge_pause, judge_resume
    from tests.fixtures.organizations import unique

    with in_tenant(org_a):
        from evaluation.models import ProviderKey

        ProviderKey.objects.filter(provider="anthropic").delete()
        spec = JudgeVersionSpec(
            kind="llm", scale="binary", provider="anthropic", model="claude-3-5-haiku", prompt_template="{{ output }}"
        )
        judge = judge_create(name=unique("nokey"), spec=spec)
        _queue_all(judge, 2)
        scores_run(max_seconds=30)
        assert set(Score.objects.filter(judge_id=judge.id).values_list("error_code", flat=True)) == {"config"}

        judge_disable(judge=judge)
        paused = offline_judge()
        judge_enable(judge=paused, base_rate=1.0)
        judge_pause(judge=paused)
        make_traces(3)
        assert sampling_sweep(now=utc_now() + LATER) == 0  # nothing sampled while paused
        judge_resume(judge=paused)
        assert sampling_sweep(now=utc_now() + LATER) == 5  # the 3 new traces and the 2 of the last 24 h


def test_offline_judge_runs_with_no_network(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        judge = offline_judge()
        _queue_all(judge, 30)
        stats = scores_run(max_seconds=30)
        assert stats.ok == 30
        rows = Score.objects.filter(judge_id=judge.id)
        assert set(rows.values_list("model", flat=True)) == {"candor-heuristic-1"}
        assert all(s.cost_usd == 0 for s in rows)


def test_a_crashing_judge_is_an_error_not_a_stopped_runner(db: None, org_a, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from evaluation.services import runs

    real = runs.run_judge
    calls = []

    def flaky(spec, judge_input):  # type: ignore[no-untyped-def]
        calls.append(judge_input)
        if len(calls) == 1:
            raise ZeroDivisionError("division by zero")
        return real(spec, judge_input)

    monkeypatch.setattr(runs, "run_judge", flaky)
    with in_tenant(org_a):
        judge = offline_judge()
        _queue_all(judge, 4)
        stats = scores_run(max_seconds=30)
        assert (stats.ok, stats.errors) == (3, 1)
        failed = Score.objects.get(judge_id=judge.id, status="error")
        assert (
            failed.error_code == "config"
            and failed.error_message == "internal error: ZeroDivisionError: division by zero"
        )
        assert failed.passed is None
        assert not Score.objects.filter(judge_id=judge.id, status__in=["running", "pending"]).exists()


def test_a_poison_score_fails_after_max_attempts_instead_of_being_claimed_forever(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from evaluation.services.runs import MAX_ATTEMPTS

    with in_tenant(org_a):
        judge = offline_judge()
        _queue_all(judge, 2)
        poison, healthy = Score.objects.filter(judge_id=judge.id).order_by("id")
        # Its runners died on it each time: claimed, lease ran out, claimed again.
        Score.objects.filter(id=poison.id).update(attempts=MAX_ATTEMPTS, status="running", due_at=utc_now() - LATER)
        stats = scores_run(max_seconds=30)
        assert (stats.ok, stats.errors) == (1, 1)
        poison.refresh_from_db()
        assert poison.status == "error" and poison.error_code == "transport"
        assert poison.error_message.startswith(f"gave up after {MAX_ATTEMPTS} attempts")
        healthy.refresh_from_db()
        assert healthy.status == "ok"


def test_waiting_on_a_paused_judge_uses_no_attempts(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from evaluation.services.judges import judge_pause

    with in_tenant(org_a):
        judge = offline_judge()
        _queue_all(judge, 2)
        judge_pause(judge=judge)
        for _ in range(3):
            Score.objects.filter(judge_id=judge.id).update(due_at=utc_now() - LATER)
            assert scores_run(max_seconds=30).deferred == 2
        assert set(Score.objects.filter(judge_id=judge.id).values_list("status", "attempts")) == {("pending", 0)}
