"""Signed per-trace widget tokens: the organization's backend signs (trace_id, user_id, expiry).

Format: ``v1.<expiry unix seconds>.<base64url HMAC-SHA256>``; the page puts it beside the
trace (data-candor-token) and the widget sends it with each event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


def _mac(secret: str, trace_id: str, user_id: str, expires: int) -> str:
    message = f"{trace_id}\n{user_id}\n{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign_trace_token(secret: str, trace_id: str, user_id: str = "", ttl_seconds: int = 86400) -> str:
    expires = int(time.time()) + ttl_seconds
    return f"v1.{expires}.{_mac(secret, trace_id, user_id, expires)}"


def verify_trace_token(secret: str, token: str | None, trace_id: str, user_id: str = "") -> str | None:
    """None when valid, else the reason it is not."""
    if not token:
        return "missing"
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "v1" or not (parts[1].isascii() and parts[1].isdigit()):
        return "malformed"
    expires = int(parts[1])
    if not parts[2].isascii() or not hmac.compare_digest(parts[2], _mac(secret, trace_id, user_id, expires)):
        return "bad_signature"
    if expires < time.time():
        return "expired"
    return None
