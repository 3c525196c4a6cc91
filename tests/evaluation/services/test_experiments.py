"""Experiments on seeded data: a holdback experiment's verdict with intervals and its source, and
every bad input the issue lists answered with a clear state, never a false verdict."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from evaluation.services.experiments import (
    ExperimentError,
    experiment_create,
    experiment_results,
    experiment_stop,
    experiments_list,
)
from evaluation.stats.sequential import mixture_tau, plan
from tests.evaluation.experiments_seed import ingest, new_feature, traffic
from tests.fixtures.organizations import in_tenant

START = datetime(2025, 3, 1, tzinfo=UTC)
NOW = datetime(2025, 3, 11, 12, tzinfo=UTC)
HOLDBACK = [{"name": "holdback", "allocation": 0.2, "holdback": True}, {"name": "ai", "allocation": 0.8}]


def _seed(
    feature: str,
    key: str,
    *,
    n: int = 3000,
    rates: dict[str, float] | None = None,
    split: dict[str, float] | None = None,
    outcomes_for: tuple[str, ...] | None = None,
    cost: dict[str, float] | None = None,
    seed: int = 5,
) -> None:
    rates = rates or {"holdback": 0.40, "ai": 0.52}
    split = split or {"holdback": 0.2, "ai": 0.8}
    rng = random.Random(seed)
    arms = list(split)
    weights = [split[a] for a in arms]
    assignment = [rng.choices(arms, weights)[0] for _ in range(n)]

    def fields(i: int) -> dict[str, Any]:
        arm = assignment[i]
        extra: dict[str, Any] = {"experiment": key, "variant": arm, "fallback": arm == "holdback"}
        if cost:
            extra["cost_usd"] = cost[arm]
        return extra

    traces, events, results = traffic(
        feature=feature,
        start=START,
        hours=24 * 10,
        count=n,
        rng=rng,
        fields=fields,
        success=lambda t: rates[t["variant"]] if outcomes_for is None or t["variant"] in outcomes_for else 0.0,
    )
    ingest(traces, events, results)


def test_holdback_experiment_ships_ai_with_intervals_and_names_its_source(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        feature = new_feature()
        _seed(feature, "hb")
        experiment = experiment_create(
            key="hb",
            feature_key=feature,
            arms=HOLDBACK,
            control="holdback",
            mde=0.05,
            primary_metric="conversion",
            started_at=START,
        )
        r = experiment_results(experiment, now=NOW)
    assert r["primary_metric"]["source"] == "conversion"
    arms = {a["name"]: a for a in r["arms"]}
    assert arms["holdback"]["traces"] + arms["ai"]["traces"] == 3000
    for arm in arms.values():
        assert arm["metric"]["low"] < arm["metric"]["value"] < arm["metric"]["high"]
    lift = arms["ai"]["lift"]
    assert 0 < lift["low"] < lift["value"] < lift["high"] and arms["ai"]["significant"]
    assert lift["value"] == pytest.approx(arms["ai"]["metric"]["value"] - arms["holdback"]["metric"]["value"])
    assert not r["srm"]["mismatch"]
    cost = next(g for g in arms["ai"]["guardrails"] if g["metric"] == "cost_per_success_usd")
    assert cost["status"] == "not_applicable"  # the holdback has no AI cost to compare with
    assert r["verdict"]["decision"] == "ship" and r["verdict"]["arm"] == "ai"
    assert "conversion" in r["verdict"]["metric_source"] and "always-valid" in r["verdict"]["reason"]
    # It names which guardrails hold and which do not apply against a holdback (it said "guardrails hold").
    reason = r["verdict"]["reason"]
    assert (
        "; guardrails: fallback rate holding; cost per success and p95 latency not applying (the control is" in reason
    )
    assert r["sequential_test"]["looks"] == 10 and "Johari" in r["sequential_test"]["reference"]


def test_a_holdback_beside_an_ai_control_is_the_yardstick_not_a_candidate(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """Control, a new prompt and a 10% non-AI holdback (the demo's checkout experiment): the verdict compares the
    new prompt with the control. The holdback's lift is shown, but it is not tested for the verdict nor held to
    the AI's guardrails: the non-AI path falls back on every trace, and its fallback rate stopped the experiment
    ("arm holdback breaks the fallback rate guardrail")."""
    split = {"holdback": 0.1, "control": 0.45, "ai_on": 0.45}
    arms = [{"name": "holdback", "allocation": 0.1, "holdback": True},
            {"name": "control", "allocation": 0.45}, {"name": "ai_on", "allocation": 0.45}]  # fmt: skip
    with in_tenant(org_a):
        feature = new_feature()
        _seed(feature, "addon", n=4000, split=split, rates={"holdback": 0.30, "control": 0.45, "ai_on": 0.56})
        experiment = experiment_create(key="addon", feature_key=feature, arms=arms, control="control", mde=0.05,
                                       primary_metric="conversion", started_at=START)  # fmt: skip
        r = experiment_results(experiment, now=NOW)
    rows = {a["name"]: a for a in r["arms"]}
    assert rows["holdback"]["yardstick"] and not rows["ai_on"]["yardstick"] and not rows["control"]["yardstick"]
    assert rows["holdback"]["guardrails"] == [] and rows["holdback"]["lift"]["value"] < 0
    assert {g["metric"]: g["status"] for g in rows["ai_on"]["guardrails"]}["fallback_rate"] == "ok"
    assert r["verdict"]["decision"] == "ship" and r["verdict"]["arm"] == "ai_on"
    assert r["verdict"]["reason"].startswith("ai_on beats control")
    # The only test is ai_on's: the whole alpha is its own (two tests would split it), and the plan counts the
    # arms the verdict reads (the holdback's 10% is not what it waits for).
    planned = plan(baseline=r["plan"]["baseline"], mde=0.05, alpha=0.05, power=0.8, tau=mixture_tau(0.05))
    assert r["plan"]["per_arm"] == planned.per_arm
    assert r["plan"]["so_far_per_arm"] == min(rows["control"]["metric"]["n"], rows["ai_on"]["metric"]["n"])


def test_arms_that_do_not_appear_in_the_data_keep_it_running(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        feature = new_feature()
        _seed(feature, "present")
        nothing = experiment_create(
            key="ghost",
            feature_key=feature,
            arms=[{"name": "x", "allocation": 0.5}, {"name": "y", "allocation": 0.5}],
            control="x",
            mde=0.05,
            started_at=START,
        )
        r = experiment_results(nothing, now=NOW)
        assert (
            r["verdict"]["decision"] == "keep_running"
            and "no traces of this experiment's arms" in r["verdict"]["reason"]
        )
        experiment_stop(experiment=nothing, at=START)
        half = experiment_create(
            key="half",
            feature_key=feature,
            arms=[{"name": "ai", "allocation": 0.5}, {"name": "beta", "allocation": 0.5}],
            control="ai",
            mde=0.05,
            started_at=START,
        )
        r = experiment_results(half, now=NOW)
    assert r["verdict"]["decision"] == "keep_running" and "arm beta has no traces" in r["verdict"]["reason"]
    assert {a["name"]: a["lift"]["value"] for a in r["arms"] if a["lift"]}["beta"] is None


def test_a_holdback_without_outcomes_is_undefined_not_a_win(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        feature = new_feature()
        _seed(feature, "hb", outcomes_for=("ai",))
        experiment = experiment_create(
            key="hb",
            feature_key=feature,
            arms=HOLDBACK,
            control="holdback",
            mde=0.05,
            primary_metric="conversion",
            started_at=START,
        )
        r = experiment_results(experiment, now=NOW)
    holdback = next(a for a in r["arms"] if a["name"] == "holdback")
    assert holdback["metric"]["value"] is None and "no outcomes" in holdback["metric"]["note"]
    assert r["verdict"]["decision"] == "keep_running" and "undefined for arm holdback" in r["verdict"]["reason"]


def test_sample_ratio_mismatch_stops_the_experiment(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        feature = new_feature()
        _seed(feature, "srm", split={"holdback": 0.3, "ai": 0.7})
        experiment = experiment_create(
            key="srm",
            feature_key=feature,
            arms=HOLDBACK,
            control="holdback",
            mde=0.05,
            primary_metric="conversion",
            started_at=START,
        )
        r = experiment_results(experiment, now=NOW)
    assert r["srm"]["mismatch"] and r["srm"]["p_value"] < 0.001
    assert r["verdict"]["decision"] == "stop" and "sample ratio mismatch" in r["verdict"]["reason"]


def test_a_guardrail_breach_stops_a_better_arm(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    arms = [{"name": "control", "allocation": 0.5}, {"name": "treatment", "allocation": 0.5}]
    with in_tenant(org_a):
        feature = new_feature()
        _seed(
            feature,
            "gr",
            rates={"control": 0.4, "treatment": 0.5},
            split={"control": 0.5, "treatment": 0.5},
            cost={"control": 0.01, "treatment": 0.05},
        )
        experiment = experiment_create(
            key="gr", feature_key=feature, arms=arms, control="control", mde=0.05, started_at=START
        )
        r = experiment_results(experiment, now=NOW)
    treatment = next(a for a in r["arms"] if a["name"] == "treatment")
    assert treatment["significant"]
    assert next(g for g in treatment["guardrails"] if g["metric"] == "cost_per_success_usd")["status"] == "breached"
    assert r["verdict"]["decision"] == "stop" and "cost per success guardrail" in r["verdict"]["reason"]


def test_no_difference_keeps_running_with_the_planner_then_stops_at_the_deadline(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        feature = new_feature()
        _seed(feature, "aa", n=600, rates={"holdback": 0.5, "ai": 0.5})
        experiment = experiment_create(
            key="aa",
            feature_key=feature,
            arms=HOLDBACK,
            control="holdback",
            mde=0.05,
            primary_metric="conversion",
            started_at=START,
            max_days=30,
        )
        running = experiment_results(experiment, now=NOW)
        late = experiment_results(experiment, now=START + timedelta(days=31))
    assert running["verdict"]["decision"] == "keep_running" and "planner" in running["verdict"]["reason"]
    assert running["plan"]["per_arm"] > running["plan"]["so_far_per_arm"]
    assert late["verdict"]["decision"] == "stop" and "inconclusive" in late["verdict"]["reason"]


def test_overlapping_experiments_on_one_feature_are_refused(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        feature = new_feature()
        experiment_create(
            key="first",
            feature_key=feature,
            arms=HOLDBACK,
            control="holdback",
            mde=0.05,
            primary_metric="conversion",
            started_at=START,
        )
        with pytest.raises(ExperimentError, match="overlaps"):
            experiment_create(
                key="second",
                feature_key=feature,
                arms=HOLDBACK,
                control="holdback",
                mde=0.05,
                primary_metric="conversion",
            )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"primary_metric": "success"}, "primary_metric"),
        ({"primary_metric": "thumbs_up_share"}, "primary_metric"),
        ({"mde": 0}, "mde"),
        ({"mde": 1.5}, "mde"),
        ({"control": "nobody"}, "control"),
        ({"arms": [{"name": "a", "allocation": 0.5}, {"name": "b", "allocation": 0.4}]}, "arms"),
        ({"arms": [{"name": "a", "allocation": 1.0}]}, "arms"),
        ({"key": "bad key!"}, "key"),
        ({"feature_key": "no-such-feature"}, "feature"),
        ({"primary_metric": "vibes"}, "primary_metric"),
        ({"guardrails": [{"metric": "mood", "max_increase": 1}]}, "guardrails"),
    ],
)
def test_bad_definitions_are_refused_naming_the_field(db: None, org_a, changes: dict, field: str) -> None:  # type: ignore[no-untyped-def,type-arg]
    with in_tenant(org_a):
        feature = new_feature()
        args: dict[str, Any] = {
            "key": "ok",
            "feature_key": feature,
            "arms": HOLDBACK,
            "control": "holdback",
            "mde": 0.05,
            "primary_metric": "conversion",
            **changes,
        }
        with pytest.raises(ExperimentError) as info:
            experiment_create(**args)
    assert info.value.field == field


def test_success_from_thumbs_when_no_outcomes_names_its_source(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    arms = [{"name": "control", "allocation": 0.5}, {"name": "treatment", "allocation": 0.5}]
    with in_tenant(org_a):
        feature = new_feature()
        rng = random.Random(17)
        ingest(
            *traffic(
                feature=feature,
                start=START,
                hours=24 * 10,
                count=4000,
                rng=rng,
                outcomes=False,
                fields=lambda i: {"experiment": "th", "variant": "control" if i % 2 else "treatment"},
                thumbs_down=lambda t: 0.2 if t["variant"] == "treatment" else 0.35,
            )
        )
        experiment = experiment_create(
            key="th", feature_key=feature, arms=arms, control="control", mde=0.05, started_at=START
        )
        r = experiment_results(experiment, now=NOW)
    assert r["primary_metric"]["source"] == "thumbs"
    treatment = next(a for a in r["arms"] if a["name"] == "treatment")
    assert treatment["metric"]["n"] < treatment["traces"]  # a share of the rated traces only
    assert r["verdict"]["decision"] == "ship" and "from thumbs" in r["verdict"]["metric_source"]


def test_the_segment_breakdown_finds_the_users_an_arm_fails_against_scipy(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """The AI lifts password users from 40% to 60% and does nothing for SSO users (40%): overall it ships; the
    breakdown shows each segment's difference, its Bonferroni interval (from scipy's normal quantile, the
    counts taken from the seed itself), and marks only the password lift."""
    from scipy.stats import norm

    with in_tenant(org_a):
        feature = new_feature(segment_keys=["auth"])
        rng = random.Random(11)
        arms = [rng.choices(["holdback", "ai"], [0.3, 0.7])[0] for _ in range(4000)]

        def fields(i: int) -> dict[str, Any]:
            auth = "sso" if i % 4 == 0 else "password"
            return {
                "experiment": "seg",
                "variant": arms[i],
                "fallback": arms[i] == "holdback",
                "metadata": {"auth": auth},
            }

        def rate(t: dict[str, Any]) -> float:
            return 0.6 if t["variant"] == "ai" and t["metadata"]["auth"] == "password" else 0.4

        traces, events, results = traffic(feature=feature, start=START, hours=24 * 10, count=4000, rng=rng,
                                          fields=fields, success=rate)  # fmt: skip
        ingest(traces, events, results)
        experiment = experiment_create(key="seg", feature_key=feature, arms=[{**HOLDBACK[0], "allocation": 0.3},
                                       {**HOLDBACK[1], "allocation": 0.7}], control="holdback", mde=0.05,
                                       primary_metric="conversion", started_at=START)  # fmt: skip
        r = experiment_results(experiment, now=NOW)
        listed = experiment_results(experiment, now=NOW, segments=False)
    assert listed["segments"] is None
    segments = r["segments"]
    assert segments["keys"] == ["auth"] and segments["comparisons"] == 2
    rows = {row["segment"]: {cell["arm"]: cell for cell in row["arms"]} for row in segments["rows"]}
    assert set(rows) == {"metadata.auth=password", "metadata.auth=sso"}
    converted = {result["trace_id"] for result in results}
    z = norm.ppf(1 - 0.05 / (2 * 2))
    for auth in ("password", "sso"):
        counts = {}
        for arm in ("holdback", "ai"):
            mine = [t for t in traces if t["variant"] == arm and t["metadata"]["auth"] == auth]
            counts[arm] = (sum(t["trace_id"] in converted for t in mine), len(mine))
        cells = rows[f"metadata.auth={auth}"]
        assert cells["holdback"]["traces"] == counts["holdback"][1] and cells["holdback"]["lift"] is None
        (xc, nc), (xt, nt) = counts["holdback"], counts["ai"]
        sc, st = (xc + 1) / (nc + 2), (xt + 1) / (nt + 2)  # the Laplace-smoothed variance the tests use
        half = z * ((st * (1 - st)) / nt + (sc * (1 - sc)) / nc) ** 0.5
        lift = cells["ai"]["lift"]
        assert lift["value"] == pytest.approx(xt / nt - xc / nc)
        assert (lift["low"], lift["high"]) == pytest.approx((lift["value"] - half, lift["value"] + half))
        assert cells["ai"]["metric"]["value"] == pytest.approx(xt / nt)
    assert (
        rows["metadata.auth=password"]["ai"]["lift"]["clear"]
        and rows["metadata.auth=password"]["ai"]["lift"]["value"] > 0.1
    )
    assert not rows["metadata.auth=sso"]["ai"]["lift"]["clear"]
    # Each segment's lift against the other's (the rest of its key): a z-test at scipy's Bonferroni quantile.
    password, sso = rows["metadata.auth=password"]["ai"]["lift"], rows["metadata.auth=sso"]["ai"]["lift"]
    # Two values make one test, made for the smaller segment (SSO) against the other.
    assert sso["rest"] == pytest.approx(password["value"]) and password["rest"] is None
    se_p, se_s = (password["high"] - password["low"]) / 2 / z, (sso["high"] - sso["low"]) / 2 / z
    gap_z = abs(password["value"] - sso["value"]) / (se_p**2 + se_s**2) ** 0.5
    assert segments["tests"] == 1 and gap_z > norm.ppf(1 - 0.05 / 2)
    assert sso["differs"] and not password["differs"]
    assert [(d["segment"], d["arm"]) for d in segments["differs"]] == [("metadata.auth=sso", "ai")]
    assert r["verdict"]["decision"] == "ship"  # overall the AI wins: the breakdown is where SSO shows
    # The page's verdict card says it on a line of its own (it was the last clause of a long sentence under SHIP).
    from django.template.loader import render_to_string

    card = " ".join(render_to_string("evaluation/_experiment_verdict.html", {"r": r}).split())
    assert 'data-testid="verdict-differs"' in card and "the effect differs for" in card
    assert "<strong>metadata.auth=sso</strong>" in card and "check it before shipping to everyone" in card
    # Its badge says it too, on the card and the list (a plain green SHIP read as "ship to everyone").
    badge = card.split('data-testid="verdict-badge"', 1)[1].split("</span>", 1)[0]
    assert 'class="badge warn"' in card and "SHIP, BUT CHECK metadata.auth=sso" in badge
    # ... and the verdict says so, in the list and the digest too (they read no breakdown).
    with in_tenant(org_a):
        listed = next(e for e in experiments_list(now=NOW) if e["key"] == "seg")
    for verdict in (r["verdict"], listed["verdict"]):
        said = f"but not alike for every user: for metadata.auth=sso its lift is {sso['value'] * 100:+.1f} pts, against"
        assert said in verdict["reason"]
        assert [d["segment"] for d in verdict["segments_differ"]] == ["metadata.auth=sso"]
    listed_badge = render_to_string("evaluation/_verdict_badge.html", {"v": listed["verdict"]})
    assert "SHIP, BUT CHECK metadata.auth=sso" in listed_badge
