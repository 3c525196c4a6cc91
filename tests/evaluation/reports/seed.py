"""Small seeded data for report tests, and a brute-force reading of the raw rows to check against."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np

from feedback import services
from feedback.enums import EXPLICIT_KINDS, IMPLICIT_KINDS
from feedback.models import FeedbackEvent, Outcome, Trace
from tests.fixtures.organizations import Org, in_tenant, unique

DAY0 = datetime(2025, 3, 10, tzinfo=UTC)


def seed_feature(org: Org, *, traces: int = 120, seed: int = 3, outcomes: bool = True) -> str:
    """Traces over two UTC days (half an hour either side of midnight included), with thumbs
    (some changed), ratings, edits, implicit signals and outcomes; returns the feature key."""
    rng = random.Random(seed)
    feature = unique("feat")
    items, events, results = [], [], []
    for i in range(traces):
        started = DAY0 + timedelta(hours=rng.choice([1, 9, 23.5, 24.25, 30, 47]), minutes=rng.randrange(30))
        trace_id = f"{feature}-{i}"
        item: dict[str, Any] = {
            "trace_id": trace_id, "feature": feature,
            "prompt_version": rng.choice(["v1", "v2", "v2"]),
            "customer_id": rng.choice(["cus_a", "cus_b", "cus_c", ""]),
            "variant": rng.choice(["", "control", "ai_on"]),
            "session_id": f"s{i % 17}", "latency_ms": round(rng.lognormvariate(6.5, 0.6), 1),
            "ttft_ms": round(rng.lognormvariate(5.5, 0.4), 1), "status": "error" if rng.random() < 0.1 else "ok",
            "fallback": rng.random() < 0.1, "guardrail_blocked": rng.random() < 0.05,
            "started_at": started.isoformat(),
        }  # fmt: skip
        # The first token within the call (a later one is stored without it); no draw, so the rest stays as it was.
        item["ttft_ms"] = min(item["ttft_ms"], item["latency_ms"])
        if rng.random() < 0.9:
            item["cost_usd"] = round(rng.uniform(0.001, 0.02), 6)
        if i % 3:  # two models and none, by position (no draw: the other fields stay as they were)
            item["model"] = ("", "gpt-4o", "gpt-4o-mini")[i % 3]
        auth = rng.choice(["sso", "password", "password", None])
        if auth:
            item["metadata"] = {"auth": auth, "plan": rng.choice(["pro", "free"])}
        items.append(item)
        at = started + timedelta(minutes=5)

        def ev(
            kind: str,
            value: float | None = None,
            user: str = "u1",
            trace_id: str = trace_id,
            at: datetime = at,
            **extra: Any,
        ) -> None:
            events.append({"event_id": str(uuid.uuid4()), "trace_id": trace_id, "kind": kind, "value": value,
                           "user_id": user, "occurred_at": at.isoformat(), **extra})  # fmt: skip

        if rng.random() < 0.5:
            ev("thumb", rng.choice([1, -1]))
            if rng.random() < 0.3:  # the same person changes their mind
                ev("thumb", rng.choice([1, -1]), at=at + timedelta(minutes=1))
            if rng.random() < 0.2:
                ev("thumb", rng.choice([1, -1]), user="u2")
        if rng.random() < 0.2:
            ev("rating", rng.randint(1, 5), user="u3")
        if rng.random() < 0.15:
            ev("edit", original_text="the answer is here", edited_text=rng.choice(["the answer is there", "no"]))
        for kind in ("copy", "retry", "dwell", "abandon"):
            if rng.random() < 0.15:
                ev(kind, 1000 if kind == "dwell" else None)
        if outcomes and rng.random() < 0.3:
            for _ in range(rng.choice([1, 1, 2])):
                results.append({"outcome_id": unique("oc"), "name": "resolved", "trace_id": trace_id,
                                "value_usd": 3.0, "occurred_at": (at + timedelta(hours=1)).isoformat()})  # fmt: skip
    with in_tenant(org):
        for kind, batch, ingest in (
            ("traces", items, services.traces_ingest),
            ("feedback", events, services.feedback_ingest),
            ("outcomes", results, services.outcomes_ingest),
        ):
            for start in range(0, len(batch), 500):
                result = ingest(body=msgspec.json.encode({"batch": batch[start : start + 500]}))
                assert not result.errors, (kind, result.errors[:2])
    return feature


def _nearest_rank(values: list[float], q: float) -> float | None:
    """numpy's inverted_cdf quantile (nearest rank): what the report's sketch answers, to its bucket."""
    return float(np.quantile(values, q, method="inverted_cdf")) if values else None


def brute_force(
    feature: str, *, since: datetime, until: datetime, key: Callable[[Trace], Any], value_per_success: float | None
) -> dict[Any, dict[str, Any]]:
    """Every figure of the report per group, computed in Python from the raw rows."""
    traces = list(
        Trace.objects.filter(feature__key=feature, started_at__gte=since, started_at__lt=until).select_related(
            "prompt_version"
        )
    )
    ids = {t.trace_id for t in traces}
    events: dict[str, list[FeedbackEvent]] = defaultdict(list)
    for e in FeedbackEvent.objects.filter(trace_id__in=ids):
        events[e.trace_id].append(e)
    outcome_count: dict[str, int] = defaultdict(int)
    for o in Outcome.objects.filter(trace_id__in=ids):
        outcome_count[o.trace_id] += 1
    # Outcomes tied only by session: the session's last trace started at or before the outcome.
    all_traces = list(Trace.objects.filter(session_id__in={t.session_id for t in traces} - {""}))
    for o in Outcome.objects.filter(trace_id="", session_id__in={t.session_id for t in traces} - {""}):
        before = [t for t in all_traces if t.session_id == o.session_id and t.started_at <= o.occurred_at]
        if before:
            attributed = max(before, key=lambda t: (t.started_at, t.id))
            if attributed.trace_id in ids:
                outcome_count[attributed.trace_id] += 1
    groups: dict[Any, list[Trace]] = defaultdict(list)
    for t in traces:
        groups[key(t)].append(t)
    any_outcomes = any(outcome_count[t.trace_id] for t in traces)
    out = {}
    for group, members in groups.items():
        n = len(members)
        up = down = ratings = rated = good = edits = edited = explicit = 0
        ratings_sum = edit_distance = 0.0
        by_kind: dict[str, int] = defaultdict(int)
        for t in members:
            evs = events[t.trace_id]
            kinds = {e.kind for e in evs}
            explicit += bool(kinds & set(EXPLICIT_KINDS))
            for kind in kinds:
                by_kind[kind] += 1
            last: dict[tuple[str, str], FeedbackEvent] = {}
            for e in sorted(evs, key=lambda e: (e.occurred_at, e.id)):
                if e.kind in ("thumb", "rating"):
                    last[(e.kind, e.user_id or e.session_id or str(e.event_id))] = e
            pos = neg = 0
            for e in last.values():
                assert e.value is not None
                if e.kind == "thumb":
                    up += e.value > 0
                    down += e.value < 0
                else:
                    ratings += 1
                    ratings_sum += e.value
                is_good = e.value > 0 if e.kind == "thumb" else e.value >= 4
                pos += is_good
                neg += not is_good
            rated += pos + neg > 0
            good += pos > neg
            trace_edits = [e for e in evs if e.kind == "edit"]
            edits += len(trace_edits)
            edited += bool(trace_edits)
            edit_distance += sum(e.edit_distance or 0 for e in trace_edits)
        cost = sum(float(t.cost_usd or 0) for t in members)
        if any_outcomes:
            source, successes_n, base = "outcomes", sum(outcome_count[t.trace_id] > 0 for t in members), n
        else:
            source, successes_n, base = "thumbs", good, rated
        rate = successes_n / base if base else None
        successes = (float(successes_n) if source == "outcomes" else rate * n) if rate is not None else None
        value = successes * value_per_success if successes is not None and value_per_success is not None else None
        latencies = [t.latency_ms for t in members if t.latency_ms is not None]
        ttfts = [t.ttft_ms for t in members if t.ttft_ms is not None]
        out[group] = {
            "traces": n,
            "explicit_feedback_rate": explicit / n,
            "thumbs_up_share": up / (up + down) if up + down else None,
            "mean_rating": ratings_sum / ratings if ratings else None,
            "edit_rate": edited / n,
            "mean_edit_distance": edit_distance / edits if edits else None,
            "implicit_rates": {k: by_kind.get(k, 0) / n for k in sorted(IMPLICIT_KINDS)},
            "fallback_rate": sum(bool(t.fallback) for t in members) / n,
            "guardrail_block_rate": sum(bool(t.guardrail_blocked) for t in members) / n,
            "error_rate": sum(t.status == "error" for t in members) / n,
            "success_value": rate,
            "success_source": source,
            "successes": successes,
            "cost_usd": cost,
            "cost_per_success_usd": cost / successes if successes else None,
            "value_usd": value,
            "roi": (value - cost) / cost if value is not None and cost else None,
            "latency": {q: _nearest_rank(latencies, q / 100) for q in (50, 95, 99)},
            "ttft": {q: _nearest_rank(ttfts, q / 100) for q in (50, 95)},
        }
    return out
