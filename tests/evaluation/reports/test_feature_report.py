"""The feature report equals a brute-force reading of the raw rows, from rollups and from raw rows."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from evaluation.reports.measures import Measures
from evaluation.reports.selectors import Grouping, ReportError, feature_get, feature_report, window_from
from feedback.models import Feature
from feedback.rollups import MEASURES
from tests.evaluation.reports.seed import DAY0, brute_force, seed_feature
from tests.fixtures.organizations import in_tenant
from tests.fixtures.rollups import rollups_settled

KEYS = {
    "prompt_version": lambda t: t.prompt_version.label if t.prompt_version else None,
    "variant": lambda t: t.variant or None,
    "customer_id": lambda t: t.customer_id or None,
    "model": lambda t: t.model or None,
    "day": lambda t: t.started_at.astimezone(UTC).date().isoformat(),
    "metadata.auth": lambda t: (t.metadata or {}).get("auth"),
    "metadata.plan": lambda t: (t.metadata or {}).get("plan"),
}
WHOLE_DAYS = (DAY0, DAY0 + timedelta(days=2))
# Not whole UTC days, and written in another zone: answered from the raw rows.
PARTIAL = (datetime.fromisoformat("2025-03-10T12:30:00+02:00"), datetime.fromisoformat("2025-03-11T06:00:00+00:00"))


def close(got: Any, want: Any) -> bool:
    if want is None or got is None:
        return got is want
    return got == pytest.approx(want, rel=1e-9, abs=1e-9)


def flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def assert_matches(report: dict[str, Any], expected: dict[Any, dict[str, Any]]) -> None:
    got = {g["group"]: g for g in report["groups"]}
    assert set(got) == set(expected)
    for group, want in expected.items():
        g = got[group]
        for name in ("traces", "explicit_feedback_rate", "thumbs_up_share", "mean_rating", "edit_rate",
                     "mean_edit_distance", "fallback_rate", "guardrail_block_rate", "error_rate", "successes",
                     "cost_usd", "cost_per_success_usd", "value_usd", "roi"):  # fmt: skip
            assert close(g[name], want[name]), (group, name, g[name], want[name])
        for kind, rate in want["implicit_rates"].items():
            assert close(g["implicit_rates"][kind], rate), (group, kind)
        per_success, roi = g["cost_per_success"], g["roi_interval"]  # beside the numbers, their intervals
        if per_success["low"] is not None:
            assert per_success["low"] <= per_success["value"] <= per_success["high"], group
            assert roi["value"] is None or roi["low"] <= roi["value"] <= roi["high"], group
        assert g["success"]["source"] == want["success_source"]
        assert close(g["success"]["value"], want["success_value"])
        if want["success_value"] is not None:
            assert g["success"]["low"] <= want["success_value"] <= g["success"]["high"]
        # Percentiles from the sketches: within the sketch's documented ~1% (bucket width 2%).
        for q, exact in want["latency"].items():
            assert g["latency_ms"][f"p{q}"] == pytest.approx(exact, rel=0.011), (group, q)
        for q, exact in want["ttft"].items():
            assert g["ttft_ms"][f"p{q}"] == pytest.approx(exact, rel=0.011), (group, q)


@pytest.fixture
def seeded(db: None, org_a):  # type: ignore[no-untyped-def]
    feature = seed_feature(org_a)
    with in_tenant(org_a):
        Feature.objects.filter(key=feature).update(value_per_success_usd=Decimal("2.5"), segment_keys=["auth"])
        rollups_settled()
    return feature


def test_measures_follow_the_rollup_columns() -> None:
    assert tuple(f.name for f in fields(Measures) if f.name not in ("judged", "human")) == MEASURES


@pytest.mark.parametrize("group_by", sorted(KEYS))
@pytest.mark.parametrize("bounds", [WHOLE_DAYS, PARTIAL], ids=["whole-days", "partial-days-other-zone"])
def test_every_figure_equals_brute_force(seeded, org_a, group_by, bounds) -> None:  # type: ignore[no-untyped-def]
    since, until = bounds
    with in_tenant(org_a):
        feature = feature_get(seeded)
        window = window_from(since.isoformat(), until.isoformat())
        report = feature_report(feature=feature, window=window, grouping=Grouping.parse(group_by))
        # Whole days and a declared segment (auth) or a plain column read rollups; the rest, raw rows.
        rollups = bounds is WHOLE_DAYS and group_by != "metadata.plan"
        assert report["source"] == ("rollups" if rollups else "raw")
        expected = brute_force(seeded, since=since, until=until, key=KEYS[group_by], value_per_success=2.5)
        assert_matches(report, expected)
        assert report["total"]["traces"] == sum(e["traces"] for e in expected.values())


def test_rollups_and_raw_rows_give_the_same_report(seeded, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        feature = feature_get(seeded)
        whole = window_from("2025-03-10", "2025-03-12")
        # A hair off midnight forces the raw path over the same traces (none start in that microsecond).
        raw = window_from("2025-03-10T00:00:00.000001Z", "2025-03-12")
        for group_by in ("prompt_version", "metadata.auth", "day"):
            a = feature_report(feature=feature, window=whole, grouping=Grouping.parse(group_by))
            b = feature_report(feature=feature, window=raw, grouping=Grouping.parse(group_by))
            assert (a["source"], b["source"]) == ("rollups", "raw")
            # Equal up to float summation order.
            assert flat(a["groups"]) == pytest.approx(flat(b["groups"]), rel=1e-9)


def test_thumbs_source_when_there_are_no_outcomes_and_empty_states(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    feature_key = seed_feature(org_a, traces=60, seed=5, outcomes=False)
    with in_tenant(org_a):
        rollups_settled()
        feature = feature_get(feature_key)
        window = window_from("2025-03-10", "2025-03-12")
        report = feature_report(feature=feature, window=window, grouping=Grouping.parse("prompt_version"))
        assert report["success_source"]["name"] == "thumbs"
        expected = brute_force(feature_key, since=WHOLE_DAYS[0], until=WHOLE_DAYS[1], key=KEYS["prompt_version"],
                               value_per_success=None)  # fmt: skip
        assert_matches(report, expected)
        # No declared value: value and ROI are null with a note, never 0.
        for group in report["groups"]:
            assert group["value_usd"] is None and group["roi"] is None
            assert "value per success" in group["notes"]["roi"]
        # A metadata key no trace has: no groups, and a note saying so.
        empty = feature_report(feature=feature, window=window, grouping=Grouping.parse("metadata.nope"))
        assert empty["groups"] == [] and "metadata.nope" in empty["note"]
        # A window with no traces at all.
        none = feature_report(feature=feature, window=window_from("2024-01-01", "2024-01-02"),
                              grouping=Grouping.parse("day"))  # fmt: skip
        assert none["groups"] == [] and none["total"]["success"]["value"] is None


def test_zero_successes_leave_cost_per_success_undefined(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    import msgspec

    from feedback import services
    from tests.fixtures.organizations import unique

    key = unique("feat")
    with in_tenant(org_a):
        traces = [{"trace_id": f"{key}-{i}", "feature": key, "cost_usd": 0.01, "started_at": "2025-03-10T10:00:00Z"}
                  for i in range(3)]  # fmt: skip
        services.traces_ingest(body=msgspec.json.encode({"batch": traces}))
        thumbs = [{"event_id": unique("e")[2:].ljust(32, "0")[:32], "trace_id": f"{key}-0", "kind": "thumb",
                   "value": -1, "occurred_at": "2025-03-10T10:01:00Z"}]  # fmt: skip
        import uuid

        thumbs[0]["event_id"] = str(uuid.uuid4())
        services.feedback_ingest(body=msgspec.json.encode({"batch": thumbs}))
        Feature.objects.filter(key=key).update(value_per_success_usd=Decimal("1"))
        rollups_settled()
        report = feature_report(feature=feature_get(key), window=window_from("2025-03-10", "2025-03-11"),
                                grouping=Grouping.parse("prompt_version"))  # fmt: skip
        group = report["groups"][0]
        assert group["success"]["value"] == 0 and group["successes"] == 0
        assert group["cost_per_success_usd"] is None and "zero successes" in group["notes"]["cost_per_success_usd"]
        assert group["value_usd"] == 0 and group["roi"] == -1.0


def test_cost_per_success_and_roi_carry_their_intervals() -> None:
    """Success has an interval, so cost per success and ROI, read from it, have one too: the mean cost of a trace over
    the success rate, each bound at half the error (statsmodels' Wilson interval of the outcome share, the normal
    interval of the mean cost: low cost over high rate, high over low), and ROI = value per success x rate / cost
    per trace - 1 from the same two intervals (low rate over high cost, high over low). Only where asked (a chart's
    points skip them)."""
    import math

    from scipy import stats
    from statsmodels.stats.proportion import proportion_confint

    from evaluation.reports.figures import group_figures
    from evaluation.reports.success import OutcomesSource

    costs = [0.002 + 0.0001 * (i % 7) for i in range(400)]
    m = Measures(traces=400, outcome_traces=150, outcomes=150, cost_usd=sum(costs), costed_traces=400,
                 cost_sq_usd=sum(c * c for c in costs))  # fmt: skip
    g = group_figures(m, source=OutcomesSource(), value_per_success_usd=0.5, intervals=True)
    rate_low, rate_high = proportion_confint(150, 400, alpha=0.025, method="wilson")
    mean = sum(costs) / 400
    sd = math.sqrt(sum((c - mean) ** 2 for c in costs) / 399)
    z = float(stats.norm.ppf(1 - 0.025 / 2))
    cost_low, cost_high = mean - z * sd / 20, mean + z * sd / 20
    per_success = g["cost_per_success"]
    assert per_success["value"] == pytest.approx(sum(costs) / 150)
    assert per_success["low"] == pytest.approx(cost_low / rate_high, rel=1e-9)
    assert per_success["high"] == pytest.approx(cost_high / rate_low, rel=1e-9)
    roi = g["roi_interval"]
    assert roi["value"] == pytest.approx(0.5 * 150 / sum(costs) - 1)
    assert roi["low"] == pytest.approx(0.5 * rate_low / cost_high - 1, rel=1e-9)
    assert roi["high"] == pytest.approx(0.5 * rate_high / cost_low - 1, rel=1e-9)
    # No value per success: no ROI, and its interval says why; no success: neither.
    bare = group_figures(m, source=OutcomesSource(), value_per_success_usd=None, intervals=True)
    assert bare["roi_interval"]["value"] is None and "value per success" in bare["roi_interval"]["note"]
    none = group_figures(Measures(traces=5, cost_usd=0.01, costed_traces=5, cost_sq_usd=0.00002),
                         source=OutcomesSource(), value_per_success_usd=0.5, intervals=True)  # fmt: skip
    assert none["cost_per_success"]["value"] is None and none["cost_per_success"]["low"] is None
    assert "cost_per_success" not in group_figures(m, source=OutcomesSource(), value_per_success_usd=0.5)


def test_intervals_without_an_upper_bound_say_so_and_roi_has_one_with_no_success() -> None:
    """A cost per trace whose interval reaches 0 (one trace of ten cost anything) leaves ROI no upper bound, and a
    rate whose interval reaches 0 leaves cost per success none: said, not dropped (its ROI's low is then -1, all
    cost and no value). With no success at all ROI is -1 and still has an interval: a few more could have paid."""
    from evaluation.reports.figures import group_figures
    from evaluation.reports.success import OutcomesSource, ThumbsSource

    lumpy = Measures(traces=10, outcome_traces=3, outcomes=3, cost_usd=1.0, costed_traces=10, cost_sq_usd=1.0)
    g = group_figures(lumpy, source=OutcomesSource(), value_per_success_usd=1.0, intervals=True)
    assert g["cost_per_success"]["low"] == 0.0 and g["cost_per_success"]["high"] > g["cost_per_success_usd"]
    roi = g["roi_interval"]
    assert roi["low"] < roi["value"] == pytest.approx(2.0) and roi["high"] is None and "no upper bound" in roi["note"]
    # No outcome in 40 traces: no cost per success, ROI -1 with an interval. Thumbs with no rating: no rate, nothing.
    none = Measures(traces=40, outcome_traces=0, cost_usd=0.4, costed_traces=40, cost_sq_usd=0.004)
    zero = group_figures(none, source=OutcomesSource(), value_per_success_usd=2.0, intervals=True)
    assert zero["cost_per_success_usd"] is None and zero["cost_per_success"]["low"] is None
    assert zero["roi"] == -1.0 and zero["roi_interval"]["low"] == -1.0 < zero["roi_interval"]["high"]
    unrated = group_figures(Measures(traces=40, cost_usd=0.4, costed_traces=40, cost_sq_usd=0.004),
                            source=ThumbsSource(), value_per_success_usd=2.0, intervals=True)  # fmt: skip
    assert unrated["roi_interval"]["value"] is None and unrated["roi_interval"]["low"] is None


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [
        ("2025-03-12", "2025-03-10", "since"),
        ("2024-01-01", "2025-03-10", "until"),
        ("yesterday", "", "since"),
        ("1900-01-01", "", "since"),
    ],  # until defaults to today: the since sent is what lies too far back
)
def test_bad_windows_name_the_parameter(since: str, until: str, field: str) -> None:
    with pytest.raises(ReportError) as caught:
        window_from(since, until)
    assert caught.value.field == field and caught.value.status == 400


def test_unknown_group_by_and_feature(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ReportError) as bad:
        Grouping.parse("provider")
    assert bad.value.field == "group_by"
    with in_tenant(org_a), pytest.raises(ReportError) as missing:
        feature_get("no-such-feature")
    assert missing.value.status == 404


def test_default_window_is_the_last_30_days_including_today() -> None:
    now = datetime(2025, 5, 17, 15, 0, tzinfo=UTC)
    window = window_from(now=now)
    assert window.until == datetime(2025, 5, 18, tzinfo=UTC) and window.since == datetime(2025, 4, 18, tzinfo=UTC)
    assert window.whole_days


def test_a_since_after_the_default_until_says_until_defaults_to_today() -> None:
    """An API reviewer sent since=2030-01-01 alone and read "since must be before until" of an until never sent."""
    now = datetime(2025, 5, 17, 15, 0, tzinfo=UTC)
    with pytest.raises(ReportError) as caught:
        window_from("2030-01-01", now=now)
    assert caught.value.field == "since"
    assert "defaults to the end of today (2025-05-18T00:00:00Z)" in caught.value.message
    with pytest.raises(ReportError) as sent:
        window_from("2025-03-12", "2025-03-10", now=now)
    assert "defaults" not in sent.value.message
