"""The served widget is the build of its readable source: never a stale copy."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

WIDGET = Path(__file__).resolve().parents[2] / "static" / "widget"


def test_served_widget_is_built_from_the_current_source() -> None:
    source_sha = hashlib.sha256((WIDGET / "src" / "candor.js").read_bytes()).hexdigest()[:16]
    header = (WIDGET / "candor.js").read_text().splitlines()[0]
    built_from = re.search(r"sha256:([0-9a-f]{16})", header)
    assert built_from, f"no build header in candor.js: {header[:80]}"
    assert built_from.group(1) == source_sha, "static/widget/candor.js is stale: run `make widget`"
