"""A reviewer labels ten items of a uniform audit in real Chromium with the keyboard only (number
keys, j/k, s with a reason, h, o): the labels are stored with the queue's design and inclusion
probability, the skip with its reason, and the page logs no error."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from evaluation.models import AnnotationQueue, Label, QueueItem, QueueSlot
from evaluation.services.labels import rubric_version_create
from evaluation.services.queues import queue_create, queue_item_add, reserve_next
from evaluation.services.shared import utc_now
from feedback.models import Feature
from tests.evaluation.helpers import feedback_post, make_traces
from tests.fixtures.browser import log_in
from tests.fixtures.organizations import in_tenant, unique

SCREENSHOT = "/tmp/candor-labeling.png"


def _visible_slot(page: Any) -> str:
    return str(page.locator(".lab-item:not([hidden])").get_attribute("data-slot"))


def _press(page: Any, key: str) -> None:
    """Press a key that moves to another item and wait until the page shows it (as a person would)."""
    before = _visible_slot(page)
    page.keyboard.press(key)
    page.wait_for_function(
        "b => { const p = document.querySelector('.lab-item:not([hidden])'); return p && p.dataset.slot !== b; }",
        arg=before,
    )


def _feedback_shown(page: Any) -> bool:
    """Whether the item in hand shows the user's own feedback, as the page and its key help both say."""
    shown = page.locator(".lab-item:not([hidden]) .lab-feedback").is_visible()
    assert page.locator("[data-feedback-state]").inner_text() == ("hide" if shown else "show")
    return bool(shown)


def test_ten_labels_by_keyboard(committed_db: None, live: Any, context: Any, org_a: Any) -> None:
    with in_tenant(org_a):
        feature = unique("support")
        ids = make_traces(30, feature=feature, metadata={"context": "Refunds are possible within 30 days."})
        feedback_post([{"event_id": str(uuid.uuid4()), "trace_id": t, "kind": "thumb", "value": -1,
                        "comment": "did not help"} for t in ids])  # fmt: skip
        rubric, _ = rubric_version_create(
            name=unique("correct"), scale="binary", description="Is the answer correct and complete?"
        )
        queue = queue_create(
            name=unique("audit"), rubric=rubric, design="uniform", budget=15, feature=Feature.objects.get(key=feature)
        )
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        log_in(page, live.url, org_a.owner.email)
        page.goto(f"{live.url}{org_a.url(f'queues/{queue.id}/label/')}")
        page.wait_for_load_state("networkidle")
        assert page.locator(".lab-item:not([hidden]) .lab-output").is_visible()
        assert page.locator("text=Refunds are possible within 30 days.").first.is_visible()
        # The user's own feedback is hidden until h; h again hides it.
        feedback = page.locator(".lab-item:not([hidden]) .lab-feedback")
        assert not feedback.is_visible()
        page.keyboard.press("h")
        assert feedback.is_visible() and "did not help" in feedback.inner_text()
        page.screenshot(path=SCREENSHOT, full_page=True)
        page.keyboard.press("h")
        assert not feedback.is_visible()
        # o opens the trace in a new tab.
        with context.expect_page() as opened:
            page.keyboard.press("o")
        trace_tab = opened.value
        trace_tab.wait_for_load_state()
        assert "/traces/" in trace_tab.url
        trace_tab.close()
        verdicts = {}
        # Feedback shown with h is for the item in hand: labelling, k, j and a skip each bring the
        # next item with it hidden again, so it sways no other verdict.
        for key in "1011":
            verdicts[_visible_slot(page)] = float(key)
            page.keyboard.press("h")
            assert _feedback_shown(page)
            _press(page, key)
            assert not _feedback_shown(page)
        # Back to the last answer (k), maybe still saving, and forward again (j): nothing changes, and
        # the answer's save does not bounce the page forward off it.
        page.keyboard.press("h")
        _press(page, "k")
        assert not _feedback_shown(page)
        page.wait_for_function("() => !document.querySelector('.lab-item[data-state=saving]')")
        assert page.locator(".lab-item:not([hidden]) [data-answer]").inner_text() == "your label: Good"
        page.keyboard.press("h")
        _press(page, "j")
        assert not _feedback_shown(page)
        # Skip one, with a reason typed after s.
        skipped = _visible_slot(page)
        page.keyboard.press("h")
        assert _feedback_shown(page)
        page.keyboard.press("s")
        page.keyboard.type("Not my area")
        before = _visible_slot(page)
        page.keyboard.press("Enter")
        page.wait_for_function("b => document.querySelector('.lab-item:not([hidden])').dataset.slot !== b", arg=before)
        assert not _feedback_shown(page)
        for key in "101101":
            verdicts[_visible_slot(page)] = float(key)
            _press(page, key)
        page.wait_for_load_state("networkidle")
        page.wait_for_function("() => !document.querySelector('.lab-item[data-state=saving]')")
        page.locator("#lab-progress").get_by_text("labels: 10 of 15").wait_for()
        assert problems == []
    finally:
        page.close()
    with in_tenant(org_a):
        labels = list(Label.objects.filter(rubric=rubric))
        assert len(labels) == 10
        assert {(lb.source, lb.sampling_design, lb.inclusion_probability, lb.reviewer) for lb in labels} == {
            ("queue", "uniform", 0.5, org_a.owner.email)
        }
        slots = {str(s.id): s for s in QueueSlot.objects.filter(queue=queue).select_related("label")}
        assert {slot: slots[slot].label.value for slot in verdicts} == verdicts  # type: ignore[union-attr]
        assert (slots[skipped].status, slots[skipped].skip_reason) == ("skipped", "Not my area")
        QueueSlot.objects.filter(queue=queue).delete()
        QueueItem.objects.filter(queue=queue).delete()
        AnnotationQueue.objects.filter(id=queue.id).delete()
        Label.objects.filter(rubric=rubric).delete()


def test_free_text_by_keyboard_and_a_refused_answer_comes_back(
    committed_db: None, live: Any, context: Any, org_a: Any
) -> None:
    """Free text: enter focuses the box, ctrl+enter saves. An item another reviewer reclaimed (the
    reservation ran out) is refused with the reason shown, and the page stays on it."""
    with in_tenant(org_a):
        ids = make_traces(3)
        rubric, _ = rubric_version_create(name=unique("why"), scale="free_text", description="What is wrong?")
        queue = queue_create(name=unique("notes"), rubric=rubric, design="manual", budget=3)
        for trace_id in ids:
            queue_item_add(queue=queue, trace_id=trace_id)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        log_in(page, live.url, org_a.owner.email)
        page.goto(f"{live.url}{org_a.url(f'queues/{queue.id}/label/')}")
        page.wait_for_load_state("networkidle")
        first = _visible_slot(page)
        page.keyboard.press("Enter")
        page.keyboard.type("The refund window is 30 days, not 14.")
        page.keyboard.press("Control+Enter")
        page.wait_for_function("b => document.querySelector('.lab-item:not([hidden])').dataset.slot !== b", arg=first)
        second = _visible_slot(page)
        page.wait_for_function("() => !document.querySelector('.lab-item[data-state=saving]')")  # saved
        with in_tenant(org_a):
            slot = QueueSlot.objects.get(id=int(second))
            # Ann's reservation runs out and Bo takes the item.
            later = utc_now() + timedelta(seconds=queue.reservation_seconds + 5)
            QueueSlot.objects.filter(id=slot.id).update(reserved_until=utc_now() - timedelta(seconds=1))
            taken = reserve_next(queue=queue, reviewer="bo@example.com", now=later)
            assert taken is not None and taken.id == slot.id
        page.keyboard.press("Enter")
        page.keyboard.type("Too vague.")
        page.keyboard.press("Control+Enter")
        page.locator("#lab-error").get_by_text("reserved by another reviewer").wait_for()
        assert _visible_slot(page) == second
        assert errors == []
    finally:
        page.close()
    with in_tenant(org_a):
        (label,) = Label.objects.filter(rubric=rubric)
        assert (label.text, label.value, str(QueueSlot.objects.get(label=label).id)) == (
            "The refund window is 30 days, not 14.",
            None,
            first,
        )
        QueueSlot.objects.filter(queue=queue).delete()
        QueueItem.objects.filter(queue=queue).delete()
        AnnotationQueue.objects.filter(id=queue.id).delete()
        Label.objects.filter(rubric=rubric).delete()
