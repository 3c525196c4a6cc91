"""A mergeable latency sketch: counts per logarithmic bucket (about 1% relative error).

Bucket i holds values in (GAMMA**(i-1), GAMMA**i]. Sketches from any rollup rows merge
by adding counts, so p50/p95/p99 over any slice come from the rollups alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

GAMMA = 1.02
LOG_GAMMA = math.log(GAMMA)
# SQL that computes the bucket of latency_ms; keep in step with bucket_of().
SQL_BUCKET = "ceil(ln(greatest(latency_ms, 0.001)) / ln(1.02))::int"


def bucket_of(value: float) -> int:
    return math.ceil(math.log(max(value, 0.001)) / LOG_GAMMA)


def merge(sketches: Iterable[Mapping[str, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for sketch in sketches:
        for bucket, count in sketch.items():
            merged[int(bucket)] = merged.get(int(bucket), 0) + int(count)
    return merged


def quantile(sketch: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0..1); returns the bucket's geometric midpoint, within ~1% of the truth.

    By nearest rank (numpy's ``inverted_cdf``, PostgreSQL's ``percentile_disc``): the smallest value with at
    least a share q of the values at or below it. The lower rank, q * (n - 1), gave a small group's p95 and p99
    as its fastest trace (two traces of 850 and 2,300 ms read 850 / 850 / 850)."""
    total = sum(sketch.values())
    if total == 0:
        return None
    rank = max(math.ceil(q * total) - 1, 0)  # 0-based: the value ``rank`` values in
    seen = 0
    for bucket in sorted(sketch):
        seen += sketch[bucket]
        if seen > rank:
            return 2 * GAMMA**bucket / (GAMMA + 1)
    return 2 * GAMMA ** max(sketch) / (GAMMA + 1)
