"""The demo data generator: deterministic, API-shaped, and telling the intended story.

Pure Python: no Django, no database.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tracemalloc
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from feedback.demo_data import (
    DemoConfig,
    demo_batches,
    demo_customers,
    demo_features,
    demo_prices,
    demo_prompt_versions,
    demo_stream,
)

END = datetime(2025, 3, 1, tzinfo=UTC)
N_TRACES = 60_000


class Data:
    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.items = list(demo_stream(config))
        self.traces = {i["trace_id"]: i for k, i in self.items if k == "trace"}
        self.feedback = [i for k, i in self.items if k == "feedback"]
        self.outcomes = [i for k, i in self.items if k == "outcome"]


@pytest.fixture(scope="module")
def data() -> Data:
    # Spans off: same values otherwise (checked below), and ~35% faster.
    return Data(DemoConfig(traces=N_TRACES, seed=7, end=END, spans=False, include_truth=True))


def _support_stats(data: Data) -> dict[tuple[str, str], dict[str, float]]:
    n: Counter[tuple[str, str]] = Counter()
    counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    out_tokens: dict[tuple[str, str], list[int]] = defaultdict(list)
    for t in data.traces.values():
        if t["feature"] == "support-copilot":
            key = (t["prompt_version"], t["metadata"]["auth"])
            n[key] += 1
            if t["status"] == "ok" and not t["guardrail_blocked"]:
                out_tokens[key].append(t["output_tokens"])
    for f in data.feedback:
        t = data.traces[f["trace_id"]]
        if t["feature"] != "support-copilot":
            continue
        key = (t["prompt_version"], t["metadata"]["auth"])
        if f["kind"] == "thumb":
            counts[key]["thumbs"] += 1
            counts[key]["down"] += f["value"] == -1
        elif f["kind"] == "edit":
            counts[key]["edit"] += 1
    for o in data.outcomes:
        t = data.traces[o["trace_id"]]
        if o["name"] == "ticket_resolved":
            counts[(t["prompt_version"], t["metadata"]["auth"])]["resolved"] += 1
    stats = {}
    for key in n:
        c = counts[key]
        stats[key] = {
            "n": n[key],
            "down_rate": c["down"] / n[key],
            "down_share": c["down"] / c["thumbs"],
            "edit_rate": c["edit"] / n[key],
            "resolved_rate": c["resolved"] / n[key],
            "out_tokens": sum(out_tokens[key]) / len(out_tokens[key]),
        }
    for version in ("support-v2.2", "support-v2.3"):
        keys = [k for k in n if k[0] == version]
        total = sum(n[k] for k in keys)
        downs = sum(counts[k]["down"] for k in keys)
        thumbs = sum(counts[k]["thumbs"] for k in keys)
        stats[(version, "all")] = {
            "n": total,
            "down_rate": downs / total,
            "down_share": downs / thumbs,
            "resolved_rate": sum(counts[k]["resolved"] for k in keys) / total,
        }
    return stats


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_the_same_stream() -> None:
    config = DemoConfig(traces=3000, seed=11, end=END)
    first = list(itertools.islice(demo_stream(config), 2000))
    second = list(itertools.islice(demo_stream(config), 2000))
    assert first == second
    other = list(itertools.islice(demo_stream(DemoConfig(traces=3000, seed=12, end=END)), 2000))
    assert other != first
    assert {i["trace_id"] for k, i in other if k == "trace"}.isdisjoint(
        {i["trace_id"] for k, i in first if k == "trace"}
    )


def test_spans_flag_changes_nothing_else() -> None:
    with_spans = list(demo_stream(DemoConfig(traces=2000, end=END, spans=True)))
    without = list(demo_stream(DemoConfig(traces=2000, end=END, spans=False)))
    assert len(with_spans) == len(without)
    for (k1, a), (k2, b) in zip(with_spans, without, strict=True):
        assert k1 == k2
        assert {key: v for key, v in a.items() if key != "spans"} == b


def test_default_end_is_now_truncated_to_the_hour() -> None:
    end = DemoConfig().resolved_end()
    now = datetime.now(UTC)
    assert end.tzinfo is not None and end.minute == end.second == end.microsecond == 0
    assert timedelta(0) <= now - end < timedelta(hours=1, minutes=1)
    naive = DemoConfig(end=datetime(2025, 1, 1, 12)).resolved_end()
    assert naive == datetime(2025, 1, 1, 12, tzinfo=UTC)


def _whole_days(data: Data, midnight: str) -> dict[str, dict[str, Any]]:
    """Per whole day (before ``midnight``): traces, support-copilot traces per prompt version, and
    per auth method the thumbs-down share and the tickets resolved, from the events of those days."""
    days: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(Counter))
    for t in data.traces.values():
        if t["started_at"] < midnight:
            day = days[t["started_at"][:10]]
            day["traces"]["all"] += 1
            if t["feature"] == "support-copilot":
                day["versions"][t["prompt_version"]] += 1
    for kind, item in data.items:
        if kind == "trace" or item["occurred_at"] >= midnight:
            continue
        t = data.traces[item["trace_id"]]
        day, auth = days[t["started_at"][:10]], t["metadata"]["auth"]
        if item.get("kind") == "thumb":
            day["thumbs"][auth] += 1
            day["down"][auth] += item["value"] == -1
        elif item.get("name") == "ticket_resolved":
            day["resolved"][auth] += 1
    for day in days.values():
        day["down_share"] = {a: round(day["down"][a] / max(1, day["thumbs"][a]), 4) for a in ("sso", "password")}
    return {d: {k: dict(v) for k, v in day.items()} for d, day in days.items()}


def test_whole_days_do_not_depend_on_the_hour_of_the_end() -> None:
    """Built at 03:00 or at 21:00 UTC, the demo's whole days (what alerts, drift and the digest read)
    hold the same traffic, the same feedback and outcomes, and the regression starts on the same
    midnight; only today's share grows with the hour."""
    day = datetime(2025, 3, 5, tzinfo=UTC)  # a Wednesday
    midnight = day.isoformat().replace("+00:00", "")
    early = Data(DemoConfig(traces=12_000, seed=7, end=day + timedelta(hours=3), spans=False))
    late = Data(DemoConfig(traces=12_000, seed=7, end=day + timedelta(hours=21), spans=False))

    by_day = _whole_days(early, midnight)
    assert len(by_day) == 30 and min(by_day) == "2025-02-03"
    assert by_day == _whole_days(late, midnight)
    assert sum(d["traces"]["all"] for d in by_day.values()) == 12_000
    # support-v2.3 takes over on one midnight, halfway through: no whole day mixes the two versions.
    assert {d: set(v["versions"]) for d, v in by_day.items() if "2025-02-17" <= d <= "2025-02-18"} == {
        "2025-02-17": {"support-v2.2"},
        "2025-02-18": {"support-v2.3"},
    }

    def before(data: Data) -> list[tuple[str, dict[str, Any]]]:
        return [(k, i) for k, i in data.items if (i["started_at"] if k == "trace" else i["occurred_at"]) < midnight]

    assert before(early) == before(late)  # item for item, not only in aggregate

    def today(data: Data) -> list[dict[str, Any]]:
        return [t for t in data.traces.values() if t["started_at"] >= midnight]

    # Today has its share so far: an hour later the demo only adds traces (feedback still to come).
    assert today(early) and all(t["started_at"] < "2025-03-05T03:00" for t in today(early))
    assert today(early) == today(late)[: len(today(early))]
    assert len(today(late)) > 0.8 * by_day["2025-03-04"]["traces"]["all"]


# --------------------------------------------------------------------------- shapes and ids


def test_counts_ids_and_references(data: Data) -> None:
    assert len(data.traces) == N_TRACES
    assert sum(1 for k, _ in data.items if k == "trace") == N_TRACES  # no duplicate trace ids

    assert all(re.fullmatch(r"tr_[0-9a-f]{16}", t) for t in data.traces)
    event_ids = [f["event_id"] for f in data.feedback]
    assert len(set(event_ids)) == len(event_ids)
    assert all(uuid.UUID(e).version == 4 for e in event_ids[:1000])
    outcome_ids = [o["outcome_id"] for o in data.outcomes]
    assert len(set(outcome_ids)) == len(outcome_ids)
    assert all(re.fullmatch(r"oc_[0-9a-f]{16}", o) for o in outcome_ids)

    # Every feedback event and outcome names a trace of the stream, and comes after it.
    seen: set[str] = set()
    for kind, item in data.items:
        if kind == "trace":
            seen.add(item["trace_id"])
        else:
            assert item["trace_id"] in seen
            assert item["occurred_at"] >= data.traces[item["trace_id"]]["started_at"]
            assert item["session_id"] == data.traces[item["trace_id"]]["session_id"]


def test_stream_is_in_time_order_within_the_period(data: Data) -> None:
    times = [i["started_at"] if k == "trace" else i["occurred_at"] for k, i in data.items]
    assert times == sorted(times)  # fixed-width ISO strings sort chronologically
    start = (END - timedelta(days=30)).isoformat().replace("+00:00", "")
    assert times[0] >= start
    assert times[-1] <= END.isoformat().replace("+00:00", "Z")
    for text in times[:50]:
        assert datetime.fromisoformat(text).tzinfo == UTC


def test_daily_seasonality(data: Data) -> None:
    by_hour = Counter(int(t["started_at"][11:13]) for t in data.traces.values())
    assert by_hour[15] > 3 * by_hour[3]


def test_items_match_the_api_contract(data: Data) -> None:
    """Decode with the API's own msgspec structs when they are importable Django-free."""
    try:
        import msgspec

        from feedback.schemas import FeedbackIn, OutcomeIn, TraceIn, check_time
    except Exception as exc:  # the schemas module may grow a Django import
        pytest.skip(f"feedback.schemas not importable without Django: {exc}")
    now = datetime.now(UTC)
    structs = {"trace": TraceIn, "feedback": FeedbackIn, "outcome": OutcomeIn}
    sample = list(demo_stream(DemoConfig(traces=3000, end=END)))  # with spans
    for kind, item in sample:
        decoded: Any = msgspec.json.decode(json.dumps(item), type=structs[kind])
        if kind == "trace":
            check_time(decoded.started_at, "started_at", now)
            for span in decoded.spans or ():
                assert span.start <= span.end
        else:
            check_time(decoded.occurred_at, "occurred_at", now)


def test_trace_fields(data: Data) -> None:
    traces = list(data.traces.values())
    required = {
        "trace_id",
        "feature",
        "started_at",
        "customer_id",
        "user_id",
        "session_id",
        "input",
        "status",
        "latency_ms",
        "fallback",
        "guardrail_blocked",
        "metadata",
    }
    assert all(required <= t.keys() for t in traces)
    assert None not in {v for t in traces[:2000] for v in t.values() if not isinstance(v, dict | list)}
    assert {t["feature"] for t in traces} == {f["key"] for f in demo_features()}
    assert {t.get("provider") for t in traces} == {"openai", "anthropic", "google", "mistral", None}
    assert {t["metadata"]["auth"] for t in traces} == {"sso", "password"}
    assert {t["metadata"]["plan"] for t in traces} == {"free", "pro", "enterprise"}

    share = Counter(t["metadata"]["auth"] for t in traces)["sso"] / len(traces)
    assert 0.15 < share < 0.25
    assert 0.006 < sum(t["status"] == "error" for t in traces) / len(traces) < 0.014
    assert 0.014 < sum(t["guardrail_blocked"] for t in traces) / len(traces) < 0.026
    priced = [t for t in traces if "cost_usd" in t]
    assert 0.035 < len(priced) / len(traces) < 0.065
    assert all(t["cost_usd"] > 0 for t in priced if t["input_tokens"])

    llm = [t for t in traces if "model" in t]
    assert all(t["input_tokens"] > 0 and t["latency_ms"] > 0 for t in llm)
    assert all(t["ttft_ms"] > 0 for t in llm if t["status"] == "ok")
    assert all(t["cached_tokens"] < t["input_tokens"] for t in llm if "cached_tokens" in t)
    ok = [t for t in llm if t["status"] == "ok"]
    assert all(t["output"] for t in ok)
    assert sum(t["input_tokens"] for t in ok) / len(ok) > 5 * sum(t["output_tokens"] for t in ok) / len(ok)


def test_prompt_versions_and_hashes(data: Data) -> None:
    versions = {v["prompt_version"]: v for v in demo_prompt_versions()}
    sent: Counter[str] = Counter()
    switch = None
    for t in data.traces.values():
        if "prompt_version" not in t:
            continue
        v = versions[t["prompt_version"]]
        assert t["prompt_hash"] == v["prompt_hash"] == hashlib.sha256(v["prompt"].encode()).hexdigest()[:16]
        assert t["feature"] == v["feature"]
        if "prompt" in t:
            sent[t["prompt_version"]] += 1
            assert t["prompt"] == v["prompt"]
        if t["prompt_version"] == "support-v2.3" and (switch is None or t["started_at"] < switch):
            switch = t["started_at"]
    assert sent == Counter(dict.fromkeys(versions, 1))  # template text once per version
    # support-v2.3 replaces v2.2 halfway through the period.
    assert switch is not None and switch.startswith("2025-02-14")
    assert all(t["started_at"] < switch for t in data.traces.values() if t.get("prompt_version") == "support-v2.2")


def test_customers_are_zipf_like(data: Data) -> None:
    customers = demo_customers(data.config)
    assert len(customers) == 40
    assert customers[0] == {**customers[0], "customer_id": "cus_acme", "name": "Acme Corp"}
    volume = Counter(t["customer_id"] for t in data.traces.values())
    assert set(volume) == {c["customer_id"] for c in customers}
    ranked = [count for _, count in volume.most_common()]
    assert ranked[0] > 10 * ranked[len(ranked) // 2]


def test_catalog_helpers() -> None:
    features = {f["key"]: f for f in demo_features()}
    assert features["support-copilot"]["value_per_success_usd"] == 4.0
    assert features["checkout-assist"]["value_per_success_usd"] == 12.0
    assert all(f["name"] for f in features.values())
    prices = {p["model"]: p for p in demo_prices()}
    assert prices["gpt-4o-mini"]["provider"] == "openai"
    assert prices["claude-sonnet-4"]["output_per_mtok_usd"] == 15.0


# --------------------------------------------------------------------------- the story


def test_hidden_regression_for_sso_users(data: Data) -> None:
    s = _support_stats(data)
    old_sso, new_sso = s[("support-v2.2", "sso")], s[("support-v2.3", "sso")]
    old_pw, new_pw = s[("support-v2.2", "password")], s[("support-v2.3", "password")]
    old_all, new_all = s[("support-v2.2", "all")], s[("support-v2.3", "all")]

    # SSO users on v2.3: clearly more thumbs-down, more edits, fewer resolved tickets,
    # shorter outputs.
    assert new_sso["down_rate"] > 1.6 * old_sso["down_rate"]
    assert new_sso["down_share"] - old_sso["down_share"] > 0.12
    assert new_sso["edit_rate"] > 1.3 * old_sso["edit_rate"]
    assert new_sso["resolved_rate"] < old_sso["resolved_rate"] - 0.08
    assert new_sso["out_tokens"] < 0.7 * old_sso["out_tokens"]
    # Password users: v2.3 is slightly better.
    assert new_pw["down_rate"] < old_pw["down_rate"]
    assert new_pw["resolved_rate"] >= old_pw["resolved_rate"] - 0.01
    # Overall the two versions look alike: the regression hides in the average.
    assert abs(new_all["down_rate"] - old_all["down_rate"]) < 0.01
    sso_gap = new_sso["down_share"] - old_sso["down_share"]
    assert abs(new_all["down_share"] - old_all["down_share"]) < 0.4 * sso_gap
    assert abs(new_all["resolved_rate"] - old_all["resolved_rate"]) < 0.04


def test_feedback_is_sparse_biased_and_tied_to_quality(data: Data) -> None:
    traces = data.traces
    n = len(traces)
    kinds = Counter(f["kind"] for f in data.feedback)
    assert 0.06 < kinds["thumb"] / n < 0.10
    n_support = sum(t["feature"] == "support-copilot" for t in traces.values())
    n_summarize = sum(t["feature"] == "summarize" for t in traces.values())
    assert 0.03 < kinds["edit"] / n_support < 0.05
    assert 0.012 < kinds["rating"] / n_summarize < 0.03
    assert {"copy", "retry", "rephrase", "dwell", "accept", "abandon"} <= kinds.keys()

    by_truth: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
    n_truth = Counter(t["_truth"]["good"] for t in traces.values() if "_truth" in t)
    for f in data.feedback:
        truth = traces[f["trace_id"]].get("_truth")
        if truth:
            by_truth[truth["good"]][f["kind"]] += 1

    def rate(good: bool, kind: str) -> float:
        return by_truth[good][kind] / n_truth[good]

    assert rate(False, "thumb") > 2 * rate(True, "thumb")  # unhappy users answer more
    assert rate(True, "copy") > 3 * rate(False, "copy")
    assert rate(False, "retry") > 3 * rate(True, "retry")
    assert rate(False, "edit") > 2 * rate(True, "edit")

    for f in data.feedback:
        t = traces[f["trace_id"]]
        if f["kind"] == "thumb":
            assert f["value"] in (1, -1)
        elif f["kind"] == "rating":
            assert t["feature"] == "summarize" and f["value"] in (1, 2, 3, 4, 5)
        elif f["kind"] == "edit":
            assert t["feature"] == "support-copilot"
            assert f["original_text"] == t["output"] != f["edited_text"]
        elif f["kind"] == "copy":
            assert 0 < f["value"] <= len(t["output"])
        elif f["kind"] == "dwell":
            assert f["value"] > 0
        elif f["kind"] == "accept":
            assert t["feature"] == "checkout-assist" and t["variant"] != "holdback"


def test_checkout_experiment(data: Data) -> None:
    checkout = [t for t in data.traces.values() if t["feature"] == "checkout-assist"]
    arms = Counter(t["variant"] for t in checkout)
    assert set(arms) == {"control", "ai_on", "holdback"}
    assert all(t["experiment"] == "checkout-assist" for t in checkout)
    assert 0.08 < arms["holdback"] / len(checkout) < 0.12
    holdback = [t for t in checkout if t["variant"] == "holdback"]
    assert all(t["fallback"] and "output" not in t and "model" not in t for t in holdback)
    assert not any(t["fallback"] for t in checkout if t["variant"] != "holdback")

    purchases = Counter(data.traces[o["trace_id"]]["variant"] for o in data.outcomes if o["name"] == "purchase")
    assert all(o["variant"] == data.traces[o["trace_id"]]["variant"] for o in data.outcomes if o["name"] == "purchase")
    rate = {arm: purchases[arm] / arms[arm] for arm in arms}
    lift = rate["ai_on"] / rate["holdback"] - 1
    assert 0.05 < lift < 0.11  # about +8% relative


def test_outcomes(data: Data) -> None:
    names = Counter(o["name"] for o in data.outcomes)
    assert set(names) == {"ticket_resolved", "purchase"}
    for o in data.outcomes:
        t = data.traces[o["trace_id"]]
        assert o["customer_id"] == t["customer_id"]
        if o["name"] == "ticket_resolved":
            assert t["feature"] == "support-copilot" and o["value_usd"] == 4.0
        else:
            assert t["feature"] == "checkout-assist" and o["value_usd"] > 0


# --------------------------------------------------------------------------- scale


def test_streams_lazily_at_10m_scale() -> None:
    # Memory, not time (speed is measured in bench/): the first items of a 10M-trace
    # stream come without building the data set (10M traces would take many GB).
    tracemalloc.start()
    try:
        first = list(itertools.islice(demo_stream(DemoConfig(traces=10_000_000, end=END)), 5000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(k == "trace" for k, _ in first) > 2000
    assert peak < 64 * 1024 * 1024


def test_batches_keep_every_item_and_send_traces_first() -> None:
    config = DemoConfig(traces=3000, end=END, spans=False)
    batches = list(demo_batches(config, size=250))
    assert all(1 <= len(items) <= 250 for _, items in batches)
    flat = Counter(kind for kind, items in batches for _ in items)
    assert flat == Counter(kind for kind, _ in demo_stream(config))
    sent: set[str] = set()
    for kind, items in batches:
        for item in items:
            if kind == "trace":
                sent.add(item["trace_id"])
            else:
                assert item["trace_id"] in sent


def test_rejects_bad_config() -> None:
    with pytest.raises(ValueError):
        list(demo_stream(DemoConfig(traces=10, days=0, end=END)))
