"""Judge calls and webhooks check the address every connection goes to: a host that was public when its
URL was saved and resolves inside later (DNS rebinding) is refused at the moment of the request."""

from __future__ import annotations

import httpx
import pytest

from evaluation.judges.engine import run_judge, run_judge_async
from evaluation.judges.network import _AsyncCheckedBackend, _CheckedBackend, async_checked_transport, checked_transport
from evaluation.judges.providers import AsyncProviderClient, ProviderClient
from evaluation.judges.results import JudgeResult
from evaluation.services.outbound import connect_refusal
from tests.evaluation.judges.test_providers import _run, config, spec, the_input
from tests.fixtures.fake_llm import FakeLLM


def _on_localhost(fake_llm: FakeLLM) -> str:
    """The fake provider under a name that is not allowed, resolving to loopback: a rebound host."""
    return fake_llm.openai_base_url.replace("127.0.0.1", "localhost")


def test_an_allowed_host_is_reached(fake_llm: FakeLLM) -> None:
    refuse = connect_refusal("JUDGE_ALLOWED_HOSTS")  # the test settings allow 127.0.0.1
    with ProviderClient(config(fake_llm, max_retries=0), refuse=refuse) as client:
        assert run_judge(spec(), the_input(), client=client).error is None
    assert len(fake_llm.requests) == 1


def test_a_host_resolving_inside_is_refused_when_the_call_connects(fake_llm: FakeLLM) -> None:
    refuse = connect_refusal("JUDGE_ALLOWED_HOSTS")
    with ProviderClient(config(fake_llm, base_url=_on_localhost(fake_llm), max_retries=0), refuse=refuse) as client:
        result = run_judge(spec(), the_input(), client=client)
    assert result.error is not None and "localhost resolves to an internal address (127.0.0.1)" in result.error
    assert fake_llm.requests == []  # nothing reached the address


def test_the_async_client_refuses_alike(fake_llm: FakeLLM) -> None:
    refuse = connect_refusal("JUDGE_ALLOWED_HOSTS")

    async def both() -> tuple[JudgeResult, JudgeResult]:
        allowed = AsyncProviderClient(config(fake_llm, max_retries=0), refuse=refuse)
        rebound = AsyncProviderClient(config(fake_llm, base_url=_on_localhost(fake_llm), max_retries=0), refuse=refuse)
        try:
            return (
                await run_judge_async(spec(), the_input(), client=allowed),
                await run_judge_async(spec(), the_input(), client=rebound),
            )
        finally:
            await allowed.aclose()
            await rebound.aclose()

    ok, refused = _run(both())
    assert ok.error is None
    assert refused.error is not None and "localhost resolves to an internal address" in refused.error
    assert len(fake_llm.requests) == 1


def test_webhook_transport_refuses_a_rebound_host_even_over_https() -> None:
    transport = checked_transport(connect_refusal("ALERT_WEBHOOK_ALLOWED_HOSTS"), limits=httpx.Limits())
    with httpx.Client(transport=transport) as client:
        with pytest.raises(httpx.ConnectError, match="internal address"):
            client.post("https://localhost:9/hook", content=b"{}")


def test_the_checks_sit_where_httpx_connects() -> None:
    """httpx gives no way to name the network backend: the transports set it on the pool they build.
    If a new httpx or httpcore keeps it elsewhere, this fails rather than the check silently going."""
    refuse = connect_refusal("JUDGE_ALLOWED_HOSTS")
    assert isinstance(checked_transport(refuse, limits=httpx.Limits())._pool._network_backend, _CheckedBackend)
    pool = async_checked_transport(refuse, limits=httpx.Limits())._pool
    assert isinstance(pool._network_backend, _AsyncCheckedBackend)
