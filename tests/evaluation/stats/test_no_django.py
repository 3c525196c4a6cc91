import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_stats_package_imports_without_django():
    """evaluation/stats is plain maths: importing it must not pull Django in (STYLE.md)."""
    code = "import sys, evaluation.stats; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
