"""Calibration kept current: labels and scores that arrive mark their (judge version x rubric x
feature) due; the sweep stores a snapshot equal to the report computed on demand; new scores
alone refresh at most once a minute; a label posted to the API is recomputed by the real worker."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

from evaluation.models import CalibrationSnapshot, CalibrationTarget, Judge, Rubric
from evaluation.selectors import TraceScope
from evaluation.services.calibration import calibration_report, success_estimate
from evaluation.services.calibration_refresh import _FROM_SCORES, SCORE_INTERVAL, calibration_sweep, success_window
from evaluation.services.shared import utc_now
from feedback.models import Feature
from tests.evaluation.api.test_calibration import World, post_all, seed_world, simulate
from tests.evaluation.helpers import finished_scores_analyzed, sweep_until
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.server import ApiClient, wait_for

VOLATILE = {"computed_at"}


def _stable(report: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in report.items() if key not in VOLATILE}


def _world(api: ApiClient, n: int = 80, seed: int = 3) -> World:
    good, score = simulate(n, seed=seed, separation=0.6, noise=0.15)
    return seed_world(api, scores=list(score), labels={i: {"value": int(good[i])} for i in range(n)})


def _target(world: World) -> CalibrationTarget | None:
    return CalibrationTarget.objects.filter(
        judge_version__judge__name=world.judge, rubric__name=world.rubric, feature__key=world.feature
    ).first()


def test_a_sweep_stores_the_report_the_api_computes(api_a: ApiClient, org_a: Org, committed_db: None) -> None:
    world = _world(api_a)
    with in_tenant(org_a):
        now = utc_now()
        sweep_until(lambda: CalibrationSnapshot.objects.filter(target=_target(world)).exists(), now=now)
        target = _target(world)
        assert target is not None and target.refreshed_at is not None
        # Not due again, or due a minute after the claim: the session worker's own sweep, re-reading the
        # last minute's scores, may mark the target while this one computes it (then it waits the minute).
        assert target.due_at is None or target.due_at == target.refreshed_at + SCORE_INTERVAL, target.due_at
        snapshot = CalibrationSnapshot.objects.get(target=target)
        judge = Judge.objects.get(name=world.judge)
        rubric = Rubric.objects.get(name=world.rubric)
        feature = Feature.objects.get(key=world.feature)
        expected = calibration_report(
            judge=judge, judge_version=target.judge_version, rubric=rubric,
            scope=TraceScope(feature_id=feature.id), feature=world.feature,
        )  # fmt: skip
        assert _stable(snapshot.report) == _stable(expected)
        assert snapshot.n_labels == 80 and snapshot.verdict == expected["verdict"] != ""
        assert snapshot.calibrator is not None and snapshot.calibrator["method"] == "platt"
        window = success_window(snapshot.computed_at)
        assert snapshot.success == success_estimate(
            feature=world.feature, rubric=rubric, judge=judge, judge_version=target.judge_version,
            scope=TraceScope(feature_id=feature.id, since=window.since, until=window.until), window=window,
        )  # fmt: skip
        # Nothing new: the next sweep leaves it alone.
        calibration_sweep(now=now + timedelta(seconds=5))
        assert CalibrationSnapshot.objects.filter(target=target).count() == 1


def test_new_labels_refresh_at_once_and_new_scores_at_most_once_a_minute(
    api_a: ApiClient, org_a: Org, committed_db: None
) -> None:
    world = _world(api_a, seed=4)
    with in_tenant(org_a):
        now = utc_now()
        sweep_until(lambda: CalibrationSnapshot.objects.filter(target=_target(world)).exists(), now=now)
        target = _target(world)
        assert target is not None
    # More labels: due at once.
    extra = [{"label_id": unique("lb"), "trace_id": t, "rubric": world.rubric, "value": 0} for t in world.trace_ids[:5]]
    post_all(api_a, "/api/v1/labels", extra)
    with in_tenant(org_a):
        snapshots = CalibrationSnapshot.objects.filter(target=target)
        sweep_until(lambda: snapshots.count() == 2, now=now + timedelta(seconds=1))
        assert snapshots.count() == 2
        # The five relabels replaced earlier verdicts: the latest label per trace counts.
        assert snapshots.first().n_labels == 80  # type: ignore[union-attr]
    # A new score on a new trace of the feature: not before a minute after the last refresh.
    trace = unique("late")
    post_all(api_a, "/api/v1/traces", [{"trace_id": trace, "feature": world.feature}])
    post_all(api_a, "/api/v1/scores", [{"score_id": unique("sc"), "trace_id": trace, "name": world.judge,
                                        "value": 0.9, "scale": "continuous"}])  # fmt: skip
    with in_tenant(org_a):
        later = utc_now()
        calibration_sweep(now=later)
        assert CalibrationSnapshot.objects.filter(target=target).count() == 2
        target.refresh_from_db()
        assert target.due_at is not None and target.due_at >= now + timedelta(seconds=1) + SCORE_INTERVAL
        sweep_until(lambda: snapshots.count() == 3, now=target.due_at)
        latest = snapshots.first()
        assert snapshots.count() == 3
        assert latest is not None and latest.n_scored == 81


def test_labels_posted_to_the_api_are_recomputed_by_the_worker(
    api_a: ApiClient, org_a: Org, committed_db: None, celery_worker: None
) -> None:
    world = _world(api_a, n=40, seed=5)

    def snapshot_exists() -> bool:
        with in_tenant(org_a):
            return CalibrationSnapshot.objects.filter(
                target__rubric__name=world.rubric, target__feature__key=world.feature, n_labels=40
            ).exists()

    wait_for(snapshot_exists, timeout=60)


def test_widget_thumbs_and_ratings_become_widget_labels_that_calibration_never_counts(
    api_a: ApiClient, org_a: Org, committed_db: None
) -> None:
    import uuid

    from evaluation.models import Label, WidgetLabelMap

    world = _world(api_a, n=30, seed=6)
    early = unique("early")  # feedback before its trace: copied once the trace lands
    events = [
        {"event_id": str(uuid.uuid4()), "trace_id": trace, "kind": kind, "value": value, "user_id": "u"}
        for trace, kind, value in [
            (world.trace_ids[0], "thumb", 1), (world.trace_ids[1], "thumb", -1), (world.trace_ids[2], "rating", 5),
            (world.trace_ids[3], "rating", 2), (world.trace_ids[4], "copy", None), (early, "thumb", -1),
        ]
    ]  # fmt: skip
    # Feedback whose trace never comes, sent first: it must hold nothing back.
    orphan = {"event_id": str(uuid.uuid4()), "trace_id": unique("never"), "kind": "thumb", "value": 1}
    post_all(api_a, "/api/v1/feedback", [orphan])
    post_all(api_a, "/api/v1/feedback", [{k: v for k, v in e.items() if v is not None} for e in events])
    with in_tenant(org_a):
        sweep_until(lambda: CalibrationSnapshot.objects.filter(target=_target(world)).exists())
        target = _target(world)
        assert target is not None
        before = CalibrationSnapshot.objects.filter(target=target).first()
        rubric = Rubric.objects.get(name=world.rubric)
        WidgetLabelMap.objects.create(rubric=rubric, feature=Feature.objects.get(key=world.feature))
        calibration_sweep()
        copied = Label.objects.filter(rubric=rubric, source="widget")
        assert early not in set(copied.values_list("trace_id", flat=True))  # its feature is not known yet
    post_all(api_a, "/api/v1/traces", [{"trace_id": early, "feature": world.feature}])
    with in_tenant(org_a):
        calibration_sweep()
        widget = dict(copied.values_list("trace_id", "value"))
        # Exactly this feature's thumbs and ratings: other organizations' and other tests' feedback
        # without a trace is never copied.
        assert widget == {world.trace_ids[0]: 1.0, world.trace_ids[1]: 0.0, world.trace_ids[2]: 1.0,
                          world.trace_ids[3]: 0.0, early: 0.0}  # fmt: skip
        # Posted through the API (a backend relaying its users' thumbs): the design names that door.
        assert set(Label.objects.filter(source="widget", rubric=rubric).values_list("sampling_design", flat=True)) == {
            "api"
        }
        # Widget labels are no sample: the calibration did not move and was not even recomputed.
        assert CalibrationSnapshot.objects.filter(target=target).first() == before
        calibration_sweep()  # again: nothing doubled
        assert copied.count() == 5


def test_a_refresh_claims_at_most_its_batch_when_the_planner_thinks_no_target_is_due(db: None, org_a: Org) -> None:
    # Targets deleted (or rolled back) and then analyzed, as autovacuum does: no live rows over
    # non-empty pages. A claim's "LIMIT n FOR UPDATE SKIP LOCKED" as a subquery of UPDATE ... FROM
    # was then rerun for every row (the judge runner's claim did this: one claim took every score).
    from django.db import connection

    from evaluation.services.calibration_refresh import calibration_refresh_due
    from evaluation.services.labels import rubric_version_create
    from tests.evaluation.helpers import offline_judge

    with in_tenant(org_a):
        judge = offline_judge()
        rubric, _ = rubric_version_create(name=unique("claim"), scale="binary")
        features = [Feature.objects.create(key=unique("claim-feature")) for _ in range(40)]
        due = utc_now() - timedelta(minutes=1)

        def targets() -> None:
            CalibrationTarget.objects.bulk_create(
                CalibrationTarget(judge_version=judge.current_version, rubric=rubric, feature=f, due_at=due)
                for f in features
            )

        targets()
        CalibrationTarget.objects.all().delete()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE evaluation_calibrationtarget")  # rolled back with the test's transaction
        targets()
        stats = calibration_refresh_due(limit=1)
        assert stats.refreshed + stats.failed == 1
        assert CalibrationTarget.objects.filter(due_at__isnull=True).count() == 1


def test_a_target_being_refreshed_is_not_due_again_at_once_when_scores_arrive(db: None, org_a: Org) -> None:
    # The worker's sweep and another (the beat's, a test's) run side by side: one claims the target
    # and computes its snapshot; the other marks it from a score that finished meanwhile. New scores
    # alone refresh a target at most once a minute, counted from the claim: when refreshed_at was
    # stamped only after the computation, the second sweep found it never refreshed, made it due at
    # once and stored a second snapshot of the same labels.
    from evaluation.models import Label, Score
    from evaluation.services.calibration_refresh import calibration_claim, calibration_mark
    from evaluation.services.labels import rubric_version_create
    from tests.evaluation.helpers import offline_judge

    with in_tenant(org_a):
        judge = offline_judge()
        version = judge.current_version
        assert version is not None
        rubric, _ = rubric_version_create(name=unique("race"), scale="binary")
        feature = Feature.objects.create(key=unique("race-feature"))
        now = utc_now()
        trace = unique("race-trace")

        def score(at: timedelta) -> None:
            Score.objects.create(
                score_id=unique("sc"), trace_id=trace, judge=judge, judge_version=version, status="ok",
                score=1.0, passed=True, feature=feature, scored_at=now + at,
                run_index=Score.objects.filter(trace_id=trace).count(),
            )  # fmt: skip

        score(-timedelta(seconds=1))
        Label.objects.create(label_id=unique("lb"), trace_id=trace, rubric=rubric, value=1)
        calibration_mark(now=now)
        target = CalibrationTarget.objects.get(rubric=rubric, judge_version=version, feature=feature)
        assert target.due_at == now
        assert target.id in calibration_claim(now=now, limit=10_000)
        score(timedelta(seconds=1))  # finished while the claimed target's snapshot is computed
        calibration_mark(now=now + timedelta(seconds=2))
        target.refresh_from_db()
        assert target.refreshed_at == now
        assert target.due_at == now + SCORE_INTERVAL
        assert target.id not in calibration_claim(now=now + timedelta(seconds=2), limit=10_000)


def test_targets_a_dead_sweep_claimed_are_refreshed_after_its_lease(db: None, org_a: Org) -> None:
    # A sweep claims its batch, then its worker is killed (or an error other than CalibrationError
    # ends it): the claim held the targets with due_at cleared, so nothing refreshed them until new
    # labels or scores came. A claim is a lease now, as the judge runner's are.
    from evaluation.services.calibration_refresh import CLAIM_LEASE, calibration_claim, calibration_refresh_due
    from evaluation.services.labels import rubric_version_create
    from tests.evaluation.helpers import offline_judge

    with in_tenant(org_a):
        judge = offline_judge()
        rubric, _ = rubric_version_create(name=unique("lease"), scale="binary")
        features = [Feature.objects.create(key=unique("lease-feature")) for _ in range(3)]
        now = utc_now()
        targets = CalibrationTarget.objects.bulk_create(
            CalibrationTarget(judge_version=judge.current_version, rubric=rubric, feature=f, due_at=now)
            for f in features
        )
        ids = {target.id for target in targets}
        assert set(calibration_claim(now=now, limit=10_000)) == ids  # then the sweep's worker died
        still_leased = calibration_refresh_due(now=now + CLAIM_LEASE - timedelta(seconds=1))
        assert still_leased.refreshed + still_leased.failed == 0
        after = calibration_refresh_due(now=now + CLAIM_LEASE)
        assert after.refreshed + after.failed == 3
        # Done: the lease ends with the work, and nothing is due until new labels or scores come.
        done = CalibrationTarget.objects.filter(id__in=ids, due_at__isnull=True)
        assert set(done.values_list("id", flat=True)) == ids


def test_the_sweeps_read_of_fresh_scores_takes_the_finished_score_index(org_a: Org, committed_db: None) -> None:
    """The 15 s mark reads the scores finished in the last minute: through the partial index of finished
    scores, not a scan of every score (142 ms an organization at 1M scores, 2.7 ms with it)."""
    now = utc_now()
    # A minute just ahead: the suite's other tests may have finished thousands of scores in the last minute
    # (then a scan is the right plan for them), where a live sweep finds a few among a million.
    ahead = now + timedelta(hours=1)
    params: dict[str, datetime | float] = {"due": now, "now": now, "after": ahead - timedelta(seconds=60),
                                           "upto": ahead, "interval": SCORE_INTERVAL.total_seconds()}  # fmt: skip
    with in_tenant(org_a), transaction.atomic(), connection.cursor() as cursor:
        finished_scores_analyzed()  # rolled back below
        cursor.execute("EXPLAIN " + _FROM_SCORES, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    # Straight or as a bitmap (the suite's other tests leave recent scores behind), through the index.
    assert "Index Scan using score_finished" in plan or "Index Scan on score_finished" in plan, plan
