"""Reads of annotation queues the portal and the demo share: progress per queue and per reviewer,
skips with their reasons, what a reviewer sees of an item (never another reviewer's label)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, Exists, Max, OuterRef, Q

from evaluation.models import AnnotationQueue, CalibrationTarget, Label, QueueItem, QueueSlot, Rubric, SlotStatus
from evaluation.services.shared import utc_now
from feedback.models import FeedbackEvent, Span, Trace


@dataclass(frozen=True)
class QueueProgress:
    items: int
    slots: int
    done: int
    skipped: int
    reserved: int  # held right now (unexpired)
    # Items every one of whose reviewers has labelled them. The other counts are of slots (wanted labels):
    # ``reviewers_per_item`` of them an item, so "397 of 600" labels may be 198 of 300 items done.
    items_labelled: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.skipped

    @property
    def open(self) -> int:
        return self.slots - self.finished

    @property
    def percent(self) -> float:
        return 100.0 * self.finished / self.slots if self.slots else 0.0


def queue_find(queue_id: int) -> AnnotationQueue | None:
    return (
        AnnotationQueue.objects.select_related("rubric", "feature", "judge_version", "judge_version__judge")
        .filter(id=queue_id)
        .first()
    )


def _progress_rows(queue_ids: list[int]) -> dict[int, QueueProgress]:
    now = utc_now()
    slots = (
        QueueSlot.objects.filter(queue_id__in=queue_ids)
        .values("queue_id")
        .annotate(
            slots=Count("id"),
            done=Count("id", filter=Q(status=SlotStatus.DONE)),
            skipped=Count("id", filter=Q(status=SlotStatus.SKIPPED)),
            reserved=Count("id", filter=Q(status=SlotStatus.OPEN, reserved_until__gte=now) & ~Q(reserved_by="")),
        )
    )
    items = dict(
        QueueItem.objects.filter(queue_id__in=queue_ids)
        .values("queue_id")
        .annotate(n=Count("id"))
        .values_list("queue_id", "n")
    )
    unlabelled = QueueSlot.objects.filter(item=OuterRef("pk")).exclude(status=SlotStatus.DONE)
    labelled = dict(
        QueueItem.objects.filter(queue_id__in=queue_ids)
        .exclude(Exists(unlabelled))
        .values("queue_id")
        .annotate(n=Count("id"))
        .values_list("queue_id", "n")
    )
    out = {qid: QueueProgress(items.get(qid, 0), 0, 0, 0, 0) for qid in queue_ids}
    for row in slots:
        qid = row["queue_id"]
        out[qid] = QueueProgress(
            items.get(qid, 0), row["slots"], row["done"], row["skipped"], row["reserved"], labelled.get(qid, 0)
        )
    return out


def queue_progress(queue: AnnotationQueue) -> QueueProgress:
    return _progress_rows([queue.id])[queue.id]


def queues_with_progress() -> list[tuple[AnnotationQueue, QueueProgress]]:
    queues = list(AnnotationQueue.objects.select_related("rubric", "feature", "judge_version__judge"))
    progress = _progress_rows([q.id for q in queues])
    return [(q, progress[q.id]) for q in queues]


@dataclass(frozen=True)
class ReviewerProgress:
    reviewer: str
    done: int
    skipped: int
    reserved: int
    last_at: datetime | None


def reviewer_progress(queue: AnnotationQueue) -> list[ReviewerProgress]:
    """Per reviewer: labels given, skips, slots held now, last answer; most labels first."""
    now = utc_now()
    rows = (
        QueueSlot.objects.filter(queue=queue)
        .exclude(reserved_by="")
        .values("reserved_by")
        .annotate(
            done=Count("id", filter=Q(status=SlotStatus.DONE)),
            skipped=Count("id", filter=Q(status=SlotStatus.SKIPPED)),
            reserved=Count("id", filter=Q(status=SlotStatus.OPEN, reserved_until__gte=now)),
            last_at=Max("completed_at"),
        )
        .order_by("-done", "reserved_by")
    )
    return [
        ReviewerProgress(r["reserved_by"], r["done"], r["skipped"], r["reserved"], r["last_at"])
        for r in rows
        if r["done"] or r["skipped"] or r["reserved"]
    ]


def queue_skips(queue: AnnotationQueue, limit: int = 200) -> list[QueueSlot]:
    return list(
        QueueSlot.objects.filter(queue=queue, status=SlotStatus.SKIPPED)
        .select_related("item")
        .order_by("-completed_at")[:limit]
    )


def queue_items(queue: AnnotationQueue, limit: int = 100) -> list[QueueItem]:
    """The latest items with how many of their slots are labelled (``done``) and skipped (no values:
    the queue page shows progress, never the verdicts)."""
    return list(
        queue.items.annotate(
            done=Count("slots", filter=Q(slots__status=SlotStatus.DONE)),
            skipped=Count("slots", filter=Q(slots__status=SlotStatus.SKIPPED)),
        ).order_by("-position")[:limit]
    )


def queue_design_summary(queue: AnnotationQueue) -> list[dict[str, Any]]:
    """Items per stratum with their inclusion probability range: what the sample is made of."""
    from django.db.models import Min

    return list(
        queue.items.values("design", "stratum")
        .annotate(n=Count("id"), pi_min=Min("inclusion_probability"), pi_max=Max("inclusion_probability"))
        .order_by("design", "stratum")
    )


def queue_calibration_target(queue: AnnotationQueue) -> int | None:
    """The id of the calibration (judge version x rubric version x feature) this queue's labels feed,
    once the refresh sweep has created it; None before, or without a judge."""
    if queue.judge_version_id is None:
        return None
    targets = CalibrationTarget.objects.filter(judge_version_id=queue.judge_version_id, rubric_id=queue.rubric_id)
    if queue.feature_id is None:
        targets = targets.filter(feature__isnull=True)
    else:
        targets = targets.filter(feature_id=queue.feature_id)
    return targets.values_list("id", flat=True).first()


def rubric_newer_version(queue: AnnotationQueue) -> Rubric | None:
    """The rubric's latest version when it is newer than the one the queue pinned."""
    return Rubric.objects.filter(name=queue.rubric.name, version__gt=queue.rubric.version).order_by("-version").first()


@dataclass
class ItemView:
    """What a reviewer sees of one slot: the trace, its context and spans, the end user's feedback
    (hidden by default on the page), and only this reviewer's own label."""

    slot: QueueSlot
    trace: Trace | None
    context: list[str] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    feedback: list[FeedbackEvent] = field(default_factory=list)
    own_label: Label | None = None
    answer: str = ""  # the own label as the page names it (set by the page: "Good", "4", a category)
    # The feedback with, for edits, the diff of the user's edit (set by the page).
    feedback_rows: list[tuple[FeedbackEvent, list[tuple[str, str]] | None]] = field(default_factory=list)

    @property
    def about(self) -> list[tuple[str, str]]:
        """Who the answer was for: the customer and the app's own metadata (auth=sso, plan, region...), short
        values only; an answer can be right for one kind of user and wrong for another."""
        if self.trace is None:
            return []
        rows = [("customer", self.trace.customer_id)] if self.trace.customer_id else []
        for key, value in sorted((self.trace.metadata or {}).items()):
            if key in CONTEXT_KEYS or key.startswith(("candor_", "otel_")) or isinstance(value, dict | list):
                continue
            text = str(value)
            if len(text) <= 80:
                rows.append((str(key), text))
        return rows[:MAX_ABOUT]

    @property
    def span_rows(self) -> list[tuple[Span, float | None]]:
        return [(s, (s.end - s.start).total_seconds() * 1000 if s.start and s.end else None) for s in self.spans]


# How many of a trace's metadata entries a reviewer sees beside it.
MAX_ABOUT = 12
# Metadata keys that carry the retrieved context a reviewer should see (as the judges read it).
CONTEXT_KEYS = ("context", "retrieved_context", "documents")


def _context(trace: Trace, spans: list[Span]) -> list[str]:
    metadata = trace.metadata or {}
    for key in CONTEXT_KEYS:
        value = metadata.get(key)
        if value:
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    out: list[str] = []
    for span in spans:
        if span.kind != "retrieval":
            continue
        for key in ("output", "documents", "content"):
            value = (span.attributes or {}).get(key)
            if isinstance(value, list):
                out += [str(v) for v in value]
            elif value:
                out.append(str(value))
    return out


def item_views(slots: list[QueueSlot]) -> list[ItemView]:
    """Views of several slots in four queries (the page renders the current and the next item)."""
    trace_ids = [s.item.trace_id for s in slots]
    traces = {
        t.trace_id: t for t in Trace.objects.filter(trace_id__in=trace_ids).select_related("prompt_version", "feature")
    }
    spans: dict[str, list[Span]] = {}
    for span in Span.objects.filter(trace_id__in=trace_ids).order_by("start", "span_id"):
        spans.setdefault(span.trace_id, []).append(span)
    feedback: dict[str, list[FeedbackEvent]] = {}
    for event in FeedbackEvent.objects.filter(trace_id__in=trace_ids, kind__in=("thumb", "rating", "comment", "edit")):
        feedback.setdefault(event.trace_id, []).append(event)
    labels = {label.id: label for label in Label.objects.filter(id__in=[s.label_id for s in slots if s.label_id])}
    views = []
    for slot in slots:
        trace = traces.get(slot.item.trace_id)
        trace_spans = spans.get(slot.item.trace_id, [])
        views.append(
            ItemView(
                slot=slot,
                trace=trace,
                context=_context(trace, trace_spans) if trace else [],
                spans=trace_spans,
                feedback=sorted(feedback.get(slot.item.trace_id, []), key=lambda e: (e.occurred_at, e.id)),
                own_label=labels.get(slot.label_id) if slot.label_id else None,
            )  # fmt: skip
        )
    return views


def reviewer_recent_slots(queue: AnnotationQueue, reviewer: str, limit: int = 5) -> list[QueueSlot]:
    """The reviewer's last answered slots, oldest first (the page's history, reached with k)."""
    rows = (
        QueueSlot.objects.filter(queue=queue, reserved_by=reviewer, status__in=[SlotStatus.DONE, SlotStatus.SKIPPED])
        .select_related("item")
        .order_by("-completed_at", "-id")[:limit]
    )
    return list(reversed(rows))


def slot_find(queue: AnnotationQueue, slot_id: int) -> QueueSlot | None:
    return QueueSlot.objects.select_related("item", "queue").filter(queue=queue, id=slot_id).first()
