"""Annotation queues: create and fill one from a feature's traces under a sampling design, add
traces by hand, hand reviewer slots out (never the same one to two reviewers), take a label or a
skip for a slot, all with the design, stratum and inclusion probability the item was selected with.

A queue's rubric version is pinned at creation: when the rubric gets a newer version the queue
keeps labelling under its own (labels under different versions never mix) and nothing stored
changes; the portal says a newer version exists.
"""

from __future__ import annotations

import math
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import IntegrityError, connection, transaction

from evaluation.models import (
    AnnotationQueue,
    JudgeVersion,
    Label,
    LabelSource,
    QueueDesign,
    QueueItem,
    QueueSlot,
    Rubric,
    RubricScale,
    SlotStatus,
)
from evaluation.selectors import TraceScope
from evaluation.services.labels import value_error
from evaluation.services.shared import JudgeServiceError, utc_now
from evaluation.stats.designs import Selection, active_sample, stratified_sample, uniform_from_first_phase
from feedback.models import Feature, Trace

MAX_BUDGET = 100_000
MAX_REVIEWERS = 10
MAX_SKIP_REASON = 500
ENRICHED = (QueueDesign.STRATIFIED, QueueDesign.ACTIVE)
NEEDS_JUDGE = ENRICHED


class QueueError(JudgeServiceError):
    """A queue request refused, with the form field it concerns; nothing was stored."""


# --- Create and fill ---------------------------------------------------------------------------


def queue_rubric(name: str, version: int | None = None) -> Rubric:
    """The rubric version a queue pins: the one named, else the latest."""
    rows = Rubric.objects.filter(name=name) if "\x00" not in name else Rubric.objects.none()
    rubric = (rows.filter(version=version) if version is not None else rows.order_by("-version")).first()
    if rubric is None:
        if version is not None and rows.exists():
            raise QueueError(f"rubric {name!r} has no version {version}", field="rubric")
        raise QueueError(f"no rubric named {name!r}", field="rubric")
    return rubric


def queue_create(
    *,
    name: str,
    rubric: Rubric,
    design: str,
    budget: int,
    reviewers_per_item: int = 1,
    feature: Feature | None = None,
    judge_version: JudgeVersion | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    reservation_seconds: int = 600,
    description: str = "",
    created_by: str = "",
    seed: int | None = None,
) -> AnnotationQueue:
    """A new queue, filled at once from its population unless the design is manual."""
    name = name.strip()
    if not name or len(name) > 100 or "\x00" in name:
        raise QueueError("a name of 1 to 100 characters", field="name")
    if design not in QueueDesign.values:
        raise QueueError(f"unknown design {design!r}; one of {', '.join(QueueDesign.values)}", field="design")
    if not 1 <= budget <= MAX_BUDGET:
        raise QueueError(f"a budget of 1 to {MAX_BUDGET:,} items", field="budget")
    if not 1 <= reviewers_per_item <= MAX_REVIEWERS:
        raise QueueError(f"1 to {MAX_REVIEWERS} reviewers per item", field="reviewers_per_item")
    if not 60 <= reservation_seconds <= 86_400:
        raise QueueError("a reservation lasts 1 minute to 1 day", field="reservation_seconds")
    if design in NEEDS_JUDGE and judge_version is None:
        raise QueueError(f"a {design} queue samples by a judge's scores: choose a judge", field="judge")
    if since is not None and until is not None and since >= until:
        raise QueueError("the window's start comes before its end", field="since")
    if not Rubric.objects.filter(id=rubric.id).exists():
        raise QueueError("that rubric version does not exist", field="rubric")
    if AnnotationQueue.objects.filter(name=name).exists():
        raise QueueError(f"a queue named {name!r} exists already", field="name")
    try:
        with transaction.atomic():
            queue = AnnotationQueue.objects.create(
                name=name, description=description, rubric=rubric, feature=feature, judge_version=judge_version,
                design=design, since=since, until=until, budget=budget, reviewers_per_item=reviewers_per_item,
                reservation_seconds=reservation_seconds, created_by=created_by,
                seed=secrets.randbits(62) if seed is None else seed,
            )  # fmt: skip
            if design != QueueDesign.MANUAL:
                _fill(queue)
    except IntegrityError:
        raise QueueError(f"a queue named {name!r} exists already", field="name") from None
    return queue


@dataclass(frozen=True)
class Candidate:
    trace_id: str
    score: float | None  # the judge's score mapped onto [0, 1]
    raw_score: float | None
    pass_probability: float | None
    # The probability the judge's sampling rule gave the trace of being scored (first phase), and
    # the stratum it was scored in ("base", "thumbs_down", ...); 1 and "" without a judge.
    first_phase: float = 1.0
    first_stratum: str = ""


# One row per eligible trace: in the queue's scope, landed, not in the queue yet. With a judge
# version, only traces it scored (its first successful run), with that score.
_SCORED = """
SELECT DISTINCT ON (s.trace_id) s.trace_id, s.score, s.raw_score, s.pass_probability,
    coalesce(s.inclusion_probability, 1.0), s.stratum
FROM evaluation_score s
WHERE s.judge_version_id = %s AND s.status = 'ok' AND s.score IS NOT NULL
    AND EXISTS (SELECT 1 FROM feedback_trace t0 WHERE t0.trace_id = s.trace_id) {scope}
    AND NOT EXISTS (SELECT 1 FROM evaluation_queueitem qi WHERE qi.queue_id = %s AND qi.trace_id = s.trace_id)
ORDER BY s.trace_id, s.run_index, s.id
"""
_TRACES = """
SELECT DISTINCT t.trace_id, NULL::float8, NULL::float8, NULL::float8, 1.0::float8, ''
FROM feedback_trace t
WHERE TRUE {where}
    AND NOT EXISTS (SELECT 1 FROM evaluation_queueitem qi WHERE qi.queue_id = %s AND qi.trace_id = t.trace_id)
ORDER BY t.trace_id
"""


def queue_population(queue: AnnotationQueue) -> list[Candidate]:
    """The traces the queue may still select, in a fixed order (so a seed reproduces a fill)."""
    scope = TraceScope(feature_id=queue.feature_id, since=queue.since, until=queue.until)
    with connection.cursor() as cursor:
        if queue.judge_version_id is not None:
            where, params = scope.sql("s")
            cursor.execute(_SCORED.format(scope=where), [queue.judge_version_id, *params, queue.id])
        else:
            conditions, params = [], []
            for clause, value in (("t.feature_id = %s", queue.feature_id), ("t.started_at >= %s", queue.since),
                                  ("t.started_at < %s", queue.until)):  # fmt: skip
                if value is not None:
                    conditions.append(f"AND {clause}")
                    params.append(value)
            cursor.execute(_TRACES.format(where=" ".join(conditions)), [*params, queue.id])
        return [
            Candidate(trace_id, score, raw, p, first if 0 < first <= 1 else 1.0, stratum or "")
            for trace_id, score, raw, p, first, stratum in cursor.fetchall()
        ]


def score_stratum(candidate: Candidate, scale: str) -> str:
    """The stratum a judge score falls in: pass / fail (binary), the score (ordinal), a fifth of
    [0, 1] (continuous)."""
    score = candidate.score if candidate.score is not None else 0.0
    if scale == "binary":
        return "judge pass" if score >= 0.5 else "judge fail"
    if scale == "ordinal" and candidate.raw_score is not None:
        return f"judge {int(round(candidate.raw_score))}"
    low = min(int(score * 5), 4) / 5
    return f"judge {low:.1f}-{low + 0.2:.1f}"


def _fill(queue: AnnotationQueue) -> None:
    """Draw the queue's sample. With a judge, the population is what the judge scored, itself a
    sample with known probabilities (its sampling rule: e.g. 10% plus every thumbs-down); each item
    records its probability of selection from all traces in scope, first phase times second
    (two-phase sampling), so estimates describe every trace, not only the enriched scored ones."""
    population = queue_population(queue)
    rng = np.random.default_rng(queue.seed)
    n = queue.budget - queue.items.count()
    first = np.array([c.first_phase for c in population], dtype=float)
    selections: list[Selection]
    if queue.design == QueueDesign.UNIFORM:
        # Thinned to equal first-phase probabilities, so the audit is uniform over every trace.
        selections = uniform_from_first_phase(first, n, rng)
    else:
        if queue.design == QueueDesign.STRATIFIED:
            scale = str((queue.judge_version.content if queue.judge_version else {}).get("scale", "continuous"))
            mixed = len(set(first.tolist())) > 1  # judge strata split by first-phase stratum: equal pi within
            strata = [score_stratum(c, scale) + (f" · {c.first_stratum}" if mixed else "") for c in population]
            selections = stratified_sample(strata, n, rng)
        else:
            # The judge's own probability of a pass when it gives one, else its score on [0, 1].
            p = [c.pass_probability if c.pass_probability is not None else (c.score or 0.0) for c in population]
            selections = active_sample(p, n, rng)
        selections = [
            Selection(s.index, s.stratum, s.inclusion_probability * float(first[s.index])) for s in selections
        ]
    order = rng.permutation(len(selections))  # reviewers meet strata mixed, not in blocks
    scores = {c.trace_id: c.score for c in population}
    rows = [
        (population[selections[i].index].trace_id, queue.design, selections[i].stratum,
         selections[i].inclusion_probability)
        for i in order
    ]  # fmt: skip
    _items_create(queue, rows, scores=scores, added_by=queue.created_by)
    AnnotationQueue.objects.filter(id=queue.id).update(population=len(population), filled_at=utc_now())
    queue.population, queue.filled_at = len(population), utc_now()


def _check_probability(design: str, probability: float | None) -> None:
    if design == QueueDesign.MANUAL:
        if probability is not None:
            raise QueueError("a trace added by hand has no inclusion probability", field="inclusion_probability")
        return
    if probability is None:
        raise QueueError(f"a {design} item needs its inclusion probability", field="inclusion_probability")
    if not (math.isfinite(probability) and 0 < probability <= 1):
        raise QueueError(f"inclusion probability {probability:g} is outside (0, 1]", field="inclusion_probability")


def _items_create(
    queue: AnnotationQueue,
    rows: Sequence[tuple[str, str, str, float | None]],
    *,
    scores: dict[str, float | None] | None = None,
    added_by: str = "",
) -> list[QueueItem]:
    """Items (trace_id, design, stratum, probability) after the queue's last position, with their slots."""
    for _, design, _, probability in rows:
        _check_probability(design, probability)
    start = (queue.items.order_by("-position").values_list("position", flat=True).first() or 0) + 1
    now = utc_now()
    items = QueueItem.objects.bulk_create(
        QueueItem(
            queue=queue, trace_id=trace_id, position=start + i, design=design, stratum=stratum,
            inclusion_probability=probability, judge_score=(scores or {}).get(trace_id), added_by=added_by,
            created_at=now,
        )
        for i, (trace_id, design, stratum, probability) in enumerate(rows)
    )  # fmt: skip
    QueueSlot.objects.bulk_create(
        QueueSlot(queue=queue, item=item, index=k) for item in items for k in range(queue.reviewers_per_item)
    )
    return items


def queue_item_add(
    *,
    queue: AnnotationQueue,
    trace_id: str,
    added_by: str = "",
    design: str = QueueDesign.MANUAL,
    stratum: str = "",
    inclusion_probability: float | None = None,
) -> QueueItem:
    """One trace into the queue: by hand (design manual, no probability), or selected elsewhere
    under a known design with its probability. The trace must exist; a trace is in a queue once;
    the budget counts every item."""
    trace_id = trace_id.strip()
    if design not in QueueDesign.values:
        raise QueueError(f"unknown design {design!r}", field="design")
    _check_probability(design, inclusion_probability)
    if not trace_id or "\x00" in trace_id or not Trace.objects.filter(trace_id=trace_id).exists():
        raise QueueError(f"no trace {trace_id!r} in this organization", field="trace_id")
    with transaction.atomic():
        locked = AnnotationQueue.objects.select_for_update().get(id=queue.id)  # budget checks serialize
        if QueueItem.objects.filter(queue=locked, trace_id=trace_id).exists():
            raise QueueError(f"trace {trace_id!r} is in this queue already", field="trace_id")
        if locked.items.count() >= locked.budget:
            raise QueueError(f"the queue's budget of {locked.budget:,} items is used", field="trace_id")
        (item,) = _items_create(locked, [(trace_id, design, stratum, inclusion_probability)], added_by=added_by)
    return item


# --- Reservations ------------------------------------------------------------------------------

# A reviewer's own open slot first (a page reload gives back what it held, expired or not, unless
# another reviewer reclaimed it); else the first open slot, by item position, that is free or whose
# reservation expired, of an item the reviewer holds no slot of. SKIP LOCKED: two reviewers asking
# at once lock different rows, never the same one.
_MINE = """
UPDATE evaluation_queueslot SET reserved_until = %(until)s
WHERE id = (
    SELECT s.id FROM evaluation_queueslot s JOIN evaluation_queueitem i ON i.id = s.item_id
    WHERE s.queue_id = %(queue)s AND s.status = 'open' AND s.reserved_by = %(reviewer)s
        AND NOT (s.id = ANY(%(exclude)s))
    ORDER BY i.position, s.index LIMIT 1
    FOR UPDATE OF s SKIP LOCKED
) AND reserved_by = %(reviewer)s
RETURNING id
"""
_CLAIM = """
UPDATE evaluation_queueslot SET reserved_by = %(reviewer)s, reserved_until = %(until)s
WHERE id = (
    SELECT s.id FROM evaluation_queueslot s JOIN evaluation_queueitem i ON i.id = s.item_id
    WHERE s.queue_id = %(queue)s AND s.status = 'open'
        AND (s.reserved_by = '' OR s.reserved_until < %(now)s)
        AND NOT EXISTS (
            SELECT 1 FROM evaluation_queueslot o WHERE o.item_id = s.item_id AND o.reserved_by = %(reviewer)s
        )
        AND NOT (s.id = ANY(%(exclude)s))
    ORDER BY i.position, s.index LIMIT 1
    FOR UPDATE OF s SKIP LOCKED
)
RETURNING id
"""


def _reviewer(reviewer: str) -> str:
    reviewer = reviewer.strip()
    if not reviewer or len(reviewer) > 254 or "\x00" in reviewer:
        raise QueueError("a reviewer (an email) is needed", field="reviewer")
    return reviewer


def reserve_next(
    *, queue: AnnotationQueue, reviewer: str, exclude: Iterable[int] = (), now: datetime | None = None
) -> QueueSlot | None:
    """The next slot for ``reviewer``, reserved for the queue's reservation time; None when nothing
    is left for them. ``exclude``: slots the page already holds (a preloaded next item)."""
    reviewer = _reviewer(reviewer)
    now = now or utc_now()
    params: dict[str, Any] = {
        "queue": queue.id, "reviewer": reviewer, "now": now,
        "until": now + timedelta(seconds=queue.reservation_seconds), "exclude": [int(i) for i in exclude],
    }  # fmt: skip
    for _ in range(5):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(_MINE, params)
                row = cursor.fetchone()
                if row is None:
                    cursor.execute(_CLAIM, params)
                    row = cursor.fetchone()
        except IntegrityError:
            # The same reviewer claimed another slot of this item in a parallel request: ask again.
            continue
        return QueueSlot.objects.select_related("item", "queue").get(id=row[0]) if row else None
    return None


# --- Labels and skips ----------------------------------------------------------------------------


def _locked_slot(slot: QueueSlot, reviewer: str, now: datetime) -> QueueSlot:
    """The slot, locked, if ``reviewer`` may answer it: they hold it (an expired reservation still
    counts while nobody reclaimed it) or they labelled it (a relabel)."""
    locked = QueueSlot.objects.select_for_update().select_related("item", "queue", "queue__rubric").get(id=slot.id)
    if locked.reserved_by != reviewer:
        if locked.reserved_by and (locked.status != SlotStatus.OPEN or (locked.reserved_until or now) >= now):
            raise QueueError("this item is reserved by another reviewer; take the next one", field="slot")
        raise QueueError("this item is not reserved by you; take the next one", field="slot")
    if locked.status == SlotStatus.SKIPPED:
        raise QueueError("you skipped this item", field="slot")
    return locked


def _label_fields(rubric: Rubric, value: float | None, category: str | None, text: str | None) -> str | None:
    """Why this answer does not fit the rubric's scale (None when it does)."""
    given = [x for x in (value, category, text) if x not in (None, "")]
    if len(given) != 1:
        return "give exactly one answer: a value, a category or a text"
    if rubric.scale == RubricScale.FREE_TEXT:
        if not text:
            return f"rubric {rubric.name} v{rubric.version} is free text: write the answer"
        if "\x00" in text or len(text) > 20_000:
            return "the text must be at most 20,000 characters, with no NUL"
        return None
    if rubric.scale == RubricScale.CATEGORICAL:
        if not category:
            return f"rubric {rubric.name} v{rubric.version} is categorical: choose a category"
        if (rubric.categories and category not in rubric.categories) or len(category) > 200 or "\x00" in category:
            return f"{category!r} is not one of {', '.join(map(repr, rubric.categories))}"
        return None
    if value is None:
        return f"rubric {rubric.name} v{rubric.version} is {rubric.scale}: give a value"
    return value_error(value, rubric.scale)


def slot_label(
    *,
    slot: QueueSlot,
    reviewer: str,
    value: float | None = None,
    category: str | None = None,
    text: str | None = None,
    comment: str = "",
    now: datetime | None = None,
) -> Label:
    """The reviewer's label for their slot: a Label of source ``queue`` under the queue's pinned
    rubric version, with the item's design, stratum and inclusion probability. Labelling a slot again
    (going back) adds a newer label for it; the latest is the reviewer's verdict."""
    reviewer = _reviewer(reviewer)
    now = now or utc_now()
    if len(comment) > 20_000 or "\x00" in comment:
        raise QueueError("the comment must be at most 20,000 characters, with no NUL", field="comment")
    with transaction.atomic():
        locked = _locked_slot(slot, reviewer, now)
        rubric = locked.queue.rubric
        problem = _label_fields(rubric, value, category, text)
        if problem:
            raise QueueError(problem, field="value")
        item = locked.item
        label = Label.objects.create(
            label_id=f"queue-{locked.queue_id}-{locked.id}-{uuid.uuid4().hex[:12]}", trace_id=item.trace_id,
            rubric=rubric, value=value, category=category or "", text=text or "", reviewer=reviewer,
            source=LabelSource.QUEUE, sampling_design=item.design, stratum=item.stratum,
            inclusion_probability=item.inclusion_probability, comment=comment, occurred_at=now, created_at=now,
        )  # fmt: skip
        locked.status, locked.label, locked.completed_at, locked.reserved_until = SlotStatus.DONE, label, now, None
        locked.save(update_fields=["status", "label", "completed_at", "reserved_until"])
    return label


def slot_skip(*, slot: QueueSlot, reviewer: str, reason: str, now: datetime | None = None) -> QueueSlot:
    """The reviewer passes on their slot, saying why; the slot is closed (the queue's page lists
    skips with their reasons, so a PM can see what reviewers could not judge)."""
    reviewer = _reviewer(reviewer)
    now = now or utc_now()
    reason = reason.strip()
    if not reason:
        raise QueueError("say why you skip this item", field="reason")
    if len(reason) > MAX_SKIP_REASON or "\x00" in reason:
        raise QueueError(f"a reason of at most {MAX_SKIP_REASON} characters", field="reason")
    with transaction.atomic():
        locked = _locked_slot(slot, reviewer, now)
        if locked.status == SlotStatus.DONE:
            raise QueueError("you labelled this item already", field="slot")
        locked.status, locked.skip_reason, locked.completed_at, locked.reserved_until = (
            SlotStatus.SKIPPED, reason, now, None
        )  # fmt: skip
        locked.save(update_fields=["status", "skip_reason", "completed_at", "reserved_until"])
    return locked
