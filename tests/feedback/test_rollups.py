"""Rollups: numbers match the raw rows, reruns never double count, a real worker keeps them current,
and feedback that raced its trace is joined to it before any rollup counts it."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from datetime import date
from typing import Any

import msgspec
import pytest

from feedback import services
from feedback.models import DailyRollup, Feature, FeedbackEvent, RollupDirty
from feedback.rollups import feedback_rejoin, rollup_recompute, rollups_refresh
from feedback.sketch import merge, quantile
from tests.fixtures.organizations import in_tenant, unique
from tests.fixtures.server import wait_for


def _post_traces(org, traces):  # type: ignore[no-untyped-def]
    import msgspec

    with in_tenant(org):
        return services.traces_ingest(body=msgspec.json.encode({"batch": traces}))


def _post_feedback(org, events):  # type: ignore[no-untyped-def]
    import msgspec

    with in_tenant(org):
        return services.feedback_ingest(body=msgspec.json.encode({"batch": events}))


def ev(trace_id: str, kind: str, value=None, user="u1", **extra):  # type: ignore[no-untyped-def]
    return {"event_id": str(uuid.uuid4()), "trace_id": trace_id, "kind": kind, "value": value, "user_id": user,
            "occurred_at": extra.pop("at", "2025-04-01T12:00:00Z"), **extra}  # fmt: skip


def test_rollup_matches_raw_rows_and_reruns_do_not_double(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    feature = unique("feat")
    day = "2025-04-01"
    latencies = [100.0, 200.0, 300.0, 400.0, 1000.0]
    traces = [
        {"trace_id": f"{feature}-{i}", "feature": feature, "prompt_version": "v1" if i < 3 else "v2",
         "customer_id": "cus_a", "latency_ms": latencies[i], "cost_usd": 0.01 * (i + 1), "input_tokens": 100,
         "output_tokens": 10, "status": "error" if i == 4 else "ok", "fallback": i == 3,
         "started_at": f"{day}T0{i}:00:00Z"}
        for i in range(5)
    ]  # fmt: skip
    _post_traces(org_a, traces)
    t0, t1, t3 = f"{feature}-0", f"{feature}-1", f"{feature}-3"
    _post_feedback(org_a, [
        ev(t0, "thumb", -1, at="2025-04-01T12:00:00Z"),
        ev(t0, "thumb", 1, at="2025-04-01T12:05:00Z"),  # the same person changed their mind: up wins
        ev(t0, "thumb", -1, user="u2"),
        ev(t1, "edit", original_text="abcd", edited_text="abXd"),
        ev(t1, "copy", 10), ev(t1, "dwell", 5000), ev(t3, "rating", 4), ev(t3, "retry"),
    ])  # fmt: skip
    with in_tenant(org_a):
        feature_id = Feature.objects.get(key=feature).id
        assert rollups_refresh() >= 1
        assert not RollupDirty.objects.filter(feature_id=feature_id).exists()
        rows = {r.prompt_version.label: r for r in DailyRollup.objects.filter(feature_id=feature_id)}
        v1, v2 = rows["v1"], rows["v2"]
        assert (v1.traces, v2.traces) == (3, 2)
        assert (v1.thumbs_up, v1.thumbs_down) == (1, 1)
        assert v1.explicit_feedback == 2 and v1.implicit_feedback == 1  # traces with any, not events
        assert v1.feedback_by_kind == {"thumb": 3, "edit": 1, "copy": 1, "dwell": 1}
        assert v1.edits == 1 and v1.edit_distance_sum == pytest.approx(0.25)
        assert (v2.ratings, v2.ratings_sum, v2.errors, v2.fallbacks) == (1, 4.0, 1, 1)
        assert float(v1.cost_usd) == pytest.approx(0.06) and v1.input_tokens == 300
        # Each trace's cost squared, summed: what a window's cost noise is read from.
        assert (v1.cost_sq_usd, v2.cost_sq_usd) == (pytest.approx(0.0014), pytest.approx(0.0041))
        sketch = merge([v1.latency_sketch, v2.latency_sketch])
        assert quantile(sketch, 0.5) == pytest.approx(300, rel=0.02)
        assert quantile(sketch, 1.0) == pytest.approx(1000, rel=0.02)
        before = list(DailyRollup.objects.filter(feature_id=feature_id).values().order_by("id"))
        # A rerun (a retried task, a second worker) gives the same numbers, not double.
        rollup_recompute(day=date.fromisoformat(day), feature_id=feature_id)
        rollup_recompute(day=date.fromisoformat(day), feature_id=feature_id)
        after = list(DailyRollup.objects.filter(feature_id=feature_id).values().order_by("id"))
        strip = lambda rows: [{k: v for k, v in r.items() if k not in {"id", "computed_at"}} for r in rows]  # noqa: E731
        assert strip(before) == strip(after)


def test_late_feedback_dirties_the_traces_partition(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    feature = unique("feat")
    _post_traces(org_a, [{"trace_id": f"{feature}-x", "feature": feature, "started_at": "2025-04-02T00:00:00Z"}])
    with in_tenant(org_a):
        rollups_refresh()
        assert not RollupDirty.objects.exists() or not RollupDirty.objects.filter(feature__key=feature).exists()
    _post_feedback(org_a, [ev(f"{feature}-x", "thumb", -1)])
    with in_tenant(org_a):
        dirty = RollupDirty.objects.get(feature__key=feature)
        assert str(dirty.day) == "2025-04-02"
        rollups_refresh()
        assert DailyRollup.objects.get(feature__key=feature).thumbs_down == 1


def test_real_worker_refreshes_rollups_in_the_right_schema(  # type: ignore[no-untyped-def]
    live, celery_worker, committed_db, org_a, org_b
) -> None:
    """The task is sent from org A's request; the worker must run it in org A's schema."""
    feature = unique("worker")
    api = live.api(org_a.secret_key)
    response = api.post("/api/v1/traces", {"batch": [
        {"trace_id": f"{feature}-{i}", "feature": feature, "started_at": "2025-04-03T10:00:00Z"} for i in range(3)
    ]})  # fmt: skip
    assert response.status_code == 200

    def rolled_up() -> int:
        with in_tenant(org_a):
            return sum(DailyRollup.objects.filter(feature__key=feature).values_list("traces", flat=True))

    assert wait_for(rolled_up, timeout=60) == 3
    with in_tenant(org_b):
        assert not Feature.objects.filter(key=feature).exists()


def test_beat_sweep_fans_out_to_organizations_with_dirty_partitions(  # type: ignore[no-untyped-def]
    celery_worker, committed_db, org_a, org_b
) -> None:
    """A partition left dirty (its refresh throttled or lost) is picked up by the periodic sweep."""
    from feedback.models import Trace
    from feedback.tasks import rollups_sweep

    feature = unique("sweep")
    with in_tenant(org_a):
        feature_row = Feature.objects.create(key=feature)
        Trace.objects.create(trace_id=f"{feature}-1", feature=feature_row, started_at="2025-04-09T00:00:00Z",
                             day="2025-04-09")  # fmt: skip
        RollupDirty.objects.create(day="2025-04-09", feature=feature_row)
    assert rollups_sweep() >= 1  # sends a refresh into org A's schema

    def rolled_up() -> bool:
        with in_tenant(org_a):
            return DailyRollup.objects.filter(feature__key=feature, traces=1).exists()

    assert wait_for(rolled_up, timeout=60)


def test_feedback_racing_its_trace_is_mended_before_rollups(committed_db, org_a) -> None:  # type: ignore[no-untyped-def]
    """Trace and feedback batches committed concurrently: whatever the interleaving, the
    rejoin before each rollup refresh leaves no feedback detached from an existing trace."""
    prefix = unique("race")
    traces = [{"trace_id": f"{prefix}-{i}", "feature": "race"} for i in range(200)]
    events = [{"event_id": str(uuid.uuid4()), "trace_id": f"{prefix}-{i}", "kind": "copy"} for i in range(200)]
    errors: list[BaseException] = []

    def run(fn, body) -> None:  # type: ignore[no-untyped-def]
        from django.db import connection

        try:
            with in_tenant(org_a):
                fn(body=msgspec.json.encode({"batch": body}))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(services.feedback_ingest, events[i::4])) for i in range(4)]
    threads += [threading.Thread(target=run, args=(services.traces_ingest, traces[i::4])) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with in_tenant(org_a):
        feedback_rejoin()
        assert FeedbackEvent.objects.filter(trace_id__startswith=prefix).count() == 200
        assert not FeedbackEvent.objects.filter(trace_id__startswith=prefix, feature__isnull=True).exists()


def test_rollup_rows_summed_in_sql_equal_the_rows_added_one_by_one(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from django.db import connection

    from feedback.rollups import MAP_MEASURES, MEASURES, rollup_sum_query

    feature = unique("feat")
    traces = [
        {"trace_id": f"{feature}-{i}", "feature": feature, "prompt_version": f"v{i % 2}",
         "customer_id": ["cus_a", "cus_b", ""][i % 3], "latency_ms": 50.0 * (1 + i % 7), "ttft_ms": 9.0 + i,
         "cost_usd": 0.001 * i, "started_at": f"2025-04-0{1 + i % 3}T0{i % 10}:00:00Z"}
        for i in range(24)
    ]  # fmt: skip
    _post_traces(org_a, traces)
    _post_feedback(org_a, [ev(f"{feature}-{i}", ["thumb", "copy", "rating"][i % 3], [1, 3, 5][i % 3])
                           for i in range(0, 24, 2)])  # fmt: skip
    with in_tenant(org_a):
        rollups_refresh(limit=100)
        rows = list(DailyRollup.objects.filter(feature__key=feature).values("customer_id", *MEASURES))
        assert len({(r["customer_id"]) for r in rows}) == 3 and len(rows) > 3  # several rows per group
        want: dict[str, dict[str, Any]] = {}
        for row in rows:
            acc = want.setdefault(row["customer_id"], {})
            for name in MEASURES:
                value = row[name]
                if name in MAP_MEASURES:
                    acc[name] = Counter(acc.get(name, {})) + Counter({str(k): n for k, n in value.items()})
                else:
                    acc[name] = acc.get(name, 0) + value
        sql = rollup_sum_query(table="feedback_dailyrollup", dims=["r.customer_id"],
                               where="r.feature_id = (SELECT id FROM feedback_feature WHERE key = %s)")  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute(sql, [feature])
            got = {row[0]: dict(zip(MEASURES, row[1:], strict=True)) for row in cursor.fetchall()}
    assert set(got) == set(want)
    for customer, measures in want.items():
        for name, value in measures.items():
            mine = got[customer][name]
            if name in MAP_MEASURES:
                mine = json.loads(mine)
            assert mine == value, (customer, name)


def test_version_rollup_is_the_daily_rows_summed_over_customers(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from feedback.models import VersionRollup
    from feedback.rollups import MAP_MEASURES, MEASURES

    feature = unique("feat")
    traces = [
        {"trace_id": f"{feature}-{i}", "feature": feature, "prompt_version": f"v{i % 2}",
         **({"experiment": "exp", "variant": ["a", "b"][i % 3 - 1]} if i % 3 else {}),
         "customer_id": ["cus_a", "cus_b", ""][i // 12], "latency_ms": 40.0 * (1 + i % 9), "ttft_ms": 7.0 + i,
         "cost_usd": 0.001 * i, "started_at": f"2025-04-0{1 + i // 2 % 2}T{i % 24:02d}:00:00Z"}
        for i in range(36)
    ]  # fmt: skip
    _post_traces(org_a, traces)
    kinds = ["thumb", "copy", "rating", "edit"]
    _post_feedback(org_a, [ev(f"{feature}-{i}", kinds[i // 3 % 4], [1, 3, 5, None][i // 3 % 4],
                              original_text="abcd", edited_text="abXd") for i in range(36)])  # fmt: skip

    def summed() -> dict[tuple[Any, ...], dict[str, Any]]:
        want: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in DailyRollup.objects.filter(feature__key=feature).values("day", "prompt_version_id", "variant",
                                                                           *MEASURES):  # fmt: skip
            acc = want.setdefault((row["day"], row["prompt_version_id"], row["variant"]), {})
            for name in MEASURES:
                if name in MAP_MEASURES:
                    acc[name] = dict(Counter(acc.get(name, {})) + Counter({str(k): n for k, n in row[name].items()}))
                else:
                    acc[name] = acc.get(name, 0) + row[name]
        return want

    def stored() -> dict[tuple[Any, ...], dict[str, Any]]:
        return {(r["day"], r["prompt_version_id"], r["variant"]): {n: r[n] for n in MEASURES}
                for r in VersionRollup.objects.filter(feature__key=feature).values("day", "prompt_version_id",
                                                                                   "variant", *MEASURES)}  # fmt: skip

    def same(got: dict[tuple[Any, ...], dict[str, Any]], want: dict[tuple[Any, ...], dict[str, Any]]) -> None:
        assert got.keys() == want.keys()
        for key, measures in want.items():
            for name, value in measures.items():
                mine = got[key][name]
                if name in MAP_MEASURES:
                    assert {str(k): n for k, n in mine.items()} == value, (key, name)
                else:
                    assert mine == pytest.approx(value, rel=1e-12), (key, name)

    with in_tenant(org_a):
        rollups_refresh(limit=100)
        want = summed()
        assert len(want) == 12  # 2 days x 2 versions x 3 variants, each summed over several customers
        assert DailyRollup.objects.filter(feature__key=feature).count() > len(want)
        same(stored(), want)
        feature_id = Feature.objects.get(key=feature).id
        rollup_recompute(day=date(2025, 4, 1), feature_id=feature_id)  # a rerun does not double
        same(stored(), want)
    # Late feedback: the partition's version rows follow its daily rows.
    _post_feedback(org_a, [ev(f"{feature}-1", "thumb", -1, user="late")])
    with in_tenant(org_a):
        rollups_refresh(limit=100)
        after = summed()
        assert sum(m["thumbs_down"] for m in after.values()) == sum(m["thumbs_down"] for m in want.values()) + 1
        same(stored(), after)


def test_segment_rollups_by_experiment_arm_equal_the_raw_rows(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """An experiment's arms by segment are read from the segment rollups (they kept no arm, and each page
    view read the traces): the same figures as the raw rows."""
    from datetime import UTC, datetime, timedelta

    from evaluation.reports.selectors import Window, measures_by

    feature = unique("feat")
    traces = [
        {"trace_id": f"{feature}-{i}", "feature": feature, "prompt_version": "v1", "variant": ("ai", "holdback")[i % 2],
         "metadata": {"auth": ("sso", "password", "password")[i % 3]}, "cost_usd": 0.001 * i,
         "started_at": f"2025-04-01T{i % 24:02d}:{i % 60:02d}:00Z"}
        for i in range(60)
    ]  # fmt: skip
    _post_traces(org_a, traces)
    _post_feedback(org_a, [ev(f"{feature}-{i}", "thumb", (-1) ** i) for i in range(0, 60, 4)])
    with in_tenant(org_a):
        model = Feature.objects.get(key=feature)
        model.segment_keys = ["auth"]
        model.save(update_fields=["segment_keys"])
        RollupDirty.objects.get_or_create(day=date(2025, 4, 1), feature=model)
        rollups_refresh()
        day = datetime(2025, 4, 1, tzinfo=UTC)
        dims = ("metadata", "variant")
        rolled, via = measures_by(
            feature=model, window=Window(day, day + timedelta(days=1)), dims=dims, metadata_key="auth"
        )
        raw, raw_via = measures_by(feature=model, window=Window(day, day + timedelta(hours=23, minutes=59)), dims=dims,
                                   metadata_key="auth")  # fmt: skip
    assert (via, raw_via) == ("rollups", "raw")
    assert set(rolled) == {("sso", "ai"), ("sso", "holdback"), ("password", "ai"), ("password", "holdback")}
    for key, m in rolled.items():
        other = raw[key]
        assert (m.traces, m.thumbs_up, m.thumbs_down) == (other.traces, other.thumbs_up, other.thumbs_down), key
        assert m.cost_usd == pytest.approx(other.cost_usd) and m.cost_sq_usd == pytest.approx(other.cost_sq_usd)


def test_float_measures_do_not_depend_on_the_order_rows_are_read_in(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from decimal import Decimal

    from feedback.edits import edit_measures

    # Costs whose squares, added as floats, give one sum forwards and another backwards.
    costs = ["0.140892", "0.596854", "0.888599", "0.841236"]
    squares = [float(Decimal(c) ** 2) for c in costs]
    assert sum(squares) != sum(reversed(squares))  # the trap this test is about
    edits = [("abc", "abX"), ("abc", "aXX"), ("abcd", "abcX"), ("abcd", "abXX")]
    distances = [edit_measures(a, b).distance for a, b in edits]
    assert sum(distances) != sum(reversed(distances))
    stored = {}
    for order in (1, -1):
        feature = unique("feat")
        _post_traces(org_a, [{"trace_id": f"{feature}-{i}", "feature": feature, "prompt_version": "v1",
                              "cost_usd": float(cost), "started_at": "2025-04-01T12:00:00Z"}
                             for i, cost in enumerate(costs[::order])])  # fmt: skip
        _post_feedback(org_a, [ev(f"{feature}-{i}", "edit", original_text=a, edited_text=b)
                               for i, (a, b) in enumerate(edits[::order])])  # fmt: skip
        with in_tenant(org_a):
            rollups_refresh(limit=100)
            row = DailyRollup.objects.get(feature__key=feature)
        stored[order] = (row.cost_sq_usd, row.edit_distance_sum)
    # Summed exactly and rounded once: the same in either order (a recomputation always equals the rollup).
    assert stored[1] == stored[-1]
    assert stored[1][0] == float(sum(Decimal(c) ** 2 for c in costs))
    assert stored[1][1] == pytest.approx(sum(distances), rel=1e-12)


def test_a_small_groups_percentiles_are_by_nearest_rank() -> None:
    """Two traces of 850 and 2,300 ms read p50 / p95 / p99 850 / 850 / 850 (the lower rank, q * (n - 1)): a p99 at
    the fastest trace. By nearest rank, as numpy's inverted_cdf and PostgreSQL's percentile_disc answer."""
    import numpy as np

    from feedback.sketch import bucket_of

    rng = np.random.default_rng(3)
    for values in ([850.0, 2300.0], [120.0], list(rng.lognormal(6, 1, 7)), list(rng.lognormal(6, 1, 333))):
        sketch: dict[int, int] = {}
        for value in values:
            sketch[bucket_of(value)] = sketch.get(bucket_of(value), 0) + 1
        for q in (0.0, 0.5, 0.95, 0.99, 1.0):
            want = float(np.quantile(values, q, method="inverted_cdf"))
            assert quantile(sketch, q) == pytest.approx(want, rel=0.011), (len(values), q)


def test_a_partition_of_the_costliest_traces_sums_without_overflow(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """Each trace costs under $10^8 (what a trace's cost column holds), but the sums over traces were narrower than
    what they add up: 112 such traces in one day and feature overflowed the rollups' numeric(18, 8), and every later
    refresh of the organization failed (its reports froze); 11,112 overflowed a spend counter, a 500 that lost the
    batch. Sums now hold 38 digits."""
    from feedback.models import SpendCounter, Trace

    feature = unique("feat")
    big = {"feature": feature, "provider": "anthropic", "model": "claude-opus-4", "customer_id": "cus_big",
           "input_tokens": 10**12, "output_tokens": 10**12, "started_at": "2025-04-02T10:00:00Z"}  # fmt: skip
    for first in range(0, 11_200, 1_000):
        batch = [{**big, "trace_id": f"{feature}-{i}"} for i in range(first, min(first + 1_000, 11_200))]
        result = _post_traces(org_a, batch)
        assert (result.accepted, result.errors) == (len(batch), [])
    with in_tenant(org_a):
        each = Trace.objects.get(trace_id=f"{feature}-0").cost_usd
        assert each is not None and 10**7 < each < 10**8
        assert SpendCounter.objects.get(customer_id="cus_big", feature_id__isnull=False).cost_usd == each * 11_200
        assert rollups_refresh() >= 1
        rows = DailyRollup.objects.filter(feature__key=feature)
        assert sum(row.traces for row in rows) == 11_200
        assert sum(row.cost_usd for row in rows) == each * 11_200
