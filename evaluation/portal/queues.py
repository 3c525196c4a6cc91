"""Portal pages of annotation queues: the list with progress, a create form, a queue's page
(progress per reviewer, the sample's strata, skips with their reasons, add a trace by hand) and
the keyboard-first labeling page, which swaps items in with htmx and keeps the next one preloaded.
Thin: forms validate, evaluation.services.queues writes, evaluation.queues_selectors reads."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

from evaluation.models import AnnotationQueue, Judge, QueueDesign, QueueSlot, Rubric, RubricScale
from evaluation.queues_selectors import (
    item_views,
    queue_calibration_target,
    queue_design_summary,
    queue_find,
    queue_items,
    queue_progress,
    queue_skips,
    queues_with_progress,
    reviewer_progress,
    reviewer_recent_slots,
    rubric_newer_version,
    slot_find,
)
from evaluation.services.calibration_refresh import calibration_nudge
from evaluation.services.labels import rubric_categories_check, rubric_version_create
from evaluation.services.queues import (
    QueueError,
    queue_create,
    queue_item_add,
    reserve_next,
    slot_label,
    slot_skip,
)
from evaluation.services.shared import JudgeServiceError, utc_now
from feedback.edits import diff_segments
from feedback.models import Feature
from tenants.access import Role, org_url, role_required

logger = logging.getLogger(__name__)
NEW_RUBRIC = "__new__"
SKIP_REASONS = ("Cannot judge without more context", "Not in my area of expertise", "Trace is broken or empty")


class QueueForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    design = forms.ChoiceField(
        choices=QueueDesign.choices, initial=QueueDesign.UNIFORM,
        help_text="Keep at least a third of your labels in uniform audits: the only unbiased drift signal.",
    )  # fmt: skip
    rubric = forms.ChoiceField(help_text="Pinned: a newer rubric version later does not move this queue")
    new_rubric_name = forms.CharField(max_length=100, required=False, label="New rubric name")
    new_rubric_scale = forms.ChoiceField(choices=RubricScale.choices, required=False, label="New rubric scale")
    new_rubric_categories = forms.CharField(
        max_length=2000, required=False, label="Categories", help_text="Categorical rubrics: comma-separated"
    )
    new_rubric_description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, label="What reviewers judge"
    )
    feature = forms.ChoiceField(required=False, help_text="Only traces of this feature")
    judge = forms.ChoiceField(
        required=False,
        help_text="Sample from the traces its current version scored (its own sampling undone); needed to "
        "stratify or for active",
    )
    since = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), required=False, label="From (trace day)")
    until = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), required=False, label="To (inclusive)")
    budget = forms.IntegerField(min_value=1, max_value=100_000, initial=100, help_text="Items, hand-added ones too")
    reviewers_per_item = forms.IntegerField(min_value=1, max_value=10, initial=1)
    reservation_minutes = forms.IntegerField(min_value=1, max_value=1440, initial=10)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rubrics = [
            (str(r.id), f"{r.name} v{r.version} · {r.scale}") for r in Rubric.objects.order_by("name", "-version")
        ]
        self.fields["rubric"].choices = [*rubrics, (NEW_RUBRIC, "A new rubric…")]  # type: ignore[attr-defined]
        keys = list(Feature.objects.order_by("key").values_list("key", flat=True))
        self.fields["feature"].choices = [("", "All features"), *((k, k) for k in keys)]  # type: ignore[attr-defined]
        judges = Judge.objects.filter(current_version__isnull=False).order_by("name")
        self.fields["judge"].choices = [  # type: ignore[attr-defined]
            ("", "No judge"),
            *((j.name, f"{j.name} v{j.current_version.number}") for j in judges.select_related("current_version")),  # type: ignore[union-attr]
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # Each day under its own field; a day that did not parse has its own error already and is not here.
        for name in ("since", "until"):
            day = data.get(name)
            if day and (day.year < 1970 or day > utc_now().date() + timedelta(days=1)):
                self.add_error(name, f"A day from 1970 up to today, not {day:%Y-%m-%d}.")
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            raise forms.ValidationError("The first day comes before the last.")
        if data.get("rubric") == NEW_RUBRIC and not (data.get("new_rubric_name") or "").strip():
            self.add_error("new_rubric_name", "Name the new rubric.")
        if data.get("rubric") == NEW_RUBRIC and data.get("new_rubric_scale") == RubricScale.CATEGORICAL:
            try:  # said with the form's other errors, not only once they are fixed
                rubric_categories_check(_categories(data.get("new_rubric_categories")))
            except JudgeServiceError as exc:
                self.add_error("new_rubric_categories", exc.message)
        return data


class AddForm(forms.Form):
    trace_id = forms.CharField(max_length=200)


def _categories(typed: str | None) -> list[str]:
    """Every part between commas, blanks too: a blank category is refused rather than dropped unseen."""
    typed = (typed or "").strip()
    return [c.strip() for c in typed.split(",")] if typed else []


def _email(request: HttpRequest) -> str:
    return str(getattr(request.user, "email", ""))


def _queue_or_404(queue_id: int) -> AnnotationQueue:
    queue = queue_find(queue_id)
    if queue is None:
        raise Http404("No such queue.")
    return queue


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# --- List, create, detail ------------------------------------------------------------------------


def queues_list(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(request, "evaluation/queues.html", {"nav": "queues", "rows": queues_with_progress()})


def _rubric_from(form: QueueForm) -> Rubric:
    data = form.cleaned_data
    if data["rubric"] != NEW_RUBRIC:
        rubric = Rubric.objects.filter(id=int(data["rubric"])).first() if data["rubric"].isdigit() else None
        if rubric is None:
            raise QueueError("that rubric version does not exist", field="rubric")
        return rubric
    rubric, _ = rubric_version_create(
        name=data["new_rubric_name"].strip(), scale=data["new_rubric_scale"] or RubricScale.BINARY,
        categories=_categories(data["new_rubric_categories"]), description=data["new_rubric_description"] or "",
    )  # fmt: skip
    return rubric


@role_required(Role.PM)
def queue_new(request: HttpRequest) -> HttpResponse:
    today = utc_now().date()
    form = QueueForm(request.POST or None, initial={"since": today - timedelta(days=30), "until": today})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        judge = Judge.objects.select_related("current_version").filter(name=data["judge"]).first()
        try:
            queue = queue_create(
                name=data["name"], description=data["description"], rubric=_rubric_from(form), design=data["design"],
                budget=data["budget"], reviewers_per_item=data["reviewers_per_item"],
                feature=Feature.objects.filter(key=data["feature"]).first() if data["feature"] else None,
                judge_version=judge.current_version if judge else None,
                since=_day_start(data["since"]) if data["since"] else None,
                until=_day_start(data["until"]) + timedelta(days=1) if data["until"] else None,
                reservation_seconds=data["reservation_minutes"] * 60, created_by=_email(request),
            )  # fmt: skip
        except JudgeServiceError as exc:
            fields = {"reservation_seconds": "reservation_minutes", "scale": "new_rubric_scale",
                      "categories": "new_rubric_categories"}  # fmt: skip
            field = fields.get(exc.field, exc.field)
            form.add_error(field if field in form.fields else None, exc.message)
        else:
            if queue.design != QueueDesign.MANUAL:
                messages.success(
                    request, f"Queue {queue.name}: {queue.items.count():,} traces sampled of {queue.population or 0:,}."
                )
            return redirect(org_url(request, "evaluation:queue-detail", queue.id))
    return TemplateResponse(request, "evaluation/queue_new.html", {"nav": "queues", "form": form})


def _detail_context(queue: AnnotationQueue, add_form: AddForm | None = None) -> dict[str, Any]:
    return {
        "nav": "queues",
        "queue": queue,
        "progress": queue_progress(queue),
        "reviewers": reviewer_progress(queue),
        "skips": queue_skips(queue),
        "strata": queue_design_summary(queue),
        "items": queue_items(queue, limit=25),
        "newer": rubric_newer_version(queue),
        "calibration_target": queue_calibration_target(queue),
        "add_form": add_form or AddForm(),
    }


def queue_detail(request: HttpRequest, queue_id: int) -> HttpResponse:
    queue = _queue_or_404(queue_id)
    return TemplateResponse(request, "evaluation/queue_detail.html", _detail_context(queue))


@require_POST
@role_required(Role.PM)
def queue_add(request: HttpRequest, queue_id: int) -> HttpResponse:
    queue = _queue_or_404(queue_id)
    form = AddForm(request.POST)
    if form.is_valid():
        try:
            item = queue_item_add(queue=queue, trace_id=form.cleaned_data["trace_id"], added_by=_email(request))
        except QueueError as exc:
            form.add_error("trace_id", exc.message)
        else:
            messages.success(request, f"Added {item.trace_id} (design manual: not part of any estimate's sample).")
            return redirect(org_url(request, "evaluation:queue-detail", queue.id))
    return TemplateResponse(request, "evaluation/queue_detail.html", _detail_context(queue, form), status=400)


# --- Labeling --------------------------------------------------------------------------------------


def _held(request: HttpRequest) -> list[int]:
    raw = request.POST.get("held") or request.GET.get("held") or ""
    return [int(part) for part in raw.split(",") if part.strip().isdigit()][:50]


def _panels(request: HttpRequest, queue: AnnotationQueue, slots: list[QueueSlot], **extra: Any) -> dict[str, Any]:
    rubric = queue.rubric
    keys: list[tuple[str, str]] = []
    if rubric.scale == RubricScale.BINARY:
        keys = [("1", "Good"), ("0", "Bad")]
    elif rubric.scale == RubricScale.ORDINAL:
        keys = [(str(k), str(k)) for k in range(1, 6)]
    elif rubric.scale == RubricScale.CONTINUOUS:
        keys = [(str(k + 1), f"{k / 4:g}") for k in range(5)]
    elif rubric.scale == RubricScale.CATEGORICAL:
        keys = [(str(k + 1), c) for k, c in enumerate(rubric.categories[:9])]
    names = {key: name for key, name in keys}
    views = item_views(slots)
    for view in views:
        view.feedback_rows = [
            (e, diff_segments(e.original_text or "", e.edited_text or "") if e.kind == "edit" else None)
            for e in view.feedback
        ]
        label = view.own_label
        if label is not None:
            if label.text or label.category:
                view.answer = label.text or label.category
            elif rubric.scale == RubricScale.BINARY:
                view.answer = names.get(f"{label.value:g}", f"{label.value:g}")
            else:
                view.answer = f"{label.value:g}"
    return {"queue": queue, "rubric": rubric, "views": views, "keys": keys, "skip_reasons": SKIP_REASONS,
            "item_total": queue.items.count(), **extra}  # fmt: skip


@role_required(Role.REVIEWER)
def queue_label(request: HttpRequest, queue_id: int) -> HttpResponse:
    """The labeling page: the reviewer's last answers (k goes back to them), the item they hold and
    the next one, already reserved and rendered (hidden) so moving on costs no round trip."""
    queue = _queue_or_404(queue_id)
    reviewer = _email(request)
    history = reviewer_recent_slots(queue, reviewer)
    current = reserve_next(queue=queue, reviewer=reviewer)
    upcoming = [current] if current else []
    if current is not None:
        following = reserve_next(queue=queue, reviewer=reviewer, exclude=[current.id])
        upcoming += [following] if following else []
    context = _panels(request, queue, [*history, *upcoming], nav="queues", first_current=len(history),
                      has_current=current is not None, newer=rubric_newer_version(queue),
                      progress=queue_progress(queue))  # fmt: skip
    return TemplateResponse(request, "evaluation/queue_label.html", context)


def _next_panel(request: HttpRequest, queue: AnnotationQueue, exclude: list[int]) -> HttpResponse:
    nxt = reserve_next(queue=queue, reviewer=_email(request), exclude=exclude)
    if nxt is None:
        return TemplateResponse(request, "evaluation/queue_label.html#done-panel", {"queue": queue})
    return TemplateResponse(request, "evaluation/queue_label.html#panels", _panels(request, queue, [nxt]))


@role_required(Role.REVIEWER)
def queue_next(request: HttpRequest, queue_id: int) -> HttpResponse:
    """One more reserved item's panel (htmx appends it), or the all-done panel."""
    queue = _queue_or_404(queue_id)
    return _next_panel(request, queue, _held(request))


def _slot_or_404(queue: AnnotationQueue, slot_id: int) -> QueueSlot:
    slot = slot_find(queue, slot_id)
    if slot is None:
        raise Http404("No such item in this queue.")
    return slot


def _float(raw: str | None) -> float | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise QueueError(f"{raw[:40]!r} is not a number", field="value") from None


def _answered(request: HttpRequest, queue: AnnotationQueue) -> HttpResponse:
    """After a label or a skip: the next item's panel when the page asks for one (more=1)."""
    if request.POST.get("more") != "1":
        return HttpResponse("", status=204 if not request.htmx else 200)  # type: ignore[attr-defined]
    return _next_panel(request, queue, _held(request))


@require_POST
@role_required(Role.REVIEWER)
def slot_label_view(request: HttpRequest, queue_id: int, slot_id: int) -> HttpResponse:
    queue = _queue_or_404(queue_id)
    slot = _slot_or_404(queue, slot_id)
    try:
        slot_label(
            slot=slot, reviewer=_email(request), value=_float(request.POST.get("value")),
            category=request.POST.get("category") or None, text=request.POST.get("text") or None,
            comment=request.POST.get("comment", ""),
        )  # fmt: skip
    except QueueError as exc:
        return HttpResponse(exc.message, status=409 if exc.field == "slot" else 400, content_type="text/plain")
    try:
        calibration_nudge()  # the judge's calibration against these labels is recomputed within seconds
    except Exception:  # the label is stored; a broker hiccup only delays the refresh to the beat sweep
        logger.warning("calibration nudge failed after a queue label", exc_info=True)
    return _answered(request, queue)


@require_POST
@role_required(Role.REVIEWER)
def slot_skip_view(request: HttpRequest, queue_id: int, slot_id: int) -> HttpResponse:
    queue = _queue_or_404(queue_id)
    slot = _slot_or_404(queue, slot_id)
    try:
        slot_skip(slot=slot, reviewer=_email(request), reason=request.POST.get("reason", ""))
    except QueueError as exc:
        return HttpResponse(exc.message, status=409 if exc.field == "slot" else 400, content_type="text/plain")
    return _answered(request, queue)


@role_required(Role.REVIEWER)
def queue_progress_view(request: HttpRequest, queue_id: int) -> HttpResponse:
    queue = _queue_or_404(queue_id)
    mine = next((r for r in reviewer_progress(queue) if r.reviewer == _email(request)), None)
    context = {"queue": queue, "progress": queue_progress(queue), "mine": mine}
    return TemplateResponse(request, "evaluation/queue_label.html#progress", context)


urlpatterns: list[URLPattern] = [
    path("queues/", queues_list, name="queue-list"),
    path("queues/new/", queue_new, name="queue-new"),
    path("queues/<int:queue_id>/", queue_detail, name="queue-detail"),
    path("queues/<int:queue_id>/add/", queue_add, name="queue-add"),
    path("queues/<int:queue_id>/label/", queue_label, name="queue-label"),
    path("queues/<int:queue_id>/next/", queue_next, name="queue-next"),
    path("queues/<int:queue_id>/progress/", queue_progress_view, name="queue-progress"),
    path("queues/<int:queue_id>/items/<int:slot_id>/label/", slot_label_view, name="queue-slot-label"),
    path("queues/<int:queue_id>/items/<int:slot_id>/skip/", slot_skip_view, name="queue-slot-skip"),
]
