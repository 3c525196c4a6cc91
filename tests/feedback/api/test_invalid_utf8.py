"""Bytes that are not UTF-8 inside one item's string: that item is refused by name, the rest of the batch is
stored. The envelope reads fine (its items are taken apart as raw JSON), so only the item's own decoding meets
the bad bytes; it used to fail the whole request with a 500 on every write endpoint."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client

from tests.fixtures.organizations import unique


def _item(path: str, good: bool) -> tuple[bytes, str]:
    """One item's JSON for the endpoint, with an invalid byte (0xff) in a text field when not good;
    and the field that holds it."""
    text = '"fine"' if good else '"caf\xff"'
    ident = unique("id")
    if path == "traces":
        return f'{{"trace_id": "{ident}", "feature": "utf8", "output": {text}}}'.encode("latin-1"), "output"
    if path in ("feedback", "widget/events"):
        body = f'{{"event_id": "{uuid.uuid4()}", "trace_id": "t-utf8", "kind": "comment", "comment": {text}}}'
        return body.encode("latin-1"), "comment"
    if path == "outcomes":
        return f'{{"outcome_id": "{ident}", "name": {text}, "trace_id": "t-utf8"}}'.encode("latin-1"), "name"
    if path == "scores":
        body = f'{{"score_id": "{ident}", "trace_id": "t-utf8", "name": "utf8-judge", "value": 1, "comment": {text}}}'
        return body.encode("latin-1"), "comment"
    body = f'{{"label_id": "{ident}", "trace_id": "t-utf8", "rubric": "utf8", "value": 1, "comment": {text}}}'
    return body.encode("latin-1"), "comment"


@pytest.mark.parametrize("path", ["traces", "feedback", "outcomes", "scores", "labels", "widget/events"])
def test_an_item_with_bytes_that_are_not_utf8_is_refused_by_name_and_the_rest_kept(db: None, org_a, path: str) -> None:  # type: ignore[no-untyped-def]
    good, _ = _item(path, good=True)
    bad, field = _item(path, good=False)
    client = Client()
    if path == "widget/events":
        from tenants.services import api_key_set_origins

        api_key_set_origins(key=org_a.organization.api_keys.get(kind="public"), allowed_origins=["https://a.test"])
        body = b'{"key": "' + org_a.public_key.encode() + b'", "events": [' + good + b", " + bad + b"]}"
        response = client.post(f"/api/v1/{path}", body, content_type="text/plain", HTTP_ORIGIN="https://a.test")
    else:
        body = b'{"batch": [' + good + b", " + bad + b"]}"
        response = client.post(f"/api/v1/{path}", body, content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {org_a.secret_key}")  # fmt: skip
    assert response.status_code == 207, response.content
    answer = json.loads(response.content)
    assert answer["accepted"] == 1
    message = "text is not valid UTF-8 (invalid bytes or a lone surrogate)"
    assert answer["errors"] == [{"index": 1, "field": field, "message": message}]
