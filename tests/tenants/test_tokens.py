"""Signed per-trace widget tokens: anything that is not a token is named for what is wrong with it."""

from __future__ import annotations


def test_token_verification_rejects_garbage() -> None:
    from tenants.tokens import verify_trace_token

    for token, reason in [(None, "missing"), ("", "missing"), ("v2.1.x", "malformed"), ("v1.abc.x", "malformed"),
                          ("nonsense", "malformed")]:  # fmt: skip
        assert verify_trace_token("s", token, "t") == reason
