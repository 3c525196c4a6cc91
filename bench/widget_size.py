"""Size of the embeddable widget as shipped: raw bytes and gzip bytes (level 9, as served).

Budget: static/widget/candor.js <= 5 KB gzipped. candor.js is hand-written and served as is;
the optional minified copy is informational and is rebuilt with:

    npx terser static/widget/candor.js --compress --mangle --ecma 2020 \
        --comments '/^!/' --output static/widget/candor.min.js

Ends with: RESULT widget raw_bytes=N gzip_bytes=N
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

WIDGET_DIR = Path(__file__).resolve().parent.parent / "static" / "widget"
BUDGET_GZIP_BYTES = 5 * 1024


def sizes(path: Path) -> tuple[int, int]:
    """Raw and gzip (level 9, mtime 0) sizes of one file, in bytes."""
    data = path.read_bytes()
    return len(data), len(gzip.compress(data, compresslevel=9, mtime=0))


def main() -> int:
    source = WIDGET_DIR / "candor.js"
    raw, gz = sizes(source)
    print(f"{source.name}: raw {raw} B, gzip {gz} B (budget {BUDGET_GZIP_BYTES} B)")
    minified = WIDGET_DIR / "candor.min.js"
    if minified.exists():
        min_raw, min_gz = sizes(minified)
        print(f"{minified.name}: raw {min_raw} B, gzip {min_gz} B (informational)")
    if gz > BUDGET_GZIP_BYTES:
        print(f"over budget by {gz - BUDGET_GZIP_BYTES} B gzipped", file=sys.stderr)
    print(f"RESULT widget raw_bytes={raw} gzip_bytes={gz}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
