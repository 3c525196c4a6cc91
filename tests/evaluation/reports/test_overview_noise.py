"""The overview ranks and flags only moves beyond both windows' noise: a clear fall in success is red and
first; a small one reads "within noise" and ranks by traffic like an unchanged feature."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from evaluation.reports.selectors import Window, overview
from tests.evaluation.experiments_seed import ingest, new_feature, traffic
from tests.fixtures.organizations import in_tenant

START = datetime(2025, 2, 1, tzinfo=UTC)


def _feature(rng: random.Random, before: float, after: float, count: int) -> str:
    key = new_feature()
    earlier = traffic(feature=key, start=START, hours=24 * 7, count=count, rng=rng, success=lambda t: before)
    later = traffic(feature=key, start=START + timedelta(days=7), hours=24 * 7, count=count, rng=rng,
                    success=lambda t: after)  # fmt: skip
    ingest(*(a + b for a, b in zip(earlier, later, strict=True)))
    return key


def test_only_a_clear_fall_is_flagged_and_ranked_first(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(3)
    with in_tenant(org_a):
        fell = _feature(rng, 0.6, 0.35, 400)
        wobbled = _feature(rng, 0.5, 0.47, 900)  # busier, and a little lower: noise at this size
        rows = overview(window=Window(START + timedelta(days=7), START + timedelta(days=14)))
    by_key = {row["key"]: row for row in rows}
    ranked = [row["key"] for row in rows if row["key"] in (fell, wobbled)]
    assert ranked == [fell, wobbled]
    # Its success fell, so its cost per success rose: both clear.
    assert [(r["text"].split(" ")[0], r["clear"]) for r in by_key[fell]["reasons"]] == [
        ("success", True),
        ("cost", True),
    ]
    assert by_key[fell]["attention"] > 0
    success_moves = [r for r in by_key[wobbled]["reasons"] if r["text"].startswith("success")]
    assert [r["clear"] for r in success_moves] == [False] and by_key[wobbled]["attention"] == 0
