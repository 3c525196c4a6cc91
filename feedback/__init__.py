"""Capture: traces, spans, feedback and outcomes in, rollups out.

feedback.otlp, the OTLP mapping, runs compiled by mypyc when ``make install`` could build it
(bin/build-accel, into <venv>/accel), beside feedback._otlp_wire, which maps protobuf exports in C.
The compiled modules come first on this package's path only while feedback/otlp.py and
feedback/_otlp_wire.c are the sources they were built from, so an edited mapping runs as Python
until the next build. CANDOR_PURE_PYTHON=1 leaves them out.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

COMPILED = Path(sys.prefix) / "accel" / "feedback"
HERE = Path(__file__).resolve().parent
SOURCES = (HERE / "otlp.py", HERE / "_otlp_wire.c")


def sources_digest(*sources: Path) -> str:
    """SHA-256 of the sources, each with its length (what bin/build-accel writes to SOURCE)."""
    digest = hashlib.sha256()
    for source in sources:
        data = source.read_bytes()
        digest.update(b"%d\n" % len(data) + data)
    return digest.hexdigest()


def compiled_if_current(compiled: Path, *sources: Path) -> str | None:
    """The directory of the compiled modules if they were built from ``sources`` as they are now, else None."""
    try:
        built_from = (compiled / "SOURCE").read_text().strip()
    except OSError:
        return None  # never built (no C compiler, or a failed build): Python
    return str(compiled) if built_from == sources_digest(*sources) else None


if not os.environ.get("CANDOR_PURE_PYTHON"):
    _found = compiled_if_current(COMPILED, *SOURCES)
    if _found:
        __path__.insert(0, _found)
