"""The GenAI instrumentations teams already run land complete traces, exported as a new user would.

Each case runs tests/fixtures/instrumented_app.py in the instrumentation virtualenv (`make
instrumentations`, part of `make test`): the real library instruments the real `openai` client,
which calls the fake OpenAI-compatible server over HTTP, and the OpenTelemetry SDK's own OTLP/HTTP
exporters send spans (and, for openai-v2 by default, log events) to the live Candor server.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.fake_llm import FakeLLM, running_fake_llm
from tests.fixtures.organizations import Org, unique
from tests.fixtures.server import ROOT, LiveServer

APP = ROOT / "tests" / "fixtures" / "instrumented_app.py"
QUESTION = "Where is my parcel? Order 1234."

# library -> the environment its users set (openai-v2 captures no text unless asked to).
MODES: dict[str, dict[str, str]] = {
    "openai-v2": {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"},
    "openai-v2-span-only": {
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY",
    },
    "openllmetry": {"TRACELOOP_TRACE_CONTENT": "true"},
    "openinference": {},
}


def instrumentations_python() -> Path:
    python = Path(
        os.environ.get("CANDOR_INSTRUMENTATIONS_PYTHON") or ROOT / ".venv" / "instrumentations" / "bin" / "python"
    )
    if not python.exists():
        pytest.fail(f"{python} is missing: `make instrumentations` installs requirements/instrumentations.txt")
    return python


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeLLM]:
    yield from running_fake_llm()


@pytest.mark.parametrize("library", list(MODES))
def test_instrumentation_lands_a_complete_trace(
    library: str, live: LiveServer, org_a: Org, fake_openai: FakeLLM
) -> None:
    trace_id = unique(library)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "TRACELOOP_", "DJANGO_"))}
    env.update(MODES[library])
    run = subprocess.run(
        [str(instrumentations_python()), str(APP), library, live.url, org_a.secret_key, fake_openai.openai_base_url,
         trace_id],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Failed to export" not in run.stderr, run.stderr
    assert any(r.body.get("model") == "gpt-4o-mini" for r in fake_openai.requests), "the app never called the fake"

    response = live.api(org_a.secret_key).get(f"/api/v1/traces/{trace_id}")
    assert response.status_code == 200, f"{library}: no trace {trace_id}: {response.text}\n{run.stderr}"
    trace: dict[str, Any] = response.json()
    assert (trace["feature"], trace["prompt_version"], trace["customer_id"]) == (
        "support-copilot", "support-v2.3", "cus_acme")  # fmt: skip
    # The requested model, or the one the response names (OpenInference; the fake answers "gpt-4o-mini-fake").
    assert trace["model"].startswith("gpt-4o-mini") and trace["provider"] == "openai", trace
    assert trace["input_tokens"] and trace["input_tokens"] > 0 and trace["output_tokens"] > 0, trace
    assert trace["cost_usd"] is not None and float(trace["cost_usd"]) > 0, trace
    assert trace["input"] == QUESTION, trace  # the user's message, not the system prompt
    assert "Fake rationale" in trace["output"], trace  # the fake's completion text
    assert any(span["kind"] == "llm" for span in trace["spans"]), trace["spans"]
