"""The overview ranks and flags only moves beyond both windows' noise: a clear fall in success is red and
first; a small one reads "within noise" and ranks by traffic like an unchanged feature."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from evaluation.reports.selectors import Window, overview
from feedback.models import Feature
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
    assert by_key[fell]["attention"] > 0 and not by_key[fell]["previous_thin"]  # a week against a like week
    success_moves = [r for r in by_key[wobbled]["reasons"] if r["text"].startswith("success")]
    assert [r["clear"] for r in success_moves] == [False] and by_key[wobbled]["attention"] == 0


def test_success_from_late_outcomes_is_compared_over_the_days_they_have_come(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """Tickets resolve 4 to 12 h after their traces: at 18:00 today's traces have few outcomes yet, and the
    week read to now looked clearly below the complete week before it."""
    from evaluation.reports.measures import total
    from evaluation.reports.selectors import measures_by
    from evaluation.reports.success import OutcomesSource
    from evaluation.stats import mover_difference

    now = datetime(2025, 5, 10, 18, tzinfo=UTC)
    week = datetime(2025, 5, 4, tzinfo=UTC)
    rng = random.Random(8)

    def late_outcomes(success: Callable[[dict[str, Any]], float]) -> str:
        key = new_feature()
        traces, _, outcomes = traffic(feature=key, start=now - timedelta(days=14), hours=24 * 14, count=28_000,
                                      rng=rng, thumb_rate=0.0, success=success)  # fmt: skip
        started = {t["trace_id"]: datetime.fromisoformat(t["started_at"]) for t in traces}
        come = []
        for outcome in outcomes:
            at = started[outcome["trace_id"]] + timedelta(hours=rng.uniform(4, 12))
            if at <= now:
                come.append({**outcome, "occurred_at": at.isoformat()})
        ingest(traces, [], come)
        return key

    with in_tenant(org_a):
        key = late_outcomes(lambda t: 0.4)
        # A real fall this week, for the wording: success 0.4 -> 0.3.
        fell = late_outcomes(lambda t: 0.3 if datetime.fromisoformat(t["started_at"]) >= week else 0.4)
        window = Window(week, datetime(2025, 5, 11, tzinfo=UTC))
        rows = {r["key"]: r for r in overview(window=window, now=now)}
        row = rows[key]
        # Read to now, the week did look clearly lower: the comparison the overview no longer makes.
        read_now = total(measures_by(feature=Feature.objects.get(key=key), window=window, dims=("day",))[0])
        before = total(measures_by(feature=Feature.objects.get(key=key), window=window.previous(), dims=("day",))[0])
        naive = mover_difference(
            OutcomesSource().estimate(read_now).interval, OutcomesSource().estimate(before).interval
        )
    assert naive.high is not None and naive.high < 0
    assert not any(r["clear"] for r in row["reasons"]) and row["attention"] == 0
    # The comparison says over which days it was made.
    assert rows[fell]["reasons"] and rows[fell]["reasons"][0]["clear"]
    assert rows[fell]["reasons"][0]["text"].endswith("(to 05-09; later outcomes still coming)")
