"""ROI over a holdback: a success counts only past the rate the non-AI path gets on its own; the figures are
recomputed here from the seed's own traces and outcomes, not read back from Candor."""

from __future__ import annotations

import html
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.http import QueryDict
from django.test import Client

from evaluation.reports.selectors import Window, holdback_roi, overview
from evaluation.reports.success import success_source_for
from evaluation.services.experiments import experiment_create
from feedback.models import Feature
from feedback.selectors import TraceFilters, traces_filtered
from tests.evaluation.experiments_seed import ingest, new_feature, traffic
from tests.fixtures.organizations import in_tenant

START = datetime(2025, 3, 1, tzinfo=UTC)
WINDOW = Window(START, START + timedelta(days=10))


def _seed(
    org: Any, *, holdback_every: int = 10, holdback_from: int = 0
) -> tuple[Feature, list[dict[str, Any]], set[str]]:
    """3,000 traces over 9 days: every ``holdback_every``-th from the ``holdback_from``-th on is the holdback
    (30% converts), the rest the AI (50%; 80% before the holdback starts, to tell the days apart)."""
    with in_tenant(org):
        key = new_feature()
        Feature.objects.filter(key=key).update(value_per_success_usd=Decimal("4"))
        rng = random.Random(21)

        def fields(i: int) -> dict[str, Any]:
            held = i % holdback_every == 0 and i >= holdback_from
            return {"experiment": f"{key}-x", "variant": "holdback" if held else "ai", "fallback": held,
                    "cost_usd": 0.0 if held else 0.02, "metadata": {"i": i}}  # fmt: skip

        traces, events, results = traffic(feature=key, start=START, hours=24 * 9, count=3000, rng=rng, fields=fields,
                                          success=lambda t: 0.3 if t["variant"] == "holdback" else
                                          0.8 if t["metadata"]["i"] < holdback_from else 0.5)  # fmt: skip
        ingest(traces, events, results)
        experiment_create(key=f"{key}-x", feature_key=key, control="holdback", primary_metric="conversion", mde=0.05,
                          started_at=START, arms=[{"name": "holdback", "allocation": 0.1, "holdback": True},
                                                  {"name": "ai", "allocation": 0.9}])  # fmt: skip
        return Feature.objects.get(key=key), traces, {r["trace_id"] for r in results}


def test_roi_over_the_holdback_counts_only_the_successes_the_ai_adds(db: None, org_a, owner_a: Client) -> None:  # type: ignore[no-untyped-def]
    feature, traces, converted = _seed(org_a)
    with in_tenant(org_a):
        rows = {f["key"]: f for f in overview(window=WINDOW)}
    ai = [t for t in traces if t["variant"] == "ai"]
    held = [t for t in traces if t["variant"] == "holdback"]
    ai_rate = sum(t["trace_id"] in converted for t in ai) / len(ai)
    held_rate = sum(t["trace_id"] in converted for t in held) / len(held)
    cost = 0.02 * len(ai)
    value = (ai_rate - held_rate) * len(ai) * 4
    got = rows[feature.key]["over_holdback"]
    assert got["rate_source"] == "outcomes" and got["holdback_traces"] == len(held)
    assert (got["ai_rate"], got["holdback_rate"]) == pytest.approx((ai_rate, held_rate))
    assert got["roi"] == pytest.approx((value - cost) / cost)
    # Its interval: the lift's (Laplace-smoothed Wald, scipy's 95% quantile) carried through.
    from scipy.stats import norm

    sa, sh = (ai_rate * len(ai) + 1) / (len(ai) + 2), (held_rate * len(held) + 1) / (len(held) + 2)
    half = norm.ppf(0.975) * (sa * (1 - sa) / len(ai) + sh * (1 - sh) / len(held)) ** 0.5
    low = ((ai_rate - held_rate - half) * len(ai) * 4 - cost) / cost
    assert got["roi_low"] == pytest.approx(low, rel=1e-5) and got["roi_low"] < got["roi"] < got["roi_high"]
    # The plain ROI counts every success of the AI's traces (none of the holdback's: those are the non-AI
    # path's), also those the holdback shows would have come anyway: far larger.
    figures = rows[feature.key]["figures"]
    gross = figures["roi"]
    assert figures["traces"] == len(ai) and figures["successes"] == sum(t["trace_id"] in converted for t in ai)
    assert gross == pytest.approx((sum(t["trace_id"] in converted for t in ai) * 4 - cost) / cost)
    assert gross > 2 * got["roi"]
    # The feature page shows it beside the plain ROI (the overview's windows end today: the seed is older).
    feature_page = owner_a.get(org_a.url(f"features/{feature.key}/"), {"since": "2025-03-01", "until": "2025-03-11"})
    assert 'data-testid="roi-over-holdback"' in feature_page.content.decode()
    # Read from outcomes, as the plain ROI is here: nothing to say of another success source.
    assert 'data-testid="holdback-source-differs"' not in feature_page.content.decode()
    # So does the spend-by-feature page, with its interval (it showed the plain ROI alone).
    spend = owner_a.get(org_a.url("spend/features/"), {"since": "2025-03-01", "until": "2025-03-11"}).content.decode()
    cell = spend.split('data-testid="roi-over-holdback">')[1].split("</td>")[0]
    assert f"{got['roi']:.1f}×" in cell and f"{got['roi_low']:.0f}× to {got['roi_high']:.0f}×" in cell


def test_a_holdback_without_outcomes_or_on_other_days_is_no_comparison(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """Zero outcomes from the holdback is unwired reporting, not a 0% rate; and the AI is compared with the
    holdback on the days the holdback ran only (AI traffic from before it started does not count)."""
    with in_tenant(org_a):
        key = new_feature()
        Feature.objects.filter(key=key).update(value_per_success_usd=Decimal("4"))
        rng = random.Random(5)

        def fields(i: int) -> dict[str, Any]:
            held = i % 10 == 0
            return {"experiment": f"{key}-x", "variant": "holdback" if held else "ai", "fallback": held}

        traces, events, results = traffic(feature=key, start=START, hours=24 * 9, count=3000, rng=rng, fields=fields,
                                          success=lambda t: 0.0 if t["variant"] == "holdback" else 0.5)  # fmt: skip
        ingest(traces, events, results)
        experiment_create(key=f"{key}-x", feature_key=key, control="holdback", primary_metric="conversion", mde=0.05,
                          started_at=START, arms=[{"name": "holdback", "allocation": 0.1, "holdback": True},
                                                  {"name": "ai", "allocation": 0.9}])  # fmt: skip
        feature = Feature.objects.get(key=key)
        source = success_source_for(_total(feature))
        assert holdback_roi(feature=feature, window=WINDOW, source=source, value_per_success_usd=4.0) is None
    late, traces, converted = _seed(org_a, holdback_from=1500)  # the holdback runs in the second half only
    with in_tenant(org_a):
        got = holdback_roi(feature=late, window=WINDOW, source=success_source_for(_total(late)),
                           value_per_success_usd=4.0)  # fmt: skip
    assert got is not None
    days_held = {t["started_at"][:10] for t in traces if t["variant"] == "holdback"}
    assert got["holdback_traces"] == sum(1 for t in traces if t["variant"] == "holdback")
    same_days = [t for t in traces if t["variant"] == "ai" and t["started_at"][:10] in days_held]
    assert len(same_days) < sum(1 for t in traces if t["variant"] == "ai")
    assert got["ai_rate"] == pytest.approx(sum(t["trace_id"] in converted for t in same_days) / len(same_days))
    # The lift applies to the AI's traces of those days only: before the holdback ran nothing measured what the
    # non-AI path would have had (and the AI converted 80% then, not 50%).
    assert got["ai_traces"] == len(same_days)
    cost = 0.02 * len(same_days)
    assert got["cost_usd"] == pytest.approx(cost)
    assert got["roi"] == pytest.approx(((got["ai_rate"] - got["holdback_rate"]) * len(same_days) * 4 - cost) / cost)
    assert (got["days"], got["traffic_days"]) == (len(days_held), len({t["started_at"][:10] for t in traces}))
    assert got["days"] < got["traffic_days"]


def test_no_holdback_or_too_small_a_one_leaves_it_out(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    feature, _, _ = _seed(org_a, holdback_every=40)  # 75 holdback traces: too few to compare
    with in_tenant(org_a):
        source = success_source_for(_total(feature))
        assert holdback_roi(feature=feature, window=WINDOW, source=source, value_per_success_usd=4.0) is None
        other = Feature.objects.get(key=new_feature())
        assert holdback_roi(feature=other, window=WINDOW, source=source, value_per_success_usd=4.0) is None
        full, _, _ = _seed(org_a)
    with in_tenant(org_a):
        assert holdback_roi(feature=full, window=WINDOW, source=source, value_per_success_usd=None) is None


def _total(feature: Feature) -> Any:
    from evaluation.reports.measures import total
    from evaluation.reports.selectors import measures_by

    parts, _ = measures_by(feature=feature, window=WINDOW, dims=("day",))
    return total(parts)


def test_the_feature_report_is_the_ais_without_the_holdbacks_traces(  # type: ignore[no-untyped-def]
    db: None, org_a, owner_a: Client, client_a: Client
) -> None:
    """A holdback trace took the non-AI path: its outcomes were counted as the AI's successes (the review's
    "$60,083 of value" where the versions' rows summed to $56,943). Every group and the total leave them out."""
    feature, traces, converted = _seed(org_a)
    ai = [t for t in traces if t["variant"] == "ai"]
    held = [t for t in traces if t["variant"] == "holdback"]
    window = {"since": "2025-03-01", "until": "2025-03-11"}
    for group_by in ("prompt_version", "variant", "day"):
        body = client_a.get(f"/api/v1/features/{feature.key}/report", window | {"group_by": group_by}).json()
        total = body["total"]
        assert total["traces"] == len(ai) and body["holdback_traces"] == len(held), group_by
        assert total["successes"] == sum(t["trace_id"] in converted for t in ai)
        assert total["value_usd"] == pytest.approx(4 * total["successes"])
        assert sum(g["traces"] for g in body["groups"]) == len(ai)
        assert sum(g["value_usd"] for g in body["groups"]) == pytest.approx(total["value_usd"])
        assert "holdback" not in [g["group"] for g in body["groups"]]
        assert f"{len(held):,} traces of the holdback arm" in body["holdback_note"]
    page = owner_a.get(org_a.url(f"features/{feature.key}/"), window).content.decode()
    assert 'data-testid="holdback-note"' in page and f"{len(held):,} traces of the holdback arm" in page
    # A feature without a holdback keeps every trace, and says nothing of one.
    with in_tenant(org_a):
        plain = new_feature()
        rng = random.Random(3)
        ingest(*traffic(feature=plain, start=START, hours=24, count=50, rng=rng,
                        fields=lambda i: {"fallback": i % 5 == 0}, success=lambda t: 0.5))  # fmt: skip
    body = client_a.get(f"/api/v1/features/{plain}/report", window).json()
    assert body["total"]["traces"] == 50 and body["holdback_traces"] == 0 and body["holdback_note"] is None


def test_a_report_rows_traces_leave_the_holdback_out_as_its_counts_do(  # type: ignore[no-untyped-def]
    db: None, org_a, owner_a: Client, client_a: Client
) -> None:
    """A row's link listed the holdback arm's traces too, under a row whose count leaves them out (PM review:
    "7,812 traces" led to 8,680). The link leaves them out; the explorer says so and can show them again."""
    feature, traces, _ = _seed(org_a)
    page = owner_a.get(org_a.url(f"features/{feature.key}/"),
                       {"group_by": "day", "since": "2025-03-01", "until": "2025-03-11"})  # fmt: skip
    row = page.context["report"]["groups"][0]
    link = html.unescape(page.content.decode().split('data-testid="group-traces" href="', 1)[1].split('"', 1)[0])
    query = QueryDict(urlsplit(link).query)
    assert query.getlist("exclude_variant") == ["holdback"]
    that_day = [t for t in traces if t["started_at"][:10] == row["group"]]
    with in_tenant(org_a):
        listed = traces_filtered(TraceFilters.from_query(query, until_day_inclusive=True))
        assert listed.count() == row["traces"] == sum(1 for t in that_day if t["variant"] == "ai")
        assert sum(1 for t in that_day if t["variant"] == "holdback") > 0
    explorer = owner_a.get(link).content.decode()
    assert 'data-testid="excluded-variants"' in explorer and "<b>holdback</b>" in explorer
    # It says how many traces match, so the row's count can be checked against it (it showed a page of 50).
    assert f'data-testid="trace-count">{row["traces"]:,} traces match these filters' in explorer
    every = html.unescape(explorer.split('data-testid="excluded-variants"', 1)[1].split('href="', 1)[1].split('"')[0])
    assert "exclude_variant" not in every and f"feature={feature.key}" in every
    # The API takes the same filter, repeatable; a NUL in any of its values is a 400 naming it.
    day = {"feature": feature.key, "since": row["group"], "until": (date.fromisoformat(row["group"]) +
                                                                   timedelta(days=1)).isoformat()}  # fmt: skip
    seen: list[dict[str, Any]] = []
    cursor = ""
    while cursor is not None:
        body = client_a.get("/api/v1/traces", day | {"exclude_variant": ["holdback", "nope"], "cursor": cursor,
                                                     "limit": 100}).json()  # fmt: skip
        seen += body["results"]
        cursor = body["next_cursor"]
    assert {t["variant"] for t in seen} == {"ai"} and len(seen) == row["traces"]
    both = client_a.get("/api/v1/traces", day | {"exclude_variant": ["holdback", "ai"]}).json()
    assert both["results"] == []
    refused = client_a.get("/api/v1/traces", day | {"exclude_variant": ["holdback", "a\x00b"]})
    assert refused.status_code == 400 and refused.json()["error"]["details"]["field"] == "exclude_variant"


def test_the_roi_over_holdback_card_says_when_it_reads_another_success_than_the_cards_beside_it(  # type: ignore[no-untyped-def]
    db: None, org_a, owner_a: Client
) -> None:
    """Success beside it from human labels, ROI over holdback from outcomes (the holdback has no AI answer to label
    or judge): the card says so (a PM read two success figures side by side as one)."""
    from evaluation.models import Label, Rubric

    feature, traces, _ = _seed(org_a)
    with in_tenant(org_a):
        rubric = Rubric.objects.create(name=f"{feature.key}-ok", version=1, scale="binary")
        for i, t in enumerate([t for t in traces if t["variant"] == "ai"][:60]):
            Label.objects.create(label_id=f"{feature.key}-l{i}", trace_id=t["trace_id"], rubric=rubric,
                                 value=float(i % 3 != 0), source="api", sampling_design="uniform",
                                 inclusion_probability=0.1)  # fmt: skip
    page = owner_a.get(org_a.url(f"features/{feature.key}/"), {"since": "2025-03-01", "until": "2025-03-11"})
    assert page.context["report"]["success_source"]["name"] == "human_labels"
    assert page.context["over_holdback"]["rate_source"] == "outcomes"
    card = page.content.decode().split('data-testid="holdback-source-differs">', 1)[1].split("</span>", 1)[0]
    assert card == "Success from outcomes, not human labels: the holdback has no AI answer to judge."
