"""Annotation queues through their services: each design's inclusion probabilities, the budget, a
trace at most once, reservations that two reviewers never share (threads racing on PostgreSQL),
expiry, skips, N reviewers per item hidden from each other, and bad input refused with nothing
stored changed."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from evaluation.models import AnnotationQueue, Judge, Label, QueueItem, QueueSlot, Rubric, Score
from evaluation.queues_selectors import item_views, queue_progress, queue_skips, reviewer_progress, rubric_newer_version
from evaluation.services.labels import rubric_version_create
from evaluation.services.queues import (
    QueueError,
    queue_create,
    queue_item_add,
    queue_rubric,
    reserve_next,
    slot_label,
    slot_skip,
)
from evaluation.services.shared import JudgeServiceError, utc_now
from evaluation.stats.designs import UNCERTAINTY_FLOOR, proportional_probabilities, uncertainty
from feedback.models import Feature
from tests.evaluation.helpers import make_traces, offline_judge
from tests.fixtures.organizations import Org, in_tenant, unique


def _rubric(scale: str = "binary", **kwargs: Any) -> Rubric:
    rubric, _ = rubric_version_create(name=unique("rubric"), scale=scale, **kwargs)
    return rubric


def _scored(n: int, scores: list[float], *, scale: str = "binary", feature: str | None = None) -> tuple[Judge, str]:
    """n traces of a new feature, each scored by a new judge version with scores[i] (on [0, 1])."""
    feature = feature or unique("feat")
    ids = make_traces(n, feature=feature)
    judge = offline_judge()
    version = judge.current_version
    assert version is not None
    version.content = {**version.content, "scale": scale}
    version.save(update_fields=["content"])
    Score.objects.bulk_create(
        Score(score_id=unique("sc"), trace_id=t, judge=judge, judge_version=version, status="ok",
              raw_score=(1 + 4 * s) if scale == "ordinal" else s, score=s, passed=s >= 0.5,
              pass_probability=s if scale == "continuous" else None)
        for t, s in zip(ids, scores, strict=True)
    )  # fmt: skip
    return judge, feature


def _queue(design: str, budget: int, **kwargs: Any) -> AnnotationQueue:
    kwargs.setdefault("rubric", _rubric())
    return queue_create(name=unique("queue"), design=design, budget=budget, seed=7, **kwargs)


def test_uniform_items_have_probability_n_over_big_n(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        judge, feature = _scored(200, [i % 2 for i in range(200)])
        make_traces(30, feature=feature)  # not scored: outside a judge's population
        make_traces(40)  # another feature
        queue = _queue("uniform", 50, feature=Feature.objects.get(key=feature), judge_version=judge.current_version)
        items = list(queue.items.all())
        assert len(items) == 50 and len({i.trace_id for i in items}) == 50 and queue.population == 200
        assert {(i.design, i.stratum, i.inclusion_probability) for i in items} == {("uniform", "", 50 / 200)}
        assert set(Score.objects.filter(judge_id=judge.id).values_list("trace_id", flat=True)) >= {
            i.trace_id for i in items
        }
        # Without a judge: every trace of the feature (230) is the population.
        plain = _queue("uniform", 23, feature=Feature.objects.get(key=feature))
        assert plain.population == 230
        assert set(plain.items.values_list("inclusion_probability", flat=True)) == {0.1}
        # A budget above the population takes everything, with certainty.
        everything = _queue(
            "uniform", 500, feature=Feature.objects.get(key=feature), judge_version=judge.current_version
        )
        assert everything.items.count() == 200 and set(
            everything.items.values_list("inclusion_probability", flat=True)
        ) == {1.0}
        assert QueueSlot.objects.filter(queue=everything).count() == 200


def test_stratified_items_have_per_stratum_probabilities(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        judge, feature = _scored(200, [0.0] * 40 + [1.0] * 160)
        queue = _queue("stratified", 60, feature=Feature.objects.get(key=feature), judge_version=judge.current_version)
        by_stratum = Counter(queue.items.values_list("stratum", "inclusion_probability"))
        assert by_stratum == {("judge fail", 30 / 40): 30, ("judge pass", 30 / 160): 30}
        failed = set(Score.objects.filter(judge_id=judge.id, score=0.0).values_list("trace_id", flat=True))
        for item in queue.items.all():
            assert (item.trace_id in failed) == (item.stratum == "judge fail")
            assert item.judge_score == (0.0 if item.trace_id in failed else 1.0)
        # A small stratum is taken whole and the rest of the budget goes to the other.
        small = _queue("stratified", 100, feature=Feature.objects.get(key=feature), judge_version=judge.current_version)
        assert Counter(small.items.values_list("stratum", "inclusion_probability")) == {
            ("judge fail", 1.0): 40,
            ("judge pass", 60 / 160): 60,
        }
        # Ordinal judges: one stratum per score.
        ordinal, key = _scored(50, [k / 4 for k in range(5)] * 10, scale="ordinal")
        five = _queue("stratified", 10, feature=Feature.objects.get(key=key), judge_version=ordinal.current_version)
        assert Counter(five.items.values_list("stratum", flat=True)) == {f"judge {k}": 2 for k in range(1, 6)}


def test_active_items_have_positive_probabilities_proportional_to_uncertainty(db: None, org_a: Org) -> None:
    scores = [round(float(x), 3) for x in np.random.default_rng(3).beta(4, 1.5, size=300)]
    with in_tenant(org_a):
        judge, feature = _scored(300, scores, scale="continuous")
        queue = _queue("active", 40, feature=Feature.objects.get(key=feature), judge_version=judge.current_version)
        items = list(queue.items.all())
        assert len(items) == 40 and len({i.trace_id for i in items}) == 40
        trace_ids = sorted(Score.objects.filter(judge_id=judge.id).values_list("trace_id", flat=True))
        by_trace = dict(Score.objects.filter(judge_id=judge.id).values_list("trace_id", "pass_probability"))
        expected = proportional_probabilities(
            UNCERTAINTY_FLOOR + (1 - UNCERTAINTY_FLOOR) * uncertainty([float(by_trace[t] or 0) for t in trace_ids]), 40
        )
        want = dict(zip(trace_ids, expected, strict=True))
        assert min(expected) > 0 and abs(sum(expected) - 40) < 1e-9
        for item in items:
            assert item.design == "active" and item.inclusion_probability == pytest.approx(
                want[item.trace_id], abs=1e-12
            )
            assert item.stratum.startswith("p ")


def test_enriched_designs_need_a_judge_and_bad_queues_are_refused(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        rubric = _rubric()
        before = AnnotationQueue.objects.count()
        cases: list[tuple[dict[str, Any], str]] = [
            ({"design": "stratified", "budget": 10}, "judge"),
            ({"design": "active", "budget": 10}, "judge"),
            ({"design": "uniform", "budget": 0}, "budget"),
            ({"design": "uniform", "budget": 10, "reviewers_per_item": 0}, "reviewers_per_item"),
            ({"design": "clustered", "budget": 10}, "design"),
            ({"design": "uniform", "budget": 10, "since": utc_now(), "until": utc_now() - timedelta(days=1)}, "since"),
        ]
        for kwargs, field in cases:
            with pytest.raises(QueueError) as error:
                queue_create(name=unique("q"), rubric=rubric, **kwargs)
            assert error.value.field == field, error.value.message
        name = unique("q")
        queue_create(name=name, rubric=rubric, design="manual", budget=5)
        with pytest.raises(QueueError, match="exists already"):
            queue_create(name=name, rubric=rubric, design="manual", budget=5)
        with pytest.raises(QueueError, match="has no version 9"):
            queue_rubric(rubric.name, 9)
        with pytest.raises(QueueError, match="no rubric named"):
            queue_rubric(unique("nothing"))
        assert AnnotationQueue.objects.count() == before + 1


def test_budget_and_no_trace_twice(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        ids = make_traces(10)
        queue = _queue("manual", 3)
        assert queue.items.count() == 0 and queue.population is None
        first = queue_item_add(queue=queue, trace_id=ids[0], added_by="pm@example.com")
        assert (first.design, first.inclusion_probability, first.stratum) == ("manual", None, "")
        with pytest.raises(QueueError, match="in this queue already"):
            queue_item_add(queue=queue, trace_id=ids[0])
        with pytest.raises(QueueError, match="no trace"):
            queue_item_add(queue=queue, trace_id="never-sent")
        queue_item_add(queue=queue, trace_id=ids[1])
        queue_item_add(queue=queue, trace_id=ids[2])
        with pytest.raises(QueueError, match="budget of 3 items is used"):
            queue_item_add(queue=queue, trace_id=ids[3])
        assert list(queue.items.values_list("trace_id", flat=True)) == ids[:3]
        # A sampled queue is full at its budget; a hand-added trace it holds is refused too.
        sampled = _queue("uniform", 5, feature=Feature.objects.get(traces__trace_id=ids[0]))
        taken = list(sampled.items.values_list("trace_id", flat=True))
        with pytest.raises(QueueError):
            queue_item_add(queue=sampled, trace_id=taken[0])
        assert sampled.items.count() == 5


def test_an_inclusion_probability_outside_zero_one_is_refused(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        ids = make_traces(3)
        queue = _queue("manual", 10)
        for design, probability in [("uniform", 0.0), ("uniform", 1.5), ("active", -0.1), ("stratified", None),
                                     ("uniform", float("nan")), ("manual", 0.5)]:  # fmt: skip
            with pytest.raises(QueueError) as error:
                queue_item_add(queue=queue, trace_id=ids[0], design=design, inclusion_probability=probability)
            assert error.value.field == "inclusion_probability"
        assert queue.items.count() == 0
        item = queue_item_add(
            queue=queue, trace_id=ids[0], design="stratified", stratum="hard", inclusion_probability=1.0
        )
        assert (item.design, item.stratum, item.inclusion_probability) == ("stratified", "hard", 1.0)


def _manual_queue(n: int, **kwargs: Any) -> tuple[AnnotationQueue, list[str]]:
    ids = make_traces(n)
    queue = _queue("manual", n, **kwargs)
    for trace_id in ids:
        queue_item_add(queue=queue, trace_id=trace_id)
    return queue, ids


def test_a_label_carries_the_item_design_and_the_pinned_rubric(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        feature = unique("feat")
        ids = make_traces(40, feature=feature)
        queue = _queue("uniform", 4, feature=Feature.objects.get(key=feature))
        slot = reserve_next(queue=queue, reviewer="ann@example.com")
        assert slot is not None and slot.item.position == 1 and slot.reserved_by == "ann@example.com"
        label = slot_label(slot=slot, reviewer="ann@example.com", value=1, comment="clear answer")
        assert (label.source, label.sampling_design, label.stratum, label.inclusion_probability) == (
            "queue",
            "uniform",
            "",
            0.1,
        )
        assert (label.trace_id, label.rubric_id, label.value, label.reviewer) == (
            slot.item.trace_id,
            queue.rubric_id,
            1.0,
            "ann@example.com",
        )
        assert label.trace_id in ids
        slot.refresh_from_db()
        assert (slot.status, slot.label_id) == ("done", label.id)
        # Going back and labelling again adds the newer verdict; the slot points at it.
        again = slot_label(slot=slot, reviewer="ann@example.com", value=0)
        slot.refresh_from_db()
        assert (
            slot.label_id == again.id
            and Label.objects.filter(trace_id=label.trace_id, rubric=queue.rubric).count() == 2
        )
        progress = queue_progress(queue)
        assert (progress.items, progress.slots, progress.done, progress.skipped) == (4, 4, 1, 0)
        (mine,) = reviewer_progress(queue)
        assert (mine.reviewer, mine.done, mine.skipped) == ("ann@example.com", 1, 0)


def test_bad_labels_are_refused_and_nothing_changes(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        queue, _ = _manual_queue(2, rubric=_rubric("ordinal"))
        slot = reserve_next(queue=queue, reviewer="ann@example.com")
        assert slot is not None
        bad: list[dict[str, Any]] = [{"value": 6}, {"value": 0}, {"value": 2.5}, {"category": "good"}, {"text": "x"},
                                     {}, {"value": 3, "text": "x"}, {"value": float("nan")}]  # fmt: skip
        for kwargs in bad:
            with pytest.raises(QueueError):
                slot_label(slot=slot, reviewer="ann@example.com", **kwargs)
        with pytest.raises(QueueError, match="reserved by another reviewer"):
            slot_label(slot=slot, reviewer="bo@example.com", value=4)
        with pytest.raises(QueueError, match="reserved by another reviewer"):
            slot_skip(slot=slot, reviewer="bo@example.com", reason="not mine")
        free = QueueSlot.objects.filter(queue=queue).exclude(id=slot.id).get()
        with pytest.raises(QueueError, match="not reserved by you"):
            slot_label(slot=free, reviewer="ann@example.com", value=4)
        assert not Label.objects.filter(rubric=queue.rubric).exists()
        slot.refresh_from_db()
        assert (slot.status, slot.reserved_by, slot.label_id) == ("open", "ann@example.com", None)
        assert slot_label(slot=slot, reviewer="ann@example.com", value=4).value == 4.0


def test_a_rubric_changed_mid_queue_keeps_the_pinned_version(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        rubric = _rubric("binary", description="Is the answer correct?")
        queue, _ = _manual_queue(2, rubric=rubric)
        first = reserve_next(queue=queue, reviewer="ann@example.com")
        assert first is not None
        slot_label(slot=first, reviewer="ann@example.com", value=1)
        assert rubric_newer_version(queue) is None
        newer, created = rubric_version_create(name=rubric.name, scale="ordinal", description="Rate 1-5")
        assert created and newer.version == 2
        queue.refresh_from_db()
        assert queue.rubric_id == rubric.id and rubric_newer_version(queue) == newer
        second = reserve_next(queue=queue, reviewer="ann@example.com")
        assert second is not None
        with pytest.raises(QueueError):
            slot_label(slot=second, reviewer="ann@example.com", value=4)  # the newer scale is not the queue's
        label = slot_label(slot=second, reviewer="ann@example.com", value=0)
        assert label.rubric_id == rubric.id
        assert set(Label.objects.filter(rubric__name=rubric.name).values_list("rubric__version", flat=True)) == {1}


def test_a_free_text_queue_takes_text(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        queue, _ = _manual_queue(1, rubric=_rubric("free_text"))
        slot = reserve_next(queue=queue, reviewer="ann@example.com")
        assert slot is not None
        with pytest.raises(QueueError, match="free text"):
            slot_label(slot=slot, reviewer="ann@example.com", value=1)
        label = slot_label(slot=slot, reviewer="ann@example.com", text="Misses the refund deadline.")
        assert (label.text, label.value) == ("Misses the refund deadline.", None)


def test_expired_reservations_are_reclaimed(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        queue, _ = _manual_queue(1)
        now = utc_now()
        held = reserve_next(queue=queue, reviewer="ann@example.com", now=now)
        assert held is not None
        assert reserve_next(queue=queue, reviewer="bo@example.com", now=now + timedelta(seconds=599)) is None
        # Ann comes back before anyone reclaimed it: still hers.
        assert reserve_next(queue=queue, reviewer="ann@example.com", now=now + timedelta(seconds=700)) == held
        later = now + timedelta(seconds=700 + 601)
        taken = reserve_next(queue=queue, reviewer="bo@example.com", now=later)
        assert taken is not None and taken.id == held.id and taken.reserved_by == "bo@example.com"
        with pytest.raises(QueueError, match="reserved by another reviewer"):
            slot_label(slot=held, reviewer="ann@example.com", value=1, now=later)
        assert slot_label(slot=taken, reviewer="bo@example.com", value=1, now=later).reviewer == "bo@example.com"


def test_skips_need_a_reason_and_are_listed(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        queue, _ = _manual_queue(2)
        slot = reserve_next(queue=queue, reviewer="ann@example.com")
        assert slot is not None
        for reason in ["", "   ", "x" * 501]:
            with pytest.raises(QueueError):
                slot_skip(slot=slot, reviewer="ann@example.com", reason=reason)
        slot_skip(slot=slot, reviewer="ann@example.com", reason="Output is in Portuguese")
        with pytest.raises(QueueError, match="skipped"):
            slot_label(slot=slot, reviewer="ann@example.com", value=1)
        nxt = reserve_next(queue=queue, reviewer="ann@example.com")
        assert nxt is not None and nxt.id != slot.id
        assert reserve_next(queue=queue, reviewer="ann@example.com", exclude=[nxt.id]) is None
        (skip,) = queue_skips(queue)
        assert (skip.skip_reason, skip.reserved_by, skip.item.trace_id) == (
            "Output is in Portuguese",
            "ann@example.com",
            slot.item.trace_id,
        )
        progress = queue_progress(queue)
        assert (progress.done, progress.skipped, progress.reserved, progress.percent) == (0, 1, 1, 50.0)


def test_n_reviewers_per_item_are_different_people_who_never_see_each_other(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        queue, ids = _manual_queue(1, reviewers_per_item=2)
        ann = reserve_next(queue=queue, reviewer="ann@example.com")
        assert ann is not None and ann.index == 0
        assert reserve_next(queue=queue, reviewer="ann@example.com", exclude=[ann.id]) is None  # not a 2nd slot of it
        bo = reserve_next(queue=queue, reviewer="bo@example.com")
        assert bo is not None and bo.index == 1 and bo.item_id == ann.item_id
        assert reserve_next(queue=queue, reviewer="cy@example.com") is None
        slot_label(slot=ann, reviewer="ann@example.com", value=0, comment="wrong plan name")
        (view,) = item_views([QueueSlot.objects.select_related("item").get(id=bo.id)])
        assert view.own_label is None and view.trace is not None and view.trace.trace_id == ids[0]
        slot_label(slot=bo, reviewer="bo@example.com", value=1)
        assert sorted(Label.objects.filter(trace_id=ids[0]).values_list("reviewer", "value")) == [
            ("ann@example.com", 0.0),
            ("bo@example.com", 1.0),
        ]
        (mine,) = item_views([QueueSlot.objects.select_related("item").get(id=bo.id)])
        assert mine.own_label is not None and mine.own_label.reviewer == "bo@example.com"


def test_reviewers_racing_never_get_the_same_slot(committed_db: None, org_a: Org) -> None:
    """Eight reviewers ask for slots at once, each from its own connection, on real PostgreSQL."""
    with in_tenant(org_a):
        queue, _ = _manual_queue(30, reviewers_per_item=2)
    got: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(reviewer: str) -> None:
        from django.db import connection

        try:
            with in_tenant(org_a):
                start.wait()
                mine: list[int] = []
                for _ in range(60):
                    slot = reserve_next(queue=queue, reviewer=reviewer, exclude=mine)
                    if slot is None:
                        break
                    mine.append(slot.id)
                got[reviewer] = mine
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(f"r{i}@example.com",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        taken = [slot for slots in got.values() for slot in slots]
        assert len(taken) == 60 and len(set(taken)) == 60  # every slot handed out once, none twice
        with in_tenant(org_a):
            rows = QueueSlot.objects.filter(queue=queue).values_list("id", "reserved_by", "item_id")
            owner = {slot: reviewer for reviewer, slots in got.items() for slot in slots}
            assert all(owner[slot] == reviewer for slot, reviewer, _ in rows)
            assert len({(item, reviewer) for _, reviewer, item in rows}) == 60  # 2 different people per item
    finally:
        with in_tenant(org_a):
            QueueSlot.objects.filter(queue=queue).delete()
            QueueItem.objects.filter(queue=queue).delete()
            queue.delete()


def test_a_judge_enriched_sample_is_undone_by_two_phase_probabilities(db: None, org_a: Org) -> None:
    """The judge scored 10% of traces plus every thumbs-down: items record first- times second-phase
    probability, a uniform audit keeps equal probabilities, strata split by the judge's own stratum."""
    with in_tenant(org_a):
        judge, feature = _scored(400, [0.0 if i < 100 else 1.0 for i in range(400)])
        Score.objects.filter(judge_id=judge.id, score=0.0).update(inclusion_probability=1.0, stratum="thumbs_down")
        Score.objects.filter(judge_id=judge.id, score=1.0).update(inclusion_probability=0.1, stratum="base")
        scope = {"feature": Feature.objects.get(key=feature), "judge_version": judge.current_version}
        uniform = _queue("uniform", 20, **scope)
        (pi,) = set(uniform.items.values_list("inclusion_probability", flat=True))
        assert pi is not None
        kept = round(0.1 * 20 / pi)  # the thinned frame: ~10 of the thumbs-down traces and all 300 others
        assert 290 <= kept <= 330 and uniform.items.count() == 20
        assert uniform.items.filter(judge_score=0.0).count() <= 5  # not the scored set's 25%
        stratified = _queue("stratified", 40, **scope)
        assert Counter(stratified.items.values_list("stratum", "inclusion_probability")) == {
            ("judge fail · thumbs_down", 20 / 100 * 1.0): 20,
            ("judge pass · base", 20 / 300 * 0.1): 20,
        }
        active = _queue("active", 30, **scope)
        passed = active.items.filter(judge_score=1.0).values_list("inclusion_probability", flat=True)
        assert passed and all(p is not None and 0 < p <= 0.1 for p in passed)


@pytest.mark.parametrize("categories", [["a"], ["a", "a"], ["a", "A"], ["a", " ", "b"], ["a", "x" * 201]])
def test_a_categorical_rubric_needs_two_distinct_named_categories(db: None, org_a: Org, categories: list[str]) -> None:
    with in_tenant(org_a):
        name = unique("topic")
        with pytest.raises(JudgeServiceError) as info:
            rubric_version_create(name=name, scale="categorical", categories=categories)
        assert info.value.field == "categories" and not Rubric.objects.filter(name=name).exists()
        assert _rubric("categorical", categories=["a", "b"]).categories == ["a", "b"]
        assert _rubric("categorical", categories=[]).categories == []  # open: reviewers name the category
