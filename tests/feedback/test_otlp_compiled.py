"""The OTLP mapping as shipped: compiled by mypyc (bin/build-accel, run by make install) and used
only while it is built from the source as it is, mapping every export exactly as the Python does."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

import feedback
from feedback import otlp
from tests.feedback.test_otlp import T0, _one_span_request, _record_spans, to_otlp_json

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "feedback" / "otlp.py"


def _as_python() -> ModuleType:
    """feedback/otlp.py run as Python, beside whatever `feedback.otlp` is."""
    spec = importlib.util.spec_from_file_location("otlp_as_python", SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler: the mapping is Python")
@pytest.mark.skipif(bool(os.environ.get("CANDOR_PURE_PYTHON")), reason="CANDOR_PURE_PYTHON asks for the Python")
def test_the_mapping_runs_compiled_from_its_current_source() -> None:
    assert (feedback.COMPILED / "SOURCE").exists(), "bin/build-accel has not run (make install runs it)"
    assert otlp.__file__ is not None and otlp.__file__.endswith(".so"), (
        "feedback/otlp.py or feedback/_otlp_wire.c changed since the compiled build: run make install"
    )
    # Protobuf exports are mapped in C (tests/feedback/test_otlp_native.py compares it with the Python).
    assert otlp._native is not None and otlp._native.__file__.endswith(".so")


def test_a_build_of_other_sources_is_not_used(tmp_path: Path) -> None:
    source, native = tmp_path / "otlp.py", tmp_path / "_otlp_wire.c"
    source.write_text("X = 1\n")
    native.write_text("int x;\n")
    digest = hashlib.sha256(b"6\nX = 1\n7\nint x;\n").hexdigest()  # each with its length
    (tmp_path / "SOURCE").write_text(digest + "\n")
    assert feedback.compiled_if_current(tmp_path, source, native) == str(tmp_path)
    native.write_text("int y;\n")  # the C edited after the build
    assert feedback.compiled_if_current(tmp_path, source, native) is None
    native.write_text("int x;\n")
    source.write_text("X = 2\n")  # the Python edited after the build
    assert feedback.compiled_if_current(tmp_path, source, native) is None
    assert feedback.compiled_if_current(tmp_path / "never-built", source, native) is None


def _exports() -> list[tuple[bytes, str]]:
    recorded = encode_spans(_record_spans())
    body = recorded.SerializeToString()
    attribute_cases: list[dict[str, Any]] = [
        {},
        {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 3.0, "gen_ai.usage.output_tokens": -1},
        {"gen_ai.request.model": "", "gen_ai.response.model": "m", "gen_ai.usage.cost": "0.25", "candor.cost_usd": 1},
        {"candor.metadata.team": "a", "candor.fallback": "yes", "candor.ttft_ms": -3, "candor.input": "x" * 70_000},
        {"gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "hi", "gen_ai.completion.0.content": "yo"},
        {"gen_ai.input.messages": "[not json", "gen_ai.output.messages": '{"role": "assistant", "content": 7}'},
        {"llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "q", "x": [1.5, 2.0]},
        {"retrieval.documents": 4, "nan": float("nan"), "flags": [True, False], "big": 2**62},
        {"openinference.span.kind": "EMBEDDING", "llm.model_name": "embed", "llm.token_count.prompt": 10**13},
    ]
    return [
        (body, "application/x-protobuf"),
        (to_otlp_json(recorded), "application/json"),
        (gzip.compress(body), "application/x-protobuf"),
        *(
            (_one_span_request(case, name="n" * 300, service="My Bot (beta)"), "application/x-protobuf")
            for case in attribute_cases
        ),  # fmt: skip
        (b"", "application/x-protobuf"),
        (b"\xff\xfe garbage", "application/x-protobuf"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "", "spanId": "ab"}]}]}]}', "application/json"),
        (
            json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": str(T0)}]}]}]}).encode(),
            "application/json",
        ),  # fmt: skip
        (b"{}", "text/plain"),
    ]


def _outcome(module: Any, body: bytes, content_type: str) -> Any:
    try:
        return module.otlp_parse(body, content_type)
    except ValueError as exc:
        return (type(exc).__name__, str(exc))


def test_compiled_and_python_map_every_export_alike() -> None:
    if otlp.__file__ is None or not otlp.__file__.endswith(".so"):
        pytest.skip("feedback.otlp runs as Python here: nothing compiled to compare")
    python = _as_python()
    for body, content_type in _exports():
        assert _outcome(otlp, body, content_type) == _outcome(python, body, content_type), (body[:80], content_type)


def test_the_mapping_tests_pass_as_python_too() -> None:
    """tests/feedback/test_otlp.py runs on the compiled module in make test; here on the Python."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/feedback/test_otlp.py"],
        cwd=ROOT, env={**os.environ, "CANDOR_PURE_PYTHON": "1"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
