"""Sampling after traces land: the realized rate per stratum matches the inclusion probabilities,
code checks take every trace in scope, the delay holds traces back, reruns never double a score."""

from __future__ import annotations

import math
from datetime import timedelta

import msgspec

from evaluation.models import Judge, Score
from evaluation.services.judges import judge_enable
from evaluation.services.sampling import sampling_sweep, scores_join
from evaluation.services.shared import utc_now
from tests.evaluation.helpers import code_judge, llm_judge, make_traces, offline_judge, thumbs_down, traces_post
from tests.fixtures.organizations import in_tenant, unique

LATER = timedelta(seconds=10)


def _within_binomial(selected: int, n: int, p: float) -> bool:
    """|selected - np| within 4.5 standard deviations (a false alarm about once in 150,000 runs)."""
    return abs(selected - n * p) <= 4.5 * math.sqrt(n * p * (1 - p)) + 1


def _judging_all_of(feature: str, judge: Judge) -> Judge:
    """The judge, scoped to one feature (a shared test organization holds other tests' traces) and enabled at 100%."""
    from feedback.models import Feature

    judge.feature = Feature.objects.get(key=feature)
    judge.save()
    judge_enable(judge=judge, base_rate=1.0)
    return judge


def test_realized_rate_per_stratum_matches_inclusion_probability(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    feature = unique("feat")
    with in_tenant(org_a):
        ids = make_traces(4000, feature=feature)
        down = ids[:800]
        thumbs_down(down)
        judge = offline_judge(feature=None)
        judge_enable(judge=judge, base_rate=0.1, thumbs_down_multiplier=5.0)
        queued = sampling_sweep(now=utc_now() + LATER)
        assert queued > 0
        scores = Score.objects.filter(judge_id=judge.id, trace_id__in=ids)
        by_stratum = {s: list(scores.filter(stratum=s)) for s in ("base", "thumbs_down")}
        base_n, down_n = len(ids) - len(down), len(down)
        assert {s.inclusion_probability for s in by_stratum["base"]} == {0.1}
        assert {s.inclusion_probability for s in by_stratum["thumbs_down"]} == {0.5}
        assert _within_binomial(len(by_stratum["base"]), base_n, 0.1)
        assert _within_binomial(len(by_stratum["thumbs_down"]), down_n, 0.5)
        assert {s.trace_id for s in by_stratum["thumbs_down"]} <= set(down)
        assert all(s.sampling_design == "sampled" and s.status == "pending" for s in scores)
        # A second sweep (a retried task, a second worker) queues nothing new.
        before = scores.count()
        assert sampling_sweep(now=utc_now() + LATER) == 0
        assert scores.count() == before


def test_all_thumbs_down_and_ten_percent(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        ids = make_traces(300)
        thumbs_down(ids[:40])
        judge = offline_judge()
        judge_enable(judge=judge, base_rate=0.1, all_thumbs_down=True)
        sampling_sweep(now=utc_now() + LATER)
        sampled = set(Score.objects.filter(judge_id=judge.id).values_list("trace_id", flat=True))
        assert set(ids[:40]) <= sampled  # every thumbs-down, with p = 1
        assert Score.objects.filter(judge_id=judge.id, trace_id__in=ids[:40], inclusion_probability=1.0).count() == 40


def test_code_checks_run_on_every_trace_in_scope(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from feedback.models import Feature

    feature = unique("feat")
    with in_tenant(org_a):
        ids = make_traces(50, feature=feature)
        other = make_traces(20)
        judge = code_judge()
        judge.feature = Feature.objects.get(key=feature)
        judge.save()
        judge_enable(judge=judge, base_rate=0.01)
        sampling_sweep(now=utc_now() + LATER)
        scores = Score.objects.filter(judge_id=judge.id)
        assert set(scores.values_list("trace_id", flat=True)) == set(ids)
        assert not scores.filter(trace_id__in=other).exists()
        assert set(scores.values_list("sampling_design", "inclusion_probability").distinct()) == {("all", 1.0)}


def test_delay_lets_late_feedback_be_seen_first(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        judge = offline_judge()
        judge_enable(judge=judge, base_rate=0.0, thumbs_down_multiplier=1.0, all_thumbs_down=False, delay_s=600)
        rule = judge.current_version.sampling  # type: ignore[union-attr]
        rule.thumbs_down_multiplier = 1e9  # every thumbs-down, nothing else
        rule.base_rate = 1e-9
        rule.save()
        ids = make_traces(5)
        assert sampling_sweep(now=utc_now() + LATER) == 0  # within the delay: not decided yet
        thumbs_down(ids[:2])  # feedback arriving during the delay is seen
        assert sampling_sweep(now=utc_now() + timedelta(seconds=700)) == 2
        assert set(Score.objects.filter(judge_id=judge.id).values_list("trace_id", flat=True)) == set(ids[:2])


def test_scores_for_unknown_traces_join_when_the_trace_lands(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from evaluation.services.scores import scores_ingest

    trace_id = unique("late")
    with in_tenant(org_a):
        body = {"score_id": unique("s"), "trace_id": trace_id, "name": unique("ext"), "value": 1}
        result = scores_ingest(body=msgspec.json.encode(body))
        assert result.accepted == 1
        score = Score.objects.get(trace_id=trace_id)
        assert score.feature_id is None
        traces_post([{"trace_id": trace_id, "feature": unique("feat"), "started_at": "2025-04-02T00:00:00Z"}])
        assert scores_join() >= 1
        score.refresh_from_db()
        assert score.feature_id is not None and str(score.trace_day) == "2025-04-02"


def test_a_trace_committed_after_the_sweep_passed_its_id_is_still_decided(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """A slow batch commits IDs below the scan mark: without a look back they would never be decided,
    and their recorded inclusion probability would be a lie (their real one would be 0)."""
    from evaluation.models import SamplingRule

    with in_tenant(org_a):
        judge = offline_judge()
        judge_enable(judge=judge, base_rate=1.0)
        ids = make_traces(3)
        from feedback.models import Trace

        highest = Trace.objects.filter(trace_id__in=ids).order_by("-id").values_list("id", flat=True)[0]
        # As if a sweep had scanned past these IDs while their batch was still committing.
        SamplingRule.objects.filter(judge_version_id=judge.current_version_id).update(scanned_through=highest)
        sampling_sweep(now=utc_now() + LATER)
        assert set(Score.objects.filter(judge_id=judge.id).values_list("trace_id", flat=True)) == set(ids)
        assert sampling_sweep(now=utc_now() + LATER) == 0  # deciding them again queues nothing twice


def test_traces_without_output_are_not_sampled_by_judges_that_need_one(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """An experiment's holdback arm (or a call that failed before answering) stores traces with no output:
    a judge of the output has nothing to judge there. They are left out of its sample instead of queued to
    fail each with missing_input (the demo's helpfulness judge showed 395 such failures a day). A code
    check, which may target the input, still takes them."""
    from feedback.models import Feature

    feature = unique("feat")
    with in_tenant(org_a):
        answered = make_traces(12, feature=feature)
        holdback = make_traces(6, feature=feature, output="") + make_traces(3, feature=feature, output="  \n")
        judges = {"offline": offline_judge(), "code": code_judge(), "llm": llm_judge("openai", "http://127.0.0.1:9/v1")}
        for judge in judges.values():
            judge.feature = Feature.objects.get(key=feature)
            judge.save()
            judge_enable(judge=judge, base_rate=1.0)
        sampling_sweep(now=utc_now() + LATER)
        scored = {
            name: set(Score.objects.filter(judge_id=judge.id).values_list("trace_id", flat=True))
            for name, judge in judges.items()
        }
    assert scored["offline"] == scored["llm"] == set(answered)
    assert scored["code"] == set(answered) | set(holdback)


def test_a_backfill_of_a_judge_of_the_output_leaves_traces_without_one_out(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """The backfill counts, prices and queues what the judge can run on: as its sampling does."""
    from datetime import UTC, datetime

    from evaluation.services.backfill import backfill_estimate, backfill_start
    from feedback.models import Feature

    feature = unique("feat")
    with in_tenant(org_a):
        answered = make_traces(5, feature=feature)
        holdback = make_traces(4, feature=feature, output="")
        since, until = datetime(2025, 3, 31, tzinfo=UTC), datetime(2025, 4, 2, tzinfo=UTC)
        queued = {}
        for name, judge in {"offline": offline_judge(), "code": code_judge()}.items():
            judge.feature = Feature.objects.get(key=feature)
            judge.save()
            run = backfill_estimate(judge=judge, since=since, until=until)
            assert run.traces == (5 if name == "offline" else 9)
            backfill_start(run=run)
            queued[name] = set(Score.objects.filter(backfill_id=run.id).values_list("trace_id", flat=True))
    assert queued == {"offline": set(answered), "code": set(answered) | set(holdback)}


def test_a_trace_whose_output_lands_late_is_judged_when_it_lands(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """An SDK exports a long model call (or the root span carrying the answer) after the rest of its trace: the
    trace lands without output, and gets one minutes later, past the sweep's look back. A judge of the output
    draws it at the first sweep and waits; the run is queued at the first sweep after the output lands."""
    from evaluation.models import OutputWait
    from feedback.models import Feature

    feature = unique("feat")
    with in_tenant(org_a):
        ids = make_traces(4, feature=feature, output="")
        holdback = make_traces(2, feature=feature, output="", fallback=True)  # the non-AI path: no wait
        judges = {"offline": offline_judge(), "code": code_judge()}
        for judge in judges.values():
            judge.feature = Feature.objects.get(key=feature)
            judge.save()
            judge_enable(judge=judge, base_rate=1.0)
        sampling_sweep(now=utc_now() + LATER)
        offline = judges["offline"]
        assert not Score.objects.filter(judge_id=offline.id).exists()
        assert set(OutputWait.objects.filter(judge_id=offline.id).values_list("trace_id", flat=True)) == set(ids)
        assert Score.objects.filter(judge_id=judges["code"].id).count() == 6  # a code check runs at once
        # Three of the four answers land five minutes later; the fourth never does.
        traces_post([{"trace_id": trace_id, "feature": feature, "output": "Use Settings > Security."}
                     for trace_id in ids[:3]])  # fmt: skip
        assert sampling_sweep(now=utc_now() + timedelta(minutes=5)) == 3
        runs = Score.objects.filter(judge_id=offline.id)
        assert {s.trace_id for s in runs} == set(ids[:3])
        assert {(s.sampling_design, s.inclusion_probability, s.status) for s in runs} == {("sampled", 1.0, "pending")}
        assert all(s.feature_id == offline.feature_id and str(s.trace_day) == "2025-04-01" for s in runs)
        assert list(OutputWait.objects.filter(judge_id=offline.id).values_list("trace_id", flat=True)) == [ids[3]]
        assert sampling_sweep(now=utc_now() + timedelta(minutes=6)) == 0  # nothing twice
        assert not Score.objects.filter(judge_id=offline.id, trace_id__in=holdback).exists()


def test_a_drawn_trace_that_never_gets_an_output_is_dropped_after_the_wait(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """A call that failed before answering never gets an output: its draws wait OUTPUT_WAIT, then leave
    unjudged, and an output arriving after that is not judged by the old draw."""
    from evaluation.models import OutputWait
    from evaluation.services.sampling import OUTPUT_WAIT

    feature = unique("feat")
    with in_tenant(org_a):
        ids = make_traces(3, feature=feature, output="")
        judge = _judging_all_of(feature, offline_judge())
        sampling_sweep(now=utc_now() + LATER)
        assert OutputWait.objects.filter(judge_id=judge.id).count() == 3
        sampling_sweep(now=utc_now() + OUTPUT_WAIT + timedelta(minutes=1))
        assert not OutputWait.objects.filter(judge_id=judge.id).exists()
        traces_post([{"trace_id": trace_id, "feature": feature, "output": "Late."} for trace_id in ids])
        assert sampling_sweep(now=utc_now() + OUTPUT_WAIT + timedelta(minutes=2)) == 0
        assert not Score.objects.filter(judge_id=judge.id).exists()


def test_a_paused_judge_keeps_its_draws_and_a_new_version_drops_the_old_ones(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """Draws parked before a pause are released when the judge runs again (the output landed meanwhile), not
    dropped by the hour passing while nothing could run them; draws of a version no longer current go."""
    from evaluation.models import Judge, OutputWait

    feature = unique("feat")
    with in_tenant(org_a):
        ids = make_traces(2, feature=feature, output="")
        judge = _judging_all_of(feature, offline_judge())
        sampling_sweep(now=utc_now() + LATER)
        assert OutputWait.objects.filter(judge_id=judge.id).count() == 2
        Judge.objects.filter(id=judge.id).update(paused=True, paused_reason="budget")
        traces_post([{"trace_id": trace_id, "feature": feature, "output": "Answered."} for trace_id in ids])
        sampling_sweep(now=utc_now() + timedelta(hours=3))  # the judge is paused: its draws stay
        assert OutputWait.objects.filter(judge_id=judge.id).count() == 2
        Judge.objects.filter(id=judge.id).update(paused=False, paused_reason="")
        assert sampling_sweep(now=utc_now() + timedelta(hours=3)) == 2
        assert set(Score.objects.filter(judge_id=judge.id).values_list("trace_id", flat=True)) == set(ids)
        assert not OutputWait.objects.filter(judge_id=judge.id).exists()
        # Parked for version 1; the judge is now at a version of its own: the old draw goes at the next sweep.
        old = make_traces(1, feature=feature, output="")
        sampling_sweep(now=utc_now() + timedelta(hours=3))
        assert list(OutputWait.objects.filter(judge_id=judge.id).values_list("trace_id", flat=True)) == old
        version = judge.current_version
        OutputWait.objects.filter(judge_id=judge.id).update(judge_version_id=version.id + 10_000)
        sampling_sweep(now=utc_now() + timedelta(hours=3))
        assert not OutputWait.objects.filter(judge_id=judge.id).exists()


def test_a_sampling_rule_out_of_bounds_stops_only_its_own_judge(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """The portal used to take 1e308: such a stored rule must not stop the sweep for every judge after it."""
    from evaluation.models import SamplingRule

    feature = unique("feat")
    with in_tenant(org_a):
        ids = make_traces(3, feature=feature)
        broken, working = offline_judge(), offline_judge()
        for judge in (broken, working):
            judge_enable(judge=judge, base_rate=1.0)
        SamplingRule.objects.filter(judge_version_id=broken.current_version_id).update(delay_s=1e308)
        sampling_sweep(now=utc_now() + LATER)
        assert set(ids) <= set(Score.objects.filter(judge_id=working.id).values_list("trace_id", flat=True))
        assert not Score.objects.filter(judge_id=broken.id).exists()
