"""POST /api/v1/feedback against the live server: idempotency by event_id, feedback that
arrives before its trace, edit capture, item errors, and a storm of resends."""

from __future__ import annotations

import random

import pytest

from tests.fixtures.api import event, trace
from tests.fixtures.organizations import unique


def test_feedback_is_idempotent_by_event_id(api_a) -> None:  # type: ignore[no-untyped-def]
    tid = unique()
    api_a.post("/api/v1/traces", trace(tid))
    thumb = event(tid, value=1)
    assert api_a.post("/api/v1/feedback", thumb).json() == {"accepted": 1, "duplicates": 0, "errors": []}
    assert api_a.post("/api/v1/feedback", thumb).json() == {"accepted": 0, "duplicates": 1, "errors": []}
    assert api_a.post("/api/v1/feedback", {"batch": [thumb, thumb]}).json()["duplicates"] == 2
    assert len(api_a.get(f"/api/v1/traces/{tid}").json()["feedback"]) == 1


def test_feedback_before_its_trace_is_kept_and_joined(api_a, committed_db, org_a) -> None:  # type: ignore[no-untyped-def]
    from feedback.models import FeedbackEvent
    from tests.fixtures.organizations import in_tenant

    tid = unique()
    early = event(tid, value=-1)
    assert api_a.post("/api/v1/feedback", early).json()["accepted"] == 1
    with in_tenant(org_a):
        row = FeedbackEvent.objects.get(event_id=early["event_id"])
        assert row.feature_id is None and row.trace_day is None
    api_a.post("/api/v1/traces", trace(tid, prompt_version="v9", started_at="2025-05-05T05:00:00Z"))
    with in_tenant(org_a):
        row = FeedbackEvent.objects.select_related("feature", "prompt_version").get(event_id=early["event_id"])
        assert row.feature.key == "support-copilot"
        assert row.prompt_version.label == "v9"
        assert str(row.trace_day) == "2025-05-05"
    assert api_a.get(f"/api/v1/traces/{tid}").json()["feedback"][0]["value"] == -1


def test_a_feedback_events_prompt_version_reads_as_its_traces_own(api_a) -> None:  # type: ignore[no-untyped-def]
    """API.md: the trace's own prompt version wins when both exist. The trace read showed the label the event
    was sent with ("" when none), not the one it counts under."""
    tid = unique()
    sent = event(tid, value=1, prompt_version="client-guess")
    bare = event(tid, value=-1)
    assert api_a.post("/api/v1/feedback", {"batch": [sent, bare]}).json()["accepted"] == 2
    assert api_a.post("/api/v1/traces", trace(tid, prompt_version="v9")).json()["accepted"] == 1
    read = api_a.get(f"/api/v1/traces/{tid}").json()
    assert read["prompt_version"] == "v9"
    assert [f["prompt_version"] for f in read["feedback"]] == ["v9", "v9"]


def test_edit_capture_stores_texts_and_distance(api_a) -> None:  # type: ignore[no-untyped-def]
    tid = unique()
    api_a.post("/api/v1/traces", trace(tid))
    sent = event(tid, "edit", original_text="Your refund was approved today.", edited_text="Your refund was approved.")
    assert api_a.post("/api/v1/feedback", sent).status_code == 200
    stored = api_a.get(f"/api/v1/traces/{tid}").json()["feedback"][0]
    assert stored["original_text"] == sent["original_text"] and stored["edited_text"] == sent["edited_text"]
    from rapidfuzz.distance import Levenshtein

    assert stored["edit_distance"] == pytest.approx(
        Levenshtein.normalized_distance(sent["original_text"], sent["edited_text"])
    )
    assert stored["kept_ratio"] == pytest.approx(len("Your refund was approved.") / len(sent["original_text"]))


def test_feedback_bad_input(api_a) -> None:  # type: ignore[no-untyped-def]
    tid = unique()
    batch = [
        event(tid, value=1),
        event(tid, value=3),  # thumb of 3
        event(tid, "rating", value=9),
        {**event(tid), "event_id": "not-a-uuid"},
        event(tid, "edit", original_text="x"),
        event(tid, "nope"),
        event(tid, "custom"),
        event(tid, "dwell", value=-4),
    ]
    response = api_a.post("/api/v1/feedback", {"batch": batch})
    assert response.status_code == 207
    fields = {e["index"]: e["field"] for e in response.json()["errors"]}
    assert fields == {1: "value", 2: "value", 3: "event_id", 4: "edited_text", 5: "kind", 6: "name", 7: "value"}


def test_resend_storm_stores_each_event_once(api_a, committed_db, org_a) -> None:  # type: ignore[no-untyped-def]
    from feedback.models import FeedbackEvent, Outcome, Trace
    from tests.fixtures.organizations import in_tenant

    prefix = unique("storm")
    traces = [trace(f"{prefix}-{i}", output=f"answer {i}") for i in range(120)]
    events = [event(t["trace_id"], "copy", value=i) for i, t in enumerate(traces)]
    outcomes = [{"outcome_id": f"{prefix}-oc{i}", "name": "resolved", "trace_id": t["trace_id"]}
                for i, t in enumerate(traces[:40])]  # fmt: skip
    sends = [("/api/v1/traces", t) for t in traces] + [("/api/v1/feedback", e) for e in events]
    sends += [("/api/v1/outcomes", o) for o in outcomes]
    sends = sends * 2
    random.Random(7).shuffle(sends)
    for start in range(0, len(sends), 25):
        chunk = sends[start : start + 25]
        for path in {p for p, _ in chunk}:
            response = api_a.post(path, {"batch": [item for p, item in chunk if p == path]})
            assert response.status_code == 200, response.text
    with in_tenant(org_a):
        assert Trace.objects.filter(trace_id__startswith=prefix).count() == 120
        assert FeedbackEvent.objects.filter(trace_id__startswith=prefix).count() == 120
        assert Outcome.objects.filter(outcome_id__startswith=prefix).count() == 40
        # every feedback event got joined to its trace, whichever arrived first
        assert not FeedbackEvent.objects.filter(trace_id__startswith=prefix, feature__isnull=True).exists()


def test_an_event_id_twice_in_one_batch_keeps_the_first_as_across_batches(api_a) -> None:  # type: ignore[no-untyped-def]
    """The answer counts the second as the duplicate: the second must be the one not stored (it was stored)."""
    tid = unique()
    up = event(tid, value=1)
    down = {**up, "value": -1}
    answer = api_a.post("/api/v1/feedback", {"batch": [up, down]}).json()
    assert answer == {"accepted": 1, "duplicates": 1, "errors": []}
    assert api_a.post("/api/v1/traces", trace(tid)).ok
    (stored,) = api_a.get(f"/api/v1/traces/{tid}").json()["feedback"]
    assert stored["value"] == 1
