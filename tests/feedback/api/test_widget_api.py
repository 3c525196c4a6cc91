"""POST /api/v1/widget/events, the browser's door: CORS, the public key's rate limit, keys that
must not be there, signed tokens, and an event the JSON parser cannot read."""

from __future__ import annotations

import json
import uuid

from django.test import Client


def test_widget_rate_limit_and_cors(db: None, org_a, small_budget) -> None:  # type: ignore[no-untyped-def]
    from tenants.services import api_key_set_origins

    key = org_a.organization.api_keys.get(kind="public")
    api_key_set_origins(key=key, allowed_origins=["https://shop.example.com"])
    client = Client()
    preflight = client.options("/api/v1/widget/events", HTTP_ORIGIN="https://shop.example.com")
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    body = {"key": org_a.public_key, "events": []}
    answers = [
        client.post("/api/v1/widget/events", json.dumps(body), content_type="text/plain",
                    HTTP_ORIGIN="https://shop.example.com")
        for _ in range(4)
    ]  # fmt: skip
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]  # an empty batch: nothing to store
    assert answers[3].status_code == 429
    assert answers[3]["Retry-After"] and answers[3]["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "Retry-After" in answers[3]["Access-Control-Expose-Headers"]


def test_retry_after_is_never_shorter_than_the_wait(db: None, org_a, settings) -> None:  # type: ignore[no-untyped-def]
    """Retry-After is whole seconds rounded up: a widget that waits as long as it is told gets in."""
    from tenants.ratelimit import key_rate_reset, key_rate_wait
    from tenants.services import api_key_create

    # One request, then one every 2.49 s: the refused request's wait is just under 2.49 s.
    settings.API_RATE_LIMIT_PER_SECOND = 1 / 2.49
    settings.API_RATE_LIMIT_BURST = 1
    raw, key = api_key_create(
        organization=org_a.organization, kind="public", name="retry-after", allowed_origins=["https://a.test"]
    )
    body = json.dumps({"key": raw, "events": []})
    try:
        answers = [
            Client().post("/api/v1/widget/events", body, content_type="text/plain", HTTP_ORIGIN="https://a.test")
            for _ in range(2)
        ]
        still_to_wait = key_rate_wait(key.id)  # a refused request spends nothing: this only reads the wait
    finally:
        key_rate_reset(key.id)
    assert [a.status_code for a in answers] == [200, 429]
    assert 0 < still_to_wait < 2.49
    assert int(answers[1]["Retry-After"]) >= still_to_wait
    assert answers[1].json()["error"]["details"] == {"retry_after": int(answers[1]["Retry-After"])}


def test_widget_rejects_secret_keys_and_garbage(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    secret = client.post("/api/v1/widget/events", json.dumps({"key": org_a.secret_key, "events": []}),
                         content_type="text/plain", HTTP_ORIGIN="http://localhost")  # fmt: skip
    assert secret.status_code == 403 and secret.json()["error"]["code"] == "secret_key_in_browser"
    garbage = client.post("/api/v1/widget/events", b"\xff\xfe", content_type="text/plain")
    assert garbage.status_code == 400
    unknown = client.post("/api/v1/widget/events", json.dumps({"key": "pk_nope", "events": []}),
                          content_type="text/plain")  # fmt: skip
    assert unknown.status_code == 401


def test_non_ascii_token_is_rejected_not_a_500(db: None, org_b) -> None:  # type: ignore[no-untyped-def]
    from tenants.models import Organization
    from tenants.services import api_key_set_origins

    Organization.objects.filter(id=org_b.organization.id).update(require_signed_tokens=True, widget_signing_secret="s")
    api_key_set_origins(key=org_b.organization.api_keys.get(kind="public"), allowed_origins=["https://a.test"])
    event = {"event_id": str(uuid.uuid4()), "trace_id": "t", "kind": "copy", "token": "v1.9999999999.\u00e9"}
    response = Client().post("/api/v1/widget/events", json.dumps({"key": org_b.public_key, "events": [event]}),
                             content_type="text/plain", HTTP_ORIGIN="https://a.test")  # fmt: skip
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "token"


def test_widget_nan_in_one_event_keeps_the_others(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from tenants.services import api_key_set_origins

    api_key_set_origins(key=org_a.organization.api_keys.get(kind="public"), allowed_origins=["https://a.test"])
    good = str(uuid.uuid4())
    body = (
        f'{{"key": "{org_a.public_key}", "events": [{{"event_id": "{good}", "trace_id": "t", "kind": "copy"}},'
        f' {{"event_id": "{uuid.uuid4()}", "trace_id": "t", "kind": "dwell", "value": NaN}}]}}'
    )
    response = Client().post("/api/v1/widget/events", body, content_type="text/plain", HTTP_ORIGIN="https://a.test")
    assert response.status_code == 207, response.content
    assert response.json()["accepted"] == 1 and response.json()["errors"][0] == {
        "index": 1, "field": "value", "message": "NaN is not a number (JSON has no NaN or Infinity)"}  # fmt: skip


def test_a_widget_body_without_a_list_of_events_is_a_400_naming_events(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from tenants.services import api_key_set_origins

    api_key_set_origins(key=org_a.organization.api_keys.get(kind="public"), allowed_origins=["https://a.test"])
    key = org_a.public_key
    cases = [({"key": key}, "has no events"), ({"key": key, "events": "x"}, "'events' must be a list"),
             ({"key": key, "events": {"a": 1}}, "'events' must be a list")]  # fmt: skip
    for body, says in cases:
        response = Client().post("/api/v1/widget/events", json.dumps(body), content_type="text/plain",
                                 HTTP_ORIGIN="https://a.test")  # fmt: skip
        assert response.status_code == 400, (body, response.content)
        assert says in response.json()["error"]["message"], response.content
    empty = Client().post("/api/v1/widget/events", json.dumps({"key": org_a.public_key, "events": []}),
                          content_type="text/plain", HTTP_ORIGIN="https://a.test")  # fmt: skip
    assert empty.status_code == 200 and empty.json()["accepted"] == 0


def test_a_widget_body_without_a_key_says_no_key_was_sent(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    bodies: list[dict[str, object]] = [{"events": []}, {"key": "", "events": []}]
    for body in bodies:
        response = client.post("/api/v1/widget/events", json.dumps(body), content_type="text/plain")
        assert response.status_code == 401
        assert response.json()["error"] == {
            "code": "not_authenticated",
            "message": "No public key: send the widget's key (pk_...) as `key`.",
            "details": None,
        }
    unknown = client.post("/api/v1/widget/events", json.dumps({"key": "pk_nope", "events": []}),
                          content_type="text/plain")  # fmt: skip
    assert unknown.status_code == 401 and unknown.json()["error"]["message"] == "Unknown or revoked public key."
