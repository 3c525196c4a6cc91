"""Feedback event ingestion: one event however its UUID is written."""

from __future__ import annotations

import json
import uuid
from typing import Any

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


def _events(trace_id: str, n: int) -> list[dict[str, object]]:
    """n events of every shape: an edit, a rating with a comment, a thumb of a trace not yet sent."""
    events: list[dict[str, object]] = []
    for i in range(n):
        shape = i % 4
        event: dict[str, object] = {"event_id": str(uuid.uuid4()), "trace_id": trace_id, "user_id": f"u{i}"}
        if shape == 0:
            event |= {
                "kind": "edit",
                "original_text": "The refund takes 5 days.",
                "edited_text": "Refunds take 3 days.",
            }
        elif shape == 1:
            event |= {"kind": "rating", "value": 4, "comment": "close", "occurred_at": "2026-11-30T10:00:00Z"}
        elif shape == 2:
            event |= {"kind": "thumb", "value": -1, "trace_id": f"{trace_id}-later", "session_id": "s1"}
        else:
            event |= {"kind": "copy", "name": "copy-button"}
        events.append(event)
    return events


_COMPARED = ("trace_id", "kind", "value", "comment", "original_text", "edited_text", "name", "user_id", "session_id",
             "when", "prompt_version_label", "edit_distance", "kept_ratio", "source", "feature_id",
             "prompt_version_id", "trace_day")  # fmt: skip


def test_a_small_batch_in_one_statement_stores_what_the_copy_path_stores(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """Batches up to SMALL_BATCH take one statement, larger ones COPY: the same rows, counts and marks."""
    from feedback import services
    from feedback.models import RollupDirty, UsageCounter
    from feedback.services.feedback_events import SMALL_BATCH

    trace_id = unique()
    trace = {"trace_id": trace_id, "feature": "support-copilot", "prompt_version": "support-v2.3", "model": "gpt-4o",
             "started_at": "2026-11-29T08:00:00Z"}  # fmt: skip
    stored: dict[int, list[tuple[Any, ...]]] = {}
    with in_tenant(org_a):
        assert services.traces_ingest(body=json.dumps({"batch": [trace]}).encode()).accepted == 1
        RollupDirty.objects.all().delete()
        for n in (SMALL_BATCH // 4 * 4, (SMALL_BATCH // 4 + 2) * 4):  # one batch on each side of the line
            events = _events(trace_id, n)
            usage_before = sum(UsageCounter.objects.filter(kind="feedback").values_list("quantity", flat=True))
            first = services.feedback_ingest(body=json.dumps({"batch": events}).encode())
            assert (first.accepted, first.duplicates, first.errors) == (n, 0, [])
            # A resend is all duplicates; half old and half new stores the new half alone.
            again = services.feedback_ingest(body=json.dumps({"batch": events}).encode())
            assert (again.accepted, again.duplicates) == (0, n)
            more = _events(trace_id, 4)
            mixed = services.feedback_ingest(body=json.dumps({"batch": events[:4] + more}).encode())
            assert (mixed.accepted, mixed.duplicates) == (4, 4)
            usage = sum(UsageCounter.objects.filter(kind="feedback").values_list("quantity", flat=True))
            assert usage - usage_before == n + 4  # what was stored, never what was resent
            ids = [e["event_id"] for e in events]
            rows = list(FeedbackEvent.objects.filter(event_id__in=ids))
            assert len(rows) == n
            by_id = {str(e["event_id"]): i for i, e in enumerate(events)}
            for row in rows:  # when: as sent, else as received
                row.when = row.occurred_at.isoformat() if row.occurred_at != row.received_at else "received"  # type: ignore[attr-defined]
            stored[n] = [
                tuple(getattr(r, f) for f in _COMPARED) for r in sorted(rows, key=lambda r: by_id[str(r.event_id)])
            ]
        marks = list(RollupDirty.objects.values_list("day", flat=True))
    small, large = stored.values()
    # Row i of the small batch and row i of the large one had the same shape: the same columns.
    assert small == large[: len(small)]
    joined = [row for row in small if row[0] == trace_id]
    assert joined and all(row[-3] is not None and row[-1].isoformat() == "2026-11-29" for row in joined)
    assert all(row[-3] is None and row[-1] is None for row in small if row[0] != trace_id)  # waits for its trace
    assert [row[9] for row in small[:2]] == ["received", "2026-11-30T10:00:00+00:00"]
    edit = small[0]
    assert edit[11] is not None and 0 < edit[12] < 1  # edit distance and kept ratio computed on the way in
    assert [d.isoformat() for d in marks] == ["2026-11-29"]
