"""The maths and wire-format modules of feedback import no Django, so they run and test on
plain values (and the demo generator, the OTLP mapping and benchmarks can use them anywhere)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    "feedback.edits",
    "feedback.enums",
    "feedback.otlp",
    "feedback.prices",
    "feedback.schemas",
    "feedback.sketch",
    "feedback.demo_data",
]


def _import_in_fresh_python(modules: list[str]) -> subprocess.CompletedProcess[str]:
    probe = (
        "import sys, importlib\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    loaded = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "    assert not loaded, f'{name} imports Django: {loaded[:3]}'\n"
    )
    return subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}
    )


def test_pure_modules_import_no_django() -> None:
    run = _import_in_fresh_python(PURE)
    assert run.returncode == 0, run.stderr


def test_the_probe_catches_a_django_import() -> None:
    run = _import_in_fresh_python(["feedback.enums", "django.db"])
    assert run.returncode != 0 and "django.db imports Django" in run.stderr
