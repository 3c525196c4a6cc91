"""POST and GET /api/v1/traces against the live server: batches, idempotency, partial failure,
costs, merging resends, listing and the other organization's traces."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tests.fixtures.api import event, trace
from tests.fixtures.organizations import unique
from tests.helpers import error_code


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
    # A version sent without its prompt has no hash: null, as for a trace of no version (it read "").
    bare, none = unique(), unique()
    api_a.post("/api/v1/traces", {"batch": [trace(bare, prompt_version=f"v-{bare}"), trace(none)]})
    for trace_id, version in ((bare, f"v-{bare}"), (none, None)):
        one = api_a.get(f"/api/v1/traces/{trace_id}").json()
        assert (one["prompt_version"], one["prompt_hash"]) == (version, None)
    listed = api_a.get("/api/v1/traces", params={"prompt_version": f"v-{bare}"}).json()["results"]
    assert [(t["trace_id"], t["prompt_hash"]) for t in listed] == [(bare, None)]


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


def test_an_item_beside_a_batch_is_refused_not_dropped(api_a) -> None:  # type: ignore[no-untyped-def]
    """{"trace_id": ..., "batch": []} stored nothing and answered 200 (the item beside the batch dropped, as
    was any other key beside a batch): the body is refused, naming what was beside it, and nothing stored."""
    run = unique()
    for path, body in (("/api/v1/traces", {**trace(f"{run}-beside"), "batch": []}),
                       ("/api/v1/traces", {"batch": [trace(f"{run}-in")], "extra": 1}),
                       ("/api/v1/feedback", {"batch": [], "event_id": str(uuid.uuid4())})):  # fmt: skip
        response = api_a.post(path, body)
        assert response.status_code == 400 and error_code(response) == "invalid_body", response.content
        assert (
            "not both" in response.json()["error"]["message"]
            and "beside 'batch'" in response.json()["error"]["message"]
        )
    assert "'extra'" in api_a.post("/api/v1/traces", {"batch": [], "extra": 1}).json()["error"]["message"]
    for stored in (f"{run}-beside", f"{run}-in"):
        assert api_a.get(f"/api/v1/traces/{stored}").status_code == 404


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
              model="gpt-4o-mini" if i % 6 == 0 else "gpt-4o", started_at=(base + timedelta(minutes=i)).isoformat())
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
    assert ids(model="gpt-4o-mini") == {f"{run}-{i}" for i in range(0, 30, 6)}
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
    # The last days of a month are days like any other; a day the month does not have is a 400.
    for day in ("2025-01-29", "2025-01-31", "2024-02-29T12:00:00Z", "2025-12-31T23:59:59+01:00"):
        assert api_a.get("/api/v1/traces", params={"until": day}).status_code == 200, day
    for day in ("2025-02-30", "2025-04-31", "2025-02-29"):
        impossible = api_a.get("/api/v1/traces", params={"until": day})
        assert impossible.status_code == 400 and impossible.json()["error"]["details"]["field"] == "until", day
    assert api_a.get("/api/v1/traces", params={"cursor": "garbage!"}).status_code == 400
    # A metadata filter without its key is a 400, not every trace. (A window that ends before it starts is an
    # empty page: the schema cannot say since < until, and a schema-valid request is answered.)
    keyless = api_a.get("/api/v1/traces", params={"metadata.": "sso"})
    assert keyless.status_code == 400 and keyless.json()["error"]["details"] == {"field": "metadata."}
    assert "name the key" in keyless.json()["error"]["message"]


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


def test_a_backslash_before_u0000_is_text_and_a_nul_anywhere_an_item_error(api_a) -> None:  # type: ignore[no-untyped-def]
    """The six characters \\u0000 (a code sample, say) are text like any other; a NUL character is refused
    wherever it is, a metadata key too (PostgreSQL's jsonb cannot hold one: it would fail the batch)."""
    literal, in_key, good = unique(), unique(), unique()
    batch = [
        trace(literal, output="escape it as \\u0000 in JSON", metadata={"note": "\\u0000"}),
        trace(in_key, metadata={"a\u0000b": "x"}),
        trace(good),
    ]
    response = api_a.post("/api/v1/traces", {"batch": batch})
    assert response.status_code == 207, response.text
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(1, "metadata")]
    assert "NUL" in response.json()["errors"][0]["message"]
    stored = api_a.get(f"/api/v1/traces/{literal}").json()
    assert stored["output"] == "escape it as \\u0000 in JSON" and stored["metadata"]["note"] == "\\u0000"
    assert api_a.get(f"/api/v1/traces/{in_key}").status_code == 404


def test_the_list_reads_any_iso_offset_in_utc_and_keeps_until_exclusive(api_a) -> None:  # type: ignore[no-untyped-def]
    """A real zone like Kiribati's +14:00 (it was a 400), and any offset to ±23:59, is read as its UTC time
    (PostgreSQL itself refuses offsets past ±15:59). A day as until stays its midnight, exclusive, as documented."""
    run = unique("tz")
    api_a.post("/api/v1/traces", {"batch": [
        trace(f"{run}-a", started_at="2026-12-04T10:00:00Z", metadata={"run": run}),
        trace(f"{run}-b", started_at="2026-12-05T12:00:00Z", metadata={"run": run}),
    ]})  # fmt: skip

    def ids(**params: str) -> set[str]:
        response = api_a.get("/api/v1/traces", params={"metadata.run": run, **params})
        assert response.status_code == 200, response.text
        return {t["trace_id"] for t in response.json()["results"]}

    # 2026-12-05T00:00+14:00 is 2026-12-04T10:00Z; +16:00 is 08:00Z; Dec 5 12:00+23:00 is Dec 4 13:00Z;
    # Dec 4 00:00-23:59 is Dec 4 23:59Z.
    assert ids(since="2026-12-05T00:00:00+14:00") == {f"{run}-a", f"{run}-b"}
    assert ids(until="2026-12-05T00:00:00+14:00") == set()
    assert ids(since="2026-12-05T00:00:00+16:00", until="2026-12-05T12:00:00+23:00") == {f"{run}-a"}
    assert ids(until="2026-12-04T00:00:00-23:59") == {f"{run}-a"}
    assert ids(since="2026-12-05", until="2026-12-05") == set()  # until a day: before its midnight
    assert ids(until="2026-12-06") == {f"{run}-a", f"{run}-b"}
    beyond = api_a.get("/api/v1/traces", params={"until": "2026-12-05T00:00:00+24:00"})
    assert beyond.status_code == 400 and beyond.json()["error"]["details"] == {"field": "until"}


def test_an_empty_limit_is_the_default_page_size_as_on_every_list(api_a) -> None:  # type: ignore[no-untyped-def]
    """GET /api/v1/experiments?limit= read the default page size; /api/v1/traces?limit= was a 400 (API review)."""
    tid = unique()
    api_a.post("/api/v1/traces", trace(tid))
    assert api_a.get("/api/v1/traces?limit=&cursor=").status_code == 200
    assert api_a.get("/api/v1/experiments?limit=").status_code == 200
    for bad in ("0", "abc", "501"):
        refused = api_a.get(f"/api/v1/traces?limit={bad}")
        assert refused.status_code == 400 and refused.json()["error"]["details"]["field"] == "limit"


def test_a_cost_finer_than_the_column_is_stored_rounded_and_said(api_a) -> None:  # type: ignore[no-untyped-def]
    """cost_usd 1e-10 was stored as 0.0 without a word (API review): the answer says it was rounded."""
    fine, plain = unique(), unique()
    summed = unique()
    answer = api_a.post("/api/v1/traces", {"batch": [trace(fine, cost_usd=1e-10), trace(plain, cost_usd=0.00123),
                                                     trace(summed, cost_usd=0.1 + 0.2)]})  # fmt: skip
    body = answer.json()
    assert answer.status_code == 200 and body["accepted"] == 3
    # A float's last digits (0.30000000000000004) are no loss worth a warning.
    assert [(w["index"], w["field"]) for w in body["warnings"]] == [(0, "cost_usd")]
    assert body["warnings"][0]["message"].startswith("1e-10 has more than 8 decimal places: stored as 0.00000000")
    assert api_a.get(f"/api/v1/traces/{fine}").json()["cost_usd"] == 0.0


def test_a_time_to_first_token_past_the_whole_call_is_left_out_and_said(api_a) -> None:  # type: ignore[no-untyped-def]
    """ttft_ms 900 with latency_ms 500 was stored as sent and sat in the TTFT percentiles: the trace is kept, without
    it, and the answer says so; a TTFT equal to the latency, or with no latency, is stored."""
    late, equal, alone = unique(), unique(), unique()
    answer = api_a.post("/api/v1/traces", {"batch": [trace(late, latency_ms=500, ttft_ms=900.5),
                                                     trace(equal, latency_ms=500, ttft_ms=500),
                                                     trace(alone, ttft_ms=900)]})  # fmt: skip
    body = answer.json()
    assert answer.status_code == 200 and body["accepted"] == 3
    assert [(w["index"], w["field"]) for w in body["warnings"]] == [(0, "ttft_ms")]
    assert body["warnings"][0]["message"] == (
        "ttft_ms 900.5 is longer than latency_ms 500 (the whole call): stored without it"
    )
    stored = {tid: api_a.get(f"/api/v1/traces/{tid}").json() for tid in (late, equal, alone)}
    assert stored[late]["ttft_ms"] is None and stored[late]["latency_ms"] == 500
    assert stored[equal]["ttft_ms"] == 500 and stored[alone]["ttft_ms"] == 900


def test_a_resend_never_leaves_a_time_to_first_token_past_the_stored_latency(api_a) -> None:  # type: ignore[no-untyped-def]
    """A resend is merged into the stored trace: a TTFT sent alone is held against the latency stored before (not
    stored when longer, and said), and a shorter latency sent alone takes a stored TTFT past it away."""
    fits, too_long, shortened, unset = unique(), unique(), unique(), unique()
    first = [trace(fits, latency_ms=500, ttft_ms=100), trace(too_long, latency_ms=500, ttft_ms=100),
             trace(shortened, latency_ms=500, ttft_ms=400), trace(unset, ttft_ms=100)]  # fmt: skip
    assert api_a.post("/api/v1/traces", {"batch": first}).json()["accepted"] == 4
    again = [trace(fits, ttft_ms=250), trace(too_long, ttft_ms=700.5), trace(shortened, latency_ms=300),
             trace(unset, ttft_ms=5000)]  # fmt: skip
    body = api_a.post("/api/v1/traces", {"batch": again}).json()
    assert (body["accepted"], body["duplicates"], body["errors"]) == (0, 4, [])  # merged into what is stored
    assert body["warnings"] == [
        {
            "index": 1,
            "field": "ttft_ms",
            "message": "ttft_ms 700.5 is longer than the stored trace's latency_ms 500 (the whole call): not stored",
        }
    ]
    stored = {tid: api_a.get(f"/api/v1/traces/{tid}").json() for tid in (fits, too_long, shortened, unset)}
    assert (stored[fits]["ttft_ms"], stored[fits]["latency_ms"]) == (250, 500)
    assert (stored[too_long]["ttft_ms"], stored[too_long]["latency_ms"]) == (100, 500)  # the stored one stays
    assert (stored[shortened]["ttft_ms"], stored[shortened]["latency_ms"]) == (None, 300)
    assert stored[unset]["ttft_ms"] == 5000  # no latency: nothing to hold it against
