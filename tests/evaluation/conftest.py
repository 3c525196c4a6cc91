"""Fixtures for the evaluation tests (the root conftest stays untouched): the fake LLM provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.fake_llm import FakeLLM, running_fake_llm


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLM]:
    yield from running_fake_llm()


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLM) -> Iterator[FakeLLM]:
    """The session's fake provider, with its script, requests and settings cleared per test."""
    fake_llm_server.reset()
    yield fake_llm_server
    fake_llm_server.reset()
