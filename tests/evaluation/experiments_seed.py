"""Seeded traces, thumbs and outcomes for the experiments, drift and alerts tests, through the real
ingestion services (so rollups, variants and outcomes are stored as in production)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec

from evaluation.models import Experiment
from evaluation.services.experiments import experiment_create
from feedback import services
from feedback.models import Feature
from tests.fixtures.organizations import unique
from tests.fixtures.rollups import rollups_settled


def ingest(traces: list[dict[str, Any]], events: list[dict[str, Any]], outcomes: list[dict[str, Any]]) -> None:
    """Stores the items (inside the current tenant) and brings the rollups up to date."""
    for batch, ingest_fn in (
        (traces, services.traces_ingest),
        (events, services.feedback_ingest),
        (outcomes, services.outcomes_ingest),
    ):
        for start in range(0, len(batch), 1000):
            result = ingest_fn(body=msgspec.json.encode({"batch": batch[start : start + 1000]}))
            assert not result.errors, result.errors[:2]
    rollups_settled(limit=100_000)


def traffic(
    *,
    feature: str,
    start: datetime,
    hours: float,
    count: int,
    rng: random.Random,
    success: Callable[[dict[str, Any]], float] = lambda t: 0.5,
    thumbs_down: Callable[[dict[str, Any]], float] = lambda t: 0.2,
    thumb_rate: float = 0.5,
    fields: Callable[[int], dict[str, Any]] = lambda i: {},
    outcomes: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """``count`` traces spread over ``hours`` from ``start``; each gets a thumb with probability
    ``thumb_rate`` (down with probability thumbs_down(trace)) and an outcome with probability success(trace)."""
    prefix = unique("tr")
    traces, events, results = [], [], []
    for i in range(count):
        at = start + timedelta(hours=hours * (i + rng.random()) / count)
        trace = {
            "trace_id": f"{prefix}-{i}",
            "feature": feature,
            "prompt_version": "v1",
            "started_at": at.isoformat(),
            "latency_ms": round(rng.lognormvariate(6.2, 0.2), 1),
            "cost_usd": 0.01,
            **fields(i),
        }
        traces.append(trace)
        if rng.random() < thumb_rate:
            value = -1 if rng.random() < thumbs_down(trace) else 1
            events.append(
                {
                    "event_id": str(uuid.uuid4()),
                    "trace_id": trace["trace_id"],
                    "kind": "thumb",
                    "value": value,
                    "occurred_at": (at + timedelta(minutes=1)).isoformat(),
                }
            )
        if outcomes and rng.random() < success(trace):
            results.append(
                {
                    "outcome_id": unique("oc"),
                    "name": "ticket_resolved",
                    "trace_id": trace["trace_id"],
                    "variant": trace.get("variant", ""),
                    "value_usd": 4.0,
                    "occurred_at": (at + timedelta(minutes=30)).isoformat(),
                }
            )
    return traces, events, results


def new_feature(segment_keys: list[str] | None = None) -> str:
    key = unique("feat")
    Feature.objects.create(key=key, name=key, segment_keys=segment_keys or [])
    return key


def holdback_experiment(key: str, feature: str, *, started_at: datetime, holdback_share: float = 0.1) -> Experiment:
    """A conversion experiment of a holdback arm (the non-AI path, the control) against an "ai" arm."""
    return experiment_create(
        key=key,
        feature_key=feature,
        control="holdback",
        primary_metric="conversion",
        mde=0.05,
        started_at=started_at,
        arms=[
            {"name": "holdback", "allocation": holdback_share, "holdback": True},
            {"name": "ai", "allocation": 1 - holdback_share},
        ],
    )
