"""Real Chromium renders the overview, a feature page (charts drawn) and customers with no console
errors and no failed requests."""

from __future__ import annotations

from typing import Any

from feedback.models import Feature
from tests.evaluation.reports.seed import seed_feature
from tests.fixtures.browser import log_in
from tests.fixtures.organizations import in_tenant
from tests.fixtures.rollups import rollups_settled


def test_report_pages_render_without_errors(committed_db: None, live: Any, context: Any, org_a: Any) -> None:
    key = seed_feature(org_a, traces=60)
    with in_tenant(org_a):
        Feature.objects.filter(key=key).update(segment_keys=["auth"])
        rollups_settled()
    page = context.new_page()
    problems: list[str] = []
    # A failed load is checked by URL below (the site has no favicon yet, a known 404 not of these pages).
    page.on(
        "console",
        lambda m: problems.append(f"console: {m.text}")
        if m.type == "error" and not m.text.startswith("Failed to load resource")
        else None,
    )
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None,
    )
    log_in(page, live.url, org_a.owner.email)
    window = "since=2025-03-10&until=2025-03-12"
    page.goto(f"{live.url}{org_a.url(f'features/{key}/')}?{window}&group_by=metadata.auth")
    page.wait_for_load_state("networkidle")
    # Four charts over time and one small multiple per auth segment (sso, password, none), drawn by uPlot.
    assert page.locator("#charts .uplot").count() == 4
    assert page.locator("#segments .uplot").count() == 3
    # With a success source the segments open on success (where a regression of one segment shows), not on
    # the thumbs-down share a PM had to know to switch away from.
    assert page.input_value("#segment-metric") == "success"
    assert page.locator("#segments").get_by_text("sso · Success").count() == 1
    page.select_option("#segment-metric", "thumbs_down_share")
    assert page.locator("#segments .uplot").count() == 3
    page.click("text=Numbers behind the charts")
    assert page.locator("#chart-table tbody tr").count() > 0
    page.goto(f"{live.url}{org_a.url('')}?days=400")
    page.wait_for_load_state("networkidle")
    assert page.locator(f"[data-sparkline='{key}'] .uplot").count() == 2
    # A laptop's width: the top bar wraps rather than widening every page past the window (at 701-1,170px).
    for width in (1000, 800):
        page.set_viewport_size({"width": width, "height": 800})
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), width
    # A phone: each feature is a block of labelled lines, its success on screen (the table scrolled sideways,
    # success out of sight past the feature's notes).
    page.set_viewport_size({"width": 390, "height": 844})
    table = page.locator("[data-testid=features-table]")
    assert table.evaluate("t => t.scrollWidth <= t.parentElement.clientWidth")
    success = table.locator("td[data-label=Success]").first
    box = success.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    assert success.evaluate("td => getComputedStyle(td, '::before').content") == '"Success"'
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{live.url}{org_a.url('customers/')}?{window}")
    page.wait_for_load_state("networkidle")
    assert page.locator("text=Top spenders").count() == 1
    assert problems == []
