"""The labeling page on a phone: at 390 px nothing scrolls sideways (the progress bar beside the title
had a 240 px minimum and pushed the page to 420 px), even with a 200-character trace ID; at 1400 px
the progress still sits beside the title."""

from __future__ import annotations

from typing import Any

from evaluation.models import AnnotationQueue, QueueItem, QueueSlot
from evaluation.services.labels import rubric_version_create
from evaluation.services.queues import queue_create, queue_item_add
from tests.evaluation.helpers import make_traces
from tests.fixtures.browser import log_in
from tests.fixtures.organizations import in_tenant, unique

SCREENSHOT = "/tmp/candor-labeling-390.png"
OVERFLOW = "() => [document.documentElement.scrollWidth, window.innerWidth]"


def test_the_label_page_fits_a_phone_and_keeps_its_desktop_layout(
    committed_db: None, live: Any, context: Any, org_a: Any
) -> None:
    with in_tenant(org_a):
        prefix = unique("tr")
        ids = make_traces(2, prefix=prefix + "x" * (196 - len(prefix)))  # IDs of 198 characters
        rubric, _ = rubric_version_create(
            name=unique("helpfulness"), scale="binary", description="Does the answer solve the user's problem?"
        )
        queue = queue_create(name=unique("phone"), rubric=rubric, design="manual", budget=2)
        for trace_id in ids:
            queue_item_add(queue=queue, trace_id=trace_id)
    page = context.new_page()
    try:
        log_in(page, live.url, org_a.owner.email)
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{live.url}{org_a.url(f'queues/{queue.id}/label/')}")
        page.wait_for_load_state("networkidle")
        assert page.locator(".lab-item:not([hidden]) code").inner_text() == ids[0]
        page.screenshot(path=SCREENSHOT, full_page=True)
        scroll_width, inner_width = page.evaluate(OVERFLOW)
        assert scroll_width <= inner_width, f"the page is {scroll_width}px wide at a {inner_width}px viewport"
        progress = page.locator("#lab-progress small").bounding_box()
        assert progress is not None and progress["x"] + progress["width"] <= inner_width
        # On a wide screen the progress stays on the title's row, at the right.
        page.set_viewport_size({"width": 1400, "height": 900})
        scroll_width, inner_width = page.evaluate(OVERFLOW)
        assert scroll_width <= inner_width
        title, bar = page.locator(".lab-head h1").bounding_box(), page.locator("#lab-progress").bounding_box()
        assert title is not None and bar is not None
        assert bar["x"] > title["x"] + title["width"] and bar["y"] < title["y"] + title["height"] * 2
    finally:
        page.close()
        with in_tenant(org_a):
            QueueSlot.objects.filter(queue=queue).delete()
            QueueItem.objects.filter(queue=queue).delete()
            AnnotationQueue.objects.filter(id=queue.id).delete()
