"""The judges engine stays pure: importing every module loads no Django (the app wraps it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_no_django_import() -> None:
    modules = sorted(p.stem for p in (ROOT / "evaluation" / "judges").glob("*.py") if p.stem != "__init__")
    assert {"checks", "engine", "providers", "sampling", "secrets", "versions"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('evaluation.judges.' + name)\n"
        "print(sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env={})
    assert out.stdout.strip() == "[]"
