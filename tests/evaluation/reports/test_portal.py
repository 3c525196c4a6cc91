"""The overview, feature page (charts, table, CSV, value per success) and customers pages: render,
export, edit, and stay inside their organization."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.test import Client

from evaluation.reports.selectors import Grouping, feature_get, feature_report, window_from
from feedback.models import Feature
from tenants.templatetags.candor import times_range_filter, unit_usd_filter, usd_range_filter
from tests.evaluation.reports.seed import seed_feature
from tests.fixtures.organizations import in_tenant
from tests.fixtures.rollups import rollups_settled
from tests.helpers import assert_cross_tenant_404


@pytest.fixture
def seeded(db: None, org_a) -> str:  # type: ignore[no-untyped-def]
    key = seed_feature(org_a, traces=60)
    with in_tenant(org_a):
        Feature.objects.filter(key=key).update(segment_keys=["auth"])
        rollups_settled()
    return key


@pytest.fixture
def owner(db: None, org_a) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(org_a.owner)
    return client


WINDOW = {"since": "2025-03-10", "until": "2025-03-12"}


def test_feature_page_renders_charts_data_and_the_table(owner: Client, org_a, seeded: str) -> None:  # type: ignore[no-untyped-def]
    page = owner.get(org_a.url(f"features/{seeded}/"), {**WINDOW, "group_by": "metadata.auth"})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="chart-data"' in html and "uPlot-1.6.32.iife.min.js" in html and 'id="report-table"' in html
    assert "set a value per success" in html  # no declared value: ROI is not 0
    assert ">sso<" in html and ">password<" in html and "Export CSV" in html
    # Every rate as a share, as the tiles write it: the table said 0.721 (0.667-0.774) beside a tile's 73%.
    import re

    total = html.split('<tr class="total">')[1].split("</tr>")[0]
    assert re.search(r"\d+\.\d%\s*<small[^>]*>\(\d+\.\d%–\d+\.\d%\)", total), total
    assert not re.search(r">\s*0\.\d{3}\b", total), total


def test_a_window_reaching_today_says_so(owner: Client, org_a, seeded: str) -> None:  # type: ignore[no-untyped-def]
    """The overview's "7 days" ends with today so far, the digest's with yesterday: said, not left to guess."""
    live = owner.get(org_a.url(""), {"days": "7"}).content.decode()
    assert 'data-testid="today-so-far"' in live
    past = owner.get(org_a.url(""), WINDOW).content.decode()
    assert 'data-testid="today-so-far"' not in past and "the weekly digest and the drift page read whole days" in past
    assert "(today so far)" in owner.get(org_a.url("customers/")).content.decode()


def test_the_report_forms_last_day_is_included(owner: Client, org_a, seeded: str) -> None:  # type: ignore[no-untyped-def]
    """The form's Until was exclusive where the trace explorer's is inclusive: one day picked as since and until was
    "since must be before until" and 30 days shown. The form asks Through, the last day included."""
    one_day = owner.get(org_a.url(f"features/{seeded}/"), {"since": "2025-03-11", "through": "2025-03-11"})
    html = one_day.content.decode()
    assert "since must be before until" not in html and "showing the last" not in html
    assert 'name="through" value="2025-03-11"' in html and 'name="since" value="2025-03-11"' in html
    # The same window as links write it (until exclusive): the same figures.
    linked = owner.get(org_a.url(f"features/{seeded}/"), {"since": "2025-03-11", "until": "2025-03-12"})
    assert 'name="through" value="2025-03-11"' in linked.content.decode()
    table = [page.content.decode().split('<tr class="total">')[1].split("</tr>")[0] for page in (one_day, linked)]
    assert table[0] == table[1]
    bad = owner.get(org_a.url(f"features/{seeded}/"), {"through": "someday"}).content.decode()
    assert "through: use a day" in bad
    backwards = owner.get(org_a.url(f"features/{seeded}/"), {"since": "2025-03-12", "through": "2025-03-11"})
    assert "through must be on or after since" in backwards.content.decode()


def test_shares_are_written_as_percents() -> None:
    from tenants.templatetags.candor import pct_filter

    assert [pct_filter(v) for v in (0.7214, 0.0, 1, None, "")] == ["72.1%", "0.0%", "100.0%", "", ""]
    assert pct_filter(0.12345, 2) == "12.35%" and pct_filter("x") == ""


def test_a_rates_level_and_move_read_in_percent_or_in_dollars() -> None:
    """Drift's rates are shares (percent, moves in points) but for cost per trace (dollars: it read "0.3%")."""
    from tenants.templatetags.candor import level_filter, move_filter

    assert [level_filter(0.443), level_filter(0.0031, True), level_filter(None, True)] == ["44.3%", "$0.0031", ""]
    assert [move_filter(-0.0546), move_filter(0.0136), move_filter(0.0)] == ["\u22125.5 pts", "+1.4 pts", "0.0 pts"]
    assert [move_filter(0.0012, True), move_filter(-0.0012, True), move_filter("x", True)] == [
        "+$0.0012", "-$0.0012", ""]  # fmt: skip


def test_money_is_written_at_the_precision_it_needs() -> None:
    """The feature table wrote a $0.00057 cost as "$0.00" (cents): under $1 it keeps four decimals."""
    from decimal import Decimal

    from tenants.templatetags.candor import usd_filter

    written = [usd_filter(v) for v in (Decimal("0.00057"), 0.0087, 0, 1234.5, 0.00001, -2.5, None, "x")]
    assert written == ["$0.0006", "$0.0087", "$0.00", "$1,234.50", "<$0.0001", "-$2.50", "", ""]
    assert [usd_filter(v) for v in (0.99996, 0.99994, float("nan"))] == ["$1.00", "$0.9999", ""]


def test_cost_per_success_is_shown_with_its_interval(owner: Client, org_a, seeded: str) -> None:  # type: ignore[no-untyped-def]
    """Success was shown with its interval and cost per success, read from it, without one: on the feature page
    (its card and every row) and the spend-by-feature page, the bounds the report computed, and ROI's beside them."""
    with in_tenant(org_a):
        Feature.objects.filter(key=seeded).update(value_per_success_usd=2.5)
        report = feature_report(feature=feature_get(seeded), window=window_from(WINDOW["since"], WINDOW["until"]),
                                grouping=Grouping.parse("prompt_version"))  # fmt: skip
    bounds = report["total"]["cost_per_success"]
    assert bounds["low"] < report["total"]["cost_per_success_usd"] < bounds["high"]
    shown = f"{unit_usd_filter(bounds['low'])} to {unit_usd_filter(bounds['high'])}"
    page = owner.get(org_a.url(f"features/{seeded}/"), {**WINDOW, "group_by": "prompt_version"}).content.decode()
    assert f'data-testid="cost-per-success-interval">95% CI {shown}<' in page
    rows = [g for g in report["groups"] if g["cost_per_success"]["low"] is not None]
    assert rows and page.count('data-testid="cost-per-success-interval"') == 1 + len(rows) + 1  # card, rows, All
    roi = report["total"]["roi_interval"]
    assert f'data-testid="roi-interval">95% CI {roi["low"]:,.1f}× to {roi["high"]:,.1f}×<' in page
    spend = owner.get(org_a.url("spend/features/"), WINDOW).content.decode()
    assert f'data-testid="cost-per-success-interval">{shown}<' in spend
    assert f'data-testid="roi-interval">{roi["low"]:,.1f}× to {roi["high"]:,.1f}×<' in spend


def test_a_cost_per_success_keeps_three_significant_digits_under_a_cent() -> None:
    """Four decimals wrote both ends of a $0.000370 to $0.000402 interval as "$0.0004"."""
    written = [unit_usd_filter(v) for v in (0.000372, 0.00040249, 0.0037, 0.00999, 0.0000123, -0.0004, 0.01, 2.5,
                                            0.0099999)]  # fmt: skip
    assert written == ["$0.000372", "$0.000402", "$0.00370", "$0.00999", "$0.0000123", "-$0.000400", "$0.0100",
                       "$2.50", "$0.0100"]  # fmt: skip
    # Intervals of them, and of ROI: a missing upper bound reads "or more", a missing lower one nothing.
    assert usd_range_filter({"value": 0.00038, "low": 0.00037, "high": 0.000402}) == "$0.000370 to $0.000402"
    assert usd_range_filter({"low": 0.0, "high": None}) == "$0.00 or more"
    assert [usd_range_filter(i) for i in ({"low": None, "high": 1.0}, {}, None)] == ["", "", ""]
    assert times_range_filter({"low": -0.4, "high": 1234.56}) == "-0.4× to 1,234.6×"
    assert times_range_filter({"low": -1.0, "high": None}) == "-1.0× or more" and times_range_filter(None) == ""
    assert [unit_usd_filter(v) for v in (0, None, "", "x", float("nan"), float("inf"))] == ["$0.00", "", "", "", "", ""]


def test_csv_export_matches_the_report(owner: Client, org_a, seeded: str) -> None:  # type: ignore[no-untyped-def]
    response = owner.get(org_a.url(f"features/{seeded}/report.csv"), {**WINDOW, "group_by": "prompt_version"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:3] == ["prompt_version", "traces", "success"]
    by_group = {r[0]: r for r in rows[1:]}
    assert int(by_group["(all)"][1]) == 60 == sum(int(r[1]) for g, r in by_group.items() if g != "(all)")
    # Cost per success and ROI with their bounds, last (columns appended: the earlier ones keep their places).
    assert rows[0][-4:] == ["cost_per_success_low_usd", "cost_per_success_high_usd", "roi_low", "roi_high"]
    every = by_group["(all)"]
    low, point, high = (float(every[rows[0].index(name)]) for name in
                        ("cost_per_success_low_usd", "cost_per_success_usd", "cost_per_success_high_usd"))  # fmt: skip
    assert low < point < high


def test_value_per_success_is_editable_by_a_pm_and_validated(owner: Client, org_a, seeded: str) -> None:  # type: ignore[no-untyped-def]
    url = org_a.url(f"features/{seeded}/value")
    assert owner.post(url, {"value_per_success_usd": "2.50"}).status_code == 302
    with in_tenant(org_a):
        assert str(Feature.objects.get(key=seeded).value_per_success_usd) == "2.5000"
    bad = owner.post(url, {"value_per_success_usd": "-1"}, follow=True)
    assert b"Value per success: &#x27;-1&#x27; is not a number of dollars" in bad.content
    assert b"the saved value is unchanged" in bad.content
    page = owner.get(org_a.url(f"features/{seeded}/"), WINDOW)
    assert b'data-testid="roi">-' not in page.content


def test_overview_and_customers(owner: Client, org_a, seeded: str) -> None:  # type: ignore[no-untyped-def]
    home = owner.get(org_a.url(""), {"days": "400"})
    assert home.status_code == 200 and b"vs the 400 days before" in home.content  # it read "1 year, 1 month before"
    # A feature's link and the customers link keep the overview's window (the feature page opened on 30 days,
    # every number different from the row clicked).
    html = home.content.decode()
    link = html.split('data-testid="feature-link" href="', 1)[1].split('"', 1)[0]
    assert link.endswith("/?days=400") and f'href="{org_a.url("customers/")}?days=400"' in html
    feature = owner.get(link)
    assert (feature.context["window"].until - feature.context["window"].since).days == 400
    dated = owner.get(org_a.url(""), {"since": "2025-03-01", "until": "2025-03-12"}).content.decode()
    assert "/?since=2025-03-01&amp;until=2025-03-12" in dated.split('data-testid="feature-link"', 1)[1][:300]
    customers = owner.get(org_a.url("customers/"), {"since": "2025-03-01", "until": "2025-03-12"})
    assert customers.status_code == 200 and b"customer_id=cus_a" in customers.content
    # A customer's traces link in the page's window (they opened every day of the customer, newest first).
    assert b"customer_id=cus_a&since=2025-03-01&until=2025-03-11" in customers.content


def test_other_organization_gets_404(seeded: str, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    other = Client()
    other.force_login(org_b.owner)
    for path in (f"features/{seeded}/", f"features/{seeded}/report.csv", ""):
        assert_cross_tenant_404(other, org_a.url(path))
    assert_cross_tenant_404(other, org_b.url(f"features/{seeded}/"))
    assert_cross_tenant_404(other, org_b.url(f"features/{seeded}/report.csv"))
    assert_cross_tenant_404(other, org_b.url(f"features/{seeded}/value"), "post", data={"value_per_success_usd": "1"})
    assert_cross_tenant_404(other, org_b.url(f"features/{seeded}/segments"), "post", data={"segment_keys": "plan"})
    assert_cross_tenant_404(other, org_a.url(f"features/{seeded}/segments"), "post", data={"segment_keys": "plan"})


def test_charts_leave_out_today_until_it_is_over(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """Today's outcomes and late feedback are still arriving: a chart point for it would show a false dip."""
    from datetime import UTC, datetime, timedelta

    from evaluation.reports.selectors import Grouping, feature_page, overview, window_from
    from tests.fixtures.organizations import unique

    now = datetime.now(UTC)
    key = unique("today")
    traces = [
        {"trace_id": f"{key}-{i}", "feature": key, "prompt_version": "v1", "cost_usd": 0.01,
         "started_at": (now - timedelta(days=i % 2, minutes=1)).isoformat()}
        for i in range(6)
    ] + [{"trace_id": f"{key}-beta", "feature": key, "prompt_version": "v2-beta", "cost_usd": 0.01,
          "started_at": (now - timedelta(minutes=1)).isoformat()}]  # fmt: skip
    with in_tenant(org_a):
        from feedback.services import traces_ingest

        traces_ingest(body=json.dumps({"batch": traces}).encode())
        rollups_settled()
        window = window_from()
        page = feature_page(feature=Feature.objects.get(key=key), window=window, grouping=Grouping.parse(""))
        sparkline = next(f["sparkline"] for f in overview(window=window) if f["key"] == key)
    today, yesterday = now.date().isoformat(), (now.date() - timedelta(days=1)).isoformat()
    chart = page["chart"]
    assert chart["partial_day"] == today
    assert chart["points"]["v1"][chart["days"].index(today)] is None
    assert chart["points"]["v1"][chart["days"].index(yesterday)]["traces"] == 3
    assert {g["group"]: g["traces"] for g in page["report"]["groups"]} == {
        "v1": 6,
        "v2-beta": 1,
    }  # the table keeps today
    # A version whose only traces are today's has nothing to draw: no line, no legend, no "first appeared" mark
    # (the demo page's one beta trace marked every chart and read "No data to draw").
    assert chart["versions"] == ["v1"] and "v2-beta" not in chart["points"]
    assert [m["version"] for m in chart["markers"]] == ["v1"]  # v1 first appeared yesterday, in the window
    by_day = {p["day"]: p for p in sparkline}
    assert by_day[yesterday]["cost_usd"] == pytest.approx(0.03)
    # Today is left out of the cost line too: a cost of 0 there drew every sparkline falling at its end.
    assert by_day[today]["cost_usd"] is None and by_day[today]["success"] is None


def test_segment_keys_are_declared_from_the_feature_page(owner: Client, org_a, seeded: str) -> None:  # type: ignore[no-untyped-def]
    url = org_a.url(f"features/{seeded}/segments")
    assert owner.post(url, {"segment_keys": "plan, auth"}).status_code == 302
    with in_tenant(org_a):
        assert Feature.objects.get(key=seeded).segment_keys == ["auth", "plan"]
    refused = owner.post(url, {"segment_keys": "plan bad/key!"}, follow=True)
    assert "is not one" in refused.content.decode()
    with in_tenant(org_a):
        assert Feature.objects.get(key=seeded).segment_keys == ["auth", "plan"]  # unchanged
    page = owner.get(org_a.url(f"features/{seeded}/"), WINDOW).content.decode()
    assert "Segments: auth, plan" in page
    # The refusal says what was typed; the page comes back as it was (its grouping), not reset.
    refused = owner.post(url, {"segment_keys": "plan bad/key!", "next_query": "group_by=metadata.auth"})
    assert refused["Location"].endswith("?group_by=metadata.auth")
    said = owner.get(refused["Location"]).content.decode()
    assert "You typed &#x27;plan bad/key!&#x27;" in said
    # An emptied field does not silently stop every segment (and their alerts): it takes the tick.
    emptied = owner.post(url, {"segment_keys": " "}, follow=True).content.decode()
    assert "Segments unchanged: the field was empty" in emptied
    with in_tenant(org_a):
        assert Feature.objects.get(key=seeded).segment_keys == ["auth", "plan"]
    assert owner.post(url, {"segment_keys": "", "clear": "1"}).status_code == 302
    with in_tenant(org_a):
        assert Feature.objects.get(key=seeded).segment_keys == []


def test_viewers_cannot_declare_segments(org_a, seeded: str) -> None:  # type: ignore[no-untyped-def]
    from tenants.services import member_ensure

    email = "viewer-seg@org-a.test"
    member_ensure(organization=org_a.organization, email=email, password="viewer-pass-123", role="viewer")
    client = Client()
    assert client.login(username=email, password="viewer-pass-123")
    assert client.post(org_a.url(f"features/{seeded}/segments"), {"segment_keys": "plan"}).status_code == 403


def test_a_segment_just_declared_is_answered_from_raw_rows_until_its_rollups_exist(org_a, seeded: str) -> None:  # type: ignore[no-untyped-def]
    """Declaring a key marks its history for recount: the report must not say 'no data' meanwhile."""
    from evaluation.reports.selectors import Grouping, feature_report, window_from
    from feedback.services import feature_segments_set

    by_plan = Grouping.parse("metadata.plan")
    with in_tenant(org_a):
        feature = Feature.objects.get(key=seeded)
        undeclared = feature_report(
            feature=feature, window=window_from(WINDOW["since"], WINDOW["until"]), grouping=by_plan
        )  # raw rows
        feature_segments_set(feature=feature, keys=["auth", "plan"])  # no worker ran: plan has no rows yet
        pending = feature_report(
            feature=feature, window=window_from(WINDOW["since"], WINDOW["until"]), grouping=by_plan
        )
        rollups_settled()
        counted = feature_report(
            feature=feature, window=window_from(WINDOW["since"], WINDOW["until"]), grouping=by_plan
        )
    assert {"pro", "free"} <= {g["group"] for g in undeclared["groups"]}
    # Equal to the last bits: raw rows and rollups add the same numbers in different orders.
    assert_same(pending["groups"], undeclared["groups"])
    assert_same(counted["groups"], undeclared["groups"])


def assert_same(got: Any, want: Any, path: str = "") -> None:
    """Equal through nested dicts and lists, floats to 1e-12 relative."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), path
        for key in want:
            assert_same(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15), path
    else:
        assert got == want, path
