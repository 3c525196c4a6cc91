"""The API's per-key rate limit as a client meets it: 429, Retry-After and the API error shape."""

from __future__ import annotations

from typing import Any

from django.test import Client

from tenants.ratelimit import key_rate_reset
from tenants.services import api_key_create
from tests.fixtures.organizations import Org


def test_rate_limit_answers_429_with_retry_after(db: None, org_a, small_budget) -> None:  # type: ignore[no-untyped-def]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {org_a.secret_key}")
    codes = [client.get("/api/v1/traces").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = client.get("/api/v1/traces")
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    # The same code on every endpoint, the widget's included (tenants.ratelimit is shared by both doors).
    assert limited.json()["error"]["code"] == "rate_limited"


def test_429_has_retry_after_and_the_api_error_shape(db: None, org_a: Org, settings: Any) -> None:
    settings.API_RATE_LIMIT_PER_SECOND = 0.01
    settings.API_RATE_LIMIT_BURST = 2
    raw, key = api_key_create(organization=org_a.organization, kind="secret", name="rate test")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    answers = [client.get("/api/v1/traces") for _ in range(3)]
    key_rate_reset(key.id)
    assert [a.status_code for a in answers] == [200, 200, 429]
    refused = answers[2]
    assert refused.json() == {
        "error": {
            "code": "rate_limited",
            "message": "Too many requests for this key.",
            "details": {"retry_after": int(refused["Retry-After"])},
        }
    }
    assert 99 <= int(refused["Retry-After"]) <= 100
