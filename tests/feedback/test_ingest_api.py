"""The write API of API.md against the live server: batches, idempotency, partial failure, costs."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.fixtures.organizations import unique
from tests.helpers import error_code


def trace(trace_id: str, **fields):  # type: ignore[no-untyped-def]
    return {"trace_id": trace_id, "feature": "support-copilot", **fields}


def event(trace_id: str, kind: str = "thumb", **fields):  # type: ignore[no-untyped-def]
    return {"event_id": str(uuid.uuid4()), "trace_id": trace_id, "kind": kind, **fields}


@pytest.fixture
def api_a(live, org_a):  # type: ignore[no-untyped-def]
    return live.api(org_a.secret_key)


@pytest.fixture
def api_b(live, org_b):  # type: ignore[no-untyped-def]
    return live.api(org_b.secret_key)


def test_single_trace_is_stored_and_readable(api_a) -> None:  # type: ignore[no-untyped-def]
    tid = unique()
    sent = trace(
        tid, prompt_version="support-v2.3", prompt="You are a support agent.", model="gpt-4o-mini",
        provider="openai", input="Where is my order?", output="It ships tomorrow.", input_tokens=1000,
        output_tokens=200, latency_ms=840.5, customer_id="cus_acme", variant="ai_on", metadata={"auth": "sso"},
        started_at="2025-03-01T10:00:00Z",
    )  # fmt: skip
    response = api_a.post("/api/v1/traces", sent)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0, "errors": []}
    got = api_a.get(f"/api/v1/traces/{tid}").json()
    assert got["feature"] == "support-copilot"
    assert got["prompt_version"] == "support-v2.3"
    assert len(got["prompt_hash"]) == 16  # computed from the prompt text
    assert got["metadata"] == {"auth": "sso"}
    assert got["started_at"].startswith("2025-03-01T10:00:00")
    # gpt-4o-mini: $0.15 / $0.60 per million tokens.
    assert Decimal(str(got["cost_usd"])) == Decimal("0.00027")
    assert got["cost_source"].startswith("default:openai/gpt-4o-mini")


def test_cost_uses_the_price_in_force_at_started_at(api_a) -> None:  # type: ignore[no-untyped-def]
    old, new = unique(), unique()
    api_a.post("/api/v1/traces", {"batch": [
        trace(old, model="gpt-4o", input_tokens=1_000_000, output_tokens=0, started_at="2024-06-01T00:00:00Z"),
        trace(new, model="gpt-4o-2024-08-06", input_tokens=1_000_000, output_tokens=0,
              started_at="2024-09-01T00:00:00Z"),
    ]})  # fmt: skip
    assert Decimal(str(api_a.get(f"/api/v1/traces/{old}").json()["cost_usd"])) == Decimal("5")
    assert Decimal(str(api_a.get(f"/api/v1/traces/{new}").json()["cost_usd"])) == Decimal("2.5")


def test_cached_tokens_are_billed_at_the_cached_price(api_a) -> None:  # type: ignore[no-untyped-def]
    tid = unique()
    api_a.post(
        "/api/v1/traces",
        trace(
            tid,
            provider="anthropic",
            model="claude-3-5-haiku-20241022",
            input_tokens=1_000_000,
            cached_tokens=500_000,
            output_tokens=100_000,
        ),
    )
    # 500k at $0.80 + 500k cached at $0.08 + 100k output at $4.00
    assert Decimal(str(api_a.get(f"/api/v1/traces/{tid}").json()["cost_usd"])) == Decimal("0.84")


def test_client_cost_wins_and_unknown_model_warns(api_a) -> None:  # type: ignore[no-untyped-def]
    paid, unknown = unique(), unique()
    response = api_a.post("/api/v1/traces", {"batch": [
        trace(paid, model="gpt-4o-mini", input_tokens=10, output_tokens=10, cost_usd=0.5),
        trace(unknown, model="my-finetune-v7", provider="acme-ai", input_tokens=10, output_tokens=10),
    ]})  # fmt: skip
    body = response.json()
    assert response.status_code == 200 and body["accepted"] == 2
    assert body["warnings"][0]["index"] == 1 and "my-finetune-v7" in body["warnings"][0]["message"]
    assert api_a.get(f"/api/v1/traces/{paid}").json()["cost_source"] == "client"
    got = api_a.get(f"/api/v1/traces/{unknown}").json()
    assert got["cost_usd"] is None and got["model"] == "my-finetune-v7"


def test_partial_batch_keeps_the_good_items_and_names_the_bad(api_a) -> None:  # type: ignore[no-untyped-def]
    good1, good2 = unique(), unique()
    batch = [
        trace(good1),
        {"trace_id": unique()},  # no feature
        trace(unique(), input_tokens=-5),
        trace(good2),
        trace(unique(), started_at="2999-01-01T00:00:00Z"),
        trace(unique(), started_at="1969-12-31T23:59:59Z"),
        trace(unique(), started_at="2025-01-01T00:00:00"),  # no zone
        trace(unique(), output="a\u0000b"),
        trace(unique(), status="maybe"),
    ]
    response = api_a.post("/api/v1/traces", {"batch": batch})
    assert response.status_code == 207
    body = response.json()
    assert body["accepted"] == 2
    by_index = {e["index"]: e for e in body["errors"]}
    assert sorted(by_index) == [1, 2, 4, 5, 6, 7, 8]
    assert by_index[1]["field"] == "feature" and by_index[1]["message"] == "required"
    assert by_index[2]["field"] == "input_tokens"
    assert by_index[4]["field"] == "started_at" and "future" in by_index[4]["message"]
    assert by_index[5]["field"] == "started_at" and "1970" in by_index[5]["message"]
    assert by_index[6]["field"] == "started_at" and "time zone" in by_index[6]["message"]
    assert by_index[7]["field"] == "output" and "NUL" in by_index[7]["message"]
    assert by_index[8]["field"] == "status"
    assert api_a.get(f"/api/v1/traces/{good1}").status_code == 200
    assert api_a.get(f"/api/v1/traces/{good2}").status_code == 200


def test_nan_and_bad_utf8_are_item_errors_not_a_lost_batch(api_a) -> None:  # type: ignore[no-untyped-def]
    good = unique()
    body = (
        b'{"batch": [' + json.dumps(trace(good)).encode() + b","
        + b'{"trace_id": "x1", "feature": "f", "latency_ms": NaN},'
        + b'{"trace_id": "x2", "feature": "f", "output": "caf\xe9"},'
        + b'{"trace_id": "x3", "feature": "f", "output": "\\ud800"}]}'
    )  # fmt: skip
    response = api_a.request("POST", "/api/v1/traces", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 207, response.text
    errors = {e["index"]: e for e in response.json()["errors"]}
    assert errors[1]["field"] == "latency_ms" and "NaN" in errors[1]["message"]
    assert errors[2]["field"] == "output" and "UTF-8" in errors[2]["message"]
    assert errors[3]["field"] == "output"
    assert response.json()["accepted"] == 1


def test_unreadable_bodies_are_400_with_the_error_shape(api_a) -> None:  # type: ignore[no-untyped-def]
    for body in [b"", b"not json", b"[1, 2]", b'{"batch": 3}']:
        response = api_a.request("POST", "/api/v1/traces", data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, body
        assert set(response.json()["error"]) == {"code", "message", "details"}
    every_item_bad = api_a.post("/api/v1/traces", {"batch": [{"trace_id": "a"}, {"trace_id": "b"}]})
    assert every_item_bad.status_code == 400 and len(every_item_bad.json()["errors"]) == 2


def test_size_limits(api_a) -> None:  # type: ignore[no-untyped-def]
    too_many = api_a.post("/api/v1/traces", {"batch": [trace(f"t{i}") for i in range(1001)]})
    assert too_many.status_code == 413 and error_code(too_many) == "too_many_items"
    huge = api_a.request("POST", "/api/v1/traces", data=b"x" * (5 * 1024 * 1024 + 1),
                         headers={"Content-Type": "application/json"})  # fmt: skip
    assert huge.status_code == 413 and error_code(huge) == "too_large"
    long_output = api_a.post("/api/v1/traces", trace(unique(), output="x" * 200_001))
    assert long_output.status_code == 400
    assert long_output.json()["errors"][0]["field"] == "output"
    assert "too long" in long_output.json()["errors"][0]["message"]


def test_resent_trace_merges_later_non_null_fields(api_a) -> None:  # type: ignore[no-untyped-def]
    tid = unique()
    first = api_a.post(
        "/api/v1/traces",
        trace(tid, model="gpt-4o-mini", output="draft", metadata={"a": "1"}, fallback=True, latency_ms=100),
    )
    assert first.json()["accepted"] == 1
    again = api_a.post("/api/v1/traces", trace(tid, output="final", metadata={"b": "2"}, customer_id="cus_x"))
    assert again.json() == {"accepted": 0, "duplicates": 1, "errors": []}
    got = api_a.get(f"/api/v1/traces/{tid}").json()
    assert got["output"] == "final"  # later wins
    assert got["model"] == "gpt-4o-mini"  # absent later: earlier kept
    assert got["metadata"] == {"a": "1", "b": "2"}
    assert got["fallback"] is True and got["latency_ms"] == 100
    assert got["customer_id"] == "cus_x"


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


def test_outcomes_idempotent_and_need_a_link(api_a) -> None:  # type: ignore[no-untyped-def]
    tid = unique()
    outcome = {"outcome_id": unique("oc"), "name": "purchase", "trace_id": tid, "value_usd": 42.5}
    assert api_a.post("/api/v1/outcomes", outcome).json()["accepted"] == 1
    assert api_a.post("/api/v1/outcomes", outcome).json()["duplicates"] == 1
    orphan = api_a.post("/api/v1/outcomes", {"outcome_id": unique("oc"), "name": "purchase"})
    assert orphan.status_code == 400 and orphan.json()["errors"][0]["field"] == "trace_id"


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


def test_keys_and_errors(live, api_a, org_a) -> None:  # type: ignore[no-untyped-def]
    anonymous = live.api(None).post("/api/v1/traces", trace(unique()))
    assert anonymous.status_code == 401 and error_code(anonymous) == "not_authenticated"
    unknown = live.api("sk_" + "x" * 43).post("/api/v1/traces", trace(unique()))
    assert unknown.status_code == 401 and error_code(unknown) == "invalid_key"
    public = live.api(org_a.public_key).post("/api/v1/traces", trace(unique()))
    assert public.status_code == 403 and error_code(public) == "public_key_not_allowed"
    assert live.api(org_a.public_key).get("/api/v1/traces").status_code == 403


def test_cross_tenant_trace_is_404(api_a, api_b) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import assert_cross_tenant_404

    tid = unique()
    api_b.post("/api/v1/traces", trace(tid, output="beta's secret answer"))
    assert api_b.get(f"/api/v1/traces/{tid}").status_code == 200
    assert_cross_tenant_404(api_a, f"/api/v1/traces/{tid}", leak="beta's secret answer")
    listed = api_a.get("/api/v1/traces", params={"limit": 500}).json()["results"]
    assert tid not in {t["trace_id"] for t in listed}
    # Feedback from A naming B's trace lands in A only (as an early event), never on B's trace.
    api_a.post("/api/v1/feedback", event(tid, value=-1))
    assert api_b.get(f"/api/v1/traces/{tid}").json()["feedback"] == []


def test_list_filters_and_cursor(api_a) -> None:  # type: ignore[no-untyped-def]
    run = unique("run")
    base = datetime(2025, 2, 1, tzinfo=UTC)
    batch = [
        trace(f"{run}-{i}", feature="filter-feature", prompt_version="pv-a" if i % 2 else "pv-b",
              customer_id=f"{run}-cus{i % 3}", variant="holdback" if i % 5 == 0 else "ai_on",
              metadata={"auth": "sso" if i % 4 == 0 else "password", "run": run},
              started_at=(base + timedelta(minutes=i)).isoformat())
        for i in range(30)
    ]  # fmt: skip
    assert api_a.post("/api/v1/traces", {"batch": batch}).status_code == 200
    api_a.post("/api/v1/feedback", event(f"{run}-3", value=-1))
    api_a.post("/api/v1/feedback", event(f"{run}-4", "edit", original_text="a", edited_text="b"))

    def ids(**params):  # type: ignore[no-untyped-def]
        response = api_a.get("/api/v1/traces", params={"metadata.run": run, "limit": 500, **params})
        assert response.status_code == 200, response.text
        return {t["trace_id"] for t in response.json()["results"]}

    assert len(ids()) == 30
    assert ids(**{"metadata.auth": "sso"}) == {f"{run}-{i}" for i in range(0, 30, 4)}
    assert ids(prompt_version="pv-a") == {f"{run}-{i}" for i in range(1, 30, 2)}
    assert ids(customer_id=f"{run}-cus1") == {f"{run}-{i}" for i in range(1, 30, 3)}
    assert ids(variant="holdback") == {f"{run}-{i}" for i in range(0, 30, 5)}
    assert ids(has_thumbs_down="true") == {f"{run}-3"}
    assert ids(has_edit="true") == {f"{run}-4"}
    # Flags are what the OpenAPI schema says, true or false; anything else is a 400 naming it.
    loose = api_a.get("/api/v1/traces", params={"has_edit": "1"})
    assert loose.status_code == 400 and loose.json()["error"]["details"] == {"field": "has_edit"}
    assert ids(since=(base + timedelta(minutes=25)).isoformat()) == {f"{run}-{i}" for i in range(25, 30)}
    seen: list[str] = []
    cursor = ""
    while True:
        page = api_a.get("/api/v1/traces", params={"metadata.run": run, "limit": 7, "cursor": cursor}).json()
        seen += [t["trace_id"] for t in page["results"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"{run}-{i}" for i in reversed(range(30))]  # newest first, no repeats, no gaps
    bad = api_a.get("/api/v1/traces", params={"since": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "since"
    assert api_a.get("/api/v1/traces", params={"cursor": "garbage!"}).status_code == 400


def test_spans_are_stored_with_the_trace(api_a) -> None:  # type: ignore[no-untyped-def]
    tid = unique()
    spans = [
        {"span_id": "root", "name": "answer", "kind": "other", "start": "2025-01-01T00:00:00Z",
         "end": "2025-01-01T00:00:02Z"},
        {"span_id": "r1", "parent_span_id": "root", "name": "search kb", "kind": "retrieval",
         "start": "2025-01-01T00:00:00Z", "end": "2025-01-01T00:00:00.400Z"},
        {"span_id": "l1", "parent_span_id": "root", "name": "chat", "kind": "llm", "model": "gpt-4o-mini",
         "input_tokens": 900, "output_tokens": 120, "start": "2025-01-01T00:00:00.400Z",
         "end": "2025-01-01T00:00:02Z"},
    ]  # fmt: skip
    api_a.post("/api/v1/traces", trace(tid, spans=spans))
    api_a.post("/api/v1/traces", trace(tid, spans=spans[:1]))  # resend: no duplicate spans
    got = api_a.get(f"/api/v1/traces/{tid}").json()["spans"]
    assert [s["span_id"] for s in got] == ["root", "r1", "l1"]
    assert got[2]["kind"] == "llm" and got[2]["input_tokens"] == 900
