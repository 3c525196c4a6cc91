"""Root cause by mix/rate decomposition: exact on totals, and it finds the planted segment in the
demo generator's data and in three other seeded scenarios."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from evaluation.stats.rootcause import Counts, Segment, decompose_partition, partitions_from_cells, root_causes
from feedback.demo_data import DemoConfig, demo_stream


def test_contributions_add_up_to_the_change() -> None:
    cells: dict[Segment, Counts] = {
        (("a", "x"),): Counts(10, 100, 30, 100),
        (("a", "y"),): Counts(40, 200, 10, 50),
        (("a", "z"),): Counts(0, 0, 5, 10),
    }
    r0, r1, parts = decompose_partition(cells)
    assert r0 == pytest.approx(50 / 300) and r1 == pytest.approx(45 / 160)
    assert sum(c.total for c in parts) == pytest.approx(r1 - r0)  # type: ignore[operator]


DIMS = ("prompt_version", "model", "customer_id", "metadata.auth", "metadata.plan", "metadata.region")


def _demo_cells() -> tuple[dict[tuple[Any, ...], Counts], dict[tuple[Any, ...], Counts]]:
    """support-copilot of the demo generator (default size), thumbs-down share and success
    (outcomes), with the drift view's default windows (drift_windows): the last 7 whole days, today left
    out as it is still arriving, against the 14 days ending 14 days ago."""
    end = datetime(2026, 12, 3, 8, tzinfo=UTC)
    today = end.replace(hour=0)
    current, base0, base1 = today - timedelta(days=7), today - timedelta(days=28), today - timedelta(days=14)
    traces: dict[str, tuple[int, tuple[Any, ...]]] = {}
    thumbs: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0, 0, 0, 0])
    success: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0, 0, 0, 0])
    resolved: set[str] = set()
    for kind, item in demo_stream(DemoConfig(traces=50_000, days=30, end=end, spans=False)):
        if kind == "trace" and item["feature"] == "support-copilot":
            ts = datetime.fromisoformat(item["started_at"].replace("Z", "+00:00"))
            w = 1 if current <= ts < today else 0 if base0 <= ts < base1 else None
            if w is None:
                continue
            m = item["metadata"]
            key = (
                item.get("prompt_version"),
                item.get("model"),
                item["customer_id"],
                m["auth"],
                m["plan"],
                m["region"],
            )
            traces[item["trace_id"]] = (w, key)
            success[key][2 * w + 1] += 1
        elif kind == "feedback" and item["kind"] == "thumb" and item["trace_id"] in traces:
            w, key = traces[item["trace_id"]]
            thumbs[key][2 * w] += item["value"] == -1
            thumbs[key][2 * w + 1] += 1
        elif kind == "outcome" and item["trace_id"] in traces and item["trace_id"] not in resolved:
            resolved.add(item["trace_id"])
            w, key = traces[item["trace_id"]]
            success[key][2 * w] += 1
    return {k: Counts(*v) for k, v in thumbs.items()}, {k: Counts(*v) for k, v in success.items()}


def test_demo_regression_sso_after_the_prompt_change_ranks_first() -> None:
    thumbs, success = _demo_cells()
    for cells, bad in ((thumbs, 1), (success, -1)):
        ranked = root_causes(partitions_from_cells(cells, DIMS), direction=bad).ranked
        assert dict(ranked[0].segment) == {"metadata.auth": "sso", "prompt_version": "support-v2.3"}, [
            c.label for c in ranked[:3]
        ]
        assert ranked[0].refines == (("metadata.auth", "sso"),)


def _scenario(seed: int, plant: dict[str, str], *, rate_jump: float = 0.0, mix_to: float = 0.0) -> dict:  # type: ignore[type-arg]
    """Seeded traffic over customer x model x region x plan; the planted cell's rate jumps by
    ``rate_jump`` in the current window, or its share of traffic grows ``mix_to``-fold."""
    rng = np.random.default_rng(seed)
    customers = [f"cus_{i}" for i in range(12)]
    models, regions, plans = ["haiku", "sonnet", "mini"], ["us", "eu", "ap"], ["free", "pro", "enterprise"]
    cells = {}
    for c in customers:
        for m in models:
            for r in regions:
                for p in plans:
                    key = (c, m, r, p)
                    named = dict(zip(("customer_id", "model", "region", "plan"), key, strict=True))
                    planted = all(named[d] == v for d, v in plant.items())
                    base_rate = rng.uniform(0.1, 0.3)
                    n0 = int(rng.integers(80, 200))
                    n1 = int(n0 * rng.uniform(0.9, 1.1) * (mix_to if planted and mix_to else 1))
                    r1 = min(base_rate + (rate_jump if planted else 0.0), 0.95)
                    high = 0.55 if planted and mix_to else base_rate
                    cells[key] = Counts(
                        float(rng.binomial(n0, high if mix_to else base_rate)),
                        float(n0),
                        float(rng.binomial(n1, high if mix_to else r1)),
                        float(n1),
                    )
    return cells


@pytest.mark.parametrize(
    ("seed", "plant", "kwargs"),
    [
        (1, {"customer_id": "cus_7"}, {"rate_jump": 0.35}),  # one customer's error rate jumps
        (2, {"model": "sonnet", "region": "eu"}, {"rate_jump": 0.3}),  # a model in one region
        (3, {"plan": "enterprise", "customer_id": "cus_3"}, {"mix_to": 4.0}),  # a bad segment's traffic grows
    ],
)
def test_seeded_scenarios_find_the_planted_segment_first(seed: int, plant: dict[str, str], kwargs: dict) -> None:  # type: ignore[type-arg]
    cells = _scenario(seed, plant, **kwargs)
    ranked = root_causes(partitions_from_cells(cells, ("customer_id", "model", "region", "plan"))).ranked
    assert dict(ranked[0].segment) == plant, [c.label for c in ranked[:3]]


def test_a_dimension_with_one_value_explains_nothing() -> None:
    cells = {
        ("v1", "haiku", "sso"): Counts(10, 100, 10, 100),
        ("v1", "haiku", "password"): Counts(20, 400, 20, 400),
        ("v2", "haiku", "sso"): Counts(0, 0, 80, 100),
        ("v2", "haiku", "password"): Counts(0, 0, 20, 400),
    }
    partitions = partitions_from_cells(cells, ("prompt_version", "model", "auth"))
    assert len(partitions) == 3  # prompt_version, auth and their pair; model (one value) is left out
    ranked = root_causes(partitions).ranked
    assert dict(ranked[0].segment) == {"auth": "sso", "prompt_version": "v2"}
    assert all("model" not in dict(c.segment) for c in ranked)
