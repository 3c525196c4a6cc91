"""scoped_scores_summary (what the success estimate and n_scored read, aggregated by the database)
against scoped_scores (one row per trace, its first successful run), on reruns, failures, scores
without a value, other features, other judge versions and scores whose trace never landed."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from evaluation.judges.versions import JudgeVersionSpec
from evaluation.models import JudgeVersion, Score
from evaluation.selectors import (
    TraceScope,
    feature_scores_summaries,
    scoped_scores,
    scoped_scores_count,
    scoped_scores_summary,
)
from evaluation.services.judges import judge_create, judge_version_create
from evaluation.stats import naive_judge_rate
from evaluation.stats.estimators import Moments, NaiveRate
from feedback.models import Feature
from tests.evaluation.helpers import make_traces
from tests.fixtures.organizations import Org, in_tenant, unique


def _score(version: JudgeVersion, trace_id: str, run: int, status: str, value: float | None) -> None:
    Score.objects.create(
        score_id=unique("sc"), trace_id=trace_id, judge_id=version.judge_id, judge_version=version, run_index=run,
        status=status, raw_score=value, score=value, passed=None if value is None else value >= 0.5,
    )  # fmt: skip


def _reference(version: JudgeVersion, scope: TraceScope) -> tuple[int, int, Moments]:
    rows = scoped_scores(judge_version=version, scope=scope)
    return len(rows), sum(row.passed for row in rows), Moments.of([row.score for row in rows])


def test_the_summary_is_the_first_successful_run_of_each_trace_in_scope(db: None, org_a: Org) -> None:
    feature = unique("feat")
    with in_tenant(org_a):
        ids = make_traces(24, feature=feature)  # started 2025-04-01
        others = make_traces(3)  # another feature
        judge = judge_create(name=unique("judge"), spec=JudgeVersionSpec(kind="external", scale="continuous"))
        version = judge.current_version
        assert version is not None
        other_version, _ = judge_version_create(judge=judge, spec=JudgeVersionSpec(kind="external", scale="continuous"),
                                                label="v2")  # fmt: skip
        # Run 0 succeeded: it counts, whatever the reruns say.
        _score(version, ids[0], 0, "ok", 0.9)
        _score(version, ids[0], 1, "ok", 0.1)
        # Run 0 failed: the first successful rerun counts.
        _score(version, ids[1], 0, "error", None)
        _score(version, ids[1], 1, "ok", 0.3)
        _score(version, ids[1], 2, "ok", 0.8)
        _score(version, ids[2], 0, "pending", None)
        _score(version, ids[2], 1, "error", None)
        _score(version, ids[2], 2, "ok", 0.6)
        # "ok" with no value is not a successful run.
        _score(version, ids[3], 0, "ok", None)
        _score(version, ids[3], 1, "ok", 0.7)
        # A trace with nothing successful does not count.
        _score(version, ids[4], 0, "error", None)
        values = np.random.default_rng(0).random(18)
        for trace_id, value in zip(ids[5:23], values, strict=True):
            _score(version, trace_id, 0, "ok", float(value))
        _score(other_version, ids[23], 0, "ok", 0.5)  # another judge version
        for trace_id in others:
            _score(version, trace_id, 0, "ok", 0.95)
        _score(version, unique("never-landed"), 0, "ok", 0.2)

        feature_id = Feature.objects.get(key=feature).id
        scopes = {
            "everything": (TraceScope(), 4 + 18 + 3 + 1),
            "feature": (TraceScope(feature_id=feature_id), 4 + 18),
            "window": (
                TraceScope(
                    feature_id=feature_id,
                    since=datetime(2025, 4, 1, tzinfo=UTC),
                    until=datetime(2025, 4, 2, tzinfo=UTC),
                ),
                22,
            ),  # fmt: skip
            "empty window": (TraceScope(feature_id=feature_id, since=datetime(2025, 4, 2, tzinfo=UTC)), 0),
        }
        for name, (scope, n) in scopes.items():
            summary = scoped_scores_summary(judge_version=version, scope=scope)
            ref_n, ref_passed, ref_moments = _reference(version, scope)
            assert (summary.n, ref_n) == (n, n), name
            assert summary.passed == ref_passed, name
            assert scoped_scores_count(judge_version=version, scope=scope) == n, name
            assert summary.moments.n == n, name
            assert summary.moments.mean == pytest.approx(ref_moments.mean, abs=1e-12), name
            assert summary.moments.m2 == pytest.approx(ref_moments.m2, abs=1e-12), name
            passed = [row.passed for row in scoped_scores(judge_version=version, scope=scope)]
            assert NaiveRate.of_counts(summary.passed, summary.n) == naive_judge_rate(passed), name
        first = {row.trace_id: row.score for row in scoped_scores(judge_version=version, scope=scopes["feature"][0])}
        assert [first[t] for t in ids[:4]] == [0.9, 0.3, 0.6, 0.7] and ids[4] not in first
        # The snapshot's one-pass pair (history and window) equals the two summaries read apart.
        for since, until in ((datetime(2025, 4, 1, tzinfo=UTC), datetime(2025, 4, 2, tzinfo=UTC)),
                             (datetime(2025, 4, 2, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC))):  # fmt: skip
            whole, window = feature_scores_summaries(
                judge_version=version, feature_id=feature_id, since=since, until=until
            )
            apart = (
                scoped_scores_summary(judge_version=version, scope=TraceScope(feature_id=feature_id)),
                scoped_scores_summary(
                    judge_version=version, scope=TraceScope(feature_id=feature_id, since=since, until=until)
                ),
            )
            for got, want in zip((whole, window), apart, strict=True):
                assert (got.n, got.passed, got.enriched) == (want.n, want.passed, want.enriched)
                assert got.moments.mean == pytest.approx(want.moments.mean, abs=1e-12, nan_ok=True)
                assert got.moments.m2 == pytest.approx(want.moments.m2, abs=1e-12)


def test_a_traces_label_is_its_reviewers_majority_not_the_latest(db: None, org_a: Org) -> None:
    """One label per trace for every estimate (evaluation.models.trace_labels_sql): each reviewer's latest, then the
    value most reviewers hold, a tie to the value given first. The latest label used to count whoever gave it: one
    reviewer siding with the judge on 42 disagreements turned it from exploratory to gating (PM review)."""
    from datetime import timedelta

    from evaluation.models import Label, Rubric
    from evaluation.selectors import scoped_labels

    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    with in_tenant(org_a):
        rubric = Rubric.objects.create(name=unique("rb"), version=1, scale="binary")

        def label(trace: str, value: float, reviewer: str, minutes: int, source: str = "queue") -> None:
            Label.objects.create(label_id=unique("lb"), trace_id=trace, rubric=rubric, value=value, reviewer=reviewer,
                                 source=source, occurred_at=t0 + timedelta(minutes=minutes))  # fmt: skip

        label("own", 1, "ann", 0)
        label("own", 0, "ann", 5)  # ann corrects herself: her latest counts
        label("tie", 1, "ann", 0)
        label("tie", 0, "bob", 5)  # bob alone against ann: the first given stands
        label("most", 1, "ann", 0)
        label("most", 0, "bob", 5)
        label("most", 0, "cy", 9)  # two of three
        label("anon", 1, "", 0, "api")
        label("anon", 0, "", 5, "api")  # the API's labels without a reviewer are one reviewer's: the latest
        label("widget", 0, "ann", 0, "widget")  # never a label of the audit
        label("turned", 1, "ann", 0)
        label("turned", 0, "bob", 5)
        label("turned", 0, "ann", 9)  # ann comes round to bob: both hold 0
        got = {row.trace_id: row.value for row in scoped_labels(rubric=rubric, scope=TraceScope())}
    assert got == {"own": 0.0, "tie": 1.0, "most": 0.0, "anon": 0.0, "turned": 0.0}
