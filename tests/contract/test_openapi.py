"""The OpenAPI schema says what the server does: Schemathesis, every check and phase, against the live server.

A team that generates a typed client from /api/v1/schema/ must get a right client: requests
the schema allows are accepted, requests it forbids are refused, and every answer (status,
content type, headers, body) is one the schema documents.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]


def test_schemathesis_finds_no_mismatch(live: Any, scratch_org_cleanup: None, tmp_path: Path) -> None:
    from tenants.services import organization_create

    # An organization of its own: the fuzzer writes budgets (an organization-wide $0 cap among them), keys and
    # traces that tests sharing org_a would read after it (a budget check then answered "block").
    org = organization_create(slug=f"scratch-contract-{uuid.uuid4().hex[:8]}", owner_email="contract@scratch.test")
    report = tmp_path / "report"
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{live.url}/api/v1/schema/",
        "--phases=examples,coverage,fuzzing,stateful",
        f"--header=Authorization: Bearer {org.secret_key}",
        "--max-examples=20",
        "--workers=1",
        "--seed=20261126",
        "--request-timeout=30",
        "--no-color",
        f"--report-dir={report}",
        "--generation-database=none",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.contract.hooks", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    (ROOT / ".var").mkdir(exist_ok=True)
    (ROOT / ".var" / "schemathesis.log").write_text(run.stdout + run.stderr)
    output = run.stdout[-20000:] + run.stderr[-5000:]
    assert run.returncode == 0, output
    assert "No issues found" in output or " passed" in output, output
