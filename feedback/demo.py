"""Loads the demo organization's data through the same ingestion services the API uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec

from feedback import services
from feedback.demo_data import DemoConfig, demo_batches, demo_features, demo_prompt_versions
from feedback.models import Feature, PromptVersion
from feedback.rollups import rollups_refresh

_encode = msgspec.json.Encoder().encode

# The sample host page (static/widget/demo.html) shows these answers; they exist as real traces.
HOST_PAGE_TRACES = [
    {
        "trace_id": "tr_demo_1",
        "prompt_version": "support-v2.3",
        "input": "Hi, I was charged twice for my March invoice. Can you refund one of them?",
        "output": "I can see two charges of $49.00 on March 3rd. The second one is a duplicate caused by a retry "
        "during a payment-provider outage. I have started a refund; it usually reaches the card in 5 to 10 "
        "business days.",
    },
    {
        "trace_id": "tr_demo_2",
        "prompt_version": "support-v2.3",
        "input": "Summarize our refund policy for duplicate charges.",
        "output": "- Duplicate charges are refunded in full, no questions asked.\n- Refunds go back to the original "
        "payment method.\n- Customers on annual plans may ask for a prorated credit instead.",
    },
    {
        "trace_id": "tr_demo_3",
        "prompt_version": "support-v2.4-beta",
        "input": "Suggest a macro for this ticket.",
        "output": "Tag the ticket billing/duplicate-charge, set priority to normal and send the 'Refund started' "
        "macro.",
    },
]


# The persona segments a PM slices by (demo traces carry them in metadata).
DEMO_SEGMENT_KEYS = ("auth", "plan", "region")


def demo_features_declare() -> int:
    """Give demo features made by an older demo their value per success and segment keys (the
    rollups are then rebuilt by rollups_refresh); returns how many features changed."""
    changed = 0
    for spec in demo_features():
        feature = Feature.objects.filter(key=spec["key"]).first()
        if feature is None:
            continue
        if feature.value_per_success_usd is None:
            services.feature_value_set(
                feature=feature, value_per_success_usd=Decimal(str(spec["value_per_success_usd"]))
            )
            changed += 1
        if sorted(feature.segment_keys or []) != sorted(DEMO_SEGMENT_KEYS):
            services.feature_segments_set(feature=feature, keys=list(DEMO_SEGMENT_KEYS))
            changed += 1
    if changed:
        rollups_refresh(limit=100_000)
    return changed


def demo_load(*, traces: int, days: int = 30, log: Callable[[str], None] = print) -> dict[str, float]:
    """Fill the current (tenant) schema with demo data up to now (its whole days are the same whatever the
    hour: DemoConfig); returns counts and timing."""
    started = time.perf_counter()
    for feature in demo_features():
        Feature.objects.update_or_create(
            key=feature["key"],
            defaults={
                "name": feature["name"],
                "value_per_success_usd": Decimal(str(feature["value_per_success_usd"])),
                "segment_keys": list(DEMO_SEGMENT_KEYS),
            },
        )
    counts = {"trace": 0, "feedback": 0, "outcome": 0}
    config = DemoConfig(traces=traces, days=days)  # ends now, truncated to the hour
    ingest = {
        "trace": lambda body: services.traces_ingest(body=body),
        "feedback": lambda body: services.feedback_ingest(body=body, source="api"),
        "outcome": lambda body: services.outcomes_ingest(body=body),
    }
    for kind, batch in demo_batches(config, size=1000):
        result = ingest[kind](_encode({"batch": batch}))
        if result.errors:
            raise RuntimeError(f"demo {kind} batch rejected items: {result.errors[:3]}")
        counts[kind] += result.accepted
        if counts["trace"] and kind == "trace" and counts["trace"] % 10_000 == 0:
            log(f"  {counts['trace']:,} traces…")
    for version in demo_prompt_versions():
        PromptVersion.objects.filter(label=version["prompt_version"], prompt_text="").update(
            prompt_text=version["prompt"]
        )
    now = datetime.now(UTC)
    host = [
        {**t, "feature": "support-copilot", "model": "gpt-4o-mini",
         "provider": "openai", "input_tokens": 850, "output_tokens": 90, "latency_ms": 1240.0,
         "customer_id": "cus_globex", "metadata": {"auth": "sso", "plan": "pro", "source": "demo-host-page"},
         "started_at": (now - timedelta(minutes=5)).isoformat()}
        for t in HOST_PAGE_TRACES
    ]  # fmt: skip
    services.traces_ingest(body=_encode({"batch": host}))
    partitions = rollups_refresh(limit=100_000)
    elapsed = time.perf_counter() - started
    return {**{f"{k}s": float(v) for k, v in counts.items()}, "partitions": float(partitions), "seconds": elapsed}
