"""Widget benchmark: bytes served and main-thread cost per event in Chromium.

Size: candor.js raw and gzipped (level 9), against a 5 KB budget.
Cost: on the demo host page served by Candor's web server, N events go through candor.feedback()
(queue, localStorage, batching, fetch) and the Chrome DevTools Protocol's TaskDuration
(main-thread busy time) is read before and after; events go in bursts of 5, as a page sends
them. The baseline in the same run is the page doing the bare minimum by hand for each
event: JSON.stringify and one fetch per event.

Ends with: RESULT widget raw_bytes=... gzip_bytes=... main_ms_per_event=... baseline_ms_per_event=... ratio=...
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import django  # noqa: E402

from config.embedded_db import ensure_database_url  # noqa: E402

ensure_database_url()  # settings start nothing: the embedded PostgreSQL is the entry point's job
django.setup()

from playwright.sync_api import sync_playwright  # noqa: E402

from bench._server import free_port, web_server  # noqa: E402
from tenants.models import Organization  # noqa: E402
from tenants.services import organization_create  # noqa: E402

WIDGET = ROOT / "static" / "widget" / "candor.js"  # what is served (minified build)
SOURCE = ROOT / "static" / "widget" / "src" / "candor.js"  # the readable source
BUDGET = 5 * 1024
EVENTS = int(os.environ.get("BENCH_WIDGET_EVENTS", "500"))
BURST = 5


def task_ms(cdp) -> float:  # type: ignore[no-untyped-def]
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return float(metrics["TaskDuration"]) * 1000


def main() -> int:
    data = WIDGET.read_bytes()
    raw, gz = len(data), len(gzip.compress(data, compresslevel=9, mtime=0))
    source = SOURCE.read_bytes()
    print(f"src/candor.js (readable source): {len(source):,} bytes raw, "
          f"{len(gzip.compress(source, compresslevel=9, mtime=0)):,} bytes gzipped")  # fmt: skip
    verdict = "within" if gz <= BUDGET else "OVER"
    print(f"candor.js: {raw:,} bytes raw, {gz:,} bytes gzipped (budget {BUDGET:,}: {verdict})")
    slug = f"bench-w-{os.getpid()}"
    port = free_port()
    created = organization_create(slug=slug, owner_email=f"bench@{slug}.test",
                                  allowed_origins=[f"http://127.0.0.1:{port}"])  # fmt: skip
    try:
        with web_server(port, workers=2) as base, sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
            )
            page = browser.new_page()
            page.goto(f"{base}/demo/?key={created.public_key}")
            page.wait_for_timeout(500)
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")

            # Typical use: a few events at a time (a thumb, a copy, a dwell), each burst sent before the next.
            # Both loops run inside the page (one evaluate each), so CDP's own work is the same for both.
            before = task_ms(cdp)
            page.evaluate(
                """async ([bursts, size]) => { for (let b = 0; b < bursts; b++) {
                       for (let i = 0; i < size; i++) candor.feedback('tr_demo_1', {kind: 'rating', value: 1 + i % 5});
                       await candor.flush(); } }""",
                [EVENTS // BURST, BURST],
            )
            widget_ms = (task_ms(cdp) - before) / EVENTS

            before = task_ms(cdp)
            page.evaluate(
                """async ([bursts, size, key]) => { for (let b = 0; b < bursts; b++) {
                       const sends = [];
                       for (let i = 0; i < size; i++) sends.push(fetch('/api/v1/widget/events', {method: 'POST',
                         headers: {'Content-Type': 'text/plain'}, keepalive: true,
                         body: JSON.stringify({key, events: [{event_id: crypto.randomUUID(), trace_id: 'tr_demo_1',
                           kind: 'rating', value: 1 + i % 5, occurred_at: new Date().toISOString()}]})}));
                       await Promise.all(sends); } }""",
                [EVENTS // BURST, BURST, created.public_key],
            )
            baseline_ms = (task_ms(cdp) - before) / EVENTS
            browser.close()
    finally:
        Organization.objects.get(slug=slug).delete(force_drop=True)
    print(f"main thread per event: widget {widget_ms:.3f} ms (queue, storage, batching, send)")
    print(f"main thread per event: bare fetch per event {baseline_ms:.3f} ms (no queue, no batching)")
    ratio = widget_ms / baseline_ms if baseline_ms else float("nan")
    print(f"ratio widget / bare fetch = {ratio:.2f}")
    print(f"RESULT widget raw_bytes={raw} gzip_bytes={gz} main_ms_per_event={widget_ms:.3f} "
          f"baseline_ms_per_event={baseline_ms:.3f} ratio={ratio:.2f} events={EVENTS}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
