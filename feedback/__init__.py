"""Capture: traces, spans, feedback and outcomes in, rollups out.

feedback.otlp, the OTLP mapping, runs compiled by mypyc when ``make install`` could build it
(bin/build-accel, into <venv>/accel): ~1.4x faster than as Python. The compiled module comes
first on this package's path only while feedback/otlp.py is the source it was built from, so an
edited mapping runs as Python until the next build. CANDOR_PURE_PYTHON=1 leaves it out.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

COMPILED = Path(sys.prefix) / "accel" / "feedback"


def compiled_if_current(compiled: Path, source: Path) -> str | None:
    """The directory of the compiled module if it was built from ``source`` as it is now, else None."""
    try:
        built_from = (compiled / "SOURCE").read_text().strip()
    except OSError:
        return None  # never built (no C compiler, or a failed build): Python
    return str(compiled) if built_from == hashlib.sha256(source.read_bytes()).hexdigest() else None


if not os.environ.get("CANDOR_PURE_PYTHON"):
    _found = compiled_if_current(COMPILED, Path(__file__).resolve().parent / "otlp.py")
    if _found:
        __path__.insert(0, _found)
