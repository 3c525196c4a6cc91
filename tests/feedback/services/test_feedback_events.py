"""Feedback event ingestion: one event however its UUID is written."""

from __future__ import annotations

import json
import uuid

from feedback.models import FeedbackEvent
from tests.fixtures.api import post_json
from tests.fixtures.organizations import in_tenant, unique


def test_non_canonical_uuids_are_stored_canonically_and_dedupe(client_a, org_a) -> None:  # type: ignore[no-untyped-def]
    trace_id = unique()
    plain = uuid.uuid4()
    batch = [
        {"event_id": f"urn:uuid:{plain}", "trace_id": trace_id, "kind": "copy"},
        {"event_id": str(plain).upper(), "trace_id": trace_id, "kind": "copy"},
        {"event_id": "{" + str(uuid.uuid4()) + "}", "trace_id": trace_id, "kind": "retry"},
    ]
    response = post_json(client_a, "/api/v1/feedback", json.dumps({"batch": batch}).encode())
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 2, "duplicates": 1, "errors": []}
    with in_tenant(org_a):
        assert FeedbackEvent.objects.filter(event_id=plain).count() == 1
