"""A fake Stripe over real HTTP, for the official `stripe` library pointed at it (STRIPE_API_BASE).

It covers what Candor uses: Customers, Checkout Sessions, Billing Portal sessions, Subscriptions
and Billing Meter events. Like Stripe, it replays the first answer to a repeated
``Idempotency-Key`` and refuses a second meter event with the same ``identifier``; every
request is recorded (method, path, form parameters, idempotency key) for assertions. Failures
can be scripted (``fail_next``), including a crash *after* Stripe took a request
(``drop_answer_next``: the event is recorded, the client sees a 500).

It also serves the pages Stripe hosts: a Checkout Session's ``url`` opens a payment page whose
"Pay" creates the subscription, sends ``checkout.session.completed`` and
``customer.subscription.created`` to Candor's webhook and returns to the session's success URL;
a billing portal session's page cancels the subscription (``customer.subscription.deleted``).
``/`` lists customers, subscriptions and the usage Candor reported as meter events.

Webhooks are signed with the library's own scheme (``stripe.WebhookSignature``:
``t=<unix>,v1=<HMAC-SHA256 of "t.payload">``).

Two uses:
- the tests (tests/fixtures/stripe.py): ``running_fake_stripe()``, in a daemon thread;
- ``make demo`` (bin/run-demo): ``python -m devtools.fake_stripe --port P --webhook URL --secret S``,
  so an owner can subscribe to a plan and cancel it in the demo, every step over real HTTP.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any
from urllib.parse import parse_qsl

import requests as http
import stripe

MONTH = 30 * 86_400


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    idempotency_key: str | None
    status: int = 0


@dataclass
class Page:
    """A hosted page's answer: HTML, or a redirect (``location``)."""

    status: int
    body: str = ""
    location: str = ""


@dataclass
class FakeStripe:
    url: str = ""
    webhook_url: str = ""  # where the hosted pages' webhooks go ("" sends none)
    webhook_secret: str = ""
    requests: list[Recorded] = field(default_factory=list)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    meter_events: dict[str, dict[str, Any]] = field(default_factory=dict)  # identifier -> event (billed once)
    checkout_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    portal_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: list[tuple[str, int]] = field(default_factory=list)  # (event type, Candor's answer)
    _replies: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _failures: list[tuple[str, int]] = field(default_factory=list)
    _drops: list[str] = field(default_factory=list)
    _ids: Any = field(default_factory=count)
    lock: threading.Lock = field(default_factory=threading.Lock)
    state_path: str = ""  # where the demo's fake keeps its objects across restarts ("" keeps them in memory)

    _KEPT = ("customers", "subscriptions", "meter_events", "checkout_sessions", "portal_sessions", "deliveries")

    def load(self) -> None:
        """The objects saved by ``save``, if any (a restarted demo still knows its customers)."""
        try:
            with open(self.state_path, encoding="utf-8") as file:
                state = json.load(file)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            print(f"fake Stripe: {self.state_path} unreadable ({exc}): starting empty", file=sys.stderr)
            return
        for name in self._KEPT:
            value = state.get(name)
            if isinstance(value, type(getattr(self, name))):
                setattr(self, name, [tuple(d) for d in value] if name == "deliveries" else value)
        self._ids = count(int(state.get("next_id") or 0))

    def save(self) -> None:
        if not self.state_path:
            return
        with self.lock:
            state: dict[str, Any] = {name: getattr(self, name) for name in self._KEPT}
            state["next_id"] = next(self._ids)
            # Written aside, then renamed over: a kill mid-write leaves the previous state, not half of one.
            partial = f"{self.state_path}.partial"
            with open(partial, "w", encoding="utf-8") as file:
                json.dump(state, file)
            os.replace(partial, self.state_path)

    def reset(self) -> None:
        with self.lock:
            for held in (self.requests, self.deliveries, self._failures, self._drops):
                held.clear()
            for table in (self.customers, self.subscriptions, self.meter_events, self.checkout_sessions,
                          self.portal_sessions, self._replies):  # fmt: skip
                table.clear()

    def fail_next(self, path_prefix: str, status: int = 500, *, times: int = 1) -> None:
        """The next `times` requests to this path answer `status` and do nothing (the library retries
        a 500 itself: fail it 3 times to fail one call)."""
        with self.lock:
            self._failures.extend([(path_prefix, status)] * times)

    def drop_answer_next(self, path_prefix: str, *, times: int = 3) -> None:
        """The next request to this path is carried out, but the client gets a 500 (a lost answer),
        and so do its next retries (replays of the same idempotency key)."""
        with self.lock:
            self._drops.extend([path_prefix] * times)

    def made(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def billed(self, event_name: str, customer: str) -> int:
        return sum(
            int(e["payload[value]"])
            for e in self.meter_events.values()
            if e["event_name"] == event_name and e["payload[stripe_customer_id]"] == customer
        )

    def subscription_put(self, sub_id: str, **fields: Any) -> dict[str, Any]:
        sub = {"id": sub_id, "object": "subscription", "status": "active", "customer": "",
               "items": {"object": "list", "data": []}, "metadata": {}, **fields}  # fmt: skip
        self.subscriptions[sub_id] = sub
        return sub

    # --- the API ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: dict[str, str], key: str | None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            record = Recorded(method, path, params, key)
            self.requests.append(record)
            for i, (prefix, status) in enumerate(self._failures):
                if path.startswith(prefix):
                    del self._failures[i]
                    record.status = status
                    return status, _error("api_error", "scripted failure")
            if key and method == "POST" and key in self._replies:
                status, body = self._replies[key]
            else:
                status, body = self._route(method, path, params)
                if key and method == "POST":
                    self._replies[key] = (status, body)
            for i, prefix in enumerate(self._drops):
                if path.startswith(prefix):
                    del self._drops[i]
                    record.status = 500
                    return 500, _error("api_error", "the answer was lost")
            record.status = status
            return status, body

    def _route(self, method: str, path: str, p: dict[str, str]) -> tuple[int, dict[str, Any]]:
        n = next(self._ids)
        if method == "POST" and path == "/v1/customers":
            customer: dict[str, Any] = {"id": f"cus_fake{n}", "object": "customer", "name": p.get("name"),
                                        "email": p.get("email"), "metadata": _nested(p, "metadata")}  # fmt: skip
            self.customers[customer["id"]] = customer
            return 200, customer
        if method == "POST" and path == "/v1/checkout/sessions":
            if p.get("customer") not in self.customers:
                return 400, _error("invalid_request_error", f"No such customer: '{p.get('customer')}'")
            session: dict[str, Any] = {
                "id": f"cs_fake{n}", "object": "checkout.session", "mode": p.get("mode"),
                "customer": p.get("customer"), "url": f"{self.url}/checkout/cs_fake{n}", "status": "open",
                "client_reference_id": p.get("client_reference_id"),
                "success_url": p.get("success_url", ""), "cancel_url": p.get("cancel_url", ""),
                "price": p.get("line_items[0][price]", ""),
                "subscription_metadata": _nested(p, "subscription_data[metadata]"),
            }  # fmt: skip
            self.checkout_sessions[session["id"]] = session
            return 200, {k: v for k, v in session.items() if k not in ("price", "subscription_metadata")}
        if method == "POST" and path == "/v1/billing_portal/sessions":
            if p.get("customer") not in self.customers:
                return 400, _error("invalid_request_error", f"No such customer: '{p.get('customer')}'")
            portal: dict[str, Any] = {
                "id": f"bps_fake{n}", "object": "billing_portal.session", "customer": p.get("customer"),
                "return_url": p.get("return_url", ""), "url": f"{self.url}/portal/bps_fake{n}",
            }  # fmt: skip
            self.portal_sessions[portal["id"]] = portal
            return 200, portal
        if method == "GET" and path.startswith("/v1/subscriptions/"):
            sub = self.subscriptions.get(path.rsplit("/", 1)[1])
            return (200, sub) if sub else (404, _error("invalid_request_error", "No such subscription"))
        if method == "POST" and path == "/v1/billing/meter_events":
            identifier = p.get("identifier", f"gen{n}")
            if identifier in self.meter_events:
                return 400, _error("invalid_request_error", f"An event with identifier {identifier} already exists.")
            if p.get("payload[stripe_customer_id]") not in self.customers:
                return 400, _error("invalid_request_error", "No such customer")
            self.meter_events[identifier] = dict(p)
            return 200, {"object": "billing.meter_event", "event_name": p.get("event_name"), "identifier": identifier,
                         "livemode": False, "created": int(time.time()), "payload": _nested(p, "payload"),
                         "timestamp": int(p.get("timestamp", "0"))}  # fmt: skip
        return 404, _error("invalid_request_error", f"Unrecognized request URL ({method}: {path}).")

    # --- the pages Stripe hosts ------------------------------------------------------------------

    def page(self, method: str, path: str, form: dict[str, str]) -> Page:
        """Checkout (``/checkout/<id>``), the billing portal (``/portal/<id>``) and the overview (``/``)."""
        kind, _, object_id = path.strip("/").partition("/")
        if path == "/" and method == "GET":
            return Page(200, self._overview())
        if kind == "checkout" and object_id in self.checkout_sessions:
            session = self.checkout_sessions[object_id]
            if method == "GET":
                return Page(200, self._checkout_page(session))
            if form.get("action") == "cancel":
                return Page(303, location=session["cancel_url"] or "/")
            self._checkout_complete(session)  # once: a second Pay (a double click) finds it complete
            return Page(303, location=session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"]) or "/")
        if kind == "portal" and object_id in self.portal_sessions:
            portal = self.portal_sessions[object_id]
            if method == "GET":
                return Page(200, self._portal_page(portal))
            sub = self.subscriptions.get(form.get("subscription", ""))
            if form.get("action") == "cancel" and sub and sub["customer"] == portal["customer"]:
                with self.lock:
                    sub["status"] = "canceled"
                    sub["canceled_at"] = int(time.time())
                self.send("customer.subscription.deleted", sub)
            return Page(303, location=portal["return_url"] or "/")
        return Page(404, _html("Not found", "<p>No such page: this session does not exist here.</p>"))

    def _checkout_complete(self, session: dict[str, Any]) -> None:
        now = int(time.time())
        with self.lock:
            if session["status"] != "open":
                return
            n = next(self._ids)
            sub = self.subscription_put(
                f"sub_fake{n}", customer=session["customer"], created=now, current_period_start=now,
                current_period_end=now + MONTH, metadata=dict(session["subscription_metadata"]),
                items={"object": "list", "data": [{"id": f"si_fake{n}", "price": {"id": session["price"]},
                                                   "quantity": 1, "current_period_end": now + MONTH}]},
            )  # fmt: skip
            session.update(status="complete", subscription=sub["id"])
        public = {k: v for k, v in session.items() if k not in ("price", "subscription_metadata")}
        self.send("checkout.session.completed", public)
        self.send("customer.subscription.created", sub)

    def _checkout_page(self, session: dict[str, Any]) -> str:
        customer = self.customers.get(session["customer"]) or {}
        done = session["status"] != "open"
        return _html(
            "Checkout",
            f"""
<p class="muted">Fake Stripe Checkout (the demo's stand-in for checkout.stripe.com: no card, no charge)</p>
<h1>Subscribe {html.escape(str(customer.get("name") or ""))}</h1>
<table><tr><th>Price</th><td id="price">{html.escape(session["price"])}</td></tr>
<tr><th>Billed to</th><td>{html.escape(str(customer.get("email") or ""))}</td></tr>
<tr><th>Session</th><td>{html.escape(session["id"])} ({html.escape(session["status"])})</td></tr></table>
<form method="post"><button id="pay" name="action" value="pay">{"Return to Candor" if done else "Pay"}</button>
{"" if done else '<button id="cancel" name="action" value="cancel" class="quiet">Cancel</button>'}</form>""",
        )

    def _portal_page(self, portal: dict[str, Any]) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(sub['id'])}</td><td>{html.escape(_price_of(sub))}</td>"
            f"<td class='status'>{html.escape(sub['status'])}</td><td>"
            + (f"<form method='post'><input type='hidden' name='subscription' value='{html.escape(sub['id'])}'>"
               f"<button name='action' value='cancel' class='cancel'>Cancel subscription</button></form>"
               if sub["status"] != "canceled" else "")
            + "</td></tr>"
            for sub in self.subscriptions.values() if sub["customer"] == portal["customer"]
        )  # fmt: skip
        return _html(
            "Billing portal",
            f"""
<p class="muted">Fake Stripe billing portal (the demo's stand-in for billing.stripe.com)</p>
<h1>Your subscriptions</h1>
<table><tr><th>Subscription</th><th>Price</th><th>Status</th><th></th></tr>
{rows or '<tr><td colspan="4">None yet.</td></tr>'}</table>
<p><a id="return" href="{html.escape(portal["return_url"])}">Return to Candor</a></p>""",
        )

    def _overview(self) -> str:
        with self.lock:
            customers = list(self.customers.values())
            subs = list(self.subscriptions.values())
            usage: dict[tuple[str, str], int] = {}
            for event in self.meter_events.values():
                key = (event.get("payload[stripe_customer_id]", ""), event.get("event_name", ""))
                usage[key] = usage.get(key, 0) + int(event.get("payload[value]") or 0)
            deliveries = list(self.deliveries[-20:])
        e = html.escape
        return _html("Fake Stripe", f"""
<h1>Fake Stripe</h1>
<p class="muted">What Candor sent to Stripe in this demo: customers, subscriptions and the usage it reported.</p>
<h2>Customers</h2><table><tr><th>ID</th><th>Name</th><th>Email</th></tr>
{"".join(f"<tr><td>{e(c['id'])}</td><td>{e(str(c['name']))}</td><td>{e(str(c['email']))}</td></tr>"
         for c in customers) or '<tr><td colspan="3">None yet: subscribe from Candor first.</td></tr>'}</table>
<h2>Subscriptions</h2><table><tr><th>ID</th><th>Customer</th><th>Price</th><th>Status</th></tr>
{"".join(f"<tr><td>{e(s['id'])}</td><td>{e(s['customer'])}</td><td>{e(_price_of(s))}</td><td>{e(s['status'])}</td></tr>"
         for s in subs) or '<tr><td colspan="4">None.</td></tr>'}</table>
<h2>Usage reported (meter events)</h2><table><tr><th>Customer</th><th>Meter</th><th>Quantity</th></tr>
{"".join(f"<tr><td>{e(c)}</td><td>{e(m)}</td><td>{q:,}</td></tr>" for (c, m), q in sorted(usage.items()))
 or '<tr><td colspan="3">None yet.</td></tr>'}</table>
<h2>Webhooks sent</h2><table><tr><th>Event</th><th>Candor answered</th></tr>
{"".join(f"<tr><td>{e(t)}</td><td>{s}</td></tr>" for t, s in deliveries) or '<tr><td colspan="2">None.</td></tr>'}
</table>""")  # fmt: skip

    # --- webhooks ----------------------------------------------------------------------------

    @staticmethod
    def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
        t = int(time.time()) if timestamp is None else timestamp
        signature = stripe.WebhookSignature._compute_signature(f"{t}.{payload}", secret)
        return f"t={t},v1={signature}"

    def event(self, event_type: str, obj: dict[str, Any], *, created: int | None = None,
              event_id: str | None = None) -> dict[str, Any]:  # fmt: skip
        n = next(self._ids)
        return {"id": event_id or f"evt_fake{n}", "object": "event", "type": event_type, "api_version": "2025-06-30",
                "created": created if created is not None else int(time.time()), "data": {"object": obj},
                "livemode": False, "pending_webhooks": 1}  # fmt: skip

    def deliver(self, url: str, event: dict[str, Any], secret: str, *, timestamp: int | None = None,
                signature: str | None = None) -> http.Response:  # fmt: skip
        payload = json.dumps(event)
        header = signature if signature is not None else self.sign(payload, secret, timestamp)
        return http.post(url, data=payload.encode(), timeout=30,
                             headers={"Content-Type": "application/json", "Stripe-Signature": header})  # fmt: skip

    def send(self, event_type: str, obj: dict[str, Any]) -> None:
        """An event about ``obj`` to the configured webhook, as Stripe sends it (recorded in ``deliveries``)."""
        if not self.webhook_url:
            return
        try:
            status = self.deliver(self.webhook_url, self.event(event_type, obj), self.webhook_secret).status_code
        except http.RequestException:
            status = 0  # Candor unreachable: Stripe would retry; the overview shows it
        with self.lock:
            self.deliveries.append((event_type, status))


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


def _nested(params: dict[str, str], name: str) -> dict[str, str]:
    prefix = name + "["
    return {k[len(prefix) : -1]: v for k, v in params.items() if k.startswith(prefix) and "[" not in k[len(prefix) :]}


def _price_of(sub: dict[str, Any]) -> str:
    items = (sub.get("items") or {}).get("data") or []
    return str((items[0].get("price") or {}).get("id", "")) if items else ""


def _html(title: str, body: str) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font:15px system-ui,sans-serif;max-width:44rem;margin:3rem auto;color:#1d2330}}
h1{{font-size:1.5rem}}h2{{font-size:1.1rem;margin-top:2rem}}.muted{{color:#667}}table{{border-collapse:collapse;width:100%}}
th,td{{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e3e6ee}}
button{{font:inherit;padding:.5rem 1.4rem;border:0;border-radius:6px;background:#635bff;color:#fff;cursor:pointer}}
button.quiet,button.cancel{{background:#eef0f5;color:#1d2330;margin-left:.5rem}}</style></head>
<body>{body}</body></html>"""


def serve(fake: FakeStripe, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server answering for ``fake`` (call ``serve_forever`` on it); sets ``fake.url`` when unset."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            path, _, query = self.path.partition("?")
            params = dict(parse_qsl(body or query, keep_blank_values=True))
            if path.startswith("/v1/"):
                status, answer = fake.handle(method, path, params, self.headers.get("Idempotency-Key"))
                self._answer(status, json.dumps(answer).encode(), "application/json")
                if method == "POST":
                    fake.save()
                return
            page = fake.page(method, path, params)
            self._answer(page.status, page.body.encode(), "text/html; charset=utf-8", page.location)
            if method == "POST":
                fake.save()

        def _answer(self, status: int, data: bytes, content_type: str, location: str = "") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", "req_fake")
            if location:
                self.send_header("Location", location)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    if not fake.url:
        fake.url = f"http://{host}:{server.server_address[1]}"
    return server


def running_fake_stripe() -> Iterator[FakeStripe]:
    """The fake on a free port of 127.0.0.1, in a daemon thread, until the generator is closed."""
    fake = FakeStripe()
    server = serve(fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Stripe for the demo: its API, Checkout and portal pages.")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--public-host", default="localhost", help="host in the page URLs handed to browsers")
    parser.add_argument("--webhook", default="", help="Candor's webhook URL (…/billing/stripe/webhook)")
    parser.add_argument(
        "--secret",
        default=os.environ.get("STRIPE_WEBHOOK_SECRET", ""),
        help="the webhook signing secret Candor checks (default: $STRIPE_WEBHOOK_SECRET)",
    )
    parser.add_argument("--state", default="", help="a JSON file keeping customers and subscriptions across restarts")
    args = parser.parse_args()
    fake = FakeStripe(url=f"http://{args.public_host}:{args.port}", webhook_url=args.webhook,
                      webhook_secret=args.secret, state_path=args.state)  # fmt: skip
    fake.load()
    server = serve(fake, "127.0.0.1", args.port)
    print(f"fake Stripe on {fake.url}/ (webhooks to {args.webhook or 'nowhere'})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
