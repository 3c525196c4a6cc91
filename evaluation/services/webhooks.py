"""Signed webhooks: the signing recipe, the address check (no server-side request forgery) and one
delivery attempt over HTTP. The recipe, for receivers:

    Candor-Timestamp: 1733212800                    (Unix seconds when the request was signed)
    Candor-Signature: v1=<hex>                      (HMAC-SHA256, key = the channel's secret,
                                                     message = timestamp + "." + raw request body)

Recompute the HMAC over the exact bytes received, compare in constant time
(hmac.compare_digest), and refuse a timestamp more than 5 minutes from your clock (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import httpx
from django.conf import settings

from evaluation.judges.network import checked_transport
from evaluation.services import outbound

SIGNATURE_HEADER = "Candor-Signature"
TIMESTAMP_HEADER = "Candor-Timestamp"
TOLERANCE_S = 300


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(
    secret: str, body: bytes, timestamp: str, signature: str, *, now: float, tolerance_s: int = TOLERANCE_S
) -> bool:
    """The receiver's side of the recipe (for the docs and Python receivers)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def allowed_hosts() -> set[str]:
    """Hosts a webhook may name at an internal address or over plain http (a receiver on the same
    machine in development and tests): settings.ALERT_WEBHOOK_ALLOWED_HOSTS, else the variable."""
    return outbound.allowed_hosts("ALERT_WEBHOOK_ALLOWED_HOSTS")


def url_problem(url: str) -> str | None:
    """Why Candor must not POST to this URL, or None: https to public addresses only (every address
    the host resolves to), unless the host is in allowed_hosts(). Checked on save and again before
    every delivery (DNS can change between the two)."""
    return outbound.outbound_url_problem(
        url,
        what="the webhook URL",
        setting="ALERT_WEBHOOK_ALLOWED_HOSTS",
        internal="the host {host} resolves to a private or internal address: refused (server-side request forgery)",
    )


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status: int | None
    error: str


def post(*, url: str, secret: str, body: bytes, event: str, delivery_id: int, timestamp: int) -> Attempt:
    """One signed POST; never follows redirects (a redirect could point inside the network)."""
    problem = url_problem(url)
    if problem:
        return Attempt(False, None, problem)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Candor-Webhooks/1",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        "Candor-Event": event,
        "Candor-Delivery": str(delivery_id),
    }
    timeout = float(getattr(settings, "ALERT_WEBHOOK_TIMEOUT_S", 5.0))
    try:
        transport = checked_transport(outbound.connect_refusal("ALERT_WEBHOOK_ALLOWED_HOSTS"), limits=httpx.Limits())
        with httpx.Client(timeout=timeout, follow_redirects=False, transport=transport) as client:
            response = client.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        return Attempt(False, None, f"timed out after {timeout:g} s")
    except httpx.HTTPError as exc:
        # The transport's own words (e.g. "[Errno 111] Connection refused"); never the body or headers.
        return Attempt(False, None, f"could not connect ({type(exc).__name__}: {str(exc)[:200]})")
    if 200 <= response.status_code < 300:
        return Attempt(True, response.status_code, "")
    return Attempt(False, response.status_code, f"answered HTTP {response.status_code}")
