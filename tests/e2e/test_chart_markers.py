"""Real Chromium at a phone's width: the feature page's charts name each prompt version beside its dashed line
without printing names over one another (two versions two days apart on a small chart did)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from tests.evaluation.experiments_seed import ingest, new_feature, traffic
from tests.fixtures.browser import log_in
from tests.fixtures.organizations import in_tenant

DAY0 = datetime(2025, 4, 1, tzinfo=UTC)
VERSIONS = ("support-v2.2", "support-v2.3", "support-v2.4-beta")

# Every text drawn on a canvas, with the box it takes (as the context's alignment places it).
RECORD_TEXT = """
window.drawnTexts = [];
const ids = new WeakMap();
let next = 0;
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, x, y) {
  if (!ids.has(this.canvas)) ids.set(this.canvas, next++);
  const width = this.measureText(text).width;
  const align = this.textAlign;
  const left = align === "right" || align === "end" ? x - width : align === "center" ? x - width / 2 : x;
  window.drawnTexts.push({canvas: ids.get(this.canvas), text: String(text), left: left, right: left + width, y: y,
                          height: parseFloat(this.font) || 10, canvasWidth: this.canvas.width});
  return fillText.apply(this, arguments);
};
"""


def _overlapping(labels: list[dict[str, Any]]) -> list[tuple[str, str]]:
    found = []
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            if a["canvas"] == b["canvas"] and abs(a["y"] - b["y"]) < min(a["height"], b["height"]):
                if a["left"] < b["right"] and b["left"] < a["right"]:
                    found.append((a["text"], b["text"]))
    return found


def test_version_markers_never_overlap_on_a_narrow_screen(
    committed_db: None, live: Any, context: Any, org_a: Any
) -> None:
    rng = random.Random(4)
    with in_tenant(org_a):
        key = new_feature()

        def fields(i: int) -> dict[str, Any]:
            day = 14 * i // 1400
            version = "support-v2.2" if day < 8 else "support-v2.4-beta" if day >= 10 and i % 5 == 0 else "support-v2.3"
            return {"prompt_version": version}

        ingest(*traffic(feature=key, start=DAY0, hours=24 * 14, count=1400, rng=rng, fields=fields))
    page = context.new_page()
    page.set_viewport_size({"width": 390, "height": 900})
    page.add_init_script(RECORD_TEXT)
    log_in(page, live.url, org_a.owner.email)
    page.goto(f"{live.url}{org_a.url(f'features/{key}/')}?since=2025-04-01&until=2025-04-15&group_by=prompt_version")
    page.wait_for_load_state("networkidle")
    assert page.locator("#charts .uplot").count() == 4 and page.locator("#segments .uplot").count() == 3
    drawn = page.evaluate("window.drawnTexts")
    labels = list({(d["canvas"], d["text"], d["left"], d["y"]): d for d in drawn if d["text"] in VERSIONS}.values())
    assert {d["text"] for d in labels} >= {"support-v2.3", "support-v2.4-beta"}
    assert _overlapping(labels) == []
    assert all(0 <= d["left"] and d["right"] <= d["canvasWidth"] for d in labels)
    # Whatever a narrow chart leaves out, its title names every version's line.
    titles = page.locator("#segments .u-title").evaluate_all("els => els.map(e => e.title)")
    assert titles and all(all(v in t for v in VERSIONS[1:]) for t in titles), titles
