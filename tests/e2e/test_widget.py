"""The widget in real Chromium against the live server: every signal lands, safely."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import requests

from tenants.services import api_key_set_origins
from tenants.tokens import sign_trace_token
from tests.fixtures.organizations import Org, unique
from tests.fixtures.server import LiveServer, wait_for

pytestmark = pytest.mark.browser

STRICT_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:"


@pytest.fixture(scope="module")
def widget_origin(live: LiveServer, two_orgs: Any, django_db_blocker: Any) -> str:
    """Org A's public key allows the live server's origin (and nothing else)."""
    from tenants.models import ApiKey

    with django_db_blocker.unblock():
        for org in two_orgs:
            for key in ApiKey.objects.filter(organization=org.organization, kind="public"):
                api_key_set_origins(key=key, allowed_origins=[live.url])
    return live.url


class Host:
    """Builds throwaway host pages on a chosen origin (served by Playwright's router)."""

    def __init__(self, live: LiveServer, context: Any, org: Org) -> None:
        self.live, self.context, self.org = live, context, org
        self.api = live.api(org.secret_key)

    def trace(self, **fields: Any) -> str:
        trace_id = unique("w")
        body = {"trace_id": trace_id, "feature": "support-copilot", "prompt_version": "support-v2.3", **fields}
        assert self.api.post("/api/v1/traces", body).status_code == 200
        return trace_id

    def output(self, trace_id: str, text: str = "Your refund was approved today.", attrs: str = "") -> str:
        return (
            f'<div class="answer" data-candor-trace="{trace_id}" data-candor-prompt-version="support-v2.3" '
            f'data-candor-feature="support-copilot" {attrs}><p>{text}</p></div>'
        )

    def open(
        self, body: str, *, csp: str | None = STRICT_CSP, head: str = "", script_attrs: str = "",
        origin: str | None = None, key: str | None = None,
    ) -> Any:  # fmt: skip
        url = f"{origin or self.live.url}/test-host/{uuid.uuid4().hex}"
        html = (
            f"<!doctype html><html lang=en><head><meta charset=utf-8><title>host</title>{head}"
            f'<script src="{self.live.url}/static/widget/candor.js" data-key="{key or self.org.public_key}" '
            f'data-api="{self.live.url}" {script_attrs} async></script></head><body>{body}</body></html>'
        )
        headers = {"Content-Type": "text/html; charset=utf-8"}
        if csp:
            headers["Content-Security-Policy"] = csp
        self.context.route(url, lambda route: route.fulfill(status=200, headers=headers, body=html))
        page = self.context.new_page()
        page.goto(url)
        wait_js(page, "() => window.candor && window.candor.version")
        return page

    def feedback(self, trace_id: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        def landed() -> list[dict[str, Any]] | None:
            events = self.api.get(f"/api/v1/traces/{trace_id}").json()["feedback"]
            return events if len(events) >= count else None

        events = wait_for(landed, timeout=timeout)
        return events


@pytest.fixture
def host(live: LiveServer, context: Any, org_a: Org, widget_origin: str) -> Host:
    return Host(live, context, org_a)


def wait_js(page: Any, expression: str, timeout: float = 20) -> None:
    """Poll a JS expression (page.wait_for_function polls with eval, which a strict CSP forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout}s: {expression}")
        page.wait_for_timeout(100)  # keeps Playwright's event loop (and route handlers) running


def widget(page: Any, trace_id: str) -> Any:
    return page.locator(f'[data-candor-trace="{trace_id}"] candor-feedback')


def test_thumbs_and_stars_land_with_trace_and_prompt_version(host: Host) -> None:
    thumbs, stars = host.trace(), host.trace()
    page = host.open(host.output(thumbs) + host.output(stars, attrs='data-candor-mode="stars"'))
    up = widget(page, thumbs).locator("button.up")
    up.click()
    assert up.get_attribute("aria-pressed") == "true"
    widget(page, stars).locator('button.star[aria-label="4 stars"]').click()
    page.evaluate("candor.flush()")
    [thumb] = host.feedback(thumbs, 1)
    assert (thumb["kind"], thumb["value"], thumb["prompt_version"], thumb["source"]) == (
        "thumb",
        1,
        "support-v2.3",
        "widget",
    )
    [rating] = host.feedback(stars, 1)
    assert (rating["kind"], rating["value"]) == ("rating", 4)
    # Changing one's mind: a thumbs-down, then a reason chip; the last choice is what counts.
    widget(page, thumbs).locator("button.down").click()
    assert up.get_attribute("aria-pressed") == "false"
    widget(page, thumbs).locator('button.reason[aria-label="Too long"]').click()
    page.evaluate("candor.flush()")
    events = host.feedback(thumbs, 3)
    assert [e["value"] for e in events] == [1, -1, -1] and events[-1]["comment"] == "Too long"


def test_edit_capture_sends_one_settled_edit_with_distance(host: Host) -> None:
    trace_id = host.trace()
    original = "Hi! We will send a replacement today at no cost."
    page = host.open(
        host.output(trace_id)
        + f'<textarea id="draft" data-candor-edit="{trace_id}" data-candor-original="{original}">{original}</textarea>'
        + "<button id=other>other</button>"
    )
    draft = page.locator("#draft")
    draft.click()
    draft.press("Control+End")
    draft.type(" Sorry again!", delay=20)  # one event per settled edit, not per key
    page.locator("#other").focus()  # blur settles it
    page.evaluate("candor.flush()")
    [edit] = host.feedback(trace_id, 1)
    assert edit["kind"] == "edit"
    assert edit["original_text"] == original and edit["edited_text"] == original + " Sorry again!"
    assert edit["edit_distance"] == pytest.approx(13 / len(original + " Sorry again!"))
    assert edit["kept_ratio"] == 1.0
    time.sleep(2.5)  # past the debounce: still exactly one event
    page.evaluate("candor.flush()")
    assert len(host.api.get(f"/api/v1/traces/{trace_id}").json()["feedback"]) == 1


def test_copy_dwell_and_abandon_land(host: Host) -> None:
    copied, ignored = host.trace(), host.trace()
    page = host.open(host.output(copied, "Copy me please") + host.output(ignored, "Nobody touches me"))
    page.evaluate(
        """trace => {
            const p = document.querySelector(`[data-candor-trace="${trace}"] p`);
            const range = document.createRange(); range.selectNodeContents(p);
            getSelection().removeAllRanges(); getSelection().addRange(range);
            document.execCommand('copy');
        }""",
        copied,
    )
    page.wait_for_timeout(900)  # both outputs visible for a while
    page.goto("about:blank")  # pagehide: dwell and abandon go out by beacon
    kinds = {e["kind"]: e for e in host.feedback(copied, 2)}
    assert kinds["copy"]["value"] == len("Copy me please")
    assert kinds["dwell"]["value"] >= 500
    other = {e["kind"] for e in host.feedback(ignored, 2)}
    assert other == {"dwell", "abandon"}


def test_events_queued_while_offline_arrive_after_reload(host: Host) -> None:
    trace_id = host.trace()
    body = host.output(trace_id)
    page = host.open(body)
    host.context.route(f"{host.live.url}/api/v1/widget/events", lambda route: route.abort("internetdisconnected"))
    widget(page, trace_id).locator("button.down").click()
    page.wait_for_timeout(1500)
    queued = page.evaluate(f"JSON.parse(localStorage['candor:q:{host.org.public_key}'])")
    assert [e["trace_id"] for e in queued] == [trace_id]
    assert host.api.get(f"/api/v1/traces/{trace_id}").json()["feedback"] == []
    host.context.unroute(f"{host.live.url}/api/v1/widget/events")
    page.reload()  # the network is back; the queue survived the reload
    wait_js(page, "() => window.candor && window.candor.version")
    page.evaluate("candor.flush()")
    thumbs = [e for e in host.feedback(trace_id, 1) if e["kind"] == "thumb"]  # a dwell may come with the reload
    assert [(e["event_id"], e["value"]) for e in thumbs] == [(queued[0]["event_id"], -1)]
    wait_js(page, f"() => localStorage['candor:q:{host.org.public_key}'] === '[]'")


def test_network_errors_retry_then_deliver_once(host: Host) -> None:
    trace_id = host.trace()
    page = host.open(host.output(trace_id))
    failures = {"left": 2}

    def flaky(route: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            route.fulfill(status=503, body="busy")
        else:
            route.fulfill(response=route.fetch())

    host.context.route(f"{host.live.url}/api/v1/widget/events", flaky)
    page.evaluate(f"candor.signal('{trace_id}', 'retry')")
    # Playwright runs route handlers only while this thread waits on the page.
    wait_js(page, f"() => localStorage['candor:q:{host.org.public_key}'] === '[]'", timeout=30)
    events = host.feedback(trace_id, 1)
    assert failures["left"] == 0 and [e["kind"] for e in events] == ["retry"]


def test_pagehide_delivers_by_beacon(host: Host) -> None:
    trace_id = host.trace()
    page = host.open(host.output(trace_id))
    # Count beacons in sessionStorage, which outlives the navigation.
    page.evaluate("""() => {
        const send = navigator.sendBeacon.bind(navigator);
        navigator.sendBeacon = (...args) => { sessionStorage.beacons = (+sessionStorage.beacons || 0) + 1;
                                              return send(...args); };
    }""")
    widget(page, trace_id).locator("button.up").click()
    page.goto(f"{host.live.url}/static/widget/demo.css")  # leave before the 1 s batch timer fires
    assert [e["value"] for e in host.feedback(trace_id, 1) if e["kind"] == "thumb"] == [1]
    assert int(page.evaluate("sessionStorage.beacons")) >= 1


def test_a_resent_batch_stores_each_event_once(host: Host) -> None:
    trace_id = host.trace()
    page = host.open(host.output(trace_id))
    with page.expect_request(lambda r: "/widget/events" in r.url) as sent:
        widget(page, trace_id).locator("button.up").click()
        page.evaluate(f"candor.signal('{trace_id}', 'copy', {{value: 12}})")
        page.evaluate("candor.flush()")
    body = sent.value.post_data
    host.feedback(trace_id, len(json.loads(body)["events"]))
    for _ in range(2):
        again = requests.post(f"{host.live.url}/api/v1/widget/events", data=body,
                              headers={"Content-Type": "text/plain", "Origin": host.live.url})  # fmt: skip
        assert again.status_code == 200
        assert again.json()["accepted"] == 0 and again.json()["duplicates"] == len(json.loads(body)["events"])
    assert len(host.api.get(f"/api/v1/traces/{trace_id}").json()["feedback"]) == len(json.loads(body)["events"])


def test_disallowed_origin_is_rejected_and_counted(host: Host, committed_db: None, org_a: Org) -> None:
    from django.db.models import Sum

    from feedback.models import FeedbackEvent, WidgetRejection
    from tenants.schema import in_tenant

    # The demo host page, served for real from an origin the key does not allow.
    elsewhere = host.live.url.replace("127.0.0.1", "localhost")
    with in_tenant(org_a.organization):
        before = WidgetRejection.objects.filter(reason="origin_not_allowed").aggregate(n=Sum("count"))["n"] or 0
    page = host.context.new_page()
    page.goto(f"{elsewhere}/demo/?key={org_a.public_key}")
    wait_js(page, "() => window.candor && window.candor.version")
    with page.expect_response(lambda r: "/widget/events" in r.url) as answer:
        widget(page, "tr_demo_1").locator("button.up").click()
        page.evaluate("candor.flush()")
    assert answer.value.status == 403
    assert answer.value.json()["error"]["code"] == "origin_not_allowed"
    with in_tenant(org_a.organization):
        after = WidgetRejection.objects.filter(reason="origin_not_allowed").aggregate(n=Sum("count"))["n"]
        assert not FeedbackEvent.objects.filter(trace_id="tr_demo_1", kind="thumb").exists()
    assert after == before + 1
    # a 4xx is final: the widget drops the event instead of retrying forever
    wait_js(page, f"() => localStorage['candor:q:{org_a.public_key}'] === '[]'")


def test_signed_tokens_required(
    live: LiveServer, context: Any, org_b: Org, widget_origin: str, committed_db: None
) -> None:
    from feedback.models import WidgetRejection
    from tenants.models import Organization
    from tenants.schema import in_tenant

    secret = "s3cret-" + uuid.uuid4().hex
    Organization.objects.filter(id=org_b.organization.id).update(
        require_signed_tokens=True, widget_signing_secret=secret
    )
    try:
        host = Host(live, context, org_b)
        good, bad, expired = host.trace(), host.trace(), host.trace()
        tokens = {
            good: sign_trace_token(secret, good),
            bad: sign_trace_token("wrong-secret", bad),
            expired: sign_trace_token(secret, expired, ttl_seconds=-10),
        }
        page = host.open("".join(host.output(t, attrs=f'data-candor-token="{tok}"') for t, tok in tokens.items()))
        with page.expect_response(lambda r: "/widget/events" in r.url) as answer:
            for trace_id in tokens:
                widget(page, trace_id).locator("button.up").click()
            page.evaluate("candor.flush()")
        result = answer.value.json()
        assert answer.value.status == 207 and result["accepted"] == 1
        assert sorted(e["message"].split(" (")[0] for e in result["errors"]) == ["bad signature", "expired"]
        assert len(host.feedback(good, 1)) == 1
        assert host.api.get(f"/api/v1/traces/{bad}").json()["feedback"] == []
        with in_tenant(org_b.organization):
            reasons = set(WidgetRejection.objects.values_list("reason", flat=True))
        assert {"token_bad_signature", "token_expired"} <= reasons
    finally:
        Organization.objects.filter(id=org_b.organization.id).update(require_signed_tokens=False)


def test_hostile_host_stylesheet_leaves_the_widget_usable(host: Host) -> None:
    trace_id = host.trace()
    hostile = (
        "<style>* { all: unset !important; } button { display: none !important; } "
        "candor-feedback { display: none; opacity: 0; } div { font-size: 2px; }</style>"
    )
    page = host.open(host.output(trace_id), head=hostile, csp=None)
    up = widget(page, trace_id).locator("button.up")
    box = up.bounding_box()
    assert box is not None and box["width"] > 10 and box["height"] > 10
    up.click()
    page.evaluate("candor.flush()")
    assert host.feedback(trace_id, 1)[0]["value"] == 1
    # and the widget's own styles stay inside its shadow root: the page's buttons are untouched
    assert page.evaluate("getComputedStyle(document.body).fontSize") != "13px"


def test_strict_csp_page_works_without_violations(host: Host) -> None:
    trace_id = host.trace()
    violations: list[str] = []

    def record(message: Any) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    host.context.on("console", record)
    page = host.open(host.output(trace_id), csp=STRICT_CSP + "; object-src 'none'; base-uri 'none'")
    widget(page, trace_id).locator("button.down").click()
    widget(page, trace_id).locator("textarea.comment").fill("Cites the wrong policy")
    widget(page, trace_id).locator("button.send").click()
    page.evaluate("candor.flush()")
    kinds = [e["kind"] for e in host.feedback(trace_id, 2)]
    assert kinds == ["thumb", "comment"]
    assert violations == []


def test_keyboard_only_use(host: Host) -> None:
    trace_id = host.trace()
    page = host.open("<a href='#' id=start>start</a>" + host.output(trace_id))
    page.focus("#start")
    page.keyboard.press("Tab")  # into the widget: the first button is thumbs up
    page.keyboard.press("Tab")  # thumbs down
    focused = page.evaluate("document.activeElement.shadowRoot.activeElement.getAttribute('aria-label')")
    assert focused == "Not helpful"
    page.keyboard.press("Enter")
    assert widget(page, trace_id).locator("button.down").get_attribute("aria-pressed") == "true"
    page.keyboard.press("Tab")  # to the first reason chip
    page.keyboard.press("Space")
    page.evaluate("candor.flush()")
    events = host.feedback(trace_id, 2)
    assert events[-1]["value"] == -1 and events[-1]["comment"] == "Wrong"


def test_js_api_identify_and_outputs_added_later(host: Host) -> None:
    trace_id, later = host.trace(), host.trace()
    page = host.open(host.output(trace_id), script_attrs='data-labels=\'{"up": "Bien", "down": "Mal"}\'')
    page.evaluate(f"""() => {{
        candor.identify('user-42');
        candor.signal('{trace_id}', 'retry');
        candor.feedback('{trace_id}', {{kind: 'rating', value: 5}});
        const div = document.createElement('div');
        div.dataset.candorTrace = '{later}';
        div.textContent = 'A streamed answer';
        document.body.append(div);
    }}""")
    late = widget(page, later).locator('button[aria-label="Bien"]')
    late.click()
    page.evaluate("candor.flush()")
    events = host.feedback(trace_id, 2)
    assert {(e["kind"], e["user_id"]) for e in events} == {("retry", "user-42"), ("rating", "user-42")}
    assert host.feedback(later, 1)[0]["user_id"] == "user-42"
    assert page.evaluate("Object.keys(window).filter(k => k.toLowerCase().includes('candor'))") == ["candor"]


def test_an_event_the_server_keeps_failing_on_cannot_block_the_queue(host: Host) -> None:
    poisoned, fine = host.trace(), host.trace()
    host.context.clock.install()  # fake timers: the backoff's minutes pass in an instant
    page = host.open(host.output(fine))

    def server(route: Any) -> None:
        if poisoned in (route.request.post_data or ""):
            route.fulfill(status=500, body="boom")
        else:
            route.fulfill(response=route.fetch())

    host.context.route(f"{host.live.url}/api/v1/widget/events", server)
    page.evaluate(f"candor.signal('{poisoned}', 'copy', {{value: 3}})")
    page.evaluate(f"candor.signal('{fine}', 'retry')")
    for _ in range(40):
        page.clock.run_for(61_000)
        page.wait_for_timeout(50)
        if page.evaluate(f"() => localStorage['candor:q:{host.org.public_key}'] === '[]'"):
            break
    assert [e["kind"] for e in host.feedback(fine, 1)] == ["retry"]  # delivered despite the poisoned event
    assert page.evaluate(f"() => localStorage['candor:q:{host.org.public_key}']") == "[]"  # which was dropped


def test_theming_by_css_custom_properties(host: Host) -> None:
    trace_id = host.trace()
    theme = "<style>.answer { --candor-accent: rgb(255, 0, 128); --candor-radius: 0px; }</style>"
    page = host.open(host.output(trace_id), head=theme, csp=None)
    up = widget(page, trace_id).locator("button.up")
    up.click()
    assert up.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(255, 0, 128)"
    assert up.evaluate("b => getComputedStyle(b).borderTopLeftRadius") == "0px"


def test_an_outage_drops_nothing(host: Host) -> None:
    first, second = host.trace(), host.trace()
    host.context.clock.install()
    page = host.open(host.output(first))
    host.context.route(f"{host.live.url}/api/v1/widget/events", lambda route: route.fulfill(status=500, body="down"))
    page.evaluate(f"candor.signal('{first}', 'copy', {{value: 1}})")
    page.evaluate(f"candor.signal('{second}', 'retry')")
    for _ in range(30):  # half an hour of server errors, every send failing
        page.clock.run_for(61_000)
        page.wait_for_timeout(20)
    queued = page.evaluate(f"() => JSON.parse(localStorage['candor:q:{host.org.public_key}'])")
    assert sorted(e["trace_id"] for e in queued) == sorted([first, second])
    host.context.unroute(f"{host.live.url}/api/v1/widget/events")
    host.context.route(f"{host.live.url}/api/v1/widget/events", lambda route: route.fulfill(response=route.fetch()))
    for _ in range(5):
        page.clock.run_for(61_000)
        page.wait_for_timeout(50)
    wait_js(page, f"() => localStorage['candor:q:{host.org.public_key}'] === '[]'")
    assert [e["kind"] for e in host.feedback(first, 1)] == ["copy"]
